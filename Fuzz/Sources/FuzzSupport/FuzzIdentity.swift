import Crypto
import VigilWire

/// The agent the fuzz targets seal and verify batches as: a fixed key, so seeds written by one
/// run verify in the next.
public enum FuzzIdentity {
    public static let agent = AgentIdentity(
        agentId: "fuzz-agent",
        privateKey: try! Curve25519.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 7, count: 32))
    )

    /// Seals serialized events as `agent` (the spool's `nextBatch` callback).
    public static func seal(
        _ events: [[UInt8]],
        firstSeq: UInt64,
        batchSeq: UInt64,
        prevHeaderHash: [UInt8]
    ) throws -> SealedBatch {
        try BatchSealer(identity: agent).seal(
            encodedEvents: events,
            firstSeq: firstSeq,
            batchSeq: batchSeq,
            prevHeaderHash: prevHeaderHash
        )
    }
}
