import Foundation
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

/// How a real `vigild` copes with a real `vigil-collector` that will not take its batches now
/// (`--max-batch-rate`: 429 and Retry-After) or ever (a revoked agent), and how chain anomalies
/// reach `vigilctl alerts`.
@Suite("Delivery refusals end to end", .serialized)
struct DeliveryRefusalTests {
    /// POSTs or GETs with curl; returns (status, headers, body).
    func curl(
        _ url: String,
        post body: [UInt8]? = nil,
        contentType: String = "application/x-vigil-batch"
    ) async throws -> (Int, String, String) {
        let answer = try await VigilTestSupport.curl(url, post: body, contentType: contentType)
        return (answer.status, answer.headers, answer.body)
    }

    /// The value of a Prometheus sample line starting with `prefix` in the collector's `/metrics`.
    func metric(_ base: String, _ prefix: String) async throws -> Double {
        let (_, _, body) = try await curl(base + "/metrics")
        let line = body.split(separator: "\n").first { $0.hasPrefix(prefix) }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
    }

    /// The target names of the file-create events the collector at `base` stored.
    func storedCreates(_ base: String) async throws -> [String] {
        let result = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["events", "--collector", base, "--type", "file", "--json", "--limit", "100000"]
        )
        return result.stdout.split(separator: "\n").compactMap { line in
            let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            let file = (json?["event"] as? [String: Any])?["file"] as? [String: Any]
            guard file?["action"] as? String == "create" else { return nil }
            return file?["TargetFilename"] as? String
        }
    }

    /// Writes `count` files at once into the agent's watched directory under `dir` and waits for
    /// a create event of each at the collector; expects each stored exactly once (waiting two
    /// seconds more for any second copy).
    func writeFilesAndExpectEachStoredOnce(
        _ count: Int,
        in dir: String,
        base: String,
        agent: ChildProcess
    ) async throws {
        for i in 0..<count {
            try Data("\(i)\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/watched/f\(i).txt"))
        }
        let all = await eventually(timeout: .seconds(90)) { (try? await storedCreates(base).count) ?? 0 >= count }
        #expect(all, "agent log:\n\(agent.stderr)")
        try await Task.sleep(for: .seconds(2))
        let stored = try await storedCreates(base)
        #expect(stored.count == count, "stored: \(stored.sorted())")
        #expect(Set(stored).count == stored.count, "an event was stored twice")
    }

    /// The id of the first agent `vigilctl agents` lists at `base`.
    func listedAgentId(_ base: String) async throws -> String {
        let json = try await runCommand(BuiltProducts.path("vigilctl"), ["agents", "--collector", base, "--json"])
            .stdout
        let agents =
            (try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["agents"] as? [[String: Any]]
        return try #require(agents?.first?["agent_id"] as? String, "\(json)")
    }

    /// Starts a collector with `collectorArguments` and an agent whose vigild.yaml gets `shipping`
    /// lines added (indented two spaces).
    func start(
        in dir: String,
        collectorArguments: [String] = [],
        shipping: [String]
    ) throws -> (base: String, collector: ChildProcess, agent: ChildProcess) {
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        let config = try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n",
            collectorURL: base,
            enrollToken: "t"
        )
        // AgentFixture ends vigild.yaml with its `shipping:` section.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: config))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(shipping.map { "  \($0)\n" }.joined().utf8))
        try handle.close()
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--enroll-token", "t"]
                + collectorArguments
        )
        let agent = try ChildProcess(BuiltProducts.path("vigild"), ["--config", config])
        return (base, collector, agent)
    }

    @Test("over --max-batch-rate: 429 with Retry-After, then accepted after waiting", .timeLimit(.minutes(2)))
    func rateLimitedOverHTTP() async throws {
        let dir = NSTemporaryDirectory() + "vigil-rate-http-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            [
                "--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--enroll-token", "tok",
                "--max-batch-rate", "0.05", "--max-batch-burst", "1",
            ]
        )
        let up = await eventually { (try? await curl(base + "/healthz"))?.0 == 200 }
        #expect(up, "collector did not start: \(collector.stderr)")
        let identity = AgentIdentity.generate()
        let enroll = Array(
            "{\"token\":\"tok\",\"agent_id\":\"\(identity.agentId)\",\"public_key\":\"\(identity.publicKeyBase64)\",\"hostname\":\"h\",\"machine_id\":\"m\"}"
                .utf8
        )
        var (status, headers, body) = try await curl(base + "/v1/enroll", post: enroll, contentType: "application/json")
        #expect(status == 200, "\(status) \(body)")
        let sealer = BatchSealer(identity: identity)
        let first = try sealer.seal(
            events: [Event(seq: 1, payload: .file(FileEvent(action: .create, targetFilename: "/tmp/a")))],
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash
        )
        let second = try sealer.seal(
            events: [Event(seq: 2, payload: .file(FileEvent(action: .create, targetFilename: "/tmp/b")))],
            batchSeq: 2,
            prevHeaderHash: first.headerHash
        )
        (status, _, body) = try await curl(base + "/v1/batches", post: first.serialized())
        #expect(status == 200 && body.contains("\"accepted\""), "\(status) \(body)")
        (status, headers, body) = try await curl(base + "/v1/batches", post: second.serialized())
        #expect(status == 429 && body.contains("\"rate_limited\""), "\(status) \(body)")
        let retryAfter = headers.split(separator: "\r\n").first { $0.lowercased().hasPrefix("retry-after:") }
        let seconds = retryAfter.flatMap {
            Int($0.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "")
        }
        // One token per 20 s (a loaded machine cannot take that long between two requests): up
        // to 20, less by the time that passed between them.
        #expect((1...20).contains(seconds ?? 0), "headers: \(headers)")
        try await Task.sleep(for: .seconds(seconds ?? 20))
        (status, _, body) = try await curl(base + "/v1/batches", post: second.serialized())
        #expect(status == 200 && body.contains("\"accepted\""), "\(status) \(body)")
        (status, _, body) = try await curl(base + "/v1/events?type=file")
        #expect(body.components(separatedBy: "\"TargetFilename\"").count == 3, "\(body)")
        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }

    @Test("an agent under a low batch rate still delivers every event exactly once", .timeLimit(.minutes(3)))
    func agentUnderLowRate() async throws {
        let dir = NSTemporaryDirectory() + "vigil-rate-e2e-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (base, collector, agent) = try start(
            in: dir,
            collectorArguments: ["--max-batch-rate", "2", "--max-batch-burst", "2"],
            shipping: ["batch_max_events: 4"]
        )
        let vigilctl = BuiltProducts.path("vigilctl")
        let started = await eventually(timeout: .seconds(30)) {
            (try? await runCommand(vigilctl, ["events", "--collector", base, "--type", "health", "--json"]))?.stdout
                .contains("\"started\"") == true
        }
        #expect(started, "agent log:\n\(agent.stderr)")
        try await writeFilesAndExpectEachStoredOnce(40, in: dir, base: base, agent: agent)
        let throttled = try await metric(base, "vigil_collector_batches_refused_total{reason=\"rate_limited\"}")
        #expect(throttled > 0, "the collector never throttled the agent")
        #expect(!agent.stderr.contains("refused batch"), "a 429 was taken for a refusal:\n\(agent.stderr)")
        // Throttling is no chain anomaly.
        let alerts = try await runCommand(vigilctl, ["alerts", "--collector", base])
        #expect(!alerts.stdout.contains("vigil-chain"), "\(alerts.stdout)")
        #expect(await agent.stop() == 0, "\(agent.stderr)")
        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }

    @Test(
        "batches refused as too large (413) are sealed again smaller: every event stored once, the chain whole",
        .timeLimit(.minutes(3))
    )
    func tooLargeBatchesResealed() async throws {
        let dir = NSTemporaryDirectory() + "vigil-too-large-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (base, collector, agent) = try start(
            in: dir,
            collectorArguments: ["--max-batch-events", "3"],
            shipping: ["batch_max_events: 64"]
        )
        let vigilctl = BuiltProducts.path("vigilctl")
        func stored(_ type: String) async throws -> [[String: Any]] {
            let result = try await runCommand(
                vigilctl,
                ["events", "--collector", base, "--type", type, "--json", "--limit", "100000"]
            )
            return result.stdout.split(separator: "\n").compactMap { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["event"] as? [String: Any]
            }
        }
        let up = await eventually(timeout: .seconds(30)) { (try? await curl(base + "/healthz"))?.0 == 200 }
        #expect(up, "collector did not start: \(collector.stderr)")
        // Written at once, so the agent has far more than 3 events to a batch.
        try await writeFilesAndExpectEachStoredOnce(60, in: dir, base: base, agent: agent)
        let refused = try await metric(base, "vigil_collector_batches_refused_total{reason=\"too_large\"}")
        #expect(refused > 0, "the collector never refused a batch as too large")
        #expect(agent.stderr.contains("sealing them again smaller"), "\(agent.stderr)")
        // The agent says so in its stream too.
        let health = try await stored("health").compactMap { ($0["health"] as? [String: Any])?["kind"] as? String }
        #expect(health.contains("batch_too_large"), "\(health)")
        // Same numbers, same chain: no anomaly, and the stored stream verifies.
        let alerts = try await runCommand(vigilctl, ["alerts", "--collector", base])
        #expect(!alerts.stdout.contains("vigil-chain"), "\(alerts.stdout)")
        let agentId = try await listedAgentId(base)
        let verify = try await runCommand(vigilctl, ["verify", "--collector", base, "--agent", agentId])
        #expect(verify.status == 0, "\(verify)")
        #expect(await agent.stop() == 0, "\(agent.stderr)")
        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }

    @Test("a revoked agent says so once, keeps spooling and retries quietly", .timeLimit(.minutes(3)))
    func revokedAgentLogsOnce() async throws {
        let dir = NSTemporaryDirectory() + "vigil-revoked-log-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (base, collector, agent) = try start(in: dir, shipping: ["revoked_retry_s: 1"])
        let vigilctl = BuiltProducts.path("vigilctl")
        let listed = await eventually(timeout: .seconds(30)) {
            (try? await runCommand(vigilctl, ["agents", "--collector", base, "--json"]))?.stdout.contains("agent_id")
                == true
        }
        #expect(listed, "agent log:\n\(agent.stderr)")
        let agentId = try await listedAgentId(base)
        let revoked = try await runCommand(vigilctl, ["agents", "revoke", agentId, "--collector", base])
        #expect(revoked.status == 0, "\(revoked)")

        try Data("late\n".utf8).write(to: URL(fileURLWithPath: dir + "/watched/late.txt"))
        let refusedPrefix = "vigil_collector_batches_refused_total{reason=\"revoked_agent\"}"
        let retried = await eventually(timeout: .seconds(60)) {
            (try? await metric(base, refusedPrefix)) ?? 0 >= 4
        }
        #expect(retried, "the agent did not keep retrying:\n\(agent.stderr)")
        let log = agent.stderr
        let told = log.components(separatedBy: "this agent was revoked by the collector at ").count - 1
        #expect(told == 1, "the revocation was logged \(told) times:\n\(log)")
        #expect(log.contains("re-key and re-enroll under a new id"), "\(log)")
        #expect(!log.contains("collector refused batch"), "\(log)")
        // Still running, events kept in its spool for later.
        #expect(agent.isRunning, "\(log)")
        #expect(await agent.stop() == 0, "\(agent.stderr)")
        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }

    @Test("a chain gap becomes a collector alert in vigilctl alerts and events --type alert", .timeLimit(.minutes(2)))
    func gapAlertInVigilctl() async throws {
        let dir = NSTemporaryDirectory() + "vigil-chain-alert-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--enroll-token", "tok"]
        )
        let up = await eventually { (try? await curl(base + "/healthz"))?.0 == 200 }
        #expect(up, "collector did not start: \(collector.stderr)")
        let identity = AgentIdentity.generate()
        let enroll = Array(
            "{\"token\":\"tok\",\"agent_id\":\"\(identity.agentId)\",\"public_key\":\"\(identity.publicKeyBase64)\",\"hostname\":\"h\",\"machine_id\":\"m\"}"
                .utf8
        )
        _ = try await curl(base + "/v1/enroll", post: enroll, contentType: "application/json")
        let sealer = BatchSealer(identity: identity)
        let events = (1...3).map {
            Event(seq: UInt64($0), payload: .file(FileEvent(action: .create, targetFilename: "/tmp/\($0)")))
        }
        let b1 = try sealer.seal(events: [events[0]], batchSeq: 1, prevHeaderHash: genesisHeaderHash)
        let b2 = try sealer.seal(events: [events[1]], batchSeq: 2, prevHeaderHash: b1.headerHash)
        let b3 = try sealer.seal(events: [events[2]], batchSeq: 3, prevHeaderHash: b2.headerHash)
        _ = try await curl(base + "/v1/batches", post: b1.serialized())
        let (status, _, body) = try await curl(base + "/v1/batches", post: b3.serialized())
        #expect(status == 200 && body.contains("\"gap\""), "\(body)")

        let vigilctl = BuiltProducts.path("vigilctl")
        let alerts = try await runCommand(vigilctl, ["alerts", "--collector", base])
        #expect(alerts.stdout.contains("vigil-chain-gap") && alerts.stdout.contains("medium"), "\(alerts)")
        let listed = try await runCommand(vigilctl, ["events", "--collector", base, "--type", "alert", "--json"])
        let lines = listed.stdout.split(separator: "\n")
        #expect(lines.count == 1, "\(listed.stdout)")
        let json = lines.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let event = json?["event"] as? [String: Any]
        let alert = event?["alert"] as? [String: Any]
        #expect(event?["seq"] as? Int == 0 && json?["batch_seq"] as? Int == 3, "\(listed.stdout)")
        #expect(alert?["origin"] as? String == "collector" && alert?["author"] as? String == "vigil-collector")
        #expect((alert?["detail"] as? String)?.contains("batch 2 is missing") == true, "\(listed.stdout)")
        // `vigilctl agents` shows the gap; `vigilctl verify` re-checks the stored batches as before.
        let table = try await runCommand(vigilctl, ["agents", "--collector", base])
        #expect(table.stdout.contains("gap"), "\(table.stdout)")
        let verify = try await runCommand(vigilctl, ["verify", "--collector", base, "--agent", identity.agentId])
        #expect(verify.stdout.contains("batches 2-2 are missing") || verify.stdout.contains("missing"), "\(verify)")
        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }
}
