import ArgumentParser
import Foundation
import VigilCollector
import VigilCore

struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export stored events for SIEM pipelines: OCSF NDJSON, or alerts as RFC 5424 syslog.",
        discussion: """
            Reads through the collector's query API like `vigilctl events` and writes one line per \
            event. --format ocsf (the default) writes OCSF 1.1.0 JSON objects: File System Activity \
            (1001), Process Activity (1007), Network Activity (4001), Detection Finding (2004) for \
            alerts, and Base Event (0) for agent health and gap records. --format syslog writes \
            alerts only, as RFC 5424 lines (facility 13, log audit; severity from the rule level).

            With --output FILE the lines are appended to FILE (created 0640). With --output URL \
            (http:// or https://) each page of lines is POSTed as one newline-delimited body \
            (Content-Type application/x-ndjson, or text/plain for syslog); a page the endpoint \
            does not accept (connection failure, timeout, 408, 429 or 5xx) is sent again with \
            backoff, so nothing is skipped — forever with --follow, else up to 5 times; any other \
            answer stops the export with the endpoint's reason. --header adds a request header \
            (e.g. an API key), --output-ca-file trusts a private CA for https. With --follow the \
            export keeps polling every second for new events until interrupted, retrying through \
            collector restarts once it has been answered.

            Examples:
              vigilctl export --collector http://127.0.0.1:8443 --since 1h > vigil.ndjson
              vigilctl export --collector http://127.0.0.1:8443 --follow \\
                  --output /var/log/vigil/ocsf.ndjson
              vigilctl export --collector http://127.0.0.1:8443 --format syslog \\
                  --follow | nc siem.example 514    # newline-framed syslog over TCP

            Vector (vector.yaml), tailing the NDJSON file:
              sources:
                vigil:
                  type: file
                  include: [/var/log/vigil/ocsf.ndjson]
              transforms:
                ocsf:
                  type: remap
                  inputs: [vigil]
                  source: '. = parse_json!(.message)'

            Vector, receiving over HTTP (vigilctl export ... --follow \\
                  --output http://vector.example:8080/ --header 'Authorization: Bearer TOKEN'):
              sources:
                vigil:
                  type: http_server
                  address: 0.0.0.0:8080
                  decoding: {codec: json}
                  framing: {method: newline_delimited}

            Fluent Bit (fluent-bit.yaml; the json parser ships in its parsers.conf):
              service:
                parsers_file: parsers.conf
              pipeline:
                inputs:
                  - name: tail
                    path: /var/log/vigil/ocsf.ndjson
                    parser: json
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case ocsf, syslog
    }

    @OptionGroup var filters: EventFilterOptions

    @Option(help: "ocsf: every event as an OCSF JSON line; syslog: alerts only, as RFC 5424 lines.")
    var format: Format = .ocsf

    @Option(
        help: ArgumentHelp(
            "Append the lines to this file, or POST them to this http:// or https:// URL; - writes to standard output.",
            valueName: "file|url"
        )
    )
    var output: String = "-"

    @Option(
        name: .customLong("header"),
        help: ArgumentHelp("A header for every POST to an --output URL; repeatable.", valueName: "name: value")
    )
    var headers: [String] = []

    @Option(
        help: ArgumentHelp("Trust this CA (PEM) for an https:// --output instead of the system's.", valueName: "file")
    )
    var outputCaFile: String?

    @Flag(help: "Keep polling the collector every second for new events until interrupted.")
    var follow = false

    @Option(help: ArgumentHelp("The syslog facility (0-23) of --format syslog.", valueName: "n"))
    var syslogFacility: Int = Syslog.defaultFacility

    func validate() throws {
        guard (0...23).contains(syslogFacility) else { throw ValidationError("--syslog-facility must be 0-23") }
        if format == .syslog, let type = filters.type, type != EventType.alert.rawValue {
            throw ValidationError("--format syslog exports alerts only: leave out --type or give --type alert")
        }
    }

    func run() async throws {
        var filters = filters
        if format == .syslog { filters.type = EventType.alert.rawValue }
        var pager = try filters.pager()
        let sink = try ExportSink.open(
            output,
            headers: headers,
            caFile: outputCaFile,
            contentType: format == .ocsf ? "application/x-ndjson" : "text/plain; charset=utf-8",
            retryForever: follow
        )
        do {
            try await export(pages: &pager, to: sink)
        } catch {
            try? await sink.close()
            throw error
        }
        try await sink.close()
    }

    func export(pages pager: inout EventPager, to sink: ExportSink) async throws {
        var hosts = HostNames(base: pager.base)
        var answered = false
        while true {
            let page: (events: [StoredEvent], more: Bool)
            do {
                page = try await pager.next()
                answered = true
            } catch  where follow && answered {
                // The collector restarting must not end a long-running export: retry from the
                // same cursor. A collector that never answered is a mistake to report.
                FileHandle.standardError.write(Data("vigilctl export: \(error); retrying\n".utf8))
                try await Task.sleep(for: .seconds(1))
                continue
            }
            if !page.events.isEmpty {
                await hosts.learn(page.events.map(\.agentId))
                var text = ""
                for stored in page.events {
                    let hostname = hosts.names[stored.agentId]
                    let line: String? =
                        switch format {
                        case .ocsf: OCSF.line(stored.event, agentId: stored.agentId, hostname: hostname)
                        case .syslog:
                            Syslog.line(
                                stored.event,
                                agentId: stored.agentId,
                                hostname: hostname,
                                facility: syslogFacility
                            )
                        }
                    if let line { text += line + "\n" }
                }
                if !text.isEmpty { try await sink.write(text) }
            }
            if page.more { continue }
            guard follow else { break }
            try await Task.sleep(for: .seconds(1))
        }
    }
}

/// Agents' host names from `GET /v1/agents`, fetched again when an unknown agent appears.
/// Best effort: without them, records carry the agent id only.
struct HostNames {
    let base: String
    private(set) var names: [String: String] = [:]
    private var asked: Set<String> = []

    init(base: String) { self.base = base }

    private struct List: Decodable {
        var agents: [AgentSummary]
    }

    mutating func learn(_ agentIds: [String]) async {
        let unknown = Set(agentIds).subtracting(names.keys).subtracting(asked)
        guard !unknown.isEmpty else { return }
        asked.formUnion(unknown)
        guard let data = try? await getJSON(base + "/v1/agents"),
            let list = try? JSONDecoder().decode(List.self, from: data)
        else { return }
        for agent in list.agents { names[agent.agentId] = agent.hostname }
    }
}
