import Foundation
import Testing
import VigilTestSupport

/// Two `vigil-collector` processes on one PostgreSQL database, several `vigild` agents that list
/// both collectors, and collectors killed and restarted under them.
@Suite("Scale-out", .serialized)
struct ScaleOutTests {
    /// A collector on a fixed port, so that a restart comes back where the agents look for it.
    final class CollectorProcess {
        let port: Int
        let store: String
        let token: String
        var process: ChildProcess?
        var logs = ""

        init(store: String, token: String) {
            port = freeLoopbackPort()
            self.store = store
            self.token = token
        }

        var url: String { "http://127.0.0.1:\(port)" }
        var isUp: Bool { process?.isRunning ?? false }

        func start() async throws {
            try launch()
            try await waitUntilUp()
        }

        func launch() throws {
            process = try ChildProcess(
                BuiltProducts.path("vigil-collector"),
                ["--listen", "127.0.0.1:\(port)", "--store", store, "--enroll-token", token]
            )
        }

        func waitUntilUp() async throws {
            let up = await eventually {
                (try? await runCommand("/usr/bin/curl", ["-sf", "-o", "/dev/null", url + "/v1/agents"]))?.status == 0
            }
            #expect(up, "collector on \(port) did not come up: \(process?.stderr ?? "")")
        }

        /// SIGKILL: no graceful drain, requests in flight are cut.
        func kill() async {
            guard let process else { return }
            await process.stop(signal: SIGKILL)
            logs += process.stderr
            self.process = nil
        }
    }

    /// A splitmix64 generator: the seed is printed so a failing run can be replayed.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test("two collectors, three agents, collectors killed at random: every event stored once, every chain whole")
    func failoverExactlyOnce() async throws {
        let database = try await TestPostgres.requireDatabase()
        let dir = NSTemporaryDirectory() + "vigil-scaleout-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let token = UUID().uuidString
        let collectors = [
            CollectorProcess(store: database.url, token: token), CollectorProcess(store: database.url, token: token),
        ]
        // Both start at once: the schema migration must not race.
        try collectors[0].launch()
        try collectors[1].launch()
        try await collectors[0].waitUntilUp()
        try await collectors[1].waitUntilUp()

        var agents: [(dir: String, process: ChildProcess)] = []
        for i in 0..<3 {
            let agentDir = dir + "/agent\(i)"
            try FileManager.default.createDirectory(atPath: agentDir + "/watched", withIntermediateDirectories: true)
            // Agents list the collectors in different orders, so both take traffic.
            let urls = i % 2 == 0 ? [collectors[0].url, collectors[1].url] : [collectors[1].url, collectors[0].url]
            let config = try AgentFixture.write(
                in: agentDir,
                collection: "files:\n  watch: [\(agentDir)/watched]\n",
                collectorURL: "[\(urls.joined(separator: ", "))]",
                enrollToken: token
            )
            agents.append((agentDir, try ChildProcess(BuiltProducts.path("vigild"), ["--config", config])))
        }
        // Each agent reports itself started once its watches are in place.
        let started = try await eventually(timeout: .seconds(60)) {
            try await database.run(
                "SELECT count(DISTINCT agent_id) FROM events WHERE type = 'health' AND json LIKE '%started%'"
            ) == String(agents.count)
        }
        #expect(started, "agents did not start: \(agents.map(\.process.stderr))")
        var created: [[String]] = Array(repeating: [], count: agents.count)
        func touchFiles(_ count: Int, tag: String) throws {
            for (i, agent) in agents.enumerated() {
                for n in 0..<count {
                    let path = "\(agent.dir)/watched/\(tag)-\(n).txt"
                    try Data("\(tag) \(n)\n".utf8).write(to: URL(fileURLWithPath: path))
                    created[i].append(path)
                }
            }
        }
        func storedCreates() async throws -> [String: Int] {
            let rows = try await database.run(
                "SELECT json FROM events WHERE type = 'file'"
            )
            var counts: [String: Int] = [:]
            for line in rows.split(separator: "\n") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    let file = object["file"] as? [String: Any], file["action"] as? String == "create",
                    let name = file["TargetFilename"] as? String
                else { continue }
                counts[name, default: 0] += 1
            }
            return counts
        }
        func allStored() async throws -> Bool {
            let counts = try await storedCreates()
            return created.joined().allSatisfy { counts[$0] != nil }
        }

