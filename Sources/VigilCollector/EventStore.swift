import Foundation
import VigilCore
import VigilWire

/// An enrolled agent as the collector knows it.
public struct AgentRecord: Sendable, Codable, Hashable {
    public var agentId: String
    /// Base64 of the raw Ed25519 public key.
    public var publicKey: String
    public var keyId: String
    public var hostname: String
    public var machineId: String
    public var enrolledAt: Timestamp
    public var revokedAt: Timestamp?

    public init(
        agentId: String,
        publicKey: String,
        keyId: String,
        hostname: String,
        machineId: String,
        enrolledAt: Timestamp,
        revokedAt: Timestamp? = nil
    ) {
        self.agentId = agentId
        self.publicKey = publicKey
        self.keyId = keyId
        self.hostname = hostname
        self.machineId = machineId
        self.enrolledAt = enrolledAt
        self.revokedAt = revokedAt
    }
}

/// One signing key of an agent, current or retired: which batches it signed and the rotation
/// statement that introduced it (nil for the key the agent enrolled with).
public struct AgentKeyRecord: Sendable, Codable, Hashable {
    public var keyId: String
    /// Base64 of the raw Ed25519 public key.
    public var publicKey: String
    /// Enrollment, or the rotation that introduced it.
    public var activatedAt: Timestamp
    /// The rotation that retired it; nil for the current key.
    public var retiredAt: Timestamp?
    /// The first batch this key may sign.
    public var firstBatchSeq: UInt64
    /// The last batch it signed before it was retired (the agent's last batch then); nil for the
    /// current key. Below `firstBatchSeq` when it signed none.
    public var lastBatchSeq: UInt64?
    /// The statement, signed by the previous key, that introduced this one.
    public var rotation: KeyRotation?

    public init(
        keyId: String,
        publicKey: String,
        activatedAt: Timestamp,
        retiredAt: Timestamp? = nil,
        firstBatchSeq: UInt64,
        lastBatchSeq: UInt64? = nil,
        rotation: KeyRotation? = nil
    ) {
        self.keyId = keyId
        self.publicKey = publicKey
        self.activatedAt = activatedAt
        self.retiredAt = retiredAt
        self.firstBatchSeq = firstBatchSeq
        self.lastBatchSeq = lastBatchSeq
        self.rotation = rotation
    }

    enum CodingKeys: String, CodingKey {
        case keyId = "key_id"
        case publicKey = "public_key"
        case activatedAt = "activated_at"
        case retiredAt = "retired_at"
        case firstBatchSeq = "first_batch_seq"
        case lastBatchSeq = "last_batch_seq"
        case rotation
    }
}

/// What a store did with a verified rotation statement.
public enum RotationOutcome: Sendable, Hashable {
    /// The old key is retired now and the new one current.
    case rotated(AgentKeyRecord)
    /// This very rotation happened before (the agent presents it again after a crash): nothing changed.
    case alreadyRotated(AgentKeyRecord)
}

/// How the collector judged a batch's place in its agent's hash chain.
public enum ChainVerdict: String, Sendable, Codable {
    /// Next in sequence, linked to the previous header.
    case ok
    /// Batches are missing before this one.
    case gap
    /// The right sequence number, but it does not link to the batch stored before it.
    case broken
    /// Arrived after a later batch (fills an earlier gap).
    case reordered

    /// Where a batch with `header` stands after the stored chain ends at `lastSeq` (header hash
    /// `lastHash`; nil before the first batch), and what to record when it is not `ok`.
    static func judge(_ header: BatchHeader, lastSeq: UInt64, lastHash: Data?) -> (ChainVerdict, detail: String?) {
        if header.batchSeq == lastSeq + 1 {
            guard Data(header.prevHeaderHash) == (lastHash ?? Data(genesisHeaderHash)) else {
                return (.broken, "batch \(header.batchSeq) does not link to the stored batch \(lastSeq)")
            }
            return (.ok, nil)
        }
        if header.batchSeq > lastSeq + 1 {
            let missingFrom = lastSeq + 1
            let missingTo = header.batchSeq - 1
            return (
                .gap,
                missingFrom == missingTo
                    ? "batch \(missingFrom) is missing" : "batches \(missingFrom)-\(missingTo) are missing"
            )
        }
        return (.reordered, "batch \(header.batchSeq) arrived after batch \(lastSeq)")
    }
}

