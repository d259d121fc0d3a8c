import Foundation
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilSpool

@Suite("Spool")
struct SpoolTests {
    let dir = NSTemporaryDirectory() + "vigil-spool-test-\(UUID().uuidString)"
    var path: String { dir + "/spool.sqlite" }
    let identity = AgentIdentity.generate()

    init() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    func events(_ n: Int) -> [Event] {
        (0..<n).map { Event(payload: .file(FileEvent(action: .create, targetFilename: "/f\($0)"))) }
    }

    func next(_ spool: Spool, after: UInt64? = nil, max: Int = 100) throws -> Spool.PendingBatch? {
        try spool.nextBatch(after: after, maxEvents: max, maxBytes: 1 << 20, sealer: BatchSealer(identity: identity))
    }

    /// Runs `sql` on the spool's database with the sqlite3 CLI, behind the spool's back: rows
    /// change while the database still checks out.
    func damage(_ sql: String) async throws {
        let result = try await runCommand("/usr/bin/sqlite3", [path, sql])
        #expect(result.status == 0, "\(result.stderr)")
    }

    /// Overwrites a sealed batch in the outbox: the row stays, but the batch no longer parses.
    func damageOutboxBatch(_ batchSeq: Int) async throws {
        try await damage("UPDATE outbox SET batch = x'0a02ffff' WHERE batch_seq = \(batchSeq)")
    }

