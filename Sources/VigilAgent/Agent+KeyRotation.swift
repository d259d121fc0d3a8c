import Foundation
import Logging
import VigilCore
import VigilSpool
import VigilWire

/// The agent's side of a key rotation (`vigilctl keygen --rotate` writes `agent.key.next`).
///
/// The order makes every crash recoverable and never leaves a batch the collector will refuse:
/// 1. the new key and its statement are on disk (`agent.key.next`), `agent.key` unchanged;
/// 2. batches already sealed with the old key are delivered first (nothing in flight);
/// 3. the statement goes to the collector (`POST /v1/agents/ID/keys`);
/// 4. once taken, the new identity replaces `agent.key` in one rename, `agent.key.next` goes,
///    and every batch sealed from then on is signed with the new key.
/// A crash before 3 repeats it; between 3 and 4 the collector answers the same statement
/// `already_rotated` and the agent switches; after the rename the leftover file is only removed.
/// While the outcome of a presented statement is unknown (no answer, or the new key could not be
/// installed), nothing is sealed: a batch signed with the old key could be refused for good.
struct KeyRotator {
    let keyPath: String
    var pendingPath: String { PendingKeyRotation.path(forKeyAt: keyPath) }
    private var nextCheck = ContinuousClock.now
    private var backoff = Backoff(cap: 300)
    private var refusals = RefusalLog()
    /// A statement was presented and the collector may have taken it: seal nothing until that
    /// is settled.
    private(set) var inDoubt = false

    private var nextLook = ContinuousClock.now
    private var pendingOnDisk = false

    init(keyPath: String) { self.keyPath = keyPath }

    /// Whether a rotation waits to be presented or is in doubt (the file is looked for at most
    /// once a second). The ship loop then sends no batch ahead of an answer, so that the batches
    /// in flight drain and `step` can present the statement.
    mutating func waiting() -> Bool {
        let now = ContinuousClock.now
        if now >= nextLook {
            nextLook = now + .seconds(1)
            pendingOnDisk = access(pendingPath, F_OK) == 0
        }
        return pendingOnDisk || inDoubt
    }

    enum Outcome {
        /// Nothing to do now (no rotation waiting, or not yet its time).
        case none
        /// The collector took the statement: sign with this identity from now on.
        case switched(AgentIdentity, retiredKeyId: String)
        /// The collector does not know the agent: enroll (with the current key), then try again.
        case enroll
        /// A presented statement is in doubt: seal nothing now, ask again soon.
        case hold
    }

    /// Called by the ship loop before it seals or sends anything. Looks for a waiting rotation
    /// at most every second; presents it when no batch sealed with the old key is in flight.
    mutating func step(
        signing: AgentIdentity,
        spool: Spool,
        client: CollectorClient,
        logger: Logger
    ) async -> Outcome {
        let now = ContinuousClock.now
        guard now >= nextCheck else { return inDoubt ? .hold : .none }
        nextCheck = now + .seconds(1)
        let pending: PendingKeyRotation
        do {
            guard let loaded = try PendingKeyRotation.load(from: pendingPath) else { return .none }
            pending = loaded
        } catch {
            logger.error(
                "pending key rotation unusable; still signing with the current key",
                metadata: ["error": "\(error.message)"]
            )
            nextCheck = now + .seconds(60)
            return .none
        }
        if pending.identity.keyId == signing.keyId {
            // Installed before a crash took the process: only the leftover is removed.
            unlink(pendingPath)
            return .none
        }
        guard pending.statement.oldKeyId == signing.keyId, pending.identity.agentId == signing.agentId else {
            logger.error(
                "pending key rotation does not start from this agent's key; ignoring it",
                metadata: [
                    "path": "\(pendingPath)", "statement_old_key_id": "\(pending.statement.oldKeyId)",
                    "key_id": "\(signing.keyId)",
                ]
            )
            nextCheck = now + .seconds(60)
            return .none
        }
        // Batches sealed with the old key go first: the collector refuses them after the switch.
        guard inDoubt || (try? spool.statistics().batchesInFlight) == 0 else { return .none }
        inDoubt = true
        switch await client.rotateKey(pending.statement) {
        case .accepted(let status):
            do {
                try pending.identity.replace(at: keyPath)
            } catch {
                // The collector has the new key; the next attempt gets `already_rotated`.
                logger.error(
                    "collector took the key rotation but the new key cannot be installed; will retry",
                    metadata: ["path": "\(keyPath)", "error": "\(error.message)"]
                )
                nextCheck = now + backoff.next()
                return .hold
            }
            inDoubt = false
            unlink(pendingPath)
            backoff.reset()
            refusals.reset()
            logger.notice(
                "agent key rotated; signing with the new key",
                metadata: [
                    "retired_key_id": "\(signing.keyId)", "key_id": "\(pending.identity.keyId)",
                    "collector": "\(client.baseURL)", "status": "\(status)",
                ]
            )
            return .switched(pending.identity, retiredKeyId: signing.keyId)
        case .unknownAgent:
            inDoubt = false
            return .enroll
        case .refused(let status, let error, let message):
            inDoubt = false
            let isNew = refusals.isNew(status: status, error: error)
            logger.log(
                level: isNew ? .error : .debug,
                "collector refused the key rotation; still signing with the current key",
                metadata: [
                    "status": "\(status)", "error": "\(error)", "message": "\(message)", "path": "\(pendingPath)",
                ]
            )
            nextCheck = now + backoff.next()
            return .none
        case .retry(let reason):
            logger.warning(
                "cannot present the key rotation; holding new batches until the collector answers",
                metadata: ["reason": "\(reason)"]
            )
            nextCheck = now + backoff.next()
            return .hold
        }
    }
}