/// What happened to a batch handed to `EventStore.ingest`.
public enum IngestOutcome: Sendable, Hashable {
    /// Stored; the verdict says how it fits the chain.
    case accepted(ChainVerdict, detail: String?)
    /// The same batch (same header hash) was stored before; nothing stored again.
    case duplicate
    /// A different batch with the same sequence number was stored before: refused, recorded as a fork.
    case fork(detail: String)
    /// Only when the agent said the batch before this one is still on its way
    /// (`predecessorInFlight`) and it is not stored yet: nothing was stored or recorded.
    case predecessorPending
}

/// A chain anomaly recorded by the collector: possible tampering, loss or replay.
public struct ChainAnomaly: Sendable, Codable, Hashable {
    public var kind: String
    public var batchSeq: UInt64
    public var detail: String
    public var detectedAt: Timestamp

    enum CodingKeys: String, CodingKey {
        case kind
        case batchSeq = "batch_seq"
        case detail
        case detectedAt = "detected_at"
    }
}

/// One row of `GET /v1/agents`.
public struct AgentSummary: Sendable, Codable, Hashable {
    public var agentId: String
    public var hostname: String
    public var keyId: String
    /// When the current key replaced the previous one (`POST /v1/agents/ID/keys`); nil when the
    /// agent still signs with the key it enrolled with.
    public var keyRotatedAt: Timestamp? = nil
    public var enrolledAt: Timestamp
    public var revoked: Bool
    public var lastSeen: Timestamp?
    public var lastBatchSeq: UInt64
    public var events: UInt64
    /// `whole` when no anomaly was ever recorded, else the kind of the latest one.
    public var chainStatus: String
    public var anomalies: [ChainAnomaly]
    /// Gap records received: the agent's own signed statements that it dropped events (spool
    /// full). Declared loss, not tampering: it leaves `chainStatus` alone (see `SeqAccount`).
    public var declaredGaps: UInt64 = 0
    /// The events those gap records say were dropped.
    public var droppedEvents: UInt64 = 0
    /// The agent's latest attack-drill selftest, passed or not; nil when it never reported one.
    public var lastSelftest: SelftestSummary? = nil
    /// When the agent last passed its selftest; nil when it never did.
    public var selftestPassedAt: Timestamp? = nil
    /// The vigild version the agent last reported (`version` of a `started` or `status` health
    /// event); nil when it never did (an agent older than these reports).
    public var version: String? = nil
    /// SHA-256 (hex) of the rules the agent last reported loaded (`policy_sha256` of a `started`,
    /// `policy_loaded` or `status` health event).
    public var policyHash: String? = nil
    /// The agent's latest periodic `status` report: spool backlog, shed and drop counters.
    public var lastStatus: AgentStatusReport? = nil

    enum CodingKeys: String, CodingKey {
        case agentId = "agent_id"
        case hostname
        case keyId = "key_id"
        case keyRotatedAt = "key_rotated_at"
        case enrolledAt = "enrolled_at"
        case revoked
        case lastSeen = "last_seen"
        case lastBatchSeq = "last_batch_seq"
        case events
        case chainStatus = "chain_status"
        case anomalies
        case declaredGaps = "declared_gaps"
        case droppedEvents = "dropped_events"
        case lastSelftest = "last_selftest"
        case selftestPassedAt = "selftest_passed_at"
        case version
        case policyHash = "policy_hash"
        case lastStatus = "last_status"
    }
}

extension AgentSummary {
    /// The selftest state in a few words, for tables (`vigilctl agents`): `passed 2026-11-28 23:50`
    /// (UTC), `FAILED 3/24 missed`, `FAILED 0/24 detected` or `never`.
    public var selftestStatus: String {
        guard let last = lastSelftest else { return "never" }
        if last.passed {
            // "2026-11-28T23:50:12.123456Z" → "2026-11-28 23:50"
            return "passed " + String(last.time.iso8601.prefix(16)).replacingOccurrences(of: "T", with: " ")
        }
        return last.missed > 0
            ? "FAILED \(last.missed)/\(last.drills) missed" : "FAILED \(last.detected)/\(last.drills) detected"
    }
}

