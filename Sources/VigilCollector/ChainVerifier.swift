import Crypto
import VigilCore
import VigilWire

/// Re-checks one agent's stored batches, fed in batch-seq order, independently of the store's
/// own bookkeeping: each Ed25519 signature against the agent's key, each body against the
/// SHA-256 in its signed header, each event count and seq range, that every header links to
/// the previous one with no batch missing, and that every event seq is stored or declared lost
/// in a gap record (`SeqAccount`). `vigilctl verify` runs it over the collector's API.
///
/// A batch pruned by retention (`StoredBatch.pruned`: its events deleted, its body emptied)
/// still has its header and signature checked and its link followed; its events cannot be, and
/// a hole right after it is not judged (a gap record declaring it may have been in its body).
public struct ChainVerifier {
    public let agentId: String
    /// The agent's keys by key id, with the batches each may sign.
    private var keys: [String: (key: Curve25519.Signing.PublicKey, first: UInt64, last: UInt64?)] = [:]
    private let zstd = Zstd()
    public private(set) var batches = 0
    public private(set) var events = 0
    /// Batches whose bodies retention removed.
    public private(set) var pruned = 0
    /// What is broken, one line each; empty when the chain is whole.
    public private(set) var breaks: [String] = []
    public private(set) var account = SeqAccount()
    private var previousHash: [UInt8]?
    private var expectedSeq: UInt64 = 1
    private var nextEventSeq: UInt64?
    private var afterPruned = false

    public init(agentId: String, publicKey: Curve25519.Signing.PublicKey) {
        self.agentId = agentId
        keys[AgentIdentity.keyId(for: publicKey)] = (publicKey, 0, nil)
    }

    /// For an agent that rotated its key: every key it signed with, oldest first. Each rotation
    /// statement is checked against the key before it (signed by it, naming it, introducing this
    /// key), and each batch must be signed by the key whose range of batches holds it.
    public init(agentId: String, keys records: [AgentKeyRecord]) {
        self.agentId = agentId
        var previous: Curve25519.Signing.PublicKey? = nil
        for (index, record) in records.enumerated() {
            let key: Curve25519.Signing.PublicKey
            do {
                key = try AgentIdentity.publicKey(base64: record.publicKey)
            } catch {
                breaks.append("key \(record.keyId): \(error.message)")
                previous = nil
                continue
            }
            if AgentIdentity.keyId(for: key) != record.keyId {
                breaks.append("key \(record.keyId): the id is not that of its public key")
            }
            if index > 0 {
                if let rotation = record.rotation, let previous {
                    do {
                        let introduced = try rotation.verify(oldKey: previous)
                        if introduced.rawRepresentation != key.rawRepresentation || rotation.agentId != agentId {
                            breaks.append("key \(record.keyId): its rotation statement introduces another key or agent")
                        }
                    } catch {
                        breaks.append("key \(record.keyId): rotation statement does not verify: \(error.message)")
                    }
                } else {
                    breaks.append("key \(record.keyId): no rotation statement signed by the key before it")
                }
            }
            keys[record.keyId] = (key, record.firstBatchSeq, record.lastBatchSeq)
            previous = key
        }
    }

    public var isWhole: Bool { breaks.isEmpty }

    /// Records a break found outside `check` (bytes that could not even be read).
    public mutating func note(_ problem: String) {
        batches += 1
        breaks.append(problem)
    }

    /// Checks the next stored batch.
    public mutating func check(_ stored: StoredBatch) {
        batches += 1
        let envelope = SealedBatch.envelope(
            headerBytes: stored.headerBytes,
            signature: stored.signature,
            body: stored.body
        )
        do {
            let batch = try BatchOpener.parse(envelope, limits: BatchLimits(maxBatchBytes: Int.max))
            if batch.header.agentId != agentId {
                breaks.append("batch \(stored.batchSeq): header names agent \(batch.header.agentId)")
            }
            if batch.header.batchSeq != stored.batchSeq {
                breaks.append("batch \(stored.batchSeq): header says batch \(batch.header.batchSeq)")
            }
            if batch.header.batchSeq != expectedSeq {
                breaks.append(
                    batch.header.batchSeq > expectedSeq
                        ? "batches \(expectedSeq)-\(batch.header.batchSeq - 1) are missing"
                        : "batch \(batch.header.batchSeq) is out of order"
                )
            } else if batch.header.prevHeaderHash != (previousHash ?? genesisHeaderHash) {
                breaks.append("batch \(batch.header.batchSeq) does not link to batch \(expectedSeq - 1) (chain broken)")
            }
            guard let signer = keys[batch.header.keyId] else {
                throw WireError(.badKey, "signed with key \(batch.header.keyId), which is not a key of this agent")
            }
            if batch.header.batchSeq < signer.first || signer.last.map({ batch.header.batchSeq > $0 }) ?? false {
                breaks.append(
                    "batch \(batch.header.batchSeq): signed with key \(batch.header.keyId), which signs batches \(signer.first)-\(signer.last.map(String.init) ?? "")"
                )
            }
            let publicKey = signer.key
            let inOrder = batch.header.batchSeq == expectedSeq
            let lastSeq = batch.header.firstSeq &+ UInt64(batch.header.eventCount) &- 1
            if stored.pruned {
                try BatchOpener.verifyHeaderSignature(batch, publicKey: publicKey)
                pruned += 1
                afterPruned = true
                if batch.header.eventCount > 0 {
                    account.lastEventSeq = max(account.lastEventSeq, lastSeq)
                    nextEventSeq = max(nextEventSeq ?? 0, lastSeq &+ 1)
                }
            } else {
                let decoded = try BatchOpener.verify(batch, publicKey: publicKey, zstd: zstd)
                if let missing = account.admit(
                    firstSeq: batch.header.firstSeq,
                    lastSeq: lastSeq,
                    events: decoded,
                    inOrder: inOrder && !afterPruned
                ) {
                    breaks.append("batch \(batch.header.batchSeq): \(missing)")
                }
                if let next = nextEventSeq, let first = decoded.first?.seq, first < next {
                    breaks.append("batch \(batch.header.batchSeq) repeats event seqs from \(first)")
                }
                events += decoded.count
                nextEventSeq = decoded.last.map { $0.seq + 1 } ?? nextEventSeq
                afterPruned = false
            }
            previousHash = batch.headerHash
            expectedSeq = batch.header.batchSeq + 1
        } catch {
            breaks.append("batch \(stored.batchSeq): \(error)")
            expectedSeq = stored.batchSeq + 1
            previousHash = nil
        }
    }
}
