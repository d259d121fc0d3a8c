import Crypto
import Foundation
import SwiftProtobuf
import VigilCore

/// The format version written in every batch header. Format 2 leaves each body event's implied
/// seq out and codes its time as a delta from the previous event's (see vigil.proto); format 1
/// bodies (events in full) are still read.
public let batchFormatVersion: UInt32 = 2

/// The format versions `BatchOpener` reads.
public let supportedBatchFormatVersions: ClosedRange<UInt32> = 1...2

/// SHA-256 of nothing-before-the-first-batch: 32 zero bytes.
public let genesisHeaderHash = [UInt8](repeating: 0, count: 32)

/// The decoded, signed header of a batch.
public struct BatchHeader: Hashable, Sendable {
    public var agentId: String
    public var keyId: String
    public var batchSeq: UInt64
    public var firstSeq: UInt64
    public var eventCount: UInt32
    public var created: Timestamp
    public var prevHeaderHash: [UInt8]
    public var bodyHash: [UInt8]
    public var compressed: Bool
    public var uncompressedSize: UInt64
    /// 1: body events in full; 2: implied seqs and delta-coded times.
    public var formatVersion: UInt32 = batchFormatVersion
    /// Format 2: the time the first body event's `time_delta_nano` counts from.
    public var baseTime = Timestamp(nanosecondsSinceEpoch: 0)

    /// The seq of the last event in the batch (`firstSeq` when the batch is empty).
    public var lastSeq: UInt64 { eventCount == 0 ? firstSeq : firstSeq + UInt64(eventCount) - 1 }
}

/// A batch as it travels: the exact signed header bytes, the signature and the body.
public struct SealedBatch: Sendable {
    public var header: BatchHeader
    /// The serialized `BatchHeader`: what is signed and hashed into the chain.
    public var headerBytes: [UInt8]
    public var signature: [UInt8]
    public var body: [UInt8]

    /// SHA-256 of `headerBytes`: the next batch's `prevHeaderHash`.
    public var headerHash: [UInt8] { Array(SHA256.hash(data: headerBytes)) }

    /// The serialized `vigil.v1.Batch` to send.
    public func serialized() -> [UInt8] {
        Self.envelope(headerBytes: headerBytes, signature: signature, body: body)
    }

    /// A serialized `vigil.v1.Batch` from its three parts, as stored by a collector.
    public static func envelope(headerBytes: [UInt8], signature: [UInt8], body: [UInt8]) -> [UInt8] {
        // Written directly, as SwiftProtobuf writes `vigil.v1.Batch`: fields 1-3 in order, each a
        // tag, a length and the bytes, left out when empty. The body is copied once.
        var out: [UInt8] = []
        out.reserveCapacity(headerBytes.count + signature.count + body.count + 3 * 6)
        for (tag, bytes) in [(UInt8(0x0a), headerBytes), (0x12, signature), (0x1a, body)] where !bytes.isEmpty {
            out.append(tag)
            Varint.append(UInt64(bytes.count), to: &out)
            out.append(contentsOf: bytes)
        }
        return out
    }
}

/// Builds signed, chained batches for one agent.
///
/// The caller owns the chain state (batch seq and previous header hash) so that it can be made
/// durable together with the events; `seal` is a pure function of its inputs plus the key.
public struct BatchSealer {
    public let identity: AgentIdentity
    private let zstd: Zstd
    /// Buffers kept from one batch to the next.
    private let scratch = Scratch()

    private final class Scratch {
        var body: [UInt8] = []
        var writer = EventWriter()
    }

    public init(identity: AgentIdentity, compressionLevel: Int32 = 3) {
        self.identity = identity
        self.zstd = Zstd(level: compressionLevel)
    }

    /// Encodes, compresses, hashes and signs `events` as batch `batchSeq`.
    ///
    /// - Precondition: `events` have consecutive seqs (the collector checks this).
    public func seal(
        events: [Event],
        batchSeq: UInt64,
        prevHeaderHash: [UInt8],
        created: Timestamp = .now()
    ) throws(WireError) -> SealedBatch {
        let firstSeq = events.first?.seq ?? 0
        let baseTime = events.first?.time.nanosecondsSinceEpoch ?? 0
        var previousTime = baseTime
        // The body buffer and the writer are taken out of the scratch (so they stay uniquely
        // referenced while written) and put back for the next batch.
        var raw = scratch.body
        scratch.body = []
        raw.removeAll(keepingCapacity: true)
        defer { scratch.body = raw }
        var writer = scratch.writer
        scratch.writer = EventWriter(reserving: 0)
        defer { scratch.writer = writer }
        for (index, event) in events.enumerated() {
            try writer.appendBodyForm(
                event,
                seq: try BodyForm.explicitSeq(event.seq, expected: firstSeq &+ UInt64(index), index: index),
                timeDelta: event.time.nanosecondsSinceEpoch &- previousTime,
                to: &raw
            )
            previousTime = event.time.nanosecondsSinceEpoch
        }
        return try seal(
            rawBody: raw,
            firstSeq: firstSeq,
            eventCount: UInt32(events.count),
            batchSeq: batchSeq,
            prevHeaderHash: prevHeaderHash,
            created: created,
            baseTime: Timestamp(nanosecondsSinceEpoch: baseTime)
        )
    }

