import Crypto
import Foundation
import Logging
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilCollector

/// Consecutive signed batches for one agent whose signing key can change mid-stream.
private struct RotatingStream {
    var identity = AgentIdentity.generate()
    var batchSeq: UInt64 = 0
    var nextSeq: UInt64 = 1
    var prev = genesisHeaderHash

    /// The next batch, signed with `identity` (or `signer`, same agent id).
    mutating func next(events count: Int = 3, signer: AgentIdentity? = nil) throws -> [UInt8] {
        batchSeq += 1
        let events = (0..<count).map { i in
            Event(
                seq: nextSeq + UInt64(i),
                payload: .file(FileEvent(action: .create, targetFilename: "/tmp/r\(nextSeq + UInt64(i))"))
            )
        }
        nextSeq += UInt64(count)
        let batch = try BatchSealer(identity: signer ?? identity).seal(
            events: events,
            batchSeq: batchSeq,
            prevHeaderHash: prev
        )
        prev = batch.headerHash
        return batch.serialized()
    }

    /// What the next batch would be, signed by `signer`, without moving the stream on (it is
    /// refused, so the real next batch takes its number).
    func offStream(signer: AgentIdentity) throws -> [UInt8] {
        var copy = self
        return try copy.next(signer: signer)
    }

    /// A new key for this agent and the statement that introduces it, signed by the current one.
    mutating func rotate() throws -> (statement: KeyRotation, old: AgentIdentity) {
        let old = identity
        let pending = try PendingKeyRotation.make(rotating: old)
        identity = pending.identity
        return (pending.statement, old)
    }
}

/// `POST /v1/agents/ID/keys` as the collector carries it out, on both stores.
@Suite("Key rotation")
struct KeyRotationTests {
    /// Re-checks the stored stream the way `vigilctl verify` does.
    func verify(_ f: CollectorFixture, _ agentId: String) async throws -> ChainVerifier {
        var verifier = ChainVerifier(agentId: agentId, keys: try await f.store.keys(agentId: agentId))
        for batch in try await f.store.batches(agentId: agentId, afterBatchSeq: 0, limit: 10_000) {
            verifier.check(batch)
        }
        return verifier
    }