        // Phase 1: the first collector is down; everything must arrive through the second.
        await collectors[0].kill()
        try touchFiles(4, tag: "only-second")
        let viaSecond = try await eventually(timeout: .seconds(60)) { try await allStored() }
        #expect(viaSecond, "events did not fail over to the second collector")
        // Phase 2: the other way round.
        try await collectors[0].start()
        await collectors[1].kill()
        try touchFiles(4, tag: "only-first")
        let viaFirst = try await eventually(timeout: .seconds(60)) { try await allStored() }
        #expect(viaFirst, "events did not fail over to the first collector")
        try await collectors[1].start()

        // Phase 3: random kills and restarts (at most one collector down at a time) while the
        // agents ship.
        let seed = UInt64(UInt32.random(in: 1...UInt32.max))
        var random = SeededGenerator(state: seed)
        for round in 0..<8 {
            let victim = Int.random(in: 0...1, using: &random)
            if collectors[victim].isUp && collectors[1 - victim].isUp {
                await collectors[victim].kill()
            } else {
                for c in collectors where !c.isUp { try await c.start() }
            }
            try touchFiles(3, tag: "round\(round)")
            try await Task.sleep(for: .milliseconds(Int.random(in: 100...600, using: &random)))
        }
        for c in collectors where !c.isUp { try await c.start() }
        let all = try await eventually(timeout: .seconds(90)) { try await allStored() }
        let stored = try await storedCreates()
        #expect(
            all,
            "seed \(seed): not every file event arrived; missing: \(created.joined().filter { stored[$0] == nil })"
        )

        // Exactly once: one create event per file, no event seq stored twice or skipped, and
        // every batch of every agent stored once in an unbroken chain.
        let counts = try await storedCreates()
        let repeated = counts.filter { $0.value != 1 }
        #expect(repeated.isEmpty, "seed \(seed): stored more than once: \(repeated)")
        #expect(counts.count == created.joined().count, "seed \(seed)")
        let anomalies = try await database.run("SELECT agent_id, kind, batch_seq, detail FROM chain_anomalies")
        #expect(anomalies.isEmpty, "seed \(seed): chain anomalies:\n\(anomalies)")
        let chains = try await database.run(
            """
            SELECT a.agent_id, a.last_batch_seq, count(b.batch_seq), coalesce(min(b.batch_seq), 0), coalesce(sum(b.event_count), 0),
                   (SELECT count(*) FROM events e WHERE e.agent_id = a.agent_id),
                   (SELECT coalesce(max(seq) - min(seq) + 1, 0) FROM events e WHERE e.agent_id = a.agent_id)
            FROM agents a LEFT JOIN batches b ON b.agent_id = a.agent_id GROUP BY a.agent_id, a.last_batch_seq
            """
        )
        let rows = chains.split(separator: "\n").map { $0.split(separator: "|").map(String.init) }
        #expect(rows.count == agents.count, "\(chains)")
        for row in rows where row.count == 7 {
            // Batches 1...last, each once; their events all stored; seqs without holes.
            #expect(row[1] == row[2] && row[3] == "1", "seed \(seed): batches of \(row[0]): \(row)")
            #expect(row[4] == row[5] && row[5] == row[6], "seed \(seed): events of \(row[0]): \(row)")
        }

        for agent in agents {
            #expect(await agent.process.stop() == 0, "agent log:\n\(agent.process.stderr)")
        }
        for c in collectors where c.isUp {
            #expect(await c.process!.stop() == 0, "collector log:\n\(c.process!.stderr)")
        }
        await database.drop()
    }
}
