// The dictionary's gain, measured only: how much smaller the batch bodies would be if zstd
// compressed them with a dictionary trained on the agent's own earlier events (libzstd's
// ZDICT_trainFromBuffer, fastCover defaults), at the sealer's level. Not part of the protocol.
//
// The stream is split: the first `trainFraction` of the events train the dictionary (their
// bodies, sealed 20 events a batch: many samples, each a real body, at most `maxTrainingBytes`
// in all); the later events are compressed with and without it, as the batches the run really
// sent and sealed again 200 and 20 to a batch (a quieter host ships smaller batches, since the
// agent sends what it has every `batch_max_age`).
import CZstdDict
import Foundation
import VigilCore
import VigilWire

let trainFraction = 0.2
let maxTrainingBytes = 8 << 20
let dictionarySizes = [16 << 10, 64 << 10, 112 << 10]

/// The uncompressed body of a serialized batch, exactly as its sender coded the events.
func rawBody(_ serialized: [UInt8]) throws -> (raw: [UInt8], envelope: Int, firstSeq: UInt64) {
    let batch = try BatchOpener.parse(serialized, limits: BatchLimits(maxBatchBytes: Int.max))
    let raw = try Zstd().decompress(batch.body, expectedSize: batch.header.uncompressedSize, limit: 1 << 30)
    return (raw, serialized.count - batch.body.count, batch.header.firstSeq)
}

/// Raw bodies of `events` sealed `size` to a batch, with each batch's envelope bytes (all but the body).
func rawBodies(_ events: ArraySlice<Event>, size: Int, sealer: BatchSealer) throws -> [(raw: [UInt8], envelope: Int)] {
    var out: [(raw: [UInt8], envelope: Int)] = []
    var i = events.startIndex
    while i < events.endIndex {
        let sealed = try sealer.seal(
            events: Array(events[i..<min(i + size, events.endIndex)]),
            batchSeq: UInt64(out.count + 1),
            prevHeaderHash: genesisHeaderHash
        )
        let body = try rawBody(sealed.serialized())
        out.append((body.raw, body.envelope))
        i += size
    }
    return out
}

func train(_ samples: [[UInt8]], capacity: Int) throws -> [UInt8] {
    let joined = samples.flatMap { $0 }
    let sizes = samples.map(\.count)
    var dict = [UInt8](repeating: 0, count: capacity)
    let size = dict.withUnsafeMutableBytes { d in
        joined.withUnsafeBytes { s in
            ZDICT_trainFromBuffer(d.baseAddress, capacity, s.baseAddress, sizes, UInt32(sizes.count))
        }
    }
    if ZDICT_isError(size) != 0 {
        throw DictionaryError(message: "ZDICT_trainFromBuffer: \(String(cString: ZDICT_getErrorName(size)))")
    }
    return Array(dict[0..<size])
}

struct DictionaryError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Compressed size of each input at `level`, with `dictionary` if given.
func compressedBytes(_ inputs: [[UInt8]], dictionary: [UInt8]?, level: Int32 = 3) throws -> Int {
    guard let cctx = ZSTD_createCCtx() else { throw DictionaryError(message: "ZSTD_createCCtx failed") }
    defer { ZSTD_freeCCtx(cctx) }
    var cdict: OpaquePointer? = nil
    if let dictionary {
        cdict = dictionary.withUnsafeBytes { ZSTD_createCDict($0.baseAddress, $0.count, level) }
        guard cdict != nil else { throw DictionaryError(message: "ZSTD_createCDict failed") }
    }
    defer { if let cdict { ZSTD_freeCDict(cdict) } }
    var total = 0
    var out = [UInt8](repeating: 0, count: 1 << 16)
    for input in inputs {
        let bound = ZSTD_compressBound(input.count)
        if out.count < bound { out = [UInt8](repeating: 0, count: bound) }
        let written = out.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in
                if let cdict {
                    return ZSTD_compress_usingCDict(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count, cdict)
                }
                return ZSTD_compressCCtx(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count, level)
            }
        }
        if ZSTD_isError(written) != 0 {
            throw DictionaryError(message: "zstd: \(String(cString: ZSTD_getErrorName(written)))")
        }
        total += written
    }
    return total
}

/// The gain, per batch size and dictionary size, as a JSON-ready dictionary.
func dictionaryGain(sent: [[UInt8]], events: [Event]) throws -> [String: Any] {
    let trainCount = Int(Double(events.count) * trainFraction)
    let sealer = BatchSealer(identity: AgentIdentity.generate())
    var samples: [[UInt8]] = []
    var sampleBytes = 0
    for body in try rawBodies(events[0..<trainCount], size: 20, sealer: sealer) {
        if sampleBytes + body.raw.count > maxTrainingBytes { break }
        samples.append(body.raw)
        sampleBytes += body.raw.count
    }
    let trainStart = ContinuousClock.now
    let dictionaries = try dictionarySizes.map { try train(samples, capacity: $0) }
    let trainSeconds = ContinuousClock.now - trainStart

    // The test sets: the later batches the run sent, and the later events sealed 200 and 20 a batch.
    var sentLater: [(raw: [UInt8], envelope: Int)] = []
    var sentLaterEvents = 0
    for bytes in sent {
        let body = try rawBody(bytes)
        if body.firstSeq > UInt64(trainCount) {
            sentLater.append((body.raw, body.envelope))
            sentLaterEvents += Int(
                try BatchOpener.parse(bytes, limits: BatchLimits(maxBatchBytes: Int.max)).header.eventCount
            )
        }
    }
    let later = events[trainCount...]
    var sets: [(label: String, bodies: [(raw: [UInt8], envelope: Int)], events: Int)] = [
        ("as sent", sentLater, sentLaterEvents)
    ]
    for size in [200, 20] {
        sets.append(("\(size) a batch", try rawBodies(later, size: size, sealer: sealer), later.count))
    }
    var results: [[String: Any]] = []
    for set in sets {
        let raws = set.bodies.map(\.raw)
        let envelope = set.bodies.reduce(0) { $0 + $1.envelope }
        let plain = try compressedBytes(raws, dictionary: nil)
        var row: [String: Any] = [
            "batches": set.label,
            "events": set.events,
            "events_per_batch": Double(set.events) / Double(max(1, set.bodies.count)),
            "wire_bytes_per_event": Double(plain + envelope) / Double(set.events),
        ]
        var withDictionary: [[String: Any]] = []
        for dictionary in dictionaries {
            let compressed = try compressedBytes(raws, dictionary: dictionary)
            withDictionary.append([
                "dictionary_bytes": dictionary.count,
                "wire_bytes_per_event": Double(compressed + envelope) / Double(set.events),
                "body_gain_percent": 100 * (1 - Double(compressed) / Double(plain)),
                "wire_gain_percent": 100 * (1 - Double(compressed + envelope) / Double(plain + envelope)),
            ])
        }
        row["with_dictionary"] = withDictionary
        results.append(row)
    }
    return [
        "trained_on_events": trainCount,
        "training_samples": samples.count,
        "training_bytes": sampleBytes,
        "training_s": Double(trainSeconds.components.seconds) + Double(trainSeconds.components.attoseconds) / 1e18,
        "zstd_level": 3,
        "zstd_version": Zstd.libraryVersion,
        "sets": results,
    ]
}
