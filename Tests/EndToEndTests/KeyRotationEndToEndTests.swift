import Foundation
import Testing
import VigilTestSupport
import VigilWire

/// `vigilctl keygen --rotate` against a real agent streaming to a real collector: the agent
/// presents the statement, switches keys between two batches, and nothing is lost, doubled or
/// unlinked; restarts of both sides, and a crash between the collector taking a statement and
/// the agent switching, keep working.
@Suite("Key rotation end to end", .serialized)
struct KeyRotationEndToEndTests {
    let dir = NSTemporaryDirectory() + "vigil-rotate-e2e-\(UUID().uuidString)"
    var keyPath: String { dir + "/state/agent.key" }

    func vigilctl(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await runCommand(BuiltProducts.path("vigilctl"), arguments)
    }

    /// The collector's inventory row of the only agent.
    func agentRow(_ base: String) async throws -> [String: Any]? {
        let listed = try await vigilctl(["agents", "--collector", base, "--json"])
        let json = try? JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any]
        return (json?["agents"] as? [[String: Any]])?.first
    }

    /// Stored file events by file name, and every stored event seq of the agent.
    func stored(_ deployment: LocalDeployment) async throws -> (files: [String: Int], seqs: [Int]) {
        var files: [String: Int] = [:]
        var seqs: [Int] = []
        for event in try await deployment.events() {
            guard let body = event["event"] as? [String: Any] else { continue }
            if let seq = body["seq"] as? Int { seqs.append(seq) }
            if let file = body["file"] as? [String: Any], let name = file["TargetFilename"] as? String {
                files[(name as NSString).lastPathComponent, default: 0] += 1
            }
        }
        return (files, seqs)
    }

    /// Writes `count` new files, one every 20 ms.
    func write(_ prefix: String, count: Int) async throws {
        for i in 0..<count {
            try Data("\(prefix) \(i)\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/watched/\(prefix)-\(i).txt"))
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test(
        "rotation while the agent streams: every event stored once, chain whole, new key after; restarts and a crash mid-rotation keep working",
        .timeLimit(.minutes(6))
    )
    func rotateWhileStreaming() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        let deployment = try LocalDeployment(in: dir, collection: "files:\n  watch: [\(dir)/watched]\n")
        #expect(try await deployment.waitForStart(), "agent log:\n\(deployment.agent.stderr)")
        let base = deployment.base
        let oldKey = try AgentIdentity.load(from: keyPath)

        // Rotate in the middle of a stream of file events.
        async let writing: Void = write("during", count: 150)
        try await Task.sleep(for: .milliseconds(1500))
        let rotated = try await vigilctl(["keygen", "--rotate", keyPath, "--json"])
        try await writing
        #expect(rotated.status == 0, "\(rotated.stderr)")
        let statement = try JSONDecoder().decode(KeyRotation.self, from: Data(rotated.stdout.utf8))
        #expect(statement.oldKeyId == oldKey.keyId && statement.agentId == oldKey.agentId)
        let switched = await eventually(timeout: .seconds(60)) {
            deployment.agent.stderr.contains("agent key rotated")
        }
        #expect(switched, "agent log:\n\(deployment.agent.stderr)")

        let allStored = try await eventually(timeout: .seconds(60)) {
            try await stored(deployment).files.count >= 150
        }
        let (files, seqs) = try await stored(deployment)
        #expect(allStored, "\(files.count) of 150 files stored; agent log:\n\(deployment.agent.stderr)")
        #expect(Set(seqs).count == seqs.count, "an event was stored twice")
        #expect(try AgentIdentity.load(from: keyPath).keyId == statement.newKeyId, "agent.key holds the new key")
        #expect(!FileManager.default.fileExists(atPath: keyPath + ".next"))
        let row = try #require(try await agentRow(base))
        #expect(row["key_id"] as? String == statement.newKeyId && row["key_rotated_at"] != nil, "\(row)")
        #expect(row["chain_status"] as? String == "whole", "\(row)")
        #expect(try await deployment.health(kind: "key_rotated").count == 1)
        let table = try await vigilctl(["agents", "--collector", base])
        #expect(table.stdout.contains(statement.newKeyId) && table.stdout.contains("key rotated"), "\(table.stdout)")
        let verified = try await vigilctl(["verify", "--collector", base, "--agent", oldKey.agentId])
        #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")

        // Both restart; the agent signs with the new key and the chain goes on.
        _ = await deployment.stop()
        let port = String(base.split(separator: ":").last!)
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--enroll-token", "t"]
        )
        defer { collector.send(SIGTERM) }
        #expect(await eventually { collector.stderr.contains("collector listening") }, "\(collector.stderr)")

        // A crash between the collector taking a statement and the agent switching: the
        // statement is presented (as by the agent), the agent is not running to switch.
        let second = try await vigilctl(["keygen", "--rotate", keyPath, "--json"])
        #expect(second.status == 0, "\(second.stderr)")
        let presented = try await curl(
            "\(base)/v1/agents/\(oldKey.agentId)/keys",
            post: Array(second.stdout.trimmingCharacters(in: .whitespacesAndNewlines).utf8),
            contentType: "application/json"
        )
        #expect(presented.status == 200 && presented.body.contains("\"rotated\""), "\(presented)")
        let secondStatement = try JSONDecoder().decode(KeyRotation.self, from: Data(second.stdout.utf8))

        let agent = try ChildProcess(BuiltProducts.path("vigild"), ["--config", dir + "/vigild.yaml"])
        defer { agent.send(SIGTERM) }
        #expect(
            await eventually(timeout: .seconds(60)) { agent.stderr.contains("already_rotated") },
            "agent log:\n\(agent.stderr)"
        )
        try await write("after", count: 20)
        let delivered = try await eventually(timeout: .seconds(60)) {
            try await stored(deployment).files.keys.filter { $0.hasPrefix("after-") }.count == 20
        }
        #expect(delivered, "agent log:\n\(agent.stderr)\ncollector log:\n\(collector.stderr)")
        #expect(try AgentIdentity.load(from: keyPath).keyId == secondStatement.newKeyId)
        let after = try #require(try await agentRow(base))
        #expect(after["key_id"] as? String == secondStatement.newKeyId && after["chain_status"] as? String == "whole")
        let reverified = try await vigilctl(["verify", "--collector", base, "--agent", oldKey.agentId])
        #expect(reverified.status == 0, "\(reverified.stdout)\(reverified.stderr)")
        let (_, allSeqs) = try await stored(deployment)
        #expect(Set(allSeqs).count == allSeqs.count, "an event was stored twice")

        // The first statement again: its old key is retired.
        let replay = try await curl(
            "\(base)/v1/agents/\(oldKey.agentId)/keys",
            post: Array(rotated.stdout.trimmingCharacters(in: .whitespacesAndNewlines).utf8),
            contentType: "application/json"
        )
        #expect(replay.status == 403 && replay.body.contains("key_retired"), "\(replay)")
        _ = await agent.stop()
    }
}
