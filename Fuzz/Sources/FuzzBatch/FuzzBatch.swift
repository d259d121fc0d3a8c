import FuzzSupport
import VigilCore
import VigilWire

/// What the collector runs on `POST /v1/batches`: parse the envelope, check the signature with
/// the enrolled key, decompress (bounded) and decode the events. Past the signature only an
/// enrolled agent gets; since an enrolled agent may be the hostile one, the body is also decoded
/// for every input that parses, signed or not.
///
/// Invariants: a parsed batch re-serializes to an envelope that parses to the same parts; a
/// body that decodes holds exactly the events the header declares, with consecutive seqs from
/// `firstSeq`; and those events, sealed again, verify and decode to the same events.
enum BatchTarget: FuzzTarget {
    static let identity = FuzzIdentity.agent
    static let limits = BatchLimits(maxBatchBytes: 1 << 20, maxUncompressedBytes: 4 << 20, maxEvents: 10_000)

    static func seeds() throws -> [[UInt8]] {
        let sealer = BatchSealer(identity: identity)
        var seeds: [[UInt8]] = []
        var prev = genesisHeaderHash
        let events = SampleEvents.all
        for (i, slice) in [events, Array(events.prefix(1)), Array(events.suffix(3))].enumerated() {
            var renumbered = slice
            for j in renumbered.indices { renumbered[j].seq = UInt64(100 * i + j + 1) }
            let batch = try sealer.seal(events: renumbered, batchSeq: UInt64(i + 1), prevHeaderHash: prev)
            prev = batch.headerHash
            seeds.append(batch.serialized())
        }
        return seeds
    }

    static func test(_ input: [UInt8]) {
        guard let batch = try? BatchOpener.parse(input, limits: limits) else { return }
        let again = batch.serialized()
        guard let reparsed = try? BatchOpener.parse(again, limits: limits) else {
            FuzzCheck.require(false, "a parsed batch's own envelope does not parse")
            return
        }
        FuzzCheck.require(
            reparsed.headerBytes == batch.headerBytes && reparsed.signature == batch.signature
                && reparsed.body == batch.body && reparsed.header == batch.header,
            "re-serialized envelope parses to different parts"
        )
        let signed = (try? BatchOpener.verifySignature(batch, publicKey: identity.publicKey)) != nil
        guard let events = try? BatchOpener.decodeBody(batch, limits: limits) else { return }
        FuzzCheck.require(
            events.count == Int(batch.header.eventCount),
            "decoded \(events.count) events, header says \(batch.header.eventCount)"
        )
        for (i, event) in events.enumerated() {
            FuzzCheck.require(event.seq == batch.header.firstSeq &+ UInt64(i), "event \(i) has seq \(event.seq)")
        }
        guard !events.isEmpty,
            let resealed = try? BatchSealer(identity: identity).seal(
                events: events,
                batchSeq: batch.header.batchSeq,
                prevHeaderHash: batch.header.prevHeaderHash,
                created: batch.header.created
            )
        else { return }
        let roundTrip = try? BatchOpener.verify(
            BatchOpener.parse(resealed.serialized(), limits: limits),
            publicKey: identity.publicKey,
            limits: BatchLimits()
        )
        FuzzCheck.require(roundTrip == events, "decoded events do not survive sealing again (signed input: \(signed))")
    }
}

@_cdecl("FuzzBatch_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.main(BatchTarget.self, argc, argv)
}
