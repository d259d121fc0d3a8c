import Foundation
import Testing
import VigilTestSupport

/// A torn spool with the real binaries: the agent is killed with SIGKILL while events wait for
/// a collector that is down, then its spool is cut mid-page and its WAL mid-frame. On restart the
/// agent must not crash: it moves the damaged file aside, says so (log and agent health),
/// continues the seqs and the batch chain from its anchor (no seq or batch number reused) and
/// declares the lost seqs in a gap record.
@Suite("Spool recovery", .serialized)
struct SpoolRecoveryTests {
    let dir = NSTemporaryDirectory() + "vigil-recovery-\(UUID().uuidString)"
    let port = freeLoopbackPort()

    var spool: String { dir + "/state/spool.sqlite" }
    var store: String { dir + "/collector.sqlite" }
    var base: String { "http://127.0.0.1:\(port)" }

    func rows(_ db: String, _ sql: String) async throws -> [[String]] {
        try await sqliteRows(db, sql)
    }

    func value(_ db: String, _ sql: String) async throws -> Int {
        Int(try await rows(db, sql).first?.first ?? "") ?? -1
    }

    func startCollector() throws -> ChildProcess {
        try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            [
                "--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(store)", "--enroll-token", "t", "--log-level",
                "warning",
            ]
        )
    }

    func startAgent() throws -> ChildProcess {
        try ChildProcess(BuiltProducts.path("vigild"), ["--config", dir + "/vigild.yaml", "--log-level", "warning"])
    }

    func burst(_ files: Int, prefix: String) throws {
        for i in 0..<files {
            try Data("x".utf8).write(to: URL(fileURLWithPath: "\(dir)/watched/\(prefix)-\(i)"))
        }
    }

    func truncate(_ path: String, to size: UInt64) throws {
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.truncate(atOffset: size)
        try handle.close()
    }

    @Test("torn spool: moved aside, reported, seqs and chain continue, loss declared, no crash")
    func tornSpool() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n  hash_max_bytes: 0\n",
            collectorURL: base,
            enrollToken: "t"
        )
        var collector = try startCollector()
        var agent = try startAgent()
        let started = await eventually { (try? await value(store, "SELECT count(*) FROM events")) ?? 0 > 0 }
        #expect(started, "agent did not deliver: \(agent.stderr)")
        try await Task.sleep(for: .seconds(1))  // watches in place
        try burst(2000, prefix: "a")
        let delivered = await eventually(timeout: .seconds(60)) {
            (try? await value(store, "SELECT count(*) FROM events")) ?? 0 >= 4000
        }
        #expect(delivered, "first burst not delivered: \(agent.stderr.suffix(2000))")

        // The collector goes away; events pile up in the spool; the agent dies hard.
        #expect(await collector.stop() == 0)
        let seqBefore = try await value(spool, "SELECT value FROM state WHERE key = 'next_seq'")
        try burst(1000, prefix: "b")
        let spooled = await eventually(timeout: .seconds(60)) {
            (try? await value(spool, "SELECT value FROM state WHERE key = 'next_seq'")) ?? 0 >= seqBefore + 2000
        }
        #expect(spooled, "second burst not spooled: \(agent.stderr.suffix(2000))")
        await agent.stop(signal: SIGKILL)
        let maxStoredBefore = try await value(store, "SELECT max(seq) FROM events")
        let lastBatchBefore = try await value(store, "SELECT max(batch_seq) FROM batches")

        // Torn: the database cut in the middle of its second page, the WAL in its first frame.
        // How much had been checkpointed into the main file is up to SQLite's timing, so its
        // header is scribbled over too: the file must be found unusable whatever it held.
        try truncate(spool, to: 4096 + 1000)
        let header = try #require(FileHandle(forUpdatingAtPath: spool))
        try header.write(contentsOf: Data(repeating: 0xa5, count: 100))
        try header.close()
        if FileManager.default.fileExists(atPath: spool + "-wal") {
            try truncate(spool + "-wal", to: 32 + 2000)
        }

        collector = try startCollector()
        agent = try startAgent()
        let reported = await eventually(timeout: .seconds(60)) {
            let kinds =
                (try? await rows(store, "SELECT json_extract(json, '$.health.kind') FROM events WHERE type = 'health'"))
                ?? []
            return kinds.contains(["spool_recovered"])
        }
        #expect(reported, "no spool_recovered health event: \(agent.stderr.suffix(3000))")
        #expect(agent.isRunning, "the agent died: \(agent.stderr.suffix(3000))")
        #expect(agent.stderr.contains("spool repaired on start"), "\(agent.stderr.suffix(3000))")
        let stateDir = try FileManager.default.contentsOfDirectory(atPath: dir + "/state")
        #expect(
            stateDir.contains { $0.hasPrefix("spool.sqlite.damaged-") },
            "damaged spool not kept aside: \(stateDir)"
        )

        // The stream goes on above everything numbered before.
        try await Task.sleep(for: .seconds(1))
        try burst(500, prefix: "c")
        let after = await eventually(timeout: .seconds(60)) {
            (try? await value(store, "SELECT count(*) FROM events WHERE seq > \(maxStoredBefore) AND type = 'file'"))
                ?? 0 >= 1000
        }
        #expect(after, "events after the restart not delivered: \(agent.stderr.suffix(2000))")
        let stored = try await rows(store, "SELECT count(*), count(DISTINCT seq) FROM events").first ?? []
        #expect(stored.count == 2 && stored[0] == stored[1], "a seq was stored twice: \(stored)")
        let firstNew = try await value(
            store,
            "SELECT min(seq) FROM events WHERE json_extract(json, '$.file.TargetFilename') LIKE '%/watched/c-%'"
        )
        #expect(firstNew >= seqBefore + 2000, "seq \(firstNew) reused (the spool had reached \(seqBefore + 2000))")
        #expect(
            try await value(store, "SELECT min(batch_seq) FROM batches WHERE batch_seq > \(lastBatchBefore)")
                > lastBatchBefore
        )

        // The loss is declared; the only anomaly is the batch that was in flight and died with
        // the spool (never delivered, so "missing"): no fork, no duplicate, no undeclared hole.
        let gap = try await rows(
            store,
            "SELECT seq, json_extract(json, '$.gap.first_seq'), json_extract(json, '$.gap.last_seq'), json_extract(json, '$.gap.reason') FROM events WHERE type = 'gap'"
        )
        #expect(gap.count == 1, "\(gap)")
        if let g = gap.first, g.count == 4 {
            #expect(g[0] == g[1])
            #expect((Int(g[1]) ?? 0) > maxStoredBefore)
            #expect(
                (Int(g[2]) ?? 0) >= seqBefore + 2000 - 1,
                "the gap does not reach the seqs handed out before the kill"
            )
            #expect(g[3].hasPrefix("spool_lost"))
        }
        let kinds = Set(try await rows(store, "SELECT kind FROM chain_anomalies").compactMap(\.first))
        #expect(kinds.isSubset(of: ["gap"]), "anomalies: \(kinds)")
        #expect(await agent.stop() == 0)
        #expect(await collector.stop() == 0)
    }
}
