import Foundation
import Testing
import VigilTestSupport

/// Rules evaluated on the host: alerts from live file events reach the collector, and SIGHUP
/// swaps the policy, refusing a broken one while the old one keeps working.
@Suite("Policy end to end", .serialized)
struct PolicyEndToEndTests {
    let dir = NSTemporaryDirectory() + "vigil-policy-e2e-\(UUID().uuidString)"

    func rule(id: String, suffix: String) -> String {
        """
        title: Test file \(suffix)
        id: \(id)
        status: test
        level: high
        tags: [attack.t1059.004]
        logsource: {product: linux, category: file_event}
        detection:
            selection:
                TargetFilename|endswith: '\(suffix)'
            condition: selection
        """
    }

    func alerts(_ deployment: LocalDeployment, rule: String) async throws -> [[String: Any]] {
        try await deployment.payloads(of: "alert", ["--rule", rule])
    }

    /// The messages of the agent's health events of one kind.
    func health(_ deployment: LocalDeployment, kind: String) async throws -> [String] {
        try await deployment.health(kind: kind).compactMap { $0["message"] as? String }
    }

    @Test("alerts reach the collector; SIGHUP refuses a broken policy and loads a good one")
    func alertsAndReload() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for sub in ["watched", "policies/rules"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        let first = "11111111-1111-4111-8111-111111111111"
        let second = "22222222-2222-4222-8222-222222222222"
        try rule(id: first, suffix: "/evil.sh").write(
            toFile: dir + "/policies/rules/evil.yml",
            atomically: true,
            encoding: .utf8
        )
        let deployment = try LocalDeployment(in: dir, collection: "files:\n  watch: [\(dir)/watched]\n")
        let agent = deployment.agent
        let loaded = try await eventually { try await health(deployment, kind: "policy_loaded").count == 1 }
        #expect(loaded, "agent log:\n\(agent.stderr)\ncollector log:\n\(deployment.collector.stderr)")

        try Data("#!/bin/sh\n".utf8).write(to: URL(fileURLWithPath: dir + "/watched/evil.sh"))
        try Data("fine\n".utf8).write(to: URL(fileURLWithPath: dir + "/watched/fine.txt"))
        let alerted = try await eventually { try await !alerts(deployment, rule: first).isEmpty }
        #expect(alerted, "no alert; agent log:\n\(agent.stderr)")
        let alert = try await alerts(deployment, rule: first).first
        #expect(alert?["title"] as? String == "Test file /evil.sh")
        #expect(alert?["level"] as? String == "high")
        #expect((alert?["tags"] as? [String]) == ["attack.t1059.004"])
        let matched = ((alert?["event"] as? [String: Any])?["file"] as? [String: Any])?["TargetFilename"] as? String
        #expect(matched == dir + "/watched/evil.sh")
        #expect(
            ((alert?["event"] as? [String: Any])?["seq"] as? Int ?? 0) > 0,
            "the alert names the seq of the event it matched"
        )

        // A broken rule file: refused, the old policy keeps alerting.
        try "title: broken\ndetection:\n  selection:\n    Image|nosuchmodifier: x\n  condition: selection\n"
            .write(toFile: dir + "/policies/rules/broken.yml", atomically: true, encoding: .utf8)
        kill(agent.process.processIdentifier, SIGHUP)
        let refused = try await eventually {
            try await health(deployment, kind: "policy_refused").contains { $0.contains("broken.yml:") }
        }
        #expect(refused, "no policy_refused health event; agent log:\n\(agent.stderr)")
        try FileManager.default.createDirectory(atPath: dir + "/watched/sub", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/watched/sub/evil.sh"))
        let stillAlerting = try await eventually { try await alerts(deployment, rule: first).count >= 2 }
        #expect(stillAlerting, "the previous policy stopped working after a refused reload")

        // Fixed, with a new rule: loaded.
        try FileManager.default.removeItem(atPath: dir + "/policies/rules/broken.yml")
        try rule(id: second, suffix: "/other.sh").write(
            toFile: dir + "/policies/rules/other.yml",
            atomically: true,
            encoding: .utf8
        )
        kill(agent.process.processIdentifier, SIGHUP)
        let reloaded = try await eventually { try await health(deployment, kind: "policy_loaded").count == 2 }
        #expect(reloaded, "agent log:\n\(agent.stderr)")
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/watched/other.sh"))
        let newRule = try await eventually { try await !alerts(deployment, rule: second).isEmpty }
        #expect(newRule, "the reloaded policy does not alert")
        #expect(try await alerts(deployment, rule: "no-such-rule").isEmpty)

        let stopped = await deployment.stop()
        #expect(stopped.agent == 0, "\(agent.stderr)")
        #expect(stopped.collector == 0)
    }

    @Test("a broken policy at start-up is refused with its location")
    func brokenAtStart() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/policies/rules", withIntermediateDirectories: true)
        try
            "title: x\nlogsource: {product: linux, category: process_creation}\ndetection:\n  sel:\n    Image: /bin/sh\n  condition: sel and missing\n"
            .write(toFile: dir + "/policies/rules/bad.yml", atomically: true, encoding: .utf8)
        try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: []\n",
            collectorURL: "http://127.0.0.1:1",
            batchMaxAgeMilliseconds: nil
        )
        let r = try await runCommand(
            BuiltProducts.path("vigild"),
            ["--config", dir + "/vigild.yaml"],
            timeout: .seconds(30)
        )
        #expect(r.status != 0)
        #expect(r.stderr.contains("bad.yml:"), "\(r.stderr)")
    }
}
