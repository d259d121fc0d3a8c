import ArgumentParser
import Foundation
import VigilCollector
import VigilCore

struct AgentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agents",
        abstract: "The agents a collector knows: list them (the default), or revoke one.",
        subcommands: [AgentsListCommand.self, AgentsRevokeCommand.self],
        defaultSubcommand: AgentsListCommand.self
    )
}

struct AgentsRevokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke an agent: the collector refuses its batches and its re-enrollment from now on.",
        discussion: """
            What the agent sent before stays stored and queryable; `vigilctl agents` shows it as
            REVOKED. Revoking twice keeps the first time. Needs VIGIL_API_TOKEN when the collector
            has an API token (otherwise it answers loopback clients only).
            Example: vigilctl agents revoke 3f2c... --collector https://collector.example:8443
            """
    )

    @Argument(help: ArgumentHelp("The agent to revoke.", valueName: "agent-id"))
    var agent: String

    @Option(help: ArgumentHelp("The collector's base URL.", valueName: "url"))
    var collector: String

    func validate() throws { _ = try collectorBase(collector) }

    func run() async throws {
        let data = try await requestJSON(
            try collectorBase(collector) + "/v1/agents/\(percentEncode(agent))/revoke",
            method: .POST
        )
        let response = try JSONDecoder().decode(Collector.RevokeResponse.self, from: data)
        print("agent \(response.agentId) revoked at \(response.revokedAt.iso8601)")
    }
}

struct AgentsListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract:
            "List the agents a collector knows: version, policy hash, signing key (and when it was rotated), last seen, batches, spool backlog, selftest, chain state."
    )

    @Option(help: ArgumentHelp("The collector's base URL.", valueName: "url"))
    var collector: String

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func validate() throws { _ = try collectorBase(collector) }

    struct List: Codable {
        var agents: [AgentSummary]
    }

    func run() async throws {
        let data = try await getJSON(try collectorBase(collector) + "/v1/agents")
        let list = try JSONDecoder().decode(List.self, from: data)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(list), as: UTF8.self))
            return
        }
        print(
            "AGENT                                 HOST                 VERSION    POLICY       KEY               LAST SEEN                    BATCHES  EVENTS    BACKLOG   SELFTEST                 CHAIN"
        )
        for a in list.agents {
            let seen = a.lastSeen?.iso8601 ?? "never"
            // What the agent last said about itself; "-" from an agent that never reported it.
            let version = a.version ?? "-"
            let policy = a.policyHash.map { String($0.prefix(12)) } ?? "-"
            let backlog = a.lastStatus.map { String($0.spoolEvents) } ?? "-"
            // Loss the agent declared in signed gap records: honest, so not a chain anomaly.
            let declared =
                a.declaredGaps == 0
                ? ""
                : " (gap: \(a.droppedEvents) event(s) dropped by the agent, declared in \(a.declaredGaps) signed record(s))"
            print(
                "\(a.agentId.padded(37)) \(a.hostname.padded(20)) \(version.padded(10)) \(policy.padded(12)) \(a.keyId.padded(17)) \(seen.padded(28)) \(String(a.lastBatchSeq).padded(8)) \(String(a.events).padded(9)) \(backlog.padded(9)) \(a.selftestStatus.padded(24)) \(a.revoked ? "REVOKED " : "")\(a.chainStatus)\(declared)"
            )
            if let status = a.lastStatus,
                status.eventsShed + status.queueDrops + status.kernelDrops + status.spoolDropped > 0
            {
                print(
                    "    \(status.time.iso8601) status: \(status.spoolEvents) event(s) spooled (\(status.spoolBytes) bytes); since start \(status.eventsShed) shed, \(status.queueDrops) queue drop(s), \(status.kernelDrops) kernel drop(s), \(status.spoolDropped) dropped from the full spool"
                )
            }
            if let rotated = a.keyRotatedAt {
                print("    \(rotated.iso8601) key rotated: batches since are signed with key \(a.keyId)")
            }
            if let last = a.lastSelftest, !last.passed {
                let passed = a.selftestPassedAt.map { "last passed \($0.iso8601)" } ?? "never passed"
                print(
                    "    \(last.time.iso8601) selftest failed: \(last.detected) of \(last.drills) drill(s) detected, \(last.missed) missed; \(passed)"
                )
            }
            for anomaly in a.anomalies.suffix(5) {
                print(
                    "    \(anomaly.detectedAt.iso8601) \(anomaly.kind) at batch \(anomaly.batchSeq): \(anomaly.detail)"
                )
            }
        }
    }
}