    @Test("seqs increase strictly across reopen")
    func seqsSurviveRestart() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try Spool(path: path).append(events(3))
        #expect(a.map(\.seq) == [1, 2, 3])
        let b = try Spool(path: path).append(events(2))
        #expect(b.map(\.seq) == [4, 5])
    }

    @Test(
        "the anchor is exchanged with a spare of the same size: saving it takes no new room, the spare holds the one before"
    )
    func anchorExchangedWithSpare() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spool = try Spool(path: path)
        let anchorPath = path + ".anchor"
        func file(_ p: String) throws -> (inode: UInt64, size: Int, json: [String: Any]) {
            let attributes = try FileManager.default.attributesOfItem(atPath: p)
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: p)))
            return (
                (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0,
                (attributes[.size] as? NSNumber)?.intValue ?? 0, json as? [String: Any] ?? [:]
            )
        }
        // Made at open, with its spare.
        let first = try file(anchorPath)
        #expect(first.size == SpoolAnchor.fileBytes)
        #expect(try file(anchorPath + ".tmp").size == SpoolAnchor.fileBytes)
        // A seal writes the anchor: the two files trade places.
        try spool.append(events(3))
        _ = try #require(try next(spool))
        let anchor = try file(anchorPath)
        let spare = try file(anchorPath + ".tmp")
        #expect(anchor.size == SpoolAnchor.fileBytes && spare.size == SpoolAnchor.fileBytes)
        #expect(anchor.json["next_batch_seq"] as? Int == 2 && anchor.json["sealed_through"] as? Int == 3)
        #expect(spare.inode == first.inode, "the old anchor did not become the spare")
        #expect(spare.json["next_batch_seq"] as? Int == 1, "\(spare.json)")
        // And it reads back: a reopened spool continues from it.
        #expect(try Spool(path: path).append(events(1)).map(\.seq) == [4])
    }

    @Test("batches chain, the batch in flight is resent unchanged after a restart, ack forgets it")
    func batchesAndAcks() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spool = try Spool(path: path)
        try spool.append(events(5))
        let first = try #require(try next(spool, max: 3))
        #expect(first.batchSeq == 1)
        #expect(first.eventCount == 3)
        // "Crash" before the ack: reopen and ask again.
        spool = try Spool(path: path)
        let resent = try #require(try next(spool, max: 3))
        #expect(resent.bytes == first.bytes)
        try spool.acknowledge(resent)
        let second = try #require(try next(spool, max: 3))
        #expect(second.batchSeq == 2)
        #expect(second.eventCount == 2)
        let p1 = try BatchOpener.parse(first.bytes)
        let p2 = try BatchOpener.parse(second.bytes)
        #expect(p2.header.prevHeaderHash == p1.headerHash)
        #expect(p2.header.firstSeq == 4)
        #expect(try BatchOpener.verify(p2, publicKey: identity.publicKey).map(\.seq) == [4, 5])
        try spool.acknowledge(second)
        #expect(try next(spool) == nil)
        let stats = try spool.statistics()
        #expect(stats.pendingEvents == 0)
        #expect(stats.nextSeq == 6)
        #expect(stats.nextBatchSeq == 3)
    }

    @Test("batches refused as too large are sealed again smaller, under the same numbers and chain link")
    func unsealAndResealSmaller() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spool = try Spool(path: path)
        try spool.append(events(20))
        let first = try #require(try next(spool, max: 10))
        let second = try #require(try next(spool, after: first.batchSeq, max: 10))
        #expect([first.batchSeq, second.batchSeq] == [1, 2])
        // One acknowledged before: unsealing starts after it.
        try spool.append(events(4))
        try spool.acknowledge(first)
        let third = try #require(try next(spool, after: second.batchSeq, max: 10))
        #expect(third.batchSeq == 3)
        #expect(try spool.unseal(from: 2) == 2)
        #expect(try spool.unseal(from: 7) == 0, "a batch not in the outbox unseals nothing")
        #expect(try spool.statistics().nextBatchSeq == 2)
        // Survives a restart: the anchor was moved back with the database, so no loss is declared.
        spool = try Spool(path: path)
        #expect(spool.takeShedReports().isEmpty)
        var batches: [Spool.PendingBatch] = []
        while let batch = try next(spool, after: batches.last?.batchSeq, max: 4) { batches.append(batch) }
        #expect(batches.map(\.batchSeq) == [2, 3, 4, 5])
        var prev = try BatchOpener.parse(first.bytes).headerHash
        var seqs: [UInt64] = []
        for batch in batches {
            let parsed = try BatchOpener.parse(batch.bytes)
            #expect(parsed.header.prevHeaderHash == prev, "batch \(batch.batchSeq) does not link to the one before")
            prev = parsed.headerHash
            seqs += try BatchOpener.verify(parsed, publicKey: identity.publicKey).map(\.seq)
        }
        #expect(seqs == Array(11...24))
        // The refused batches were different bytes under the same numbers; the new ones are new.
        #expect(batches[0].bytes != second.bytes)
        for batch in batches { try spool.acknowledge(batch) }
        #expect(try spool.statistics().pendingEvents == 0)
    }

    @Test("a batch of one event refused as too large: the event becomes a gap record saying why")
    func unsealReplacingOneEvent() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spool = try Spool(path: path)
        try spool.append(events(3))
        let one = try #require(try next(spool, max: 1))
        #expect(one.eventCount == 1)
        #expect(try spool.unseal(from: one.batchSeq, replacingEvent: 1, reason: "too_large: test") == 1)
        #expect(spool.takeShedReports().map(\.reason) == ["too_large: test"])
        // Refused again, now a gap record: it stays (its declaration would be lost).
        let gapBatch = try #require(try next(spool, max: 1))
        #expect(try spool.unseal(from: gapBatch.batchSeq, replacingEvent: 1, reason: "too_large: again") == 1)
        #expect(spool.takeShedReports().isEmpty)
        let sent = try drain(spool)
        #expect(sent.map(\.seq) == [1, 2, 3])
        if case .gap(let gap) = sent.first?.payload {
            #expect(gap.reason == "too_large: test")
        } else {
            Issue.record("seq 1 is no gap record: \(String(describing: sent.first))")
        }
        let gaps = expectLossDeclared(sent, lastSeq: 3)
        #expect(gaps.map(\.droppedByType) == [["file": 1]])
        #expect(try spool.statistics().bytes == 0, "the byte count followed the replacement")
    }

    /// Drains the spool through sealed, verified batches and returns every event sent.
    func drain(_ spool: Spool) throws -> [Event] {
        var sent: [Event] = []
        while let batch = try next(spool, max: 50) {
            sent += try BatchOpener.verify(try BatchOpener.parse(batch.bytes), publicKey: identity.publicKey)
            try spool.acknowledge(batch)
        }
        return sent
    }

    /// Checks what a collector would check: every seq up to the last is either delivered or in
    /// exactly one gap record's range, and each record's counts add up to the seqs of its range
    /// that hold no other event. Returns the gap records.
    func expectLossDeclared(_ sent: [Event], lastSeq: UInt64) -> [GapRecord] {
        let bySeq = Dictionary(sent.map { ($0.seq, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(bySeq.count == sent.count, "a seq was delivered twice")
        let gaps = sent.compactMap { e -> (UInt64, GapRecord)? in
            if case .gap(let g) = e.payload { return (e.seq, g) } else { return nil }
        }
        var covered = Set<UInt64>()
        for (seq, gap) in gaps {
            #expect(seq == gap.firstSeq, "a gap record sits at the first seq of its range")
            let range = gap.firstSeq...gap.lastSeq
            #expect(covered.isDisjoint(with: range), "gap ranges overlap")
            covered.formUnion(range)
            let others = range.filter { $0 != seq && bySeq[$0] != nil }.count
            let dropped = gap.droppedByType.values.reduce(0, +)
            #expect(
                dropped == UInt64(range.count - others),
                "gap \(range): \(dropped) dropped, \(range.count - others) seqs hold nothing"
            )
        }
        let unexplained = (1...lastSeq).filter { bySeq[$0] == nil && !covered.contains($0) }
        #expect(
            unexplained.isEmpty,
            "\(unexplained.count) seqs missing without a gap record, from \(unexplained.first ?? 0)"
        )
        return gaps.map(\.1)
    }

    func alert(for event: Event) -> [Event] {
        guard case .file(let f) = event.payload, f.targetFilename.hasSuffix("0") else { return [] }
        return [Event(payload: .alert(Alert(ruleId: "r", title: "t", level: "high", tags: [], event: event)))]
    }

    @Test("a full spool drops raw events oldest first, keeps alerts, and declares the loss in gap records")
    func boundSheds() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spool = try Spool(path: path, limits: Spool.Limits(maxBytes: 10_000))
        // One batch sealed before the spool fills: it is in flight and must leave unchanged.
        try spool.append(events(10), deriving: alert)
        let inFlight = try #require(try next(spool, max: 5))
        for _ in 0..<40 {
            try spool.append(events(25), deriving: alert)
            #expect(try spool.statistics().bytes <= 10_000)
        }
        let reports = spool.takeShedReports()
        #expect(!reports.isEmpty)
        #expect(spool.takeShedReports().isEmpty)
        let stats = try spool.statistics()
        #expect(stats.droppedTotal > 0)

        // Resent unchanged, then everything else.
        #expect(try #require(try next(spool, max: 5)).bytes == inFlight.bytes)
        let sent = try BatchOpener.verify(try BatchOpener.parse(inFlight.bytes), publicKey: identity.publicKey)
        try spool.acknowledge(inFlight)
        let all = sent + (try drain(spool))
        let gaps = expectLossDeclared(all, lastSeq: stats.nextSeq - 1)
        #expect(!gaps.isEmpty)
        #expect(gaps.reduce(0) { $0 + $1.droppedByType.values.reduce(0, +) } == stats.droppedTotal)
        #expect(gaps.allSatisfy { Set($0.droppedByType.keys) == ["file"] }, "only raw events dropped: \(gaps)")
        // Every alert survived: 10 + 40 * 25 files, one in ten ends in 0.
        let alerts = all.filter { $0.type == .alert }.count
        #expect(alerts == 1 + 40 * 3)
        // Oldest first: what survives of the raw events is the newest.
        let lastRaw = try #require(all.last { $0.type == .file })
        #expect(lastRaw.seq == stats.nextSeq - 1 || lastRaw.seq == stats.nextSeq - 2)
        #expect(try spool.statistics().bytes == 0)
    }

    @Test(
        "raw events are in no index; alerts, health and gap records are found through a partial index, also in a spool made before it"
    )
    func partialPriorityIndex() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func indexes() async throws -> [[String]] {
            try await sqliteRows(
                path,
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
            )
        }
        func plan(_ priority: Int) async throws -> String {
            let sql = "SELECT seq, data FROM events WHERE \(Spool.ofPriority(priority)) AND seq > 0 ORDER BY seq"
            return try await sqliteRows(path, "EXPLAIN QUERY PLAN " + sql).map { $0.joined(separator: "|") }
                .joined(separator: "\n")
        }
        // A spool as version 2 left it: the index over every priority.
        do { _ = try Spool(path: path) }
        try await damage(
            """
            DROP INDEX events_kept_by_priority;
            CREATE INDEX events_by_priority ON events (priority, seq);
            DELETE FROM grdb_migrations WHERE identifier = 'v3-partial-priority-index';
            """
        )
        #expect(try await indexes().map(\.first) == ["events_by_priority"])
        let spool = try Spool(path: path)
        try spool.append(events(5))
        let found = try await indexes()
        #expect(found.map(\.first) == ["events_kept_by_priority"])
        #expect(found.first?.last?.hasSuffix("WHERE priority > 0") == true, "\(found)")
        for priority in 1...2 {
            let plan = try await plan(priority)
            #expect(plan.contains("USING INDEX events_kept_by_priority"), "priority \(priority): \(plan)")
        }
        let raw = try await plan(0)
        #expect(raw.contains("INTEGER PRIMARY KEY") && !raw.contains("INDEX"), "\(raw)")
    }

    @Test("when only alerts are left, the oldest alerts go, still declared; gap records are never dropped")
    func boundShedsAlertsLast() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spool = try Spool(path: path, limits: Spool.Limits(maxBytes: 8_000))
        let alerts = (0..<300).map { i in
            Event(
                payload: .alert(
                    Alert(
                        ruleId: "r\(i)",
                        title: "t",
                        level: "high",
                        tags: [],
                        event: Event(seq: 1, payload: .file(FileEvent(action: .create, targetFilename: "/x")))
                    )
                )
            )
        }
        for chunk in stride(from: 0, to: alerts.count, by: 10) {
            try spool.append(Array(alerts[chunk..<chunk + 10]))
        }
        let stats = try spool.statistics()
        #expect(stats.droppedTotal > 0)
        let all = try drain(spool)
        let gaps = expectLossDeclared(all, lastSeq: stats.nextSeq - 1)
        #expect(gaps.allSatisfy { Set($0.droppedByType.keys) == ["alert"] })
        // Merged as they grew: one record covers the whole run of dropped alerts.
        #expect(gaps.count == 1)
        #expect(all.last?.type == .alert)
    }

    @Test("a damaged spool file is moved aside; numbering and the chain continue from the anchor; the loss is declared")
    func damagedDatabase() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spool: Spool? = try Spool(path: path)
        try spool!.append(events(10))
        let first = try #require(try next(spool!, max: 4))
        try spool!.acknowledge(first)
        let second = try #require(try next(spool!, max: 4))  // in flight, seqs 5-8
        #expect(spool!.recovery == nil)
        spool = nil
        // Torn: the file cut in the middle of its second page.
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.truncate(atOffset: 4096 + 1000)
        try handle.close()

        let reopened = try Spool(path: path)
        let recovery = try #require(reopened.recovery)
        let aside = try #require(recovery.movedAsideTo)
        #expect(FileManager.default.fileExists(atPath: aside))
        #expect(recovery.message.contains("damaged"))
        let gap = try #require(recovery.gap)
        #expect(gap.firstSeq == 9, "seqs up to the sealed batch's are spoken for")
        #expect(gap.lastSeq >= 10)
        #expect(gap.droppedByType == ["unknown": gap.lastSeq - gap.firstSeq + 1])
        // New events are numbered above everything ever handed out.
        let more = try reopened.append(events(2))
        #expect(more.map(\.seq) == [gap.lastSeq + 1, gap.lastSeq + 2])
        // The chain goes on after the batch in flight (never numbered twice), gap record first.
        let third = try #require(try next(reopened))
        let parsed = try BatchOpener.parse(third.bytes)
        #expect(parsed.header.batchSeq == second.batchSeq + 1)
        #expect(parsed.header.prevHeaderHash == (try BatchOpener.parse(second.bytes)).headerHash)
        let sent = try BatchOpener.verify(parsed, publicKey: identity.publicKey)
        #expect(sent.map(\.type) == [.gap])
        #expect(sent.first?.seq == 9)
    }

    @Test(
        "a database whose rows are missing from an index (passes quick_check) has its indexes rebuilt, nothing lost, and ships"
    )
    func damagedIndex() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Found by the FuzzSpool target: a real spool whose `events_by_priority` and migrations
        // indexes miss rows. Opening it used to succeed and every acknowledge then failed with
        // SQLITE_CORRUPT. The regression input is one selector byte (0: the database) + the file.
        let regression = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/Regressions/FuzzSpool/corrupt-after-quick-check").path
        let input = try #require(FileManager.default.contents(atPath: regression))
        #expect(input.first == 0)
        try Data(input.dropFirst()).write(to: URL(fileURLWithPath: path))

        let spool = try Spool(path: path)
        let recovery = try #require(spool.recovery)
        #expect(recovery.movedAsideTo == nil, "index damage is repaired in place: \(recovery.message)")
        #expect(recovery.message.contains("rebuilt damaged indexes"))
        // Its damaged `events_by_priority` is dropped by migration v3 at open; the migrations
        // table's index is the damage left for the check to find and rebuild.
        #expect(recovery.message.contains("sqlite_autoindex_grdb_migrations_1"), "\(recovery.message)")
        let before = try spool.statistics()
        #expect(before.pendingEvents == 4, "every spooled event is still there")
        let added = try spool.append(events(2))
        #expect(added.map(\.seq) == [before.nextSeq, before.nextSeq + 1])
        var shipped = 0
        while let batch = try next(spool) {
            try spool.acknowledge(batch)
            shipped += 1
            try #require(shipped < 10)
        }
        #expect(shipped >= 1)
        #expect(try spool.statistics().pendingEvents == 0)
    }

    @Test("a -wal file cut mid-frame loses committed appends: detected against the anchor, seqs never reused")
    func tornWAL() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let copy = dir + "/crash"
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        let spool = try Spool(path: path)
        for _ in 0..<20 { try spool.append(events(50)) }  // 20 commits, each its own WAL frames
        let batch = try #require(try next(spool, max: 100))  // the anchor learns next_seq = 1001
        // The image a crash would leave: the files as they are while the spool is open.
        for suffix in ["", "-wal", ".anchor"] {
            try FileManager.default.copyItem(atPath: path + suffix, toPath: copy + "/spool.sqlite" + suffix)
        }
        let wal = copy + "/spool.sqlite-wal"
        let walSize = try #require(try FileManager.default.attributesOfItem(atPath: wal)[.size] as? Int)
        #expect(walSize > 32 + 3 * 4120)
        // Keep the WAL header and two and a half frames (24-byte header + 4096-byte page each).
        let handle = try #require(FileHandle(forUpdatingAtPath: wal))
        try handle.truncate(atOffset: 32 + 2 * 4120 + 2060)
        try handle.close()

        let reopened = try Spool(path: copy + "/spool.sqlite")
        let recovery = try #require(reopened.recovery, "the lost commits went unnoticed")
        #expect(recovery.movedAsideTo == nil)
        #expect(recovery.message.contains("lost"))
        let stats = try reopened.statistics()
        #expect(stats.nextSeq > 1001, "seqs would be reused")
        #expect(stats.nextBatchSeq == batch.batchSeq + 1)
        let gap = try #require(recovery.gap)
        #expect(gap.lastSeq == stats.nextSeq - 1)
        #expect(try reopened.append(events(1)).first?.seq == stats.nextSeq)
    }

    @Test(
        "an anchor one batch ahead is the crash between anchor and commit: that batch number is sealed again, nothing reported"
    )
    func anchorOneBatchAhead() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spool: Spool? = try Spool(path: path)
        try spool!.append(events(6))
        try spool!.acknowledge(try #require(try next(spool!, max: 3)))
        spool = nil
        // As if batch 2 had been anchored and the process died before its seal committed.
        let anchorPath = path + ".anchor"
        var anchor = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: anchorPath))) as? [String: Any]
        )
        #expect(anchor["next_batch_seq"] as? Int == 2)
        anchor["next_batch_seq"] = 3
        anchor["sealed_through"] = 6
        try JSONSerialization.data(withJSONObject: anchor).write(to: URL(fileURLWithPath: anchorPath))

        let reopened = try Spool(path: path)
        #expect(reopened.recovery == nil)
        let batch = try #require(try next(reopened))
        #expect(batch.batchSeq == 2)
        #expect(
            try BatchOpener.verify(try BatchOpener.parse(batch.bytes), publicKey: identity.publicKey).map(\.seq) == [
                4, 5, 6,
            ]
        )
    }

    @Test("a sealed batch damaged on disk is dropped at reopen; its events are sealed again under the next number")
    func damagedOutboxBatch() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spool: Spool? = try Spool(path: path)
        try spool!.append(events(5))
        let first = try #require(try next(spool!, max: 3))
        #expect(first.batchSeq == 1)
        spool = nil
        try await damageOutboxBatch(1)

        let reopened = try Spool(path: path)
        #expect(reopened.recovery?.message.contains("sealed batch 1 was damaged on disk and dropped") == true)
        let again = try #require(try next(reopened, max: 3))
        #expect(again.batchSeq == 2)
        let parsed = try BatchOpener.parse(again.bytes)
        #expect(parsed.header.prevHeaderHash == (try BatchOpener.parse(first.bytes)).headerHash)
        #expect(try BatchOpener.verify(parsed, publicKey: identity.publicKey).map(\.seq) == [1, 2, 3])
        try reopened.acknowledge(again)
        let rest = try #require(try next(reopened, max: 3))
        #expect(rest.batchSeq == 3 && rest.eventCount == 2)
    }
}