    @Test(
        "after a rotation signed by the old key the new key signs, the retired key is refused, the chain stays whole",
        arguments: Backend.allCases
    )
    func rotate(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = RotatingStream()
            let agentId = agent.identity.agentId
            try await f.enroll(agent.identity)
            #expect(try await f.collector.receive(batch: try agent.next()).chain == "ok")
            #expect(try await f.collector.receive(batch: try agent.next()).chain == "ok")

            let (statement, old) = try agent.rotate()
            let rotated = try await f.collector.rotateKey(agentId: agentId, statement: statement)
            #expect(rotated.status == "rotated" && rotated.keyId == agent.identity.keyId)
            #expect(rotated.retiredKeyId == old.keyId && rotated.firstBatchSeq == 3)

            // The chain goes on across the rotation: no break, no anomaly.
            let after = try await f.collector.receive(batch: try agent.next())
            #expect(after.status == "accepted" && after.chain == "ok", "\(after)")
            // A batch signed with the retired key is refused with its reason, and not stored.
            let stale = try agent.offStream(signer: old)
            do {
                _ = try await f.collector.receive(batch: stale)
                Issue.record("a batch signed with the retired key was accepted")
            } catch let error as CollectorError {
                #expect(error.code == .keyRetired)
                #expect(error.message.contains(old.keyId) && error.message.contains("retired"), "\(error.message)")
            }
            #expect(try await f.count(agentId) == 9)
            #expect(try await f.collector.receive(batch: try agent.next()).chain == "ok")

            let summary = try #require(try await f.store.agents().first { $0.agentId == agentId })
            #expect(summary.keyId == agent.identity.keyId && summary.keyRotatedAt != nil)
            #expect(summary.chainStatus == "whole", "\(summary.anomalies)")

            // The key history says which key signed which batches.
            let keys = try await f.store.keys(agentId: agentId)
            #expect(keys.map(\.keyId) == [old.keyId, agent.identity.keyId])
            #expect(keys[0].firstBatchSeq == 1 && keys[0].lastBatchSeq == 2 && keys[0].retiredAt != nil)
            #expect(keys[1].firstBatchSeq == 3 && keys[1].lastBatchSeq == nil && keys[1].rotation == statement)

            // Re-verified independently: every batch by the key of its time, the statement by the old key.
            let verifier = try await verify(f, agentId)
            #expect(verifier.isWhole && verifier.batches == 4, "\(verifier.breaks)")

            // A collector started afresh (no cached key) on the same store takes it the same way.
            let restarted = Collector(
                store: f.store,
                configuration: f.collector.configuration,
                logger: Logger(label: "t")
            )
            #expect(try await restarted.receive(batch: try agent.next()).chain == "ok")
            #expect(
                await refusal { _ = try await restarted.receive(batch: try agent.offStream(signer: old)) }
                    == .keyRetired
            )
        }
    }

    @Test(
        "a statement signed by a stranger's key, for an unknown or revoked agent, replayed, or reusing a key is refused",
        arguments: Backend.allCases
    )
    func refusals(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = RotatingStream()
            let agentId = agent.identity.agentId
            try await f.enroll(agent.identity)
            #expect(try await f.collector.receive(batch: try agent.next()).status == "accepted")

            // Forged: names the agent's key but is signed by a stranger's.
            let stranger = AgentIdentity(agentId: agentId, privateKey: Curve25519.Signing.PrivateKey())
            let newcomer = AgentIdentity(agentId: agentId, privateKey: Curve25519.Signing.PrivateKey())
            var forged = try KeyRotation.make(from: stranger, to: newcomer)
            forged.oldKeyId = agent.identity.keyId
            forged.signature = try stranger.privateKey.signature(for: Data(forged.signedText.utf8))
                .base64EncodedString()
            forged.newKeySignature = try newcomer.privateKey.signature(for: Data(forged.signedText.utf8))
                .base64EncodedString()
            #expect(
                await refusal { _ = try await f.collector.rotateKey(agentId: agentId, statement: forged) }
                    == .badSignature
            )
            // A statement from a key the agent never had.
            let unrelated = try KeyRotation.make(from: stranger, to: newcomer)
            #expect(
                await refusal { _ = try await f.collector.rotateKey(agentId: agentId, statement: unrelated) }
                    == .unknownKey
            )
            // Nothing changed: the enrolled key still signs.
            #expect(try await f.store.keys(agentId: agentId).map(\.keyId) == [agent.identity.keyId])
            #expect(try await f.collector.receive(batch: try agent.next()).chain == "ok")

            // An unknown agent, and a statement for another agent than the path names.
            var ghost = RotatingStream()
            let (ghostStatement, _) = try ghost.rotate()
            #expect(
                await refusal {
                    _ = try await f.collector.rotateKey(agentId: ghostStatement.agentId, statement: ghostStatement)
                } == .unknownAgent
            )
            #expect(
                await refusal { _ = try await f.collector.rotateKey(agentId: agentId, statement: ghostStatement) }
                    == .badRequest
            )

            // A → B; the same statement again is answered as taken (an agent that crashed
            // before it switched), and changes nothing.
            let (toB, keyA) = try agent.rotate()
            #expect(try await f.collector.rotateKey(agentId: agentId, statement: toB).status == "rotated")
            let again = try await f.collector.rotateKey(agentId: agentId, statement: toB)
            #expect(again.status == "already_rotated" && again.keyId == agent.identity.keyId)
            #expect(try await f.store.keys(agentId: agentId).count == 2)
            // B → C; replaying A → B now is refused: A is retired.
            let (toC, keyB) = try agent.rotate()
            #expect(try await f.collector.rotateKey(agentId: agentId, statement: toC).status == "rotated")
            #expect(
                await refusal { _ = try await f.collector.rotateKey(agentId: agentId, statement: toB) } == .keyRetired
            )
            // C back to B (a key it used before) is refused.
            let backToB = try KeyRotation.make(from: agent.identity, to: keyB)
            #expect(
                await refusal { _ = try await f.collector.rotateKey(agentId: agentId, statement: backToB) }
                    == .keyReused
            )
            #expect(
                try await f.store.keys(agentId: agentId).map(\.keyId) == [keyA.keyId, keyB.keyId, agent.identity.keyId]
            )
            #expect(try await f.collector.receive(batch: try agent.next()).chain == "ok")
            #expect(try await verify(f, agentId).isWhole)

            // A revoked agent cannot rotate.
            _ = try await f.collector.revoke(agentId: agentId)
            let (late, _) = try agent.rotate()
            #expect(
                await refusal { _ = try await f.collector.rotateKey(agentId: agentId, statement: late) }
                    == .revokedAgent
            )
        }
    }

    @Test("a collector whose cached key predates a rotation made through another refuses the retired key (PostgreSQL)")
    func staleCacheAcrossCollectors() async throws {
        try await withCollector(.postgres) { f in
            var agent = RotatingStream()
            let agentId = agent.identity.agentId
            try await f.enroll(agent.identity)
            let other = Collector(store: f.store, configuration: f.collector.configuration, logger: Logger(label: "b"))
            // `other` caches the enrolled key.
            #expect(try await other.receive(batch: try agent.next()).status == "accepted")
            let (statement, old) = try agent.rotate()
            #expect(try await f.collector.rotateKey(agentId: agentId, statement: statement).status == "rotated")
            // Checked in the store's transaction, so the stale cache cannot let it through.
            #expect(
                await refusal { _ = try await other.receive(batch: try agent.offStream(signer: old)) } == .keyRetired
            )
            #expect(try await other.receive(batch: try agent.next()).chain == "ok")
        }
    }

    @Test("the statement's fields must agree: new key id, new key's signature, one line each")
    func statementChecks() throws {
        let old = AgentIdentity.generate()
        let pending = try PendingKeyRotation.make(rotating: old)
        #expect(throws: Never.self) { _ = try pending.statement.verify(oldKey: old.publicKey) }
        var wrongId = pending.statement
        wrongId.newKeyId = old.keyId
        #expect(throws: WireError.self) { _ = try wrongId.verify(oldKey: old.publicKey) }
        var noProof = pending.statement
        noProof.newKeySignature = noProof.signature
        #expect(throws: WireError.self) { _ = try noProof.verify(oldKey: old.publicKey) }
        var twoLines = pending.statement
        twoLines.time += "\nold_key_id:x"
        #expect(throws: WireError.self) { _ = try twoLines.verify(oldKey: old.publicKey) }
        // Checked with any other key, the old key's signature fails.
        #expect(throws: WireError.self) { _ = try pending.statement.verify(oldKey: pending.identity.publicKey) }
    }
}
