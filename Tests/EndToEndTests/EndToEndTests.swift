import Foundation
import Testing
import VigilTestSupport

/// The real binaries, started as processes on loopback: collector, agent, vigilctl.
@Suite("End to end", .serialized)
struct EndToEndTests {
    let dir: String

    init() throws {
        dir = NSTemporaryDirectory() + "vigil-e2e-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/policies", withIntermediateDirectories: true)
    }

    func writeAgentConfig(port: Int, token: String) throws -> String {
        try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n  hash_max_bytes: 1048576\n",
            collectorURL: "http://127.0.0.1:\(port)",
            enrollToken: token
        )
    }

    func events(port: Int, _ extra: [String] = []) async throws -> [[String: Any]] {
        let result = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["events", "--collector", "http://127.0.0.1:\(port)", "--json"] + extra
        )
        guard result.status == 0 else { return [] }
        return result.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    static func filename(_ stored: [String: Any]) -> String? {
        ((stored["event"] as? [String: Any])?["file"] as? [String: Any])?["TargetFilename"] as? String
    }

    @Test("a file touched on the host reaches the collector and vigilctl finds it")
    func fileEventEndToEnd() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = freeLoopbackPort()
        let token = UUID().uuidString
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/collector.sqlite", "--enroll-token", token]
        )
        let up = await eventually {
            (try? await runCommand(
                BuiltProducts.path("vigilctl"),
                ["agents", "--collector", "http://127.0.0.1:\(port)"]
            ))?.status == 0
        }
        #expect(up, "collector did not come up: \(collector.stderr)")

        let agent = try ChildProcess(
            BuiltProducts.path("vigild"),
            ["--config", try writeAgentConfig(port: port, token: token)]
        )
        // The agent reports itself as started once its watches are in place.
        let started = try await eventually {
            try await events(port: port, ["--type", "health"]).contains {
                ($0["event"] as? [String: Any]).map { "\($0)".contains("started") } ?? false
            }
        }
        #expect(started, "agent did not start: \(agent.stderr)")

        let target = dir + "/watched/hello.txt"
        try Data("hello vigil\n".utf8).write(to: URL(fileURLWithPath: target))
        let found = try await eventually {
            try await events(port: port, ["--type", "file"]).contains { Self.filename($0) == target }
        }
        #expect(found, "no file event for \(target); agent log:\n\(agent.stderr)")

        let fileEvents = try await events(port: port, ["--type", "file"]).filter { Self.filename($0) == target }
        let file = (fileEvents.last?["event"] as? [String: Any])?["file"] as? [String: Any]
        // SHA-256 of "hello vigil\n"
        #expect(
            fileEvents.contains {
                (($0["event"] as? [String: Any])?["file"] as? [String: Any])?["sha256"] as? String
                    == "27ebdf3f6eadcfc988e81de38997c61101626be7706b525e079ee04274f93dfe"
            }
        )
        #expect(file?["action"] != nil)

        // The key was created 0600 in the state directory.
        var st = stat()
        #expect(stat(dir + "/state/agent.key", &st) == 0 && st.st_mode & 0o777 == 0o600)

        let agents = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["agents", "--collector", "http://127.0.0.1:\(port)", "--json"]
        )
        #expect(agents.stdout.contains("\"chain_status\" : \"whole\""), "\(agents.stdout)")

        // vigilctl verify re-checks every stored signature and link...
        let agentId = try #require(
            (try JSONSerialization.jsonObject(with: Data(agents.stdout.utf8)) as? [String: Any])
                .flatMap { ($0["agents"] as? [[String: Any]])?.first?["agent_id"] as? String }
        )
        let verified = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["verify", "--collector", "http://127.0.0.1:\(port)", "--agent", agentId]
        )
        #expect(verified.status == 0 && verified.stdout.contains("chain whole"), "\(verified.stdout)\(verified.stderr)")
        // ... and catches a stored batch altered behind the collector's back.
        let sqlite = try await runCommand(
            "/usr/bin/sqlite3",
            [dir + "/collector.sqlite", "UPDATE batches SET signature = zeroblob(64) WHERE batch_seq = 1"]
        )
        #expect(sqlite.status == 0, "\(sqlite.stderr)")
        let broken = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["verify", "--collector", "http://127.0.0.1:\(port)", "--agent", agentId]
        )
        #expect(
            broken.status == 1 && broken.stdout.contains("BREAK: batch 1: bad_signature"),
            "\(broken.stdout)\(broken.stderr)"
        )

        // SIGTERM drains and exits cleanly.
        #expect(await agent.stop() == 0, "agent exit; log:\n\(agent.stderr)")
        #expect(await collector.stop() == 0, "collector exit; log:\n\(collector.stderr)")
    }

    @Test("vigild --demo prints the demo's own file activity as stored by its collector")
    func demo() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let policies = dir + "/policies"
        try "files:\n  watch: []\n".write(toFile: policies + "/collection.yaml", atomically: true, encoding: .utf8)
        // The shipped rules, so the demo's setuid change raises the default alert.
        try FileManager.default.copyItem(
            atPath: #filePath.components(separatedBy: "/Tests/")[0] + "/Policies/rules",
            toPath: policies + "/rules"
        )
        let demo = try ChildProcess(
            BuiltProducts.path("vigild"),
            ["--demo", "--policies", policies, "--duration", "60"]
        )
        let seen = await eventually(timeout: .seconds(40)) {
            demo.stdout.contains("hello-renamed.txt") && demo.stdout.contains("SETUID")
                && demo.stdout.contains("[high] Setuid or Setgid File Outside System Paths")
        }
        #expect(seen, "demo output:\n\(demo.stdout)\nlog:\n\(demo.stderr)")
        #expect(demo.stdout.contains("Vigil demo"))
        #expect(await demo.stop(signal: SIGINT) == 0, "demo log:\n\(demo.stderr)")
    }

    @Test("vigild --demo stopped with Ctrl-C before its agent enrolled still exits, at once and cleanly")
    func demoStoppedEarly() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let demo = try ChildProcess(BuiltProducts.path("vigild"), ["--demo", "--policies", dir + "/policies"])
        // The banner is printed as the agent starts; enrolling takes it a few hundred ms more.
        let started = await eventually(timeout: .seconds(30), every: .milliseconds(5)) {
            demo.stdout.contains("Ctrl-C stops the demo.")
        }
        #expect(started, "demo output:\n\(demo.stdout)\nlog:\n\(demo.stderr)")
        #expect(await demo.stop(signal: SIGINT, timeout: .seconds(15)) == 0, "demo log:\n\(demo.stderr)")
        // How far the agent got varies: mostly not enrolled (the case that hung; the old demo hangs
        // here until killed), but a shutdown drains, so it may enroll and store `started` first.
        #expect(demo.stdout.contains("demo stopped"))
    }

    @Test("bad configuration is refused with the file and line")
    func badConfig() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/bad.yaml"
        try "collector:\n  url: http://127.0.0.1:1\nstate_dir: s\npolicies_dir: p\nshiping: {}\n".write(
            toFile: config,
            atomically: true,
            encoding: .utf8
        )
        let result = try await runCommand(BuiltProducts.path("vigild"), ["--config", config])
        #expect(result.status != 0)
        #expect(result.stderr.contains("\(config):5:1: unknown key 'shiping'"), "\(result.stderr)")
    }

    @Test("vigilctl keygen writes a 0600 identity and refuses to overwrite it")
    func keygen() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/agent.key"
        let first = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["keygen", "--out", path, "--agent-id", "web-01", "--json"]
        )
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("\"agent_id\":\"web-01\""))
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)
        let second = try await runCommand(BuiltProducts.path("vigilctl"), ["keygen", "--out", path])
        #expect(second.status != 0)
        #expect(second.stderr.contains("File exists"), "\(second.stderr)")
    }
}
