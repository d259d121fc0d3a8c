import ArgumentParser
import Foundation
import VigilCollector
import VigilCore

/// The collector and the filters every query route takes (`GET /v1/events` and
/// `GET /v1/alerts`): all but the event type.
struct QueryFilterOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The collector's base URL.", valueName: "url"))
    var collector: String

    @Option(help: ArgumentHelp("Only this agent's events.", valueName: "id"))
    var agent: String?

    @Option(help: ArgumentHelp("Only alerts from this rule.", valueName: "id"))
    var rule: String?

    @Option(
        help: ArgumentHelp(
            "Only alerts of these levels (comma-separated, any case): \(AlertLevel.names). Other events have no level.",
            valueName: "levels"
        )
    )
    var level: String?

    @Option(
        help: ArgumentHelp(
            "Only alerts at or above this level (with --level: both must hold).",
            valueName: "level"
        )
    )
    var minLevel: String?

    @Option(
        name: .customLong("field"),
        help: ArgumentHelp(
            "Only events whose field equals the value, exactly; repeat to require several. An alert matches on the event that triggered it (alert.tags matches one tag). Fields (case-insensitive): \(EventField.names).",
            valueName: "name=value"
        )
    )
    var fields: [String] = []

    @Option(
        help: ArgumentHelp("Events at or after: 15m, 2h, 7d, epoch seconds or 2026-11-28T13:00:00Z.", valueName: "time")
    )
    var since: String?

    @Option(help: ArgumentHelp("Events before this time (same forms as --since).", valueName: "time"))
    var until: String?

    func validate() throws {
        _ = try collectorBase(collector)
        if let level {
            for name in level.split(separator: ",", omittingEmptySubsequences: false)
            where AlertLevel(rawValue: name.lowercased()) == nil {
                throw ValidationError("--level: '\(name)' is not one of \(AlertLevel.names)")
            }
        }
        if let minLevel, AlertLevel(rawValue: minLevel.lowercased()) == nil {
            throw ValidationError("--min-level: '\(minLevel)' is not one of \(AlertLevel.names)")
        }
        guard fields.count <= EventQuery.maxFieldFilters else {
            throw ValidationError("--field: at most \(EventQuery.maxFieldFilters) field filters")
        }
        for field in fields {
            do throws(EventQuery.Refusal) {
                _ = try FieldMatch.parse(try Self.apiField(field))
            } catch {
                // The collector's wording, with the flag's name and separator.
                throw ValidationError("--field" + error.message.dropFirst("field".count))
            }
        }
        for (flag, value) in [("--since", since), ("--until", until)] {
            if let value, TimeSpec.parse(value) == nil {
                throw ValidationError(
                    "\(flag): '\(value)' is not a time (use 15m, 2h, 7d, epoch seconds or 2026-11-28T13:00:00Z)"
                )
            }
        }
    }

    /// `NAME=VALUE` (or `NAME:VALUE`) as the query API's `NAME:VALUE`: the name ends at the first
    /// `=` or `:` (field names have neither; the value may have both).
    static func apiField(_ text: String) throws(EventQuery.Refusal) -> String {
        guard let separator = text.firstIndex(where: { $0 == "=" || $0 == ":" }) else {
            throw EventQuery.Refusal("field: '\(text)' is not NAME=VALUE (e.g. process.Image=/usr/bin/curl)")
        }
        return String(text[..<separator]) + ":" + String(text[text.index(after: separator)...])
    }

    /// The query parameters, relative times resolved now so that every page asks for the same
    /// window.
    func parameters() throws -> [(String, String)] {
        var params: [(String, String)] = []
        if let agent { params.append(("agent", agent)) }
        if let rule { params.append(("rule", rule)) }
        if let level { params.append(("level", level.lowercased())) }
        if let minLevel { params.append(("min_level", minLevel.lowercased())) }
        for field in fields { params.append(("field", try Self.apiField(field))) }
        if let since, let t = TimeSpec.parse(since) {
            params.append(("since", String(format: "%.6f", t.secondsSinceEpoch)))
        }
        if let until, let t = TimeSpec.parse(until) {
            params.append(("until", String(format: "%.6f", t.secondsSinceEpoch)))
        }
        return params
    }
}

/// The collector and the filters of an event query, shared by `vigilctl events` and
/// `vigilctl export`.
struct EventFilterOptions: ParsableArguments {
    @OptionGroup var query: QueryFilterOptions

    @Option(
        help: ArgumentHelp(
            "Only these types (comma-separated): file, process, flow, alert, health, gap.",
            valueName: "types"
        )
    )
    var type: String?

