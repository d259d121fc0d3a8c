import ArgumentParser
import Foundation
import VigilCollector
import VigilCore

struct AlertsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alerts",
        abstract: "Query alerts stored by a collector: time, agent, level, rule, title, ATT&CK tags.",
        discussion: """
            Reads GET /v1/alerts, oldest first; --latest N prints the newest N matching alerts \
            instead, whatever their age, still oldest first (the newest last). Filters combine \
            with AND and are those of `vigilctl events` (without --type). --field matches the event that triggered the \
            alert (process.Image=/usr/bin/curl), or the alert itself (alert.title=..., \
            alert.tags=attack.t1105). The table shows times in UTC, the first 12 characters of \
            the agent id, and the tags without their `attack.` prefix; --json prints one alert per \
            line with everything, the matched event included.

            Examples:
              vigilctl alerts --collector http://127.0.0.1:8443 --since 1d --min-level high
              vigilctl alerts --collector http://127.0.0.1:8443 --level high,critical \\
                  --field alert.tags=attack.t1105
              vigilctl alerts --collector http://127.0.0.1:8443 --rule 6a2f1b5c... \\
                  --json | jq .
              vigilctl alerts --collector http://127.0.0.1:8443 --latest 20
            """
    )

    @OptionGroup var filters: QueryFilterOptions

    @OptionGroup var listing: ListingOptions

    func run() async throws {
        var pager = AlertPager(base: try collectorBase(filters.collector), parameters: try filters.parameters())
        pager.position.newestFirst = listing.newestFirst
        var remaining = listing.count
        var alerts: [StoredAlert] = []
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        while remaining > 0 {
            let page = try await pager.next(limit: remaining)
            if listing.json && !listing.newestFirst {
                for alert in page.alerts { print(String(decoding: try encoder.encode(alert), as: UTF8.self)) }
            } else {
                alerts += page.alerts
            }
            remaining -= page.alerts.count
            guard page.more else { break }
        }
        if listing.newestFirst { alerts.reverse() }
        if listing.json {
            for alert in alerts { print(String(decoding: try encoder.encode(alert), as: UTF8.self)) }
        } else {
            print(Self.table(alerts), terminator: "")
        }
    }

    /// The alerts as an aligned table with a header line; columns as wide as their widest cell,
    /// the last (tags) unpadded.
    static func table(_ alerts: [StoredAlert]) -> String {
        let header = ["TIME (UTC)", "AGENT", "LEVEL", "RULE", "TITLE", "TAGS"]
        let rows: [[String]] = alerts.map { alert in
            [
                String(alert.time.iso8601.prefix(19)).replacingOccurrences(of: "T", with: " "),
                String(alert.agentId.prefix(12)),
                alert.level,
                alert.ruleId,
                alert.title,
                alert.tags.map { $0.hasPrefix("attack.") ? String($0.dropFirst("attack.".count)) : $0 }
                    .joined(separator: ","),
            ]
        }
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        var text = ""
        for row in [header] + rows {
            let cells = row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padded(widths[i]) }
            text += cells.joined(separator: "  ").trimmingTrailingSpaces() + "\n"
        }
        return text
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}
