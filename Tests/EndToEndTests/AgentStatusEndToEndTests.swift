import Foundation
import Testing
import VigilTestSupport

/// A real vigild reports its version, policy hash and periodic status in its signed stream, and
/// a real collector shows them in `GET /v1/agents` (through `vigilctl agents`).
@Suite("Agent status end to end")
struct AgentStatusEndToEndTests {
    let dir = NSTemporaryDirectory() + "vigil-status-e2e-\(UUID().uuidString)"

    static let rule = """
        title: Status test rule
        id: 7d1f2c3a-0000-4000-8000-00000000a5a5
        logsource: {product: linux, category: file_event}
        detection:
          selection: {TargetFilename|endswith: .status-test}
          condition: selection
        level: low

        """

    /// The first agent of `vigilctl agents --json`.
    func inventory(_ deployment: LocalDeployment) async throws -> [String: Any]? {
        let listed = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["agents", "--collector", deployment.base, "--json"]
        )
        let json = try? JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any]
        return (json?["agents"] as? [[String: Any]])?.first
    }

    @Test("vigild --check-config names the metrics endpoint and the status interval")
    func checkConfig() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plain = try AgentFixture.write(in: dir, collection: "", collectorURL: "http://127.0.0.1:1")
        var result = try await runCommand(BuiltProducts.path("vigild"), ["--config", plain, "--check-config"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("metrics off, status every 60 s"), "\(result.stdout)")
        let configured = try AgentFixture.write(
            in: dir,
            collection: "",
            collectorURL: "http://127.0.0.1:1",
            extraConfiguration: "metrics_listen: 127.0.0.1:9477\nstatus_interval_s: 15\n"
        )
        result = try await runCommand(BuiltProducts.path("vigild"), ["--config", configured, "--check-config"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("metrics_listen 127.0.0.1:9477, status every 15 s"), "\(result.stdout)")
    }

    @Test(
        "the inventory shows the agent's version, policy hash and spool backlog; a reload changes the hash",
        .timeLimit(.minutes(3))
    )
    func inventoryShowsStatus() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/policies", withIntermediateDirectories: true)
        try Self.rule.write(toFile: dir + "/policies/status.yml", atomically: true, encoding: .utf8)
        let deployment = try LocalDeployment(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n",
            agentConfiguration: "status_interval_s: 1\n"
        )
        #expect(try await deployment.waitForStart(), "agent log:\n\(deployment.agent.stderr)")
        let version = try await runCommand(BuiltProducts.path("vigild"), ["--version"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!version.isEmpty)

        // A status report arrives within a few intervals, and the inventory shows all of it.
        var agent: [String: Any] = [:]
        let reported = try await eventually(timeout: .seconds(60)) {
            agent = try await inventory(deployment) ?? [:]
            return agent["last_status"] != nil
        }
        #expect(reported, "inventory: \(agent)\nagent log:\n\(deployment.agent.stderr)")
        #expect(agent["version"] as? String == version, "\(agent)")
        let hash = try #require(agent["policy_hash"] as? String, "\(agent)")
        #expect(hash.count == 64 && hash.allSatisfy(\.isHexDigit), "\(hash)")
        // Not the hash of an empty rule set: the rule file is in it.
        #expect(hash != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let status = try #require(agent["last_status"] as? [String: Any])
        #expect(status["spool_events"] is Int, "no backlog in \(status)")
        for key in ["time", "spool_bytes", "events_shed", "queue_drops", "kernel_drops"] {
            #expect(status[key] is Int, "\(key) missing from \(status)")
        }

        // The status health events themselves are stored like any other.
        let reports = try await deployment.health(kind: "status")
        let first = try #require(reports.first, "no status event stored")
        let counters = try #require(first["counters"] as? [String: Any])
        #expect(counters["spool_events"] != nil && counters["queue_drops"] != nil, "\(first)")
        let attributes = try #require(first["attributes"] as? [String: String], "\(first)")
        #expect(attributes["version"] == version && attributes["policy_sha256"] == hash)

        // The table: version, the hash's first 12 characters, a backlog column.
        let table = try await runCommand(BuiltProducts.path("vigilctl"), ["agents", "--collector", deployment.base])
        #expect(table.stdout.contains("BACKLOG"), "\(table.stdout)")
        #expect(table.stdout.contains(" \(version) "), "\(table.stdout)")
        #expect(table.stdout.contains(" \(hash.prefix(12)) "), "\(table.stdout)")

        // A changed rule, reloaded on SIGHUP, is a new hash in the inventory.
        try (Self.rule + "tags: [attack.t1005]\n").write(
            toFile: dir + "/policies/status.yml",
            atomically: true,
            encoding: .utf8
        )
        deployment.agent.send(SIGHUP)
        var newHash: String? = nil
        let changed = try await eventually(timeout: .seconds(60)) {
            newHash = try await inventory(deployment)?["policy_hash"] as? String
            return newHash != nil && newHash != hash
        }
        #expect(changed, "policy hash still \(newHash ?? "nil"); agent log:\n\(deployment.agent.stderr)")
        let (agentStatus, collectorStatus) = await deployment.stop()
        #expect(agentStatus == 0 && collectorStatus == 0)
    }
}
