import Foundation
import Testing
import VigilTestSupport

/// The disk under the spool fills up before the spool's own bound (a 6 MiB tmpfs as the state
/// directory, 4 MiB of it the spool's reserve, the collector down): the agent must stay up and
/// keep watching, make room by dropping the oldest unsent raw events under a signed gap record,
/// as it does at its bound, and count whatever it still cannot spool. When the collector comes back every seq is either
/// delivered or declared in a gap record.
///
/// It used to exit with SQLite's "database or disk is full" (and before that, hang on a core:
/// a loop that slept with `try? await Task.sleep` in a cancelled task spun); under systemd a
/// disk that stayed full then stopped it for good, so filling a disk blinded the host's agent.
@Suite("Spool on a full disk", .serialized)
struct SpoolDiskFullTests {
    let dir = NSTemporaryDirectory() + "vigil-diskfull-\(UUID().uuidString)"
    let port = freeLoopbackPort()

    func rows(_ db: String, _ sql: String) async throws -> [[Int]] {
        try await sqliteRows(db, sql).map { $0.map { Int($0) ?? -1 } }
    }

    func value(_ db: String, _ sql: String) async throws -> Int {
        try await rows(db, sql).first?.first ?? -1
    }

    @Test(
        "a full disk under the spool: the agent stays up, sheds the oldest raw events with a gap record, delivers the rest",
        .enabled(if: TestEnvironment.isRoot || TestEnvironment.isCI, "mounts a tmpfs: needs root"),
        .timeLimit(.minutes(4))
    )
    func diskFull() async throws {
        #expect(TestEnvironment.isRoot, "CI must run this test as root")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for sub in ["watched", "state"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        let mount = try await runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=6m", "tmpfs", dir + "/state"])
        try #require(mount.status == 0, "mount: \(mount.stderr)")
        defer { _ = try? Process.run(URL(fileURLWithPath: "/bin/umount"), arguments: ["-l", dir + "/state"]) }
        // The collector is down (nothing listens there yet): every event stays in the spool.
        let config = try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n  hash_max_bytes: 0\n",
            collectorURL: "http://127.0.0.1:\(port)",
            enrollToken: "t"
        )
        let agent = try ChildProcess(BuiltProducts.path("vigild"), ["--config", config, "--log-level", "warning"])
        defer { agent.send(SIGKILL) }
        let spool = dir + "/state/spool.sqlite"
        let spooling = await eventually(timeout: .seconds(60)) {
            ((try? await value(spool, "SELECT value FROM state WHERE key = 'next_seq'")) ?? 0) > 1
        }
        try #require(spooling, "the agent did not start spooling: \(agent.stderr.suffix(2000))")

        // Long names: each event takes a few hundred bytes of the disk, far below the spool's
        // own bound (256 MiB): the disk is what fills. First the write-ahead log's room and the
        // reserve are used up, then the spool drops its oldest events.
        let stem = String(repeating: "f", count: 200)
        func write(_ count: Int, prefix: String) {
            for i in 0..<count where agent.isRunning {
                _ = FileManager.default.createFile(atPath: "\(dir)/watched/\(prefix)\(stem)-\(i)", contents: nil)
                if i % 500 == 499 { usleep(10_000) }
            }
        }
        var written = 0
        // Watched through the agent's log, not by reading the spool: a reader holds the
        // write-ahead log back from being reset by checkpoints, so it grows, and on a full disk
        // that is exactly the room the spool needs (a CI run failed that way).
        let shed = await eventually(timeout: .seconds(150), every: .milliseconds(100)) {
            write(1_000, prefix: "a\(written)-")
            written += 1_000
            return agent.stderr.contains("the disk under the spool is full: dropped the oldest events")
        }
        #expect(shed, "the spool never dropped events after \(written) files: \(agent.stderr.suffix(2000))")
        // And it goes on: more files on the full disk, then a marker that must arrive.
        write(3_000, prefix: "b-")
        #expect(agent.isRunning, "the agent exited on the full disk; its log:\n\(agent.stderr.suffix(3000))")
        try await Task.sleep(for: .milliseconds(500))
        _ = FileManager.default.createFile(atPath: "\(dir)/watched/marker-after-full", contents: nil)

        let store = dir + "/collector.sqlite"
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            [
                "--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(store)", "--enroll-token", "t", "--log-level",
                "warning",
            ]
        )
        defer { collector.send(SIGKILL) }
        let marker = await eventually(timeout: .seconds(120), every: .milliseconds(500)) {
            ((try? await value(store, "SELECT count(*) FROM events WHERE json LIKE '%marker-after-full%'")) ?? 0) > 0
        }
        #expect(marker, "the file written after the disk filled never arrived: \(agent.stderr.suffix(3000))")
        let drained = await eventually(timeout: .seconds(120), every: .seconds(1)) {
            (try? await value(spool, "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM outbox)")) == 0
        }
        #expect(drained, "the spool did not drain: \(agent.stderr.suffix(2000))")
        #expect(await agent.stop() == 0, "the agent did not stop cleanly: \(agent.stderr.suffix(3000))")
        let lastSeq = try await value(spool, "SELECT value FROM state WHERE key = 'next_seq'") - 1

        // Every seq is delivered or declared: each gap record's counts equal the seqs of its
        // range that hold nothing, and the records together account for every missing seq.
        let gaps = try await StoredGap.all(in: store)
        #expect(gaps.contains { $0.reason.hasPrefix("disk_full") }, "no disk_full gap record stored: \(gaps)")
        var declared = 0
        for gap in gaps {
            #expect(gap.seq == gap.firstSeq, "a gap record takes the seq of the first event it replaces")
            #expect(
                gap.dropped == gap.emptySeqs,
                "gap \(gap.firstSeq)-\(gap.lastSeq): \(gap.dropped) declared, \(gap.emptySeqs) seqs hold nothing"
            )
            declared += gap.dropped
        }
        let stored = try await rows(store, "SELECT count(*), count(DISTINCT seq), max(seq) FROM events").first ?? []
        #expect(stored.count == 3 && stored[0] == stored[1], "duplicate seqs stored: \(stored)")
        #expect(stored.last == lastSeq, "the collector holds up to \(stored.last ?? -1), the agent accepted \(lastSeq)")
        #expect(
            declared - gaps.count == lastSeq - (stored.first ?? 0),
            "\(lastSeq - (stored.first ?? 0)) seqs missing, \(declared) declared dropped in \(gaps.count) record(s)"
        )
        #expect(try await value(store, "SELECT count(*) FROM chain_anomalies") == 0, "chain anomalies recorded")
    }
}