    /// Seals events that are already serialized (as the spool keeps them), in seq order from `firstSeq`.
    public func seal(
        encodedEvents: [[UInt8]],
        firstSeq: UInt64,
        batchSeq: UInt64,
        prevHeaderHash: [UInt8],
        created: Timestamp = .now()
    ) throws(WireError) -> SealedBatch {
        var raw = scratch.body
        scratch.body = []
        raw.removeAll(keepingCapacity: true)
        defer { scratch.body = raw }
        var previousTime: Int64? = nil
        for (index, bytes) in encodedEvents.enumerated() {
            try BodyForm.append(
                bytes,
                expectedSeq: firstSeq &+ UInt64(index),
                index: index,
                previousTime: &previousTime,
                to: &raw
            )
        }
        return try seal(
            rawBody: raw,
            firstSeq: firstSeq,
            eventCount: UInt32(encodedEvents.count),
            batchSeq: batchSeq,
            prevHeaderHash: prevHeaderHash,
            created: created,
            baseTime: Timestamp(nanosecondsSinceEpoch: BodyForm.baseTime(of: encodedEvents.first) ?? 0)
        )
    }

    private func seal(
        rawBody raw: [UInt8],
        firstSeq: UInt64,
        eventCount: UInt32,
        batchSeq: UInt64,
        prevHeaderHash: [UInt8],
        created: Timestamp,
        baseTime: Timestamp
    ) throws(WireError) -> SealedBatch {
        try seal(
            body: try zstd.compress(raw),
            uncompressedSize: UInt64(raw.count),
            firstSeq: firstSeq,
            eventCount: eventCount,
            batchSeq: batchSeq,
            prevHeaderHash: prevHeaderHash,
            created: created,
            baseTime: baseTime
        )
    }

    /// Signs an already compressed body (used when re-sending from the spool and by tests that
    /// need a body that is deliberately wrong). `formatVersion` and `baseTime` describe how the
    /// body codes its events (see `batchFormatVersion`).
    public func seal(
        body: [UInt8],
        uncompressedSize: UInt64,
        firstSeq: UInt64,
        eventCount: UInt32,
        batchSeq: UInt64,
        prevHeaderHash: [UInt8],
        created: Timestamp = .now(),
        formatVersion: UInt32 = batchFormatVersion,
        baseTime: Timestamp = Timestamp(nanosecondsSinceEpoch: 0)
    ) throws(WireError) -> SealedBatch {
        let header = BatchHeader(
            agentId: identity.agentId,
            keyId: identity.keyId,
            batchSeq: batchSeq,
            firstSeq: firstSeq,
            eventCount: eventCount,
            created: created,
            prevHeaderHash: prevHeaderHash,
            bodyHash: Array(SHA256.hash(data: body)),
            compressed: true,
            uncompressedSize: uncompressedSize,
            formatVersion: formatVersion,
            baseTime: baseTime
        )
        var pb = Vigil_V1_BatchHeader()
        pb.formatVersion = header.formatVersion
        pb.baseTimeUnixNano = header.baseTime.nanosecondsSinceEpoch
        pb.agentID = header.agentId
        pb.keyID = header.keyId
        pb.batchSeq = header.batchSeq
        pb.firstSeq = header.firstSeq
        pb.eventCount = header.eventCount
        pb.createdUnixNano = header.created.nanosecondsSinceEpoch
        pb.prevHeaderSha256 = Data(header.prevHeaderHash)
        pb.bodySha256 = Data(header.bodyHash)
        pb.compression = .zstd
        pb.bodyUncompressedSize = header.uncompressedSize
        let headerBytes: [UInt8]
        do {
            headerBytes = try pb.serializedBytes()
        } catch {
            throw WireError(.malformedBatch, "cannot encode batch header: \(error)")
        }
        let signature: [UInt8]
        do {
            signature = Array(try identity.privateKey.signature(for: headerBytes))
        } catch {
            throw WireError(.badKey, "cannot sign batch: \(error)")
        }
        return SealedBatch(header: header, headerBytes: headerBytes, signature: signature, body: body)
    }
}

@available(*, unavailable)
extension BatchSealer: Sendable {}