/// The outcome of one attack-drill selftest, as an agent reported it in an agent-health event of
/// kind `selftest` (counters `drills`, `detected`, `missed`, `skipped`, `latency_ms_max`).
public struct SelftestSummary: Sendable, Codable, Hashable {
    /// The health event's time.
    public var time: Timestamp
    /// Every drill that ran was detected: `missed == 0 && detected > 0`.
    public var passed: Bool
    /// Drills run.
    public var drills: UInt64
    public var detected: UInt64
    public var missed: UInt64

    /// A selftest passed when no drill was missed and at least one was detected.
    public init(time: Timestamp, drills: UInt64, detected: UInt64, missed: UInt64) {
        self.time = time
        self.passed = missed == 0 && detected > 0
        self.drills = drills
        self.detected = detected
        self.missed = missed
    }

    /// The health kind that carries a selftest outcome.
    public static let healthKind = "selftest"

    /// The summary of a selftest health event; nil for any other event.
    public init?(_ event: Event) {
        guard case .health(let health) = event.payload, health.kind == Self.healthKind else { return nil }
        self.init(
            time: event.time,
            drills: health.counters["drills"] ?? 0,
            detected: health.counters["detected"] ?? 0,
            missed: health.counters["missed"] ?? 0
        )
    }

    /// What a batch's events say about selftests, for the stores to merge into the agent's row:
    /// the latest selftest in the batch and the time of the latest passed one.
    static func latest(in events: [Event]) -> (last: SelftestSummary, passedAt: Timestamp?)? {
        var last: SelftestSummary? = nil
        var passedAt: Timestamp? = nil
        for event in events {
            guard let summary = SelftestSummary(event) else { continue }
            if last.map({ summary.time >= $0.time }) ?? true { last = summary }
            if summary.passed, passedAt.map({ summary.time > $0 }) ?? true { passedAt = summary.time }
        }
        return last.map { ($0, passedAt) }
    }
}

/// An agent's periodic account of itself: the agent-health event of kind `status` (every
/// `status_interval_s`, 60 s by default). Counters are totals since the agent started, except
/// the spool's, which are its state at `time`.
public struct AgentStatusReport: Sendable, Codable, Hashable {
    /// The health event's time.
    public var time: Timestamp
    /// Backlog: events spooled, not yet acknowledged by a collector.
    public var spoolEvents: UInt64 = 0
    /// Their serialized bytes.
    public var spoolBytes: UInt64 = 0
    /// Events the full spool dropped (each drop is also a signed gap record).
    public var spoolDropped: UInt64 = 0
    /// Raw events the self-watchdog shed to stay in its budget.
    public var eventsShed: UInt64 = 0
    /// Events dropped at a full queue in the agent (a sensor's, or the buffer in front of the spool).
    public var queueDrops: UInt64 = 0
    /// Events the kernel dropped before the agent read them (inotify overflows, proc connector
    /// overruns, packets pcap lost).
    public var kernelDrops: UInt64 = 0

    public init(
        time: Timestamp,
        spoolEvents: UInt64 = 0,
        spoolBytes: UInt64 = 0,
        spoolDropped: UInt64 = 0,
        eventsShed: UInt64 = 0,
        queueDrops: UInt64 = 0,
        kernelDrops: UInt64 = 0
    ) {
        self.time = time
        self.spoolEvents = spoolEvents
        self.spoolBytes = spoolBytes
        self.spoolDropped = spoolDropped
        self.eventsShed = eventsShed
        self.queueDrops = queueDrops
        self.kernelDrops = kernelDrops
    }

    enum CodingKeys: String, CodingKey {
        case time
        case spoolEvents = "spool_events"
        case spoolBytes = "spool_bytes"
        case spoolDropped = "spool_dropped"
        case eventsShed = "events_shed"
        case queueDrops = "queue_drops"
        case kernelDrops = "kernel_drops"
    }