extension SpoolTests {
    @Test(
        "several batches in flight: each seals what follows the one before, says whether a backlog is left, and all are resent in order after a restart"
    )
    func batchesAhead() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spool = try Spool(path: path)
        try spool.append(events(7))
        let first = try #require(try next(spool, max: 3))
        let second = try #require(try next(spool, after: first.batchSeq, max: 3))
        let third = try #require(try next(spool, after: second.batchSeq, max: 3))
        #expect(try next(spool, after: third.batchSeq, max: 3) == nil)
        #expect([first.batchSeq, second.batchSeq, third.batchSeq] == [1, 2, 3])
        #expect([first.backlog, second.backlog, third.backlog] == [true, true, false])
        var previous = genesisHeaderHash
        var seqs: [UInt64] = []
        for batch in [first, second, third] {
            let parsed = try BatchOpener.parse(batch.bytes)
            #expect(parsed.header.prevHeaderHash == previous)
            previous = parsed.headerHash
            seqs += try BatchOpener.verify(parsed, publicKey: identity.publicKey).map(\.seq)
        }
        #expect(seqs == Array(1...7))
        #expect(try spool.statistics().batchesInFlight == 3)

        // The first is acknowledged, then a "crash": the other two come back unchanged, in order.
        try spool.acknowledge(first)
        spool = try Spool(path: path)
        let resent = try #require(try next(spool, max: 3))
        #expect(resent.bytes == second.bytes)
        #expect(resent.backlog, "the third batch's events wait behind it")
        let resentNext = try #require(try next(spool, after: resent.batchSeq, max: 3))
        #expect(resentNext.bytes == third.bytes)
        try spool.append(events(1))
        let fresh = try #require(try next(spool, after: resentNext.batchSeq, max: 3))
        #expect(fresh.batchSeq == 4)
        #expect(
            try BatchOpener.verify(try BatchOpener.parse(fresh.bytes), publicKey: identity.publicKey).map(\.seq) == [8]
        )
        for batch in [resent, resentNext, fresh] { try spool.acknowledge(batch) }
        let stats = try spool.statistics()
        #expect(stats.pendingEvents == 0 && stats.batchesInFlight == 0)
    }

    @Test(
        "a damaged sealed batch takes the ones sealed after it along at reopen: their events are sealed again, none lost"
    )
    func damagedOutboxBatchAhead() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spool: Spool? = try Spool(path: path)
        try spool!.append(events(5))
        let first = try #require(try next(spool!, max: 3))
        let second = try #require(try next(spool!, after: first.batchSeq, max: 3))
        #expect(second.batchSeq == 2)
        spool = nil
        try await damageOutboxBatch(1)

        let reopened = try Spool(path: path)
        let message = reopened.recovery?.message ?? ""
        #expect(message.contains("sealed batch 1 was damaged on disk and dropped"), "\(message)")
        #expect(message.contains("sealed batch 2 follows a damaged one and was dropped"), "\(message)")
        let again = try #require(try next(reopened, max: 10))
        #expect(again.batchSeq == 3)
        #expect(
            try BatchOpener.parse(again.bytes).header.prevHeaderHash == (try BatchOpener.parse(second.bytes)).headerHash
        )
        #expect(
            try BatchOpener.verify(try BatchOpener.parse(again.bytes), publicKey: identity.publicKey).map(\.seq) == [
                1, 2, 3, 4, 5,
            ]
        )
    }

    @Test(
        "stored events damaged on disk are replaced by gap records of their seqs when sealed: the agent keeps shipping, the loss is declared"
    )
    func damagedStoredEvents() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spool: Spool? = try Spool(path: path)
        try spool!.append(events(5))
        let before = try spool!.statistics()
        spool = nil
        // Behind the spool's back: seq 2 no longer parses, seq 4 parses but names another seq.
        let other = try EventCodec.encode(
            Event(seq: 9, payload: .file(FileEvent(action: .create, targetFilename: "/x")))
        )
        let hex = other.map { String(format: "%02x", $0) }.joined()
        try await damage(
            "UPDATE events SET data = x'0a02ffff' WHERE seq = 2; UPDATE events SET data = x'\(hex)' WHERE seq = 4"
        )

        let reopened = try Spool(path: path)
        let batch = try #require(try next(reopened, max: 10))
        let sent = try BatchOpener.verify(try BatchOpener.parse(batch.bytes), publicKey: identity.publicKey)
        #expect(sent.map(\.seq) == [1, 2, 3, 4, 5])
        for event in sent {
            if event.seq == 2 || event.seq == 4 {
                guard case .gap(let gap) = event.payload else {
                    Issue.record("seq \(event.seq) is not a gap record: \(event.payload)")
                    continue
                }
                #expect(gap.firstSeq == event.seq && gap.lastSeq == event.seq)
                #expect(gap.droppedByType == ["damaged": 1])
                #expect(gap.reason.hasPrefix("spool_damaged:"))
            } else {
                guard case .file = event.payload else {
                    Issue.record("seq \(event.seq) lost its file event: \(event.payload)")
                    continue
                }
            }
        }
        #expect(reopened.takeShedReports().map(\.firstSeq) == [2, 4])
        try reopened.acknowledge(batch)
        let after = try reopened.statistics()
        #expect(after.pendingEvents == 0)
        #expect(after.nextSeq == before.nextSeq)
        // New events still spool and ship.
        try reopened.append(events(1))
        let more = try #require(try next(reopened))
        #expect(
            try BatchOpener.verify(try BatchOpener.parse(more.bytes), publicKey: identity.publicKey).map(\.seq) == [6]
        )
    }

    @Test(
        "an unsent gap record damaged on disk is absorbed by the next one: the counts still add up, nothing is thrown"
    )
    func damagedGapRecord() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let limits = Spool.Limits(maxBytes: 10_000)
        var spool: Spool? = try Spool(path: path, limits: limits)
        while spool!.takeShedReports().isEmpty { try spool!.append(events(25)) }
        spool = nil
        try await damage("UPDATE events SET data = x'0a02ffff' WHERE priority = 2")

        let reopened = try Spool(path: path, limits: limits)
        for _ in 0..<10 { try reopened.append(events(25)) }
        let stats = try reopened.statistics()
        let gaps = expectLossDeclared(try drain(reopened), lastSeq: stats.nextSeq - 1)
        #expect(gaps.contains { $0.droppedByType["damaged", default: 0] > 0 }, "\(gaps)")
    }
}

extension Spool.PendingBatch: Equatable {
    public static func == (a: Self, b: Self) -> Bool { a.bytes == b.bytes }
}
