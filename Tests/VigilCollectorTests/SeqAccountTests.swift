import Foundation
import Logging
import Testing
import VigilCollector
import VigilCore
import VigilWire

/// Declared loss (signed gap records) versus events that silently never arrived.
@Suite("Seq accounting")
struct SeqAccountTests {
    func file(_ seq: UInt64) -> Event {
        Event(seq: seq, payload: .file(FileEvent(action: .create, targetFilename: "/f\(seq)")))
    }

    func gap(_ first: UInt64, _ last: UInt64, _ counts: [String: UInt64]) -> Event {
        Event(
            seq: first,
            payload: .gap(GapRecord(firstSeq: first, lastSeq: last, droppedByType: counts, reason: "spool_full"))
        )
    }

    /// A collector on a new SQLite store in `dir` (created), with one agent enrolled.
    func enrolledCollector(in dir: String) async throws -> (SQLiteEventStore, Collector, AgentIdentity) {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let store = try SQLiteEventStore(path: dir + "/events.sqlite")
        let collector = Collector(
            store: store,
            configuration: CollectorConfiguration(store: .sqlite(path: dir + "/events.sqlite"), enrollToken: "t"),
            logger: Logger(label: "test")
        )
        let identity = AgentIdentity.generate()
        _ = try await collector.enroll(
            .init(
                token: "t",
                agentId: identity.agentId,
                publicKey: identity.publicKeyBase64,
                hostname: "h",
                machineId: "m"
            )
        )
        return (store, collector, identity)
    }

    @Test("a hole after a gap record is declared; one without is reported with its range")
    func account() {
        var a = SeqAccount()
        #expect(a.admit(firstSeq: 1, lastSeq: 3, events: (1...3).map(file), inOrder: true) == nil)
        #expect(a.admit(firstSeq: 4, lastSeq: 4, events: [gap(4, 9, ["file": 4, "flow": 2])], inOrder: true) == nil)
        #expect(a.admit(firstSeq: 10, lastSeq: 11, events: (10...11).map(file), inOrder: true) == nil)
        #expect(a == SeqAccount(lastEventSeq: 11, declaredThrough: 9, gapRecords: 1, droppedEvents: 6))
        #expect(
            a.admit(firstSeq: 15, lastSeq: 15, events: [file(15)], inOrder: true)
                == "events 12-14 are missing and no gap record declares them"
        )
        // Out of chain order, the chain verdict speaks; seqs are not judged.
        #expect(a.admit(firstSeq: 30, lastSeq: 30, events: [file(30)], inOrder: false) == nil)
        #expect(a.lastEventSeq == 30)
    }

    @Test("the SQLite store keeps the chain whole for a declared gap and flags an undeclared one")
    func store() async throws {
        let dir = NSTemporaryDirectory() + "vigil-seq-account-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (store, collector, identity) = try await enrolledCollector(in: dir)
        let sealer = BatchSealer(identity: identity)
        var prev = genesisHeaderHash
        var batchSeq: UInt64 = 0
        func send(_ events: [Event]) async throws -> Collector.BatchResponse {
            batchSeq += 1
            let batch = try sealer.seal(events: events, batchSeq: batchSeq, prevHeaderHash: prev)
            prev = batch.headerHash
            return try await collector.receive(batch: batch.serialized())
        }
        #expect(try await send((1...3).map(file)).chain == "ok")
        #expect(try await send([gap(4, 9, ["file": 6])]).chain == "ok")
        #expect(try await send((10...12).map(file)).chain == "ok")
        var summary = try #require(try await store.agents().first)
        #expect(summary.chainStatus == "whole")
        #expect(summary.anomalies.isEmpty)
        #expect(summary.declaredGaps == 1)
        #expect(summary.droppedEvents == 6)

        _ = try await send((20...21).map(file))
        summary = try #require(try await store.agents().first)
        #expect(summary.chainStatus == "seq_gap")
        #expect(summary.anomalies.map(\.detail) == ["events 13-19 are missing and no gap record declares them"])
        try await store.close()
    }

    @Test("a later batch reusing stored seqs: each seq stored once, the reuse flagged with its count")
    func reusedSeqs() async throws {
        let dir = NSTemporaryDirectory() + "vigil-seq-reuse-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (store, collector, identity) = try await enrolledCollector(in: dir)
        let sealer = BatchSealer(identity: identity)
        let first = try sealer.seal(events: (1...100).map(file), batchSeq: 1, prevHeaderHash: genesisHeaderHash)
        _ = try await collector.receive(batch: first.serialized())
        // 51-100 again, then 101-200: the rows go in 64 at a time, so reused and new seqs share
        // a statement.
        let second = try sealer.seal(events: (51...200).map(file), batchSeq: 2, prevHeaderHash: first.headerHash)
        _ = try await collector.receive(batch: second.serialized())
        let summary = try #require(try await store.agents().first)
        #expect(summary.events == 200)
        #expect(
            summary.anomalies.map(\.detail).contains("50 event(s) reuse seqs already stored from another batch"),
            "\(summary.anomalies)"
        )
        let stored = try await store.events(EventQuery(agentId: identity.agentId, types: [.file], limit: 1000))
        #expect(stored.map(\.event.seq) == Array(1...200), "\(stored.count) events")
        // The reused seqs kept their first batch's events.
        #expect(stored.filter { $0.event.seq <= 100 }.allSatisfy { $0.batchSeq == 1 })
        try await store.close()
    }
}
