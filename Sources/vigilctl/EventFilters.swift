import ArgumentParser
import Foundation
import VigilCollector
import VigilCore

/// The collector and the filters of an event query, shared by `vigilctl events` and
/// `vigilctl export`.
struct EventFilterOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The collector's base URL.", valueName: "url"))
    var collector: String

    @Option(help: ArgumentHelp("Only this agent's events.", valueName: "id"))
    var agent: String?

    @Option(
        help: ArgumentHelp(
            "Only these types (comma-separated): file, process, flow, alert, health, gap.",
            valueName: "types"
        )
    )
    var type: String?

    @Option(help: ArgumentHelp("Only alerts from this rule.", valueName: "id"))
    var rule: String?

    @Option(
        help: ArgumentHelp("Events at or after: 15m, 2h, 7d, epoch seconds or 2026-11-28T13:00:00Z.", valueName: "time")
    )
    var since: String?

    @Option(help: ArgumentHelp("Events before this time (same forms as --since).", valueName: "time"))
    var until: String?

    func validate() throws {
        _ = try collectorBase(collector)
        if let type {
            for t in type.split(separator: ",") where EventType(rawValue: String(t)) == nil {
                throw ValidationError(
                    "--type: '\(t)' is not one of \(EventType.allCases.map(\.rawValue).joined(separator: ", "))"
                )
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

    /// A pager over the matching events, its relative times resolved now so that every page
    /// asks for the same window.
    func pager() throws -> EventPager {
        var params: [(String, String)] = []
        if let agent { params.append(("agent", agent)) }
        if let type { params.append(("type", type)) }
        if let rule { params.append(("rule", rule)) }
        if let since, let t = TimeSpec.parse(since) {
            params.append(("since", String(format: "%.6f", t.secondsSinceEpoch)))
        }
        if let until, let t = TimeSpec.parse(until) {
            params.append(("until", String(format: "%.6f", t.secondsSinceEpoch)))
        }
        return EventPager(base: try collectorBase(collector), parameters: params)
    }
}

/// Pages through `GET /v1/events` with the storage-id cursor.
struct EventPager {
    let base: String
    let parameters: [(String, String)]
    /// The storage id of the last event returned; the next page starts after it.
    private(set) var cursor: Int64? = nil

    /// The most events one request asks for.
    static let pageLimit = 5000

    private struct Page: Decodable {
        var events: [StoredEvent]
        var next_cursor: Int64?
    }

    /// The next page of at most `limit` events after the cursor, and whether the collector
    /// said more are waiting. Moves the cursor past the events returned.
    mutating func next(limit: Int = pageLimit) async throws -> (events: [StoredEvent], more: Bool) {
        var query = parameters
        query.append(("limit", String(min(max(limit, 1), Self.pageLimit))))
        if let cursor { query.append(("after", String(cursor))) }
        let url = base + "/v1/events?" + query.map { "\($0.0)=\(percentEncode($0.1))" }.joined(separator: "&")
        let page = try JSONDecoder().decode(Page.self, from: try await getJSON(url))
        if let last = page.events.last { cursor = last.id }
        return (page.events, page.next_cursor != nil && !page.events.isEmpty)
    }
}