    /// Counters a newer or older agent does not send decode as 0.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        time = try c.decode(Timestamp.self, forKey: .time)
        spoolEvents = try c.decodeIfPresent(UInt64.self, forKey: .spoolEvents) ?? 0
        spoolBytes = try c.decodeIfPresent(UInt64.self, forKey: .spoolBytes) ?? 0
        spoolDropped = try c.decodeIfPresent(UInt64.self, forKey: .spoolDropped) ?? 0
        eventsShed = try c.decodeIfPresent(UInt64.self, forKey: .eventsShed) ?? 0
        queueDrops = try c.decodeIfPresent(UInt64.self, forKey: .queueDrops) ?? 0
        kernelDrops = try c.decodeIfPresent(UInt64.self, forKey: .kernelDrops) ?? 0
    }

    /// The health kind of the periodic report.
    public static let healthKind = "status"
    /// Attribute keys of health events that the inventory keeps.
    public static let versionAttribute = "version"
    public static let policyHashAttribute = "policy_sha256"

    /// The report of a `status` health event (counters of the same names); nil for any other event.
    public init?(_ event: Event) {
        guard case .health(let health) = event.payload, health.kind == Self.healthKind else { return nil }
        let c = health.counters
        self.init(
            time: event.time,
            spoolEvents: c["spool_events"] ?? 0,
            spoolBytes: c["spool_bytes"] ?? 0,
            spoolDropped: c["spool_dropped"] ?? 0,
            eventsShed: c["events_shed"] ?? 0,
            queueDrops: c["queue_drops"] ?? 0,
            kernelDrops: c["kernel_drops"] ?? 0
        )
    }
}

/// What a batch's agent-health events say about the agent, for the stores to merge into its row:
/// the latest version, policy hash and status report, each by event time.
struct AgentStatusUpdate: Sendable, Hashable {
    var version: String? = nil
    var versionAt = Timestamp(nanosecondsSinceEpoch: 0)
    var policyHash: String? = nil
    var policyHashAt = Timestamp(nanosecondsSinceEpoch: 0)
    var status: AgentStatusReport? = nil

    /// Nil when no event of the batch says anything of the kind.
    static func latest(in events: [Event]) -> AgentStatusUpdate? {
        var update = AgentStatusUpdate()
        var any = false
        for event in events {
            guard case .health(let health) = event.payload else { continue }
            if let version = health.attributes[AgentStatusReport.versionAttribute], !version.isEmpty,
                update.version == nil || event.time >= update.versionAt
            {
                update.version = String(version.prefix(64))
                update.versionAt = event.time
                any = true
            }
            if let hash = health.attributes[AgentStatusReport.policyHashAttribute], !hash.isEmpty,
                update.policyHash == nil || event.time >= update.policyHashAt
            {
                update.policyHash = String(hash.prefix(128))
                update.policyHashAt = event.time
                any = true
            }
            if let report = AgentStatusReport(event), update.status.map({ report.time >= $0.time }) ?? true {
                update.status = report
                any = true
            }
        }
        return any ? update : nil
    }
}

/// An event as stored, with where it came from.
public struct StoredEvent: Sendable, Codable, Hashable {
    /// Storage id, increasing in arrival order: the paging cursor.
    public var id: Int64
    public var agentId: String
    public var batchSeq: UInt64
    public var event: Event

    enum CodingKeys: String, CodingKey {
        case id
        case agentId = "agent_id"
        case batchSeq = "batch_seq"
        case event
    }
}

/// A batch exactly as received, for re-verification.
public struct StoredBatch: Sendable, Hashable {
    public var batchSeq: UInt64
    public var headerBytes: [UInt8]
    public var signature: [UInt8]
    /// Empty when `pruned`.
    public var body: [UInt8]
    /// Retention deleted the batch's events and emptied its body; header and signature stay.
    public var pruned: Bool = false

    public init(batchSeq: UInt64, headerBytes: [UInt8], signature: [UInt8], body: [UInt8], pruned: Bool = false) {
        self.batchSeq = batchSeq
        self.headerBytes = headerBytes
        self.signature = signature
        self.body = body
        self.pruned = pruned
    }
}

