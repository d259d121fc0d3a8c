import ArgumentParser
import Foundation
import VigilCollector
import VigilCore

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Query events stored by a collector.",
        discussion: """
            Examples:
              vigilctl events --collector http://127.0.0.1:8443 --type file --since 15m
              vigilctl events --collector http://127.0.0.1:8443 --agent 3f2c... --json | jq .
            """
    )

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

    @Option(help: ArgumentHelp("Most events to print.", valueName: "n"))
    var limit: Int = 1000

    @Flag(help: "Print one JSON object per line instead of a table.")
    var json = false

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
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
    }

    struct Page: Decodable {
        var events: [StoredEvent]
        var next_cursor: Int64?
    }

    func run() async throws {
        let base = try collectorBase(collector)
        var params: [(String, String)] = []
        if let agent { params.append(("agent", agent)) }
        if let type { params.append(("type", type)) }
        if let rule { params.append(("rule", rule)) }
        // Resolve relative times here so that every page asks for the same window.
        if let since, let t = TimeSpec.parse(since) {
            params.append(("since", String(format: "%.6f", t.secondsSinceEpoch)))
        }
        if let until, let t = TimeSpec.parse(until) {
            params.append(("until", String(format: "%.6f", t.secondsSinceEpoch)))
        }
        var remaining = limit
        var cursor: Int64? = nil
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        while remaining > 0 {
            var query = params
            query.append(("limit", String(min(remaining, 5000))))
            if let cursor { query.append(("after", String(cursor))) }
            let url = base + "/v1/events?" + query.map { "\($0.0)=\(percentEncode($0.1))" }.joined(separator: "&")
            let page = try JSONDecoder().decode(Page.self, from: try await getJSON(url))
            for stored in page.events {
                if json {
                    print(String(decoding: try encoder.encode(stored), as: UTF8.self))
                } else {
                    print(EventFormatter.line(stored.event, agentId: stored.agentId))
                }
            }
            remaining -= page.events.count
            guard let next = page.next_cursor, !page.events.isEmpty else { break }
            cursor = next
        }
    }
}
