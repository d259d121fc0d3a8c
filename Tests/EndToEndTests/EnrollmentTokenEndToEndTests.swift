import Foundation
import Testing
import VigilTestSupport

/// `vigilctl tokens` against a real collector (no --enroll-token: issued tokens only) and real
/// agents: a one-time token enrolls the first agent, whose events arrive, and keeps doing so after
/// a restart; a second agent with the same token is refused and says why.
@Suite("Enrollment tokens end to end")
struct EnrollmentTokenEndToEndTests {
    let dir = NSTemporaryDirectory() + "vigil-tokens-e2e-\(UUID().uuidString)"
    let vigilctl = BuiltProducts.path("vigilctl")

    func agentConfig(_ name: String, base: String, token: String) throws -> String {
        try FileManager.default.createDirectory(atPath: "\(dir)/\(name)/watched", withIntermediateDirectories: true)
        return try AgentFixture.write(
            in: "\(dir)/\(name)",
            collection: "files:\n  watch: [\(dir)/\(name)/watched]\n",
            collectorURL: base,
            enrollToken: token
        )
    }

    func files(_ base: String) async throws -> [String] {
        let result = try await runCommand(vigilctl, ["events", "--collector", base, "--json", "--type", "file"])
        return result.stdout.split(separator: "\n").compactMap {
            let stored = try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            return ((stored?["event"] as? [String: Any])?["file"] as? [String: Any])?["TargetFilename"] as? String
        }
    }

    func tokens(_ base: String) async throws -> [[String: Any]] {
        let listed = try await runCommand(vigilctl, ["tokens", "list", "--collector", base, "--json"])
        return (try? JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any])?["tokens"]
            as? [[String: Any]] ?? []
    }

    @Test("a one-time token from vigilctl enrolls one vigild; a second one is refused", .timeLimit(.minutes(4)))
    func oneTimeToken() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite"]
        )
        let up = await eventually {
            (try? await runCommand(vigilctl, ["tokens", "list", "--collector", base]))?.status == 0
        }
        #expect(up, "collector log:\n\(collector.stderr)")

        let created = try await runCommand(
            vigilctl,
            ["tokens", "create", "--once", "--label", "e2e web-1", "--expires-in", "1h", "--collector", base]
        )
        let token = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(created.status == 0 && token.hasPrefix("vgl_"), "\(created)")
        #expect(created.stderr.contains("one-time") && created.stderr.contains("shown only now"), "\(created.stderr)")
        let secret = String(token.suffix(64))

        // The first agent enrolls with it and its events arrive.
        let first = try ChildProcess(
            BuiltProducts.path("vigild"),
            ["--config", try agentConfig("a1", base: base, token: token)]
        )
        // Written once the file sensor watches (a file written before that is never reported).
        #expect(await eventually(timeout: .seconds(60)) { first.stderr.contains("agent started") }, "\(first.stderr)")
        try Data("one\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/a1/watched/one.txt"))
        let arrived = try await eventually(timeout: .seconds(60)) {
            try await files(base).contains("\(dir)/a1/watched/one.txt")
        }
        #expect(arrived, "agent log:\n\(first.stderr)\ncollector log:\n\(collector.stderr)")

        let listed = try await tokens(base)
        #expect(listed.count == 1 && listed.first?["status"] as? String == "spent", "\(listed)")
        #expect(listed.first?["uses"] as? Int == 1 && listed.first?["label"] as? String == "e2e web-1")
        let table = try await runCommand(vigilctl, ["tokens", "--collector", base])
        #expect(table.stdout.contains("one-time") && table.stdout.contains("spent"), "\(table.stdout)")
        #expect(!table.stdout.contains(secret) && !"\(listed)".contains(secret), "a listing shows the secret")

        // A second agent with the same token is refused and says why; it is not enrolled.
        let second = try ChildProcess(
            BuiltProducts.path("vigild"),
            ["--config", try agentConfig("a2", base: base, token: token)]
        )
        let refused = await eventually(timeout: .seconds(60)) { second.stderr.contains("spent") }
        #expect(refused, "second agent log:\n\(second.stderr)")
        _ = await second.stop()
        let agents = try await runCommand(vigilctl, ["agents", "--collector", base, "--json"])
        let agentList =
            (try? JSONSerialization.jsonObject(with: Data(agents.stdout.utf8)) as? [String: Any])?["agents"]
            as? [[String: Any]] ?? []
        #expect(agentList.count == 1, "\(agents.stdout)")

        // The first agent restarts (and enrolls again with its spent token): still delivering.
        #expect(await first.stop() == 0, "agent log:\n\(first.stderr)")
        let restarted = try ChildProcess(BuiltProducts.path("vigild"), ["--config", "\(dir)/a1/vigild.yaml"])
        #expect(
            await eventually(timeout: .seconds(60)) { restarted.stderr.contains("agent started") },
            "\(restarted.stderr)"
        )
        try Data("two\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/a1/watched/two.txt"))
        let again = try await eventually(timeout: .seconds(60)) {
            try await files(base).contains("\(dir)/a1/watched/two.txt")
        }
        #expect(again, "restarted agent log:\n\(restarted.stderr)")
        #expect(!restarted.stderr.contains("enrollment failed"), "\(restarted.stderr)")

        // Revoked: listed as such.
        let id = try #require(listed.first?["id"] as? String)
        let revoked = try await runCommand(vigilctl, ["tokens", "revoke", id, "--collector", base])
        #expect(revoked.status == 0 && revoked.stdout.contains("enrollment token \(id) revoked at"), "\(revoked)")
        #expect(try await tokens(base).first?["status"] as? String == "revoked")
        let unknown = try await runCommand(vigilctl, ["tokens", "revoke", "000000000000", "--collector", base])
        #expect(unknown.status != 0 && unknown.stderr.contains("no enrollment token"), "\(unknown)")

        _ = await restarted.stop()
        _ = await collector.stop()
    }

    @Test("with an API token, the token routes need it")
    func needsAPIToken() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            [
                "--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--api-token",
                "0123456789abcdef0123",
            ]
        )
        let up = await eventually {
            (try? await runCommand("/usr/bin/curl", ["-fsS", base + "/healthz"]))?.status == 0
        }
        #expect(up, "collector log:\n\(collector.stderr)")
        for args in [["tokens", "list"], ["tokens", "create", "--once"], ["tokens", "revoke", "000000000000"]] {
            let result = try await runCommand(vigilctl, args + ["--collector", base])
            #expect(result.status != 0 && result.stderr.contains("401"), "\(args): \(result)")
        }
        _ = await collector.stop()
    }
}
