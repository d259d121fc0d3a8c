import Foundation
import Testing
import VigilTestSupport

/// Delivery under faults, with the real binaries: the agent killed with SIGKILL mid-burst, the
/// collector down while events pile up. Every event the agent spooled must be stored exactly
/// once, with no hole in the seqs, and the chain must stay whole.
@Suite("Delivery faults", .serialized)
struct DeliveryFaultTests {
    let dir: String
    let port = freeLoopbackPort()
    let token = UUID().uuidString

    init() throws {
        dir = NSTemporaryDirectory() + "vigil-faults-\(UUID().uuidString)"
        for sub in ["watched", "policies"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n  hash_max_bytes: 0\n",
            collectorURL: "http://127.0.0.1:\(port)",
            enrollToken: token
        )
    }

    func startCollector() throws -> ChildProcess {
        try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            [
                "--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/collector.sqlite", "--enroll-token", token,
                "--log-level", "warning",
            ]
        )
    }

    func startAgent() throws -> ChildProcess {
        try ChildProcess(BuiltProducts.path("vigild"), ["--config", dir + "/vigild.yaml", "--log-level", "warning"])
    }

    /// Runs one SQL query with the sqlite3 CLI and returns its first row's columns.
    func query(_ db: String, _ sql: String) async throws -> [Int] {
        (try await sqliteRows(db, sql).first ?? []).map { Int($0) ?? -1 }
    }

    var spool: String { dir + "/state/spool.sqlite" }
    var store: String { dir + "/collector.sqlite" }

    /// Creates `files` files with content (a create and a close-after-write event each), paced
    /// so that the kernel's inotify queue is not the thing under test.
    func burst(files: Int, prefix: String) throws {
        let payload = Data("x".utf8)
        for i in 0..<files {
            try payload.write(to: URL(fileURLWithPath: "\(dir)/watched/\(prefix)-\(i)"))
            if i % 2000 == 1999 { usleep(20_000) }
        }
    }

    /// Waits until the agent's spool is empty and the collector holds every seq the agent has
    /// accepted, then checks the collector holds seqs 1...max exactly once each, with a whole
    /// chain. Returns the number of events stored.
    ///
    /// The agent keeps accepting events while this waits (the tail of a burst, its own health
    /// events), so "drained" is only true of one moment: the seq the agent had accepted is read
    /// before its spool and the collector's maximum, and the checks compare against that reading.
    func expectDeliveredExactlyOnce(agent: ChildProcess) async throws -> Int {
        var acceptedSeqs = 0
        var storedMax = 0
        let drained = await eventually(timeout: .seconds(240), every: .milliseconds(500)) {
            guard let next = try? await query(spool, "SELECT value FROM state WHERE key = 'next_seq'").first,
                (try? await query(spool, "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM outbox)"))
                    == [0],
                let max = try? await query(store, "SELECT coalesce(max(seq), 0) FROM events").first
            else { return false }
            (acceptedSeqs, storedMax) = (next - 1, max)
            return max >= next - 1
        }
        #expect(
            drained,
            """
            the spool did not drain, or the agent accepted seqs up to \(acceptedSeqs) and the collector holds \
            up to \(storedMax); agent log:
            \(agent.stderr.suffix(3000))
            """
        )
        let stats = try await query(store, "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM events")
        #expect(stats.count == 4)
        #expect(stats[0] == stats[1], "duplicate seqs stored")
        #expect(stats[2] == 1, "first seq \(stats[2])")
        #expect(stats[3] == stats[0], "holes: \(stats[0]) events stored, max seq \(stats[3])")
        let nextSeq = try await query(spool, "SELECT value FROM state WHERE key = 'next_seq'").first ?? 0
        #expect(
            stats[3] < nextSeq,
            "the collector holds seq \(stats[3]), the agent has accepted only up to \(nextSeq - 1)"
        )
        let anomalies = try await query(store, "SELECT count(*) FROM chain_anomalies")
        #expect(anomalies == [0], "chain anomalies recorded")
        return stats[0]
    }

    @Test("SIGKILL in the middle of a 100,000-event burst loses and duplicates nothing")
    func killMidBurst() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let collector = try startCollector()
        var agent = try startAgent()
        let started = await eventually { ((try? await query(store, "SELECT count(*) FROM events"))?.first ?? 0) > 0 }
        #expect(started, "agent did not deliver its start event: \(agent.stderr)")

        let writer = Task.detached { [self] in try burst(files: 40_000, prefix: "a") }
        // Kill once delivery is under way and the spool holds events not yet delivered. Freezing
        // the collector (SIGSTOP) makes "not yet delivered" certain rather than a race with the
        // shipper: the batch in flight hangs while the burst keeps filling the spool.
        let midway = await eventually(timeout: .seconds(120), every: .milliseconds(20)) {
            ((try? await query(store, "SELECT count(*) FROM events"))?.first ?? 0) >= 10_000
        }
        #expect(midway, "the burst did not reach the collector: \(agent.stderr.suffix(2000))")
        collector.send(SIGSTOP)
        let backlog = await eventually(timeout: .seconds(60), every: .milliseconds(20)) {
            ((try? await query(spool, "SELECT count(*) FROM events"))?.first ?? 0) > 0
        }
        await agent.stop(signal: SIGKILL)
        collector.send(SIGCONT)
        #expect(backlog, "no backlog built up while the collector was frozen: \(agent.stderr.suffix(2000))")
        let pendingAtKill = try await query(spool, "SELECT count(*) FROM events").first ?? 0
        let acceptedAtKill = (try await query(spool, "SELECT value FROM state WHERE key = 'next_seq'").first ?? 1) - 1
        try await writer.value

        agent = try startAgent()
        // A second burst after the restart: the restarted agent must continue the same stream.
        let ready = await eventually {
            ((try? await query(spool, "SELECT value FROM state WHERE key = 'next_seq'"))?.first ?? 0) > acceptedAtKill
                + 1
        }
        #expect(ready, "the restarted agent accepted nothing: \(agent.stderr.suffix(2000))")
        try await Task.sleep(for: .seconds(1))  // watches in place
        try burst(files: 5_000, prefix: "c")
        let afterRestart = await eventually(timeout: .seconds(60)) {
            ((try? await query(spool, "SELECT value FROM state WHERE key = 'next_seq'"))?.first ?? 0) > acceptedAtKill
                + 9_000
        }
        #expect(afterRestart, "the second burst was not accepted: \(agent.stderr.suffix(2000))")
        let stored = try await expectDeliveredExactlyOnce(agent: agent)
        #expect(pendingAtKill > 0)
        // Everything accepted before the kill is stored (there are no holes, so the max seq tells),
        // and the stream went on after it.
        let maxStored = try await query(store, "SELECT max(seq) FROM events").first ?? 0
        #expect(
            maxStored > acceptedAtKill + 9_000,
            "accepted up to \(acceptedAtKill) before the kill, stored up to \(maxStored) (\(stored) events)"
        )
        #expect(await agent.stop() == 0)
        #expect(await collector.stop() == 0)
    }

    @Test("collector down while 200,000 events arrive, then up: all delivered, none twice")
    func collectorDown() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let agent = try startAgent()
        let spooling = await eventually { FileManager.default.fileExists(atPath: spool) }
        #expect(spooling, "agent did not start: \(agent.stderr)")
        try await Task.sleep(for: .seconds(1))  // watches in place
        try burst(files: 100_000, prefix: "b")
        let spooled = await eventually(timeout: .seconds(120), every: .milliseconds(500)) {
            ((try? await query(spool, "SELECT count(*) FROM events"))?.first ?? 0) >= 150_000
        }
        #expect(spooled, "events did not reach the spool: \(agent.stderr.suffix(2000))")

        let collector = try startCollector()
        let stored = try await expectDeliveredExactlyOnce(agent: agent)
        #expect(stored >= 150_000, "only \(stored) events stored")
        // With that backlog the agent sends the next batch while the collector stores the one
        // before (`shipping.batches_in_flight`, 2 by default), and the chain stays whole
        // (checked above: no anomaly recorded).
        let scrape = try await curl("http://127.0.0.1:\(port)/metrics")
        let behind = MetricsTests.samples(scrape.body)["vigil_collector_batches_behind_in_flight_total"] ?? 0
        #expect(behind > 0, "no batch was sent behind one in flight: \(scrape.body)")
        #expect(await agent.stop() == 0)
        #expect(await collector.stop() == 0)
    }
}