/// How batches travel over HTTP (`POST /v1/batches`).
public enum BatchTransport {
    public static let contentType = "application/x-vigil-batch"
    /// Request header an agent adds when it sends a batch while the batch before it (this
    /// header's value: `batch_seq - 1`) is still unanswered: the collector stores the two in
    /// order, holding this one back until its predecessor is stored (503 `predecessor_pending`
    /// when that does not happen in time). Not signed: it changes when a batch is stored, never
    /// whether or what.
    public static let previousBatchHeader = "Vigil-Previous-Batch"
}

/// Limits applied when opening a batch from the network.
public struct BatchLimits: Sendable {
    /// Largest accepted serialized batch.
    public var maxBatchBytes: Int
    /// Largest accepted uncompressed body.
    public var maxUncompressedBytes: Int
    /// Most events accepted in one batch.
    public var maxEvents: Int

    public init(maxBatchBytes: Int = 8 << 20, maxUncompressedBytes: Int = 64 << 20, maxEvents: Int = 200_000) {
        self.maxBatchBytes = maxBatchBytes
        self.maxUncompressedBytes = maxUncompressedBytes
        self.maxEvents = maxEvents
    }
}

/// Opens batches received from the network: parse, then (with the agent's key) verify and decode.
public enum BatchOpener {
    /// Parses the envelope and the header. Nothing here is trusted until `verify` succeeds.
    public static func parse(_ bytes: [UInt8], limits: BatchLimits = BatchLimits()) throws(WireError) -> SealedBatch {
        let size = bytes.count
        guard size <= limits.maxBatchBytes else {
            throw WireError(.tooLarge, "batch of \(size) bytes exceeds the limit of \(limits.maxBatchBytes) bytes")
        }
        let envelope: Vigil_V1_Batch
        do {
            envelope = try Vigil_V1_Batch(serializedBytes: bytes)
        } catch {
            throw WireError(.malformedBatch, "body is not a vigil.v1.Batch: \(error)")
        }
        guard !envelope.header.isEmpty else { throw WireError(.malformedBatch, "batch has no header") }
        let pb: Vigil_V1_BatchHeader
        do {
            pb = try Vigil_V1_BatchHeader(serializedBytes: envelope.header)
        } catch {
            throw WireError(.malformedBatch, "batch header is not a vigil.v1.BatchHeader: \(error)")
        }
        guard supportedBatchFormatVersions.contains(pb.formatVersion) else {
            throw WireError(
                .unsupportedVersion,
                "batch format version \(pb.formatVersion) is not supported (expected "
                    + "\(supportedBatchFormatVersions.lowerBound)-\(supportedBatchFormatVersions.upperBound))"
            )
        }
        guard !pb.agentID.isEmpty else { throw WireError(.malformedBatch, "batch header has no agent_id") }
        guard pb.batchSeq > 0 else { throw WireError(.malformedBatch, "batch_seq must be at least 1") }
        guard pb.prevHeaderSha256.count == 32, pb.bodySha256.count == 32 else {
            throw WireError(.malformedBatch, "batch header hashes must be 32 bytes")
        }
        switch pb.compression {
        case .none, .zstd: break
        case .UNRECOGNIZED(let v): throw WireError(.malformedBatch, "unknown compression \(v)")
        }
        guard Int(pb.eventCount) <= limits.maxEvents else {
            throw WireError(.tooLarge, "batch declares \(pb.eventCount) events, the limit is \(limits.maxEvents)")
        }
        let header = BatchHeader(
            agentId: pb.agentID,
            keyId: pb.keyID,
            batchSeq: pb.batchSeq,
            firstSeq: pb.firstSeq,
            eventCount: pb.eventCount,
            created: Timestamp(nanosecondsSinceEpoch: pb.createdUnixNano),
            prevHeaderHash: Array(pb.prevHeaderSha256),
            bodyHash: Array(pb.bodySha256),
            compressed: pb.compression == .zstd,
            uncompressedSize: pb.bodyUncompressedSize,
            formatVersion: pb.formatVersion,
            baseTime: Timestamp(nanosecondsSinceEpoch: pb.baseTimeUnixNano)
        )
        return SealedBatch(
            header: header,
            headerBytes: Array(envelope.header),
            signature: Array(envelope.signature),
            body: Array(envelope.body)
        )
    }

    /// Checks the signature with `publicKey`, then the body hash, then decompresses (bounded) and
    /// decodes the events, checking their count and that their seqs run from `firstSeq` without holes.
    public static func verify(
        _ batch: SealedBatch,
        publicKey: Curve25519.Signing.PublicKey,
        limits: BatchLimits = BatchLimits(),
        zstd: Zstd? = nil
    ) throws(WireError) -> [Event] {
        try verifySignature(batch, publicKey: publicKey)
        return try decodeBody(batch, limits: limits, zstd: zstd)
    }

