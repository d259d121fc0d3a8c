import Foundation
import Testing
import VigilTestSupport

/// The spool's byte bound with the real binaries: the collector is down while a burst overflows
/// a 1 MiB spool. The agent drops the oldest raw events (never alerts) and says so in signed gap
/// records; once the collector is up, every seq is either stored or declared dropped, the counts
/// add up, and the collector reports a declared gap, not tampering.
@Suite("Spool bound", .serialized)
struct SpoolBoundTests {
    let dir = NSTemporaryDirectory() + "vigil-bound-\(UUID().uuidString)"
    let port = freeLoopbackPort()

    var spool: String { dir + "/state/spool.sqlite" }
    var store: String { dir + "/collector.sqlite" }
    var base: String { "http://127.0.0.1:\(port)" }

    /// Every row of one query, columns split.
    func rows(_ db: String, _ sql: String) async throws -> [[Int]] {
        try await sqliteRows(db, sql).map { $0.map { Int($0) ?? -1 } }
    }

    func value(_ db: String, _ sql: String) async throws -> Int {
        try await rows(db, sql).first?.first ?? -1
    }

    @Test("bound hit: raw events dropped oldest first, alerts kept, gap records whose counts add up to what is missing")
    func boundHit() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for sub in ["watched", "policies/rules"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        try """
        title: Marked file
        id: 33333333-3333-4333-8333-333333333333
        status: test
        level: high
        logsource: {product: linux, category: file_event}
        detection:
            selection:
                TargetFilename|endswith: '-alert'
            condition: selection
        """.write(toFile: dir + "/policies/rules/marked.yml", atomically: true, encoding: .utf8)
        let config = try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n  hash_max_bytes: 0\n",
            collectorURL: base,
            enrollToken: "t"
        )
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: config))
        handle.seekToEndOfFile()
        handle.write(Data("spool:\n  max_bytes: 1MiB\n".utf8))
        try handle.close()

        let agent = try ChildProcess(BuiltProducts.path("vigild"), ["--config", config, "--log-level", "warning"])
        let started = await eventually { FileManager.default.fileExists(atPath: spool) }
        #expect(started, "agent did not start: \(agent.stderr)")
        try await Task.sleep(for: .seconds(1))  // watches in place

        // About 24,000 events of ~130 bytes: three times the bound. One file in 100 raises alerts.
        let files = 12_000
        for i in 0..<files {
            let name = i % 100 == 0 ? "b-\(i)-alert" : "b-\(i)"
            try Data("x".utf8).write(to: URL(fileURLWithPath: "\(dir)/watched/\(name)"))
            if i % 2000 == 1999 { usleep(20_000) }
        }
        // Everything accepted: the agent's numbering stands still for a second.
        var lastSeen = -1
        let accepted = await eventually(timeout: .seconds(90), every: .seconds(1)) {
            let next = (try? await value(spool, "SELECT value FROM state WHERE key = 'next_seq'")) ?? 0
            defer { lastSeen = next }
            return next == lastSeen && next > files
        }
        #expect(accepted, "the burst did not reach the spool: \(agent.stderr.suffix(2000))")
        let droppedAtAgent = try await value(spool, "SELECT value FROM state WHERE key = 'dropped_total'")
        #expect(droppedAtAgent > 0, "the bound was never hit")
        let spoolBytes = try await value(spool, "SELECT value FROM state WHERE key = 'bytes'")
        #expect(spoolBytes <= 1 << 20)
        #expect(agent.stderr.contains("spool full"), "the agent did not log the drop: \(agent.stderr.suffix(2000))")

        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            [
                "--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(store)", "--enroll-token", "t", "--log-level",
                "warning",
            ]
        )
        let drained = await eventually(timeout: .seconds(120), every: .milliseconds(500)) {
            (try? await value(spool, "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM outbox)")) == 0
        }
        #expect(drained, "the spool did not drain: \(agent.stderr.suffix(2000))")
        #expect(await agent.stop() == 0)
        let lastSeq = try await value(spool, "SELECT value FROM state WHERE key = 'next_seq'") - 1

        let gaps = try await StoredGap.all(in: store)
        #expect(!gaps.isEmpty, "no gap record stored")
        var declaredDrops = 0
        var previousLast = 0
        for gap in gaps {
            #expect(gap.seq == gap.firstSeq, "a gap record takes the seq of the first event it replaces")
            #expect(gap.firstSeq > previousLast, "gap ranges overlap")
            #expect(
                gap.dropped == gap.emptySeqs,
                "gap \(gap.firstSeq)-\(gap.lastSeq): \(gap.dropped) dropped, \(gap.emptySeqs) seqs hold nothing"
            )
            #expect(gap.droppedAlerts == 0, "alerts were dropped while raw events were left")
            declaredDrops += gap.dropped
            previousLast = gap.lastSeq
        }
        #expect(declaredDrops == droppedAtAgent)
        // What is missing overall: each record declares its range, and sits on one of its seqs.
        let stored = try await rows(store, "SELECT count(*), count(DISTINCT seq), max(seq) FROM events").first ?? []
        #expect(stored.count == 3 && stored[0] == stored[1], "duplicate seqs stored: \(stored)")
        #expect(stored.last == lastSeq)
        #expect(
            declaredDrops - gaps.count == lastSeq - stored[0],
            "\(lastSeq - stored[0]) seqs missing, \(declaredDrops) declared dropped in \(gaps.count) record(s)"
        )
        // Every alert kept: at least one per marked file.
        #expect(try await value(store, "SELECT count(*) FROM events WHERE type = 'alert'") >= files / 100)

        // The collector calls it what it is: no anomaly, a declared gap.
        #expect(try await value(store, "SELECT count(*) FROM chain_anomalies") == 0)
        let list = try await runCommand(BuiltProducts.path("vigilctl"), ["agents", "--collector", base, "--json"])
        let json = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [String: Any]
        let summary = try #require(
            (json?["agents"] as? [[String: Any]])?.first,
            "vigilctl agents: \(list.stdout) \(list.stderr)"
        )
        #expect(summary["chain_status"] as? String == "whole")
        #expect(summary["declared_gaps"] as? Int == gaps.count)
        #expect(summary["dropped_events"] as? Int == declaredDrops)
        let table = try await runCommand(BuiltProducts.path("vigilctl"), ["agents", "--collector", base])
        #expect(table.stdout.contains("whole (gap: \(declaredDrops) event(s) dropped by the agent"), "\(table.stdout)")
        let agentId = try #require(summary["agent_id"] as? String)
        let verify = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["verify", "--collector", base, "--agent", agentId]
        )
        #expect(verify.status == 0, "vigilctl verify: \(verify.stdout) \(verify.stderr)")
        #expect(verify.stdout.contains("gap: the agent declared \(declaredDrops) dropped event(s)"), "\(verify.stdout)")
        #expect(await collector.stop() == 0)
    }
}
