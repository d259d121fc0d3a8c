import ArgumentParser
import Foundation
import VigilCollector
import VigilCore

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Query events stored by a collector.",
        discussion: """
            Filters combine with AND. --level and --min-level match alerts only (other events have \
            no level). --field NAME=VALUE compares one field of the event exactly (case-sensitive \
            value; integer fields such as process.ProcessId and flow.resp_p take a decimal \
            number); an alert matches on the event that triggered it, so --type alert --field \
            process.Image=/usr/bin/curl finds alerts about curl. alert.tags=attack.t1105 matches \
            alerts carrying that tag.

            Examples:
              vigilctl events --collector http://127.0.0.1:8443 --type file --since 15m
              vigilctl events --collector http://127.0.0.1:8443 --agent 3f2c... --json | jq .
              vigilctl events --collector http://127.0.0.1:8443 --type process \\
                  --field process.Image=/usr/bin/curl --field process.User=www-data
              vigilctl events --collector http://127.0.0.1:8443 --type flow \\
                  --field flow.resp_p=4444
              vigilctl events --collector http://127.0.0.1:8443 --min-level high --since 1d
              vigilctl events --collector http://127.0.0.1:8443 --latest 20 --type process

            Events print oldest first. --latest N prints the newest N matching events instead, \
            still oldest first (the newest last, as a log reads), whatever their age.
            """
    )

    @OptionGroup var filters: EventFilterOptions

    @OptionGroup var listing: ListingOptions

    func run() async throws {
        var pager = try filters.pager()
        pager.position.newestFirst = listing.newestFirst
        var remaining = listing.count
        var newest: [StoredEvent] = []
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        func show(_ stored: StoredEvent) throws {
            if listing.json {
                print(String(decoding: try encoder.encode(stored), as: UTF8.self))
            } else {
                print(EventFormatter.line(stored.event, agentId: stored.agentId))
            }
        }
        while remaining > 0 {
            let page = try await pager.next(limit: remaining)
            if !listing.newestFirst {
                for stored in page.events { try show(stored) }
            } else {
                newest += page.events
            }
            remaining -= page.events.count
            guard page.more else { break }
        }
        for stored in newest.reversed() { try show(stored) }
    }
}
