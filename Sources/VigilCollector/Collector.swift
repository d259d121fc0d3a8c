import Crypto
import Foundation
import Logging
import Synchronization
import VigilCore
import VigilWire

/// The collector's logic, independent of HTTP: enrollment, batch verification and storage,
/// queries, and a live feed of what was stored.
public final class Collector: Sendable {
    public let store: any EventStore
    public let configuration: CollectorConfiguration
    let logger: Logger
    /// What `GET /metrics` serves: this collector's own counts (see `CollectorMetrics`).
    public let metrics = CollectorMetrics()
    /// Open live tails (`GET /v1/events/stream`) and what wakes them.
    public let liveTail = LiveTail()
    /// `--max-batch-rate`: a token bucket per (verified) agent.
    public let batchRateLimiter: BatchRateLimiter
    private let keyCache = Mutex<[String: Curve25519.Signing.PublicKey]>([:])
    /// Batches this collector stored (or found stored) per agent: a change wakes a batch waiting
    /// for its predecessor (`storeInOrder`).
    private let storedBatches = Mutex<[String: UInt64]>([:])
    private let subscribers = Mutex<[UInt64: AsyncStream<StoredEvent>.Continuation]>([:])
    private let nextSubscriber = Atomic<UInt64>(0)

    public init(store: any EventStore, configuration: CollectorConfiguration, logger: Logger) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.batchRateLimiter = BatchRateLimiter(limit: configuration.batchRate)
    }

    // MARK: enrollment

    public struct EnrollRequest: Codable, Sendable {
        public var token: String
        public var agentId: String
        public var publicKey: String
        public var hostname: String
        public var machineId: String

        public init(token: String, agentId: String, publicKey: String, hostname: String, machineId: String) {
            self.token = token
            self.agentId = agentId
            self.publicKey = publicKey
            self.hostname = hostname
            self.machineId = machineId
        }

        enum CodingKeys: String, CodingKey {
            case token
            case agentId = "agent_id"
            case publicKey = "public_key"
            case hostname
            case machineId = "machine_id"
        }
    }

    public struct EnrollResponse: Codable, Sendable {
        public var agentId: String
        public var keyId: String
        public var status: String

        enum CodingKeys: String, CodingKey {
            case agentId = "agent_id"
            case keyId = "key_id"
            case status
        }
    }

    public func enroll(_ request: EnrollRequest) async throws -> EnrollResponse {
        // The command-line --enroll-token, or one issued by POST /v1/tokens (EnrollmentTokens.swift).
        let credential = try enrollmentCredential(request.token)
        guard Self.isValidAgentId(request.agentId) else {
            throw CollectorError(.badRequest, "agent_id must be 1-64 characters of [A-Za-z0-9._-]")
        }
        let key: Curve25519.Signing.PublicKey
        do {
            key = try AgentIdentity.publicKey(base64: request.publicKey)
        } catch {
            throw CollectorError(.badRequest, "public_key: \(error.message)")
        }
        let keyId = AgentIdentity.keyId(for: key)
        let record = AgentRecord(
            agentId: request.agentId,
            publicKey: request.publicKey,
            keyId: keyId,
            hostname: String(request.hostname.prefix(255)),
            machineId: String(request.machineId.prefix(64)),
            enrolledAt: .now()
        )
        switch try await enroll(record, with: credential) {
        case .enrolled:
            logger.info(
                "agent enrolled",
                metadata: [
                    "agent_id": "\(request.agentId)", "hostname": "\(record.hostname)", "key_id": "\(keyId)",
                    "token": "\(credential.logName)",
                ]
            )
            return EnrollResponse(agentId: request.agentId, keyId: keyId, status: "enrolled")
        case .alreadyEnrolled:
            if let revokedAt = try await store.agent(id: request.agentId)?.revokedAt {
                throw CollectorError(.revokedAgent, "agent \(request.agentId) was revoked at \(revokedAt.iso8601)")
            }
            return EnrollResponse(agentId: request.agentId, keyId: keyId, status: "already_enrolled")
        case .conflict:
            throw CollectorError(.enrollConflict, "agent \(request.agentId) is already enrolled with a different key")
        }
    }

    /// What `POST /v1/agents/ID/revoke` answers.
    public struct RevokeResponse: Codable, Sendable, Hashable {
        public var agentId: String
        public var revokedAt: Timestamp

        enum CodingKeys: String, CodingKey {
            case agentId = "agent_id"
            case revokedAt = "revoked_at"
        }
    }

    /// Revokes an agent: from now on its batches are refused (403 `revoked_agent`) and it cannot
    /// enroll again under its id; what it sent before stays stored and queryable. Revoking again
    /// keeps the first time.
    public func revoke(agentId: String) async throws -> RevokeResponse {
        guard Self.isValidAgentId(agentId), let at = try await store.revoke(agentId: agentId, at: .now()) else {
            throw CollectorError(.unknownAgent, "agent \(agentId) is not enrolled")
        }
        logger.notice("agent revoked", metadata: ["agent_id": "\(agentId)", "revoked_at": "\(at.iso8601)"])
        return RevokeResponse(agentId: agentId, revokedAt: at)
    }

    /// What `POST /v1/agents/ID/keys` answers.
    public struct RotateResponse: Codable, Sendable, Hashable {
        public var agentId: String
        /// `rotated`, or `already_rotated` when this statement was taken before.
        public var status: String
        public var keyId: String
        public var retiredKeyId: String
        public var rotatedAt: Timestamp
        /// The first batch the new key signs.
        public var firstBatchSeq: UInt64

        enum CodingKeys: String, CodingKey {
            case agentId = "agent_id"
            case status
            case keyId = "key_id"
            case retiredKeyId = "retired_key_id"
            case rotatedAt = "rotated_at"
            case firstBatchSeq = "first_batch_seq"
        }
    }

    /// Takes a key rotation statement (`KeyRotation`): checked with the key it retires (which
    /// must be the agent's current key), then the new key is current and batches signed with the
    /// old one are refused (`key_retired`). The same statement presented again after it was
    /// taken is answered `already_rotated` (an agent that crashed before it switched); a
    /// statement from a key retired by an earlier rotation is refused (`key_retired`).
    public func rotateKey(agentId: String, statement: KeyRotation) async throws -> RotateResponse {
        guard Self.isValidAgentId(agentId), let record = try await store.agent(id: agentId) else {
            throw CollectorError(.unknownAgent, "agent \(agentId) is not enrolled")
        }
        guard statement.agentId == agentId else {
            throw CollectorError(
                .badRequest,
                "agent_id \(statement.agentId) does not match the agent in the path, \(agentId)"
            )
        }
        if let revokedAt = record.revokedAt {
            throw CollectorError(
                .revokedAgent,
                "agent \(agentId) was revoked at \(revokedAt.iso8601); it cannot rotate its key"
            )
        }
        // The key the statement claims to retire: the current one, or, for a statement taken
        // before, the one it retired then.
        let keys = try await store.keys(agentId: agentId)
        guard let old = keys.first(where: { $0.keyId == statement.oldKeyId }) else {
            throw CollectorError(
                .unknownKey,
                "old_key_id \(statement.oldKeyId) is not a key of agent \(agentId) (its key is \(record.keyId))"
            )
        }
        do throws(WireError) {
            let oldKey = try AgentIdentity.publicKey(base64: old.publicKey)
            _ = try statement.verify(oldKey: oldKey)
        } catch {
            logger.notice(
                "key rotation refused",
                metadata: [
                    "agent_id": "\(agentId)", "old_key_id": "\(statement.oldKeyId)", "reason": "\(error.message)",
                ]
            )
            throw error.code == .badSignature
                ? CollectorError(.badSignature, error.message) : CollectorError(.badRequest, error.message)
        }
        let outcome = try await store.rotateKey(statement, at: .now())
        keyCache.withLock { _ = $0.removeValue(forKey: agentId) }
        switch outcome {
        case .rotated(let current):
            logger.notice(
                "agent key rotated",
                metadata: [
                    "agent_id": "\(agentId)", "retired_key_id": "\(statement.oldKeyId)", "key_id": "\(current.keyId)",
                    "first_batch_seq": "\(current.firstBatchSeq)",
                ]
            )
            return RotateResponse(
                agentId: agentId,
                status: "rotated",
                keyId: current.keyId,
                retiredKeyId: statement.oldKeyId,
                rotatedAt: current.activatedAt,
                firstBatchSeq: current.firstBatchSeq
            )
        case .alreadyRotated(let current):
            return RotateResponse(
                agentId: agentId,
                status: "already_rotated",
                keyId: current.keyId,
                retiredKeyId: statement.oldKeyId,
                rotatedAt: current.activatedAt,
                firstBatchSeq: current.firstBatchSeq
            )
        }
    }

    /// Whether a presented secret (enrollment or API token) is `expected`. Compares digests, so
    /// the time taken says nothing about where or whether the lengths differ.
    static func tokenMatches(_ presented: some StringProtocol, _ expected: String) -> Bool {
        SHA256.hash(data: Data(presented.utf8)) == SHA256.hash(data: Data(expected.utf8))
    }

    /// Agent ids are 1-64 characters of [A-Za-z0-9._-] (checked at enrollment and by `vigilctl keygen`).
    public static func isValidAgentId(_ id: String) -> Bool { EventQuery.isValidAgentId(id) }

    // MARK: batches

    public struct BatchResponse: Codable, Sendable, Hashable {
        public var status: String
        public var batchSeq: UInt64
        public var events: Int
        public var chain: String?
        public var detail: String?

        enum CodingKeys: String, CodingKey {
            case status
            case batchSeq = "batch_seq"
            case events
            case chain
            case detail
        }
    }

    /// Verifies and stores one serialized batch. Throws `CollectorError` for every refusal;
    /// nothing is stored unless the whole batch verifies. Counted in `metrics`.
    ///
    /// - Parameter previousInFlight: the agent sent the batch before this one (this batch's
    ///   `batch_seq - 1`, HTTP header `Vigil-Previous-Batch`) just before it, unanswered yet, so
    ///   this one may overtake it. Such a batch is verified at once but stored only after its
    ///   predecessor: it waits up to `configuration.predecessorWait` for it, then is refused
    ///   with 503 `predecessor_pending` (nothing stored, nothing recorded) rather than judged a
    ///   chain gap. Without it, a batch that does not follow the newest stored one is a gap.
    public func receive(batch bytes: [UInt8], previousInFlight: UInt64? = nil) async throws -> BatchResponse {
        metrics.batchReceived()
        do {
            return try await verifyAndStore(batch: bytes, previousInFlight: previousInFlight)
        } catch let error as CollectorError {
            metrics.batchRefused(error.code)
            throw error
        } catch {
            metrics.batchRefused(.storeFailure)  // the store could not look the agent up
            throw error
        }
    }

    private func verifyAndStore(batch bytes: [UInt8], previousInFlight: UInt64?) async throws -> BatchResponse {
        let limits = configuration.batchLimits
        let batch: SealedBatch
        do {
            batch = try BatchOpener.parse(bytes, limits: limits)
        } catch {
            throw CollectorError(wire: error)
        }
        let agentId = batch.header.agentId
        let key = try await publicKey(for: agentId, keyId: batch.header.keyId)
        let events: [Event]
        do {
            // The header's signature first (cheap: no decompression), so the rate limit is charged
            // to the agent that really sent the batch, never to one whose id was spoofed.
            try BatchOpener.verifyHeaderSignature(batch, publicKey: key)
            try checkRate(agentId)
            events = try BatchOpener.verify(batch, publicKey: key, limits: limits)
        } catch let error as CollectorError {
            throw error
        } catch let error as WireError {
            logger.notice(
                "batch refused",
                metadata: [
                    "agent_id": "\(agentId)", "batch_seq": "\(batch.header.batchSeq)", "reason": "\(error.code)",
                    "detail": "\(error.message)",
                ]
            )
            throw CollectorError(wire: error)
        }
        // Stores keep sequence numbers as signed 64-bit integers (SQLite and PostgreSQL alike).
        let seqLimit = UInt64(Int64.max)
        guard batch.header.batchSeq <= seqLimit, batch.header.firstSeq <= seqLimit - UInt64(batch.header.eventCount),
            events.allSatisfy({ $0.seq <= seqLimit })
        else {
            throw CollectorError(.badRequest, "batch_seq and event seqs must be below 2^63")
        }
        if let previousInFlight, previousInFlight != batch.header.batchSeq &- 1 || batch.header.batchSeq < 2 {
            throw CollectorError(
                .badRequest,
                "Vigil-Previous-Batch must name the batch before this one (\(batch.header.batchSeq &- 1)), not \(previousInFlight)"
            )
        }
        let outcome: IngestOutcome
        do {
            outcome = try await storeInOrder(batch: batch, events: events, afterInFlight: previousInFlight != nil)
        } catch let error as CollectorError {
            // Revoked since its key was cached (here or through another collector): forget the
            // key, so its next batches are refused before any verification, and say since when.
            if error.code == .keyRetired {
                // Rotated through another collector since this one cached the key.
                keyCache.withLock { _ = $0.removeValue(forKey: agentId) }
                throw try await retiredKeyRefusal(agentId: agentId, keyId: batch.header.keyId) ?? error
            }
            if error.code == .revokedAgent {
                keyCache.withLock { _ = $0.removeValue(forKey: agentId) }
                if let at = try? await store.agent(id: agentId)?.revokedAt {
                    throw CollectorError(.revokedAgent, "agent \(agentId) was revoked at \(at.iso8601)")
                }
            }
            throw error
        } catch {
            logger.error("store failed", metadata: ["agent_id": "\(agentId)", "error": "\(error)"])
            throw CollectorError(.storeFailure, "the store could not save the batch; retry later")
        }
        switch outcome {
        case .predecessorPending:
            throw CollectorError(
                .predecessorPending,
                "batch \(batch.header.batchSeq &- 1) of agent \(agentId), sent before this one, was not stored within \(configuration.predecessorWait); send it first",
                retryAfterSeconds: 1
            )
        case .duplicate:
            metrics.batchDuplicate()
            return BatchResponse(status: "duplicate", batchSeq: batch.header.batchSeq, events: events.count)
        case .fork(let detail):
            logger.warning("chain fork", metadata: ["agent_id": "\(agentId)", "batch_seq": "\(batch.header.batchSeq)"])
            liveTail.ingested()  // the fork's alert (`ChainAlert`) is stored
            throw CollectorError(.fork, detail)
        case .accepted(let verdict, let detail):
            if verdict != .ok {
                logger.warning(
                    "chain anomaly",
                    metadata: [
                        "agent_id": "\(agentId)", "batch_seq": "\(batch.header.batchSeq)",
                        "verdict": "\(verdict.rawValue)", "detail": "\(detail ?? "")",
                    ]
                )
            }
            metrics.batchAccepted(verdict, events: events)
            publish(agentId: agentId, batchSeq: batch.header.batchSeq, events: events)
            liveTail.ingested()
            return BatchResponse(
                status: "accepted",
                batchSeq: batch.header.batchSeq,
                events: events.count,
                chain: verdict.rawValue,
                detail: detail
            )
        }
    }

    /// Stores the batch; with `afterInFlight`, only once its predecessor is stored: the store
    /// answers `predecessorPending` while it is not, and the attempt is repeated whenever this
    /// collector stores another batch of the agent (or every 50 ms, for a predecessor stored by
    /// another collector on the same database) until `configuration.predecessorWait` is over.
    private func storeInOrder(batch: SealedBatch, events: [Event], afterInFlight: Bool) async throws -> IngestOutcome {
        let agentId = batch.header.agentId
        let deadline = ContinuousClock.now + configuration.predecessorWait
        if afterInFlight { metrics.batchBehindInFlight() }
        var waited = false
        while true {
            let seen = storedBatches.withLock { $0[agentId] ?? 0 }
            let outcome = try await metrics.timeStoreIngest {
                try await store.ingest(
                    batch: batch,
                    events: events,
                    receivedAt: .now(),
                    predecessorInFlight: afterInFlight
                )
            }
            switch outcome {
            case .accepted, .duplicate:
                storedBatches.withLock { $0[agentId, default: 0] &+= 1 }
                return outcome
            case .fork:
                return outcome
            case .predecessorPending:
                if !waited { metrics.predecessorWaited() }
                waited = true
                let retry = min(deadline, ContinuousClock.now + .milliseconds(50))
                while ContinuousClock.now < retry, storedBatches.withLock({ $0[agentId] ?? 0 }) == seen {
                    try await Task.sleep(for: .milliseconds(1))
                }
                if ContinuousClock.now >= deadline { return outcome }
            }
        }
    }

    /// Charges one batch to the agent's bucket (`--max-batch-rate`); throws `rate_limited` when
    /// it is empty.
    private func checkRate(_ agentId: String) throws(CollectorError) {
        guard let retryAfter = batchRateLimiter.admit(agentId) else { return }
        logger.debug("batch rate limited", metadata: ["agent_id": "\(agentId)", "retry_after": "\(retryAfter)"])
        throw CollectorError(
            .rateLimited,
            "agent \(agentId) sends more than \(configuration.batchRate.perSecond) batches a second; retry after \(retryAfter) s",
            retryAfterSeconds: retryAfter
        )
    }

    private func publicKey(for agentId: String, keyId: String) async throws -> Curve25519.Signing.PublicKey {
        if let cached = keyCache.withLock({ $0[agentId] }), AgentIdentity.keyId(for: cached) == keyId {
            return cached
        }
        guard let record = try await store.agent(id: agentId) else {
            throw CollectorError(.unknownAgent, "agent \(agentId) is not enrolled")
        }
        if let revokedAt = record.revokedAt {
            throw CollectorError(.revokedAgent, "agent \(agentId) was revoked at \(revokedAt.iso8601)")
        }
        guard record.keyId == keyId else {
            if let retired = try await retiredKeyRefusal(agentId: agentId, keyId: keyId) { throw retired }
            throw CollectorError(
                .unknownKey,
                "agent \(agentId) signed with key \(keyId), but its enrolled key is \(record.keyId)"
            )
        }
        let key: Curve25519.Signing.PublicKey
        do {
            key = try AgentIdentity.publicKey(base64: record.publicKey)
        } catch {
            throw CollectorError(.storeFailure, "stored key of agent \(agentId) is invalid")
        }
        keyCache.withLock { $0[agentId] = key }
        return key
    }

    /// The refusal of a batch signed with `keyId` when that is a key the agent rotated away from.
    private func retiredKeyRefusal(agentId: String, keyId: String) async throws -> CollectorError? {
        let keys = try await store.keys(agentId: agentId)
        guard let index = keys.firstIndex(where: { $0.keyId == keyId }), let retiredAt = keys[index].retiredAt,
            let current = keys.last
        else { return nil }
        return CollectorError(
            .keyRetired,
            "agent \(agentId) signed with key \(keyId), which it retired at \(retiredAt.iso8601) (rotated to \(keys[index + 1].keyId)); its batches must be signed with its current key \(current.keyId)"
        )
    }

    // MARK: live feed

    /// Events as they are stored, from now on. The stream ends when the caller stops iterating.
    /// A slow subscriber loses the oldest buffered events rather than slowing ingest.
    public func subscribe(bufferSize: Int = 10_000) -> AsyncStream<StoredEvent> {
        let id = nextSubscriber.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream<StoredEvent>.makeStream(bufferingPolicy: .bufferingNewest(bufferSize))
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.removeValue(forKey: id) }
        }
        subscribers.withLock { $0[id] = continuation }
        return stream
    }

    private func publish(agentId: String, batchSeq: UInt64, events: [Event]) {
        let continuations = subscribers.withLock { Array($0.values) }
        guard !continuations.isEmpty else { return }
        for event in events {
            let stored = StoredEvent(id: 0, agentId: agentId, batchSeq: batchSeq, event: event)
            for c in continuations { c.yield(stored) }
        }
    }
}
