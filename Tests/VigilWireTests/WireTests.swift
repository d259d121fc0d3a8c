import Crypto
import Foundation
import Testing
import VigilCore
import VigilWire

@Suite("Event codec")
struct EventCodecTests {
    @Test("every event kind survives protobuf encode and decode unchanged")
    func roundTrip() throws {
        for event in Fixtures.events() {
            let bytes = try EventCodec.encode(event)
            #expect(try EventCodec.decode(bytes) == event)
        }
    }

    @Test("uid 0 and exit code 0 are kept, not confused with absent")
    func zeroesAreNotAbsent() throws {
        let p = ProcessEvent(action: .exit, processId: 5, uid: 0, exitCode: 0)
        let decoded = try EventCodec.decode(try EventCodec.encode(Event(seq: 1, payload: .process(p))))
        guard case .process(let q) = decoded.payload else {
            Issue.record("wrong payload")
            return
        }
        #expect(q.uid == 0)
        #expect(q.exitCode == 0)
        #expect(q.euid == nil)
    }

    @Test("garbage is refused with malformed_event")
    func garbage() {
        #expect(throws: WireError.self) { try EventCodec.decode([0xff, 0xff, 0xff]) }
        // A valid message with no payload.
        #expect(throws: WireError.self) { try EventCodec.decode([0x08, 0x01]) }
    }

    @Test("JSON uses Sigma and Zeek field names")
    func jsonNames() throws {
        let data = try JSONEncoder().encode(Fixtures.events()[0])
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"TargetFilename\""))
        #expect(text.contains("\"Image\""))
        let flow = String(decoding: try JSONEncoder().encode(Fixtures.events()[2]), as: UTF8.self)
        #expect(flow.contains("\"orig_ip_bytes\""))
        for event in Fixtures.events() {
            #expect(try JSONDecoder().decode(Event.self, from: try JSONEncoder().encode(event)) == event)
        }
    }
}

@Suite("Batches")
struct BatchTests {
    let identity = AgentIdentity.generate()

    func sealed(
        _ events: [Event] = Fixtures.events(),
        batchSeq: UInt64 = 1,
        prev: [UInt8] = genesisHeaderHash
    ) throws -> SealedBatch {
        try BatchSealer(identity: identity).seal(events: events, batchSeq: batchSeq, prevHeaderHash: prev)
    }

    @Test("seal, serialize, parse and verify give back the same events")
    func roundTrip() throws {
        let events = Fixtures.events(firstSeq: 7)
        let batch = try sealed(events)
        let parsed = try BatchOpener.parse(batch.serialized())
        #expect(parsed.header == batch.header)
        #expect(parsed.header.firstSeq == 7)
        #expect(parsed.header.eventCount == UInt32(events.count))
        #expect(parsed.header.keyId == identity.keyId)
        #expect(parsed.headerHash == batch.headerHash)
        #expect(try BatchOpener.verify(parsed, publicKey: identity.publicKey) == events)
    }

    @Test("the chain links each header to the previous header's hash")
    func chain() throws {
        let first = try sealed(Fixtures.fileEvents(count: 3))
        let second = try sealed(Fixtures.fileEvents(count: 3, firstSeq: 4), batchSeq: 2, prev: first.headerHash)
        #expect(first.header.prevHeaderHash == genesisHeaderHash)
        #expect(second.header.prevHeaderHash == first.headerHash)
        #expect(first.headerHash != second.headerHash)
    }

    @Test("one flipped bit anywhere in the serialized batch is refused")
    func everyBitFlipIsRejected() throws {
        let bytes = try sealed().serialized()
        var accepted: [Int] = []
        for index in bytes.indices {
            for bit in [0, 3, 7] {
                var corrupted = bytes
                corrupted[index] ^= UInt8(1 << bit)
                do {
                    let parsed = try BatchOpener.parse(corrupted)
                    _ = try BatchOpener.verify(parsed, publicKey: identity.publicKey)
                    accepted.append(index)
                } catch {
                    // refused with a WireError (the only error these throw), as it must be
                }
            }
        }
        #expect(accepted.isEmpty, "flips at byte offsets \(accepted) were accepted")
    }