/// Storage behind the collector. SQLite is the embedded default; other engines implement the
/// same contract. Implementations make `ingest` atomic: the batch, its events and its chain
/// verdict are stored together or not at all, and concurrent ingests of one agent never race.
public protocol EventStore: EnrollmentTokenStore, Sendable {
    /// Adds an agent, or confirms an existing enrollment with the same key.
    func enroll(_ agent: AgentRecord) async throws -> EnrollOutcome
    func agent(id: String) async throws -> AgentRecord?
    /// Marks the agent revoked at `time` (its batches are refused from then on); revoking twice
    /// keeps the first time. Returns the revocation time, or nil for an unknown agent.
    func revoke(agentId: String, at time: Timestamp) async throws -> Timestamp?
    /// Every key the agent signed with, oldest first, the current one last; empty for an
    /// unknown agent.
    func keys(agentId: String) async throws -> [AgentKeyRecord]
    /// Retires the agent's current key for the statement's new key, in one transaction holding
    /// the agent's row: the caller verified the statement's signatures, the store checks that
    /// `statement.oldKeyId` is still the current key. Throws `CollectorError` (`unknown_agent`,
    /// `revoked_agent`, `key_retired`, `unknown_key`, `key_reused`).
    func rotateKey(_ statement: KeyRotation, at time: Timestamp) async throws -> RotationOutcome
    /// Stores a verified batch and its events, judging its place in the chain. Refuses
    /// (`key_retired`) a batch whose header names a key other than the agent's current one.
    /// With `predecessorInFlight` (the agent sent the batch before this one just before it, see
    /// `Collector.receive`), a batch that does not follow the newest one stored is answered
    /// `predecessorPending` and nothing is stored or recorded, instead of being judged a gap.
    func ingest(
        batch: SealedBatch,
        events: [Event],
        receivedAt: Timestamp,
        predecessorInFlight: Bool
    ) async throws -> IngestOutcome
    func events(_ query: EventQuery) async throws -> [StoredEvent]
    func agents() async throws -> [AgentSummary]
    /// Stored batches of one agent in batch-seq order, after `afterBatchSeq`, at most `limit`.
    func batches(agentId: String, afterBatchSeq: UInt64, limit: Int) async throws -> [StoredBatch]
    func close() async throws

    // MARK: retention (see `Retention`)

    /// Deletes at most `limit` events in one short transaction, the oldest by event time first:
    /// only those before `cutoff` when one is given. A batch whose events are all gone is pruned:
    /// its body goes, while its signed header, signature and hash stay (dedup and the chain need
    /// them), so a resent old batch is still a duplicate. Agents' rows are never touched. Returns
    /// how many events went; 0 when none qualify.
    func deleteOldestEvents(before cutoff: Timestamp?, limit: Int) async throws -> Int
    /// What `--max-store-size` bounds.
    func storeUsage() async throws -> StoreUsage
    /// Gives space freed by deletions back to the file system where the engine can do so cheaply
    /// (an SQLite store in incremental auto-vacuum mode, at most `pages` pages); else does nothing.
    func reclaimSpace(pages: Int) async throws
    /// Runs `body` unless another collector on the same store is running retention; returns
    /// whether it ran.
    func withRetentionLock(_ body: () async throws -> Void) async throws -> Bool
}

/// How much a store holds, for the size bound.
public struct StoreUsage: Sendable, Hashable {
    /// SQLite: pages in use (file size without the free list). PostgreSQL: an estimate of the live
    /// events' size (rows × the average size of recent rows, with tuple and index overhead).
    public var bytes: Int64
    /// Events stored (PostgreSQL: the statistics' live-row estimate).
    public var events: Int64
    /// Whether `bytes` drops as soon as a deletion commits. SQLite: yes. PostgreSQL: statistics
    /// lag by a second or so, so a pass deletes what one measurement asks for, then stops.
    public var reflectsDeletesAtOnce: Bool

    public init(bytes: Int64, events: Int64, reflectsDeletesAtOnce: Bool) {
        self.bytes = bytes
        self.events = events
        self.reflectsDeletesAtOnce = reflectsDeletesAtOnce
    }
}

public enum EnrollOutcome: Sendable, Hashable {
    case enrolled
    case alreadyEnrolled
    /// The agent id is enrolled with a different key.
    case conflict
}
