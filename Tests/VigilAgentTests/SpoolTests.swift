import Foundation
import Testing
import VigilCore
import VigilSpool
import VigilWire

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

    func next(_ spool: Spool, max: Int = 100) throws -> Spool.PendingBatch? {
        let sealer = BatchSealer(identity: identity)
        return try spool.nextBatch(maxEvents: max, maxBytes: 1 << 20) { encoded, first, batchSeq, prev in
            try sealer.seal(encodedEvents: encoded, firstSeq: first, batchSeq: batchSeq, prevHeaderHash: prev)
        }
    }

    @Test("seqs increase strictly across reopen")
    func seqsSurviveRestart() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try Spool(path: path).append(events(3))
        #expect(a.map(\.seq) == [1, 2, 3])
        let b = try Spool(path: path).append(events(2))
        #expect(b.map(\.seq) == [4, 5])
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
        let p1 = try BatchOpener.parse(first.bytes), p2 = try BatchOpener.parse(second.bytes)
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
}

extension Spool.PendingBatch: Equatable {
    public static func == (a: Self, b: Self) -> Bool { a.bytes == b.bytes }
}