    /// Checks the Ed25519 signature over the header bytes and that the body is the one the header names.
    public static func verifySignature(_ batch: SealedBatch, publicKey: Curve25519.Signing.PublicKey) throws(WireError)
    {
        try verifyHeaderSignature(batch, publicKey: publicKey)
        guard Array(SHA256.hash(data: batch.body)) == batch.header.bodyHash else {
            throw WireError(.bodyHashMismatch, "body SHA-256 does not match the signed header")
        }
    }

    /// Checks the Ed25519 signature over the header bytes only (for a stored batch whose body
    /// retention removed; `verifySignature` also checks the body).
    public static func verifyHeaderSignature(
        _ batch: SealedBatch,
        publicKey: Curve25519.Signing.PublicKey
    ) throws(WireError) {
        guard batch.signature.count == 64, publicKey.isValidSignature(batch.signature, for: batch.headerBytes) else {
            throw WireError(
                .badSignature,
                "signature does not verify with the key enrolled for agent \(batch.header.agentId)"
            )
        }
    }

    /// Decompresses and decodes the body of a batch whose signature was checked.
    public static func decodeBody(
        _ batch: SealedBatch,
        limits: BatchLimits = BatchLimits(),
        zstd: Zstd? = nil
    ) throws(WireError) -> [Event] {
        let raw: [UInt8]
        if batch.header.compressed {
            raw = try (zstd ?? Zstd()).decompress(
                batch.body,
                expectedSize: batch.header.uncompressedSize,
                limit: limits.maxUncompressedBytes
            )
        } else {
            guard UInt64(batch.body.count) == batch.header.uncompressedSize else {
                throw WireError(
                    .countMismatch,
                    "uncompressed body is \(batch.body.count) bytes, header says \(batch.header.uncompressedSize)"
                )
            }
            raw = batch.body
        }
        var events: [Event] = []
        events.reserveCapacity(Int(batch.header.eventCount))
        let implied = batch.header.formatVersion >= 2
        var previousTime = batch.header.baseTime.nanosecondsSinceEpoch
        var offset = 0
        while offset < raw.count {
            guard let (length, used) = Varint.read(raw, at: offset) else {
                throw WireError(.malformedEvent, "bad length prefix at body offset \(offset)")
            }
            offset += used
            guard length <= UInt64(raw.count - offset) else {
                throw WireError(.malformedEvent, "event at body offset \(offset) runs past the end of the body")
            }
            let end = offset + Int(length)
            // In place: no copy of each event's bytes. The direct reader takes what writers of
            // the schema write; anything else goes through SwiftProtobuf, which reads it or says
            // what is wrong with it.
            let index = events.count
            let read = try raw.withUnsafeBytes { buffer in
                Result { () throws(WireError) in
                    try EventCodec.read(UnsafeRawBufferPointer(rebasing: buffer[offset..<end]), index: index)
                }
            }.get()
            let expectedSeq = batch.header.firstSeq &+ UInt64(events.count)
            var event = read.event
            if implied {
                guard read.timeUnixNano == 0 else {
                    throw WireError(.malformedEvent, "event \(events.count) carries time_unix_nano in a format 2 body")
                }
                if event.seq == 0 { event.seq = expectedSeq }
                previousTime &+= read.timeDeltaNano
                event.time = Timestamp(nanosecondsSinceEpoch: previousTime)
            } else if read.timeDeltaNano != 0 {
                throw WireError(.malformedEvent, "event \(events.count) carries time_delta_nano in a format 1 body")
            }
            guard event.seq == expectedSeq else {
                throw WireError(.countMismatch, "event \(events.count) has seq \(event.seq), expected \(expectedSeq)")
            }
            events.append(event)
            guard events.count <= Int(batch.header.eventCount) else {
                throw WireError(.countMismatch, "body holds more events than the header's \(batch.header.eventCount)")
            }
            offset = end
        }
        guard events.count == Int(batch.header.eventCount) else {
            throw WireError(.countMismatch, "body holds \(events.count) events, header says \(batch.header.eventCount)")
        }
        return events
    }
}

/// Unsigned LEB128 varints, as protobuf uses for length-delimited streams.
public enum Varint {
    public static func append(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    /// How many bytes `append` writes for `value`.
    public static func size(_ value: UInt64) -> Int {
        (64 - value.leadingZeroBitCount + 6) / 7 + (value == 0 ? 1 : 0)
    }

    /// The value and the number of bytes it used, or nil if truncated or longer than 10 bytes.
    public static func read(_ bytes: [UInt8], at start: Int) -> (UInt64, Int)? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        var i = start
        while i < bytes.count, i - start < 10 {
            let b = bytes[i]
            result |= UInt64(b & 0x7f) << shift
            i += 1
            if b & 0x80 == 0 { return (result, i - start) }
            shift += 7
        }
        return nil
    }
}