    @Test("a batch signed by another key is refused as bad_signature")
    func wrongKey() throws {
        let batch = try BatchOpener.parse(try sealed().serialized())
        #expect {
            try BatchOpener.verify(batch, publicKey: AgentIdentity.generate().publicKey)
        } throws: { ($0 as? WireError)?.code == .badSignature }
    }

    @Test("a signed header whose count or seqs disagree with the body is refused")
    func countMismatch() throws {
        let sealer = BatchSealer(identity: identity)
        let good = try sealer.seal(
            events: Fixtures.fileEvents(count: 3),
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash
        )
        // Re-sign the same body claiming 4 events, then claiming another first seq.
        let four = try sealer.seal(
            body: good.body,
            uncompressedSize: good.header.uncompressedSize,
            firstSeq: 1,
            eventCount: 4,
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash
        )
        // Format 2 bodies leave implied seqs to the signed header, so seqs can only disagree in a
        // format 1 body (events in full) or where a seq is written (WireFormatTests).
        var full: [UInt8] = []
        for event in Fixtures.fileEvents(count: 3) {
            let bytes = try EventCodec.encode(event)
            Varint.append(UInt64(bytes.count), to: &full)
            full += bytes
        }
        let shifted = try sealer.seal(
            body: try Zstd().compress(full),
            uncompressedSize: UInt64(full.count),
            firstSeq: 2,
            eventCount: 3,
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash,
            formatVersion: 1
        )
        for bad in [four, shifted] {
            #expect {
                try BatchOpener.verify(try BatchOpener.parse(bad.serialized()), publicKey: identity.publicKey)
            } throws: { ($0 as? WireError)?.code == .countMismatch }
        }
    }

    @Test("decompression is bounded: a zstd bomb is refused before it is inflated")
    func zstdBomb() throws {
        let zeros = [UInt8](repeating: 0, count: 16 << 20)
        let body = try Zstd().compress(zeros)
        #expect(body.count < 4096)
        let sealer = BatchSealer(identity: identity)
        let limits = BatchLimits(maxUncompressedBytes: 1 << 20)
        // Honest about its size: refused by the declared-size check.
        let honest = try sealer.seal(
            body: body,
            uncompressedSize: UInt64(zeros.count),
            firstSeq: 1,
            eventCount: 1,
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash
        )
        #expect {
            try BatchOpener.verify(
                try BatchOpener.parse(honest.serialized(), limits: limits),
                publicKey: identity.publicKey,
                limits: limits
            )
        } throws: { ($0 as? WireError)?.code == .tooLarge }
        // Lying about its size: zstd stops at the declared size.
        let liar = try sealer.seal(
            body: body,
            uncompressedSize: 1000,
            firstSeq: 1,
            eventCount: 1,
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash
        )
        #expect {
            try BatchOpener.verify(
                try BatchOpener.parse(liar.serialized(), limits: limits),
                publicKey: identity.publicKey,
                limits: limits
            )
        } throws: { ($0 as? WireError)?.code == .decompressionFailed }
    }

    @Test("oversized and malformed envelopes are refused")
    func malformed() throws {
        #expect { try BatchOpener.parse([UInt8](repeating: 1, count: 100)) } throws: {
            ($0 as? WireError)?.code == .malformedBatch
        }
        #expect { try BatchOpener.parse([]) } throws: { ($0 as? WireError)?.code == .malformedBatch }
        let bytes = try sealed().serialized()
        #expect {
            try BatchOpener.parse(bytes, limits: BatchLimits(maxBatchBytes: bytes.count - 1))
        } throws: { ($0 as? WireError)?.code == .tooLarge }
    }

    @Test("zstd round trip")
    func zstd() throws {
        let z = Zstd()
        let input = Array("hello hello hello hello".utf8)
        let c = try z.compress(input)
        #expect(try z.decompress(c, expectedSize: UInt64(input.count), limit: 1000) == input)
        #expect(throws: WireError.self) { try z.decompress(c, expectedSize: UInt64(input.count) + 1, limit: 1000) }
        #expect(throws: WireError.self) { try z.decompress([1, 2, 3, 4, 5, 6], expectedSize: 3, limit: 1000) }
    }

    @Test("varints round trip and truncated ones are refused")
    func varints() {
        for v: UInt64 in [0, 1, 127, 128, 300, 16_383, 16_384, UInt64(UInt32.max), UInt64.max] {
            var out: [UInt8] = []
            Varint.append(v, to: &out)
            let read = Varint.read(out, at: 0)
            #expect(read?.0 == v)
            #expect(read?.1 == out.count)
            #expect(Varint.read(Array(out.dropLast()), at: 0) == nil)
        }
    }
}

@Suite("Agent identity")
struct IdentityTests {
    func tempPath() -> String {
        NSTemporaryDirectory() + "vigil-key-\(UUID().uuidString)"
    }

    @Test("saved with mode 0600, loaded back, never overwritten")
    func saveLoad() throws {
        let path = tempPath()
        defer { unlink(path) }
        let identity = AgentIdentity.generate()
        try identity.save(to: path)
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        let loaded = try AgentIdentity.load(from: path)
        #expect(loaded.agentId == identity.agentId)
        #expect(loaded.keyId == identity.keyId)
        #expect(throws: WireError.self) { try AgentIdentity.generate().save(to: path) }
        #expect(try AgentIdentity.load(from: path).keyId == identity.keyId)
    }

    @Test("a key file readable by others is refused")
    func permissive() throws {
        let path = tempPath()
        defer { unlink(path) }
        try AgentIdentity.generate().save(to: path)
        chmod(path, 0o644)
        #expect { try AgentIdentity.load(from: path) } throws: {
            ($0 as? WireError)?.message.contains("chmod 600") == true
        }
    }
}