    func validate() throws {
        if let type {
            for t in type.split(separator: ",") where EventType(rawValue: String(t)) == nil {
                throw ValidationError(
                    "--type: '\(t)' is not one of \(EventType.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
        }
    }

    /// A pager over the matching events, its relative times resolved now so that every page
    /// asks for the same window.
    func pager() throws -> EventPager {
        var params = try query.parameters()
        if let type { params.append(("type", type)) }
        return EventPager(base: try collectorBase(query.collector), parameters: params)
    }
}

/// Follows the storage-id cursor of a query route (`next_cursor`), for `EventPager` and
/// `AlertPager`.
/// How many matching items `vigilctl events` and `vigilctl alerts` print, which end, and how.
struct ListingOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Most to print, the oldest matching first (default 1000).", valueName: "n"))
    var limit: Int?

    @Option(help: ArgumentHelp("Print the newest n matching (oldest of them first).", valueName: "n"))
    var latest: Int?

    @Flag(help: "Print one JSON object per line instead of a table.")
    var json = false

    func validate() throws {
        guard limit == nil || latest == nil else {
            throw ValidationError("--limit and --latest: give one (--latest N prints the newest N)")
        }
        guard (limit ?? 1) >= 1 else { throw ValidationError("--limit must be at least 1") }
        guard (latest ?? 1) >= 1 else { throw ValidationError("--latest must be at least 1") }
    }

    /// Pages are read newest first (`--latest`).
    var newestFirst: Bool { latest != nil }
    /// How many items to print.
    var count: Int { latest ?? limit ?? 1000 }
}

struct QueryCursor {
    /// Newest first (`order=desc`, paged on with `before`) instead of oldest first (`after`).
    var newestFirst = false
    /// Where the next page starts; nil: at the start (oldest, or with `newestFirst` newest).
    private(set) var cursor: Int64? = nil
    private var stalled = 0

    /// Empty pages that still had a cursor, in a row, before a pager stops (about 5 s).
    static let maxStalled = 20

    /// The URL of the next page of `route` with these filters, at most `limit` items.
    func url(base: String, route: String, parameters: [(String, String)], limit: Int) -> String {
        var query = parameters
        query.append(("limit", String(min(max(limit, 1), EventPager.pageLimit))))
        if newestFirst { query.append(("order", "desc")) }
        if let cursor { query.append((newestFirst ? "before" : "after", String(cursor))) }
        return base + route + "?" + query.map { "\($0.0)=\(percentEncode($0.1))" }.joined(separator: "&")
    }

    /// Moves to `next` (the page's `next_cursor`); returns whether more is waiting.
    ///
    /// An ascending page can come back short, even empty, with a cursor: on PostgreSQL the
    /// collector holds back rows that are not final yet (a transaction with a lower id is still
    /// open), and they come a moment later. After an empty page this waits a little before the
    /// next request; after `maxStalled` empty pages in a row it says so on stderr and stops.
    mutating func advance(returned: Int, next: Int64?) async throws -> Bool {
        guard let next else { return false }
        cursor = next
        guard returned == 0 else {
            stalled = 0
            return true
        }
        stalled += 1
        if stalled >= Self.maxStalled {
            stalled = 0
            FileHandle.standardError.write(
                Data(
                    "vigilctl: newer events are not final yet (a transaction on the collector's database is still open); ask again later with the same filters\n"
                        .utf8
                )
            )
            return false
        }
        try await Task.sleep(for: .milliseconds(250))
        return true
    }
}

/// Pages through `GET /v1/events` with the storage-id cursor.
struct EventPager {
    let base: String
    let parameters: [(String, String)]
    var position = QueryCursor()

    /// The most events one request asks for.
    static let pageLimit = 5000

    private struct Page: Decodable {
        var events: [StoredEvent]
        var next_cursor: Int64?
    }

    /// The next page of at most `limit` events from the cursor, and whether the collector said
    /// more are waiting. Moves the cursor to the page's `next_cursor`.
    mutating func next(limit: Int = pageLimit) async throws -> (events: [StoredEvent], more: Bool) {
        let url = position.url(base: base, route: "/v1/events", parameters: parameters, limit: limit)
        let page = try JSONDecoder().decode(Page.self, from: try await getJSON(url))
        return (page.events, try await position.advance(returned: page.events.count, next: page.next_cursor))
    }
}

/// Pages through `GET /v1/alerts` with the storage-id cursor, like `EventPager`.
struct AlertPager {
    let base: String
    let parameters: [(String, String)]
    var position = QueryCursor()

    private struct Page: Decodable {
        var alerts: [StoredAlert]
        var next_cursor: Int64?
    }

    mutating func next(limit: Int = EventPager.pageLimit) async throws -> (alerts: [StoredAlert], more: Bool) {
        let url = position.url(base: base, route: "/v1/alerts", parameters: parameters, limit: limit)
        let page = try JSONDecoder().decode(Page.self, from: try await getJSON(url))
        return (page.alerts, try await position.advance(returned: page.alerts.count, next: page.next_cursor))
    }
}
