import Crypto
import Foundation
import GRDB
import VigilCore
import VigilSQLite
import VigilWire

/// The embedded store: one SQLite file in WAL mode, through GRDB.
///
/// Writes are serialized by GRDB's writer, so a batch's dedup check, chain check and inserts run
/// in one transaction that no other ingest can interleave with.
public final class SQLiteEventStore: EventStore {
    let pool: DatabasePool
    public let path: String

    public convenience init(path: String) throws {
        try self.init(path: path, migratingUpTo: nil)
    }

    /// Opens the store with the schema up to and including the migration `last` (nil: all), so
    /// tests can build a database as an older collector left it.
    init(path: String, migratingUpTo last: String?) throws {
        self.path = path
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // A new file gets incremental auto-vacuum, so space that retention frees can be given
            // back (`reclaimSpace`). SQLite allows this only before the file is first written (here,
            // before the switch to WAL): an older file keeps auto_vacuum=none, where freed pages are
            // reused for new events but the file does not shrink.
            if !db.configuration.readonly, try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") == 0 {
                try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL")
            }
        }
        config.busyMode = .timeout(10)
        pool = try DatabasePool(path: path, configuration: config)
        if let last {
            try Self.migrator.migrate(pool, upTo: last)
        } else {
            try Self.migrator.migrate(pool)
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE agents (
                        agent_id TEXT PRIMARY KEY NOT NULL,
                        public_key TEXT NOT NULL,
                        key_id TEXT NOT NULL,
                        hostname TEXT NOT NULL,
                        machine_id TEXT NOT NULL,
                        enrolled_at INTEGER NOT NULL,
                        revoked_at INTEGER,
                        last_seen INTEGER,
                        last_batch_seq INTEGER NOT NULL DEFAULT 0,
                        last_header_hash BLOB,
                        event_count INTEGER NOT NULL DEFAULT 0
                    );
                    CREATE TABLE batches (
                        agent_id TEXT NOT NULL,
                        batch_seq INTEGER NOT NULL,
                        header BLOB NOT NULL,
                        signature BLOB NOT NULL,
                        body BLOB NOT NULL,
                        header_hash BLOB NOT NULL,
                        first_seq INTEGER NOT NULL,
                        event_count INTEGER NOT NULL,
                        received_at INTEGER NOT NULL,
                        chain TEXT NOT NULL,
                        PRIMARY KEY (agent_id, batch_seq)
                    ) WITHOUT ROWID;
                    CREATE TABLE events (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        agent_id TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        batch_seq INTEGER NOT NULL,
                        type TEXT NOT NULL,
                        time_ns INTEGER NOT NULL,
                        rule_id TEXT,
                        json TEXT NOT NULL,
                        UNIQUE (agent_id, seq)
                    );
                    CREATE INDEX events_by_type_time ON events (type, time_ns);
                    CREATE INDEX events_by_agent_time ON events (agent_id, time_ns);
                    CREATE INDEX events_by_rule ON events (rule_id) WHERE rule_id IS NOT NULL;
                    CREATE TABLE chain_anomalies (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        agent_id TEXT NOT NULL,
                        kind TEXT NOT NULL,
                        batch_seq INTEGER NOT NULL,
                        detail TEXT NOT NULL,
                        detected_at INTEGER NOT NULL
                    );
                    CREATE INDEX chain_anomalies_by_agent ON chain_anomalies (agent_id, id);
                    """
            )
        }
        // Seq accounting (SeqAccount): declared gaps versus silently missing events.
        m.registerMigration("v2-seq-account") { db in
            try db.execute(
                sql: """
                    ALTER TABLE agents ADD COLUMN last_event_seq INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE agents ADD COLUMN declared_through INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE agents ADD COLUMN gap_records INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE agents ADD COLUMN dropped_events INTEGER NOT NULL DEFAULT 0;
                    UPDATE agents SET last_event_seq = coalesce((SELECT max(seq) FROM events WHERE events.agent_id = agents.agent_id), 0);
                    """
            )
        }
        // The latest attack-drill selftest each agent reported (`SelftestSummary`).
        m.registerMigration("v3-selftest") { db in
            try db.execute(
                sql: """
                    ALTER TABLE agents ADD COLUMN selftest_at INTEGER;
                    ALTER TABLE agents ADD COLUMN selftest_drills INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE agents ADD COLUMN selftest_detected INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE agents ADD COLUMN selftest_missed INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE agents ADD COLUMN selftest_passed_at INTEGER;
                    """
            )
        }
        // Retention: deleting the oldest events by time needs a time index, and a batch whose
        // events are all gone loses its body but keeps its row (dedup and the chain need it).
        m.registerMigration("v4-retention") { db in
            try db.execute(
                sql: """
                    CREATE INDEX events_by_time ON events (time_ns);
                    ALTER TABLE batches ADD COLUMN pruned_at INTEGER;
                    """
            )
        }
        // Alerts' levels in a column of their own, for `level=` and `min_level=` queries; alerts
        // stored before get theirs from their JSON.
        m.registerMigration("v5-alert-level") { db in
            try db.execute(
                sql: """
                    ALTER TABLE events ADD COLUMN alert_level TEXT;
                    UPDATE events SET alert_level = lower(json_extract(json, '$.alert.level')) WHERE type = 'alert';
                    CREATE INDEX events_by_alert_level ON events (alert_level, id) WHERE alert_level IS NOT NULL;
                    """
            )
        }
        // What each agent last said about itself (`AgentStatusUpdate`): version, policy hash and
        // its periodic status report (spool backlog, shed and drop counters).
        m.registerMigration("v6-agent-status") { db in
            try db.execute(
                sql: """
                    ALTER TABLE agents ADD COLUMN agent_version TEXT;
                    ALTER TABLE agents ADD COLUMN agent_version_at INTEGER;
                    ALTER TABLE agents ADD COLUMN policy_hash TEXT;
                    ALTER TABLE agents ADD COLUMN policy_hash_at INTEGER;
                    ALTER TABLE agents ADD COLUMN status_at INTEGER;
                    ALTER TABLE agents ADD COLUMN status_spool_events INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE agents ADD COLUMN status_spool_bytes INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE agents ADD COLUMN status_spool_dropped INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE agents ADD COLUMN status_events_shed INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE agents ADD COLUMN status_queue_drops INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE agents ADD COLUMN status_kernel_drops INTEGER NOT NULL DEFAULT 0;
                    """
            )
        }
        // Issued enrollment tokens, hashed (SQLiteEventStore+EnrollmentTokens.swift).
        m.registerMigration("v7-enroll-tokens", migrate: enrollTokensMigration)
        // Key rotation (`rotateKey`): the current key's history in `agents`, retired keys with
        // the batches each signed in `agent_keys`.
        m.registerMigration("v8-key-rotation") { db in
            try db.execute(
                sql: """
                    ALTER TABLE agents ADD COLUMN key_rotated_at INTEGER;
                    ALTER TABLE agents ADD COLUMN key_first_batch_seq INTEGER NOT NULL DEFAULT 1;
                    ALTER TABLE agents ADD COLUMN key_statement TEXT;
                    CREATE TABLE agent_keys (
                        agent_id TEXT NOT NULL,
                        key_id TEXT NOT NULL,
                        position INTEGER NOT NULL,
                        public_key TEXT NOT NULL,
                        activated_at INTEGER NOT NULL,
                        retired_at INTEGER NOT NULL,
                        first_batch_seq INTEGER NOT NULL,
                        last_batch_seq INTEGER NOT NULL,
                        statement TEXT,
                        PRIMARY KEY (agent_id, key_id)
                    ) WITHOUT ROWID;
                    """
            )
        }
        // Agent-and-time queries find their rows through the (agent_id, seq) index and each
        // batch's event time bounds, instead of an (agent_id, time_ns) index that every ingested
        // event paid for (a quarter of the insert rate, measured). Batches stored before get
        // their bounds from their events.
        m.registerMigration("v9-batch-time-bounds") { db in
            try db.execute(
                sql: """
                    ALTER TABLE batches ADD COLUMN min_time_ns INTEGER;
                    ALTER TABLE batches ADD COLUMN max_time_ns INTEGER;
                    UPDATE batches SET (min_time_ns, max_time_ns) = (
                        SELECT min(time_ns), max(time_ns) FROM events WHERE events.agent_id = batches.agent_id
                            AND events.seq BETWEEN batches.first_seq AND batches.first_seq + batches.event_count - 1);
                    DROP INDEX events_by_agent_time;
                    CREATE INDEX batches_by_agent_time ON batches (agent_id, max_time_ns, min_time_ns, first_seq, event_count);
                    """
            )
        }
        return m
    }

    public func enroll(_ agent: AgentRecord) async throws -> EnrollOutcome {
        try await pool.write { db in
            if let row = try Row.fetchOne(
                db,
                sql: "SELECT public_key FROM agents WHERE agent_id = ?",
                arguments: [agent.agentId]
            ) {
                let existing: String = row["public_key"]
                return existing == agent.publicKey ? .alreadyEnrolled : .conflict
            }
            try db.execute(
                sql: """
                    INSERT INTO agents (agent_id, public_key, key_id, hostname, machine_id, enrolled_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    agent.agentId, agent.publicKey, agent.keyId, agent.hostname, agent.machineId,
                    agent.enrolledAt.nanosecondsSinceEpoch,
                ]
            )
            return .enrolled
        }
    }

    public func revoke(agentId: String, at time: Timestamp) async throws -> Timestamp? {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE agents SET revoked_at = COALESCE(revoked_at, ?) WHERE agent_id = ?",
                arguments: [time.nanosecondsSinceEpoch, agentId]
            )
            let at = try Int64.fetchOne(
                db,
                sql: "SELECT revoked_at FROM agents WHERE agent_id = ?",
                arguments: [agentId]
            )
            return at.map { Timestamp(nanosecondsSinceEpoch: $0) }
        }
    }

    public func agent(id: String) async throws -> AgentRecord? {
        try await pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM agents WHERE agent_id = ?", arguments: [id]) else {
                return nil
            }
            let revoked: Int64? = row["revoked_at"]
            return AgentRecord(
                agentId: row["agent_id"],
                publicKey: row["public_key"],
                keyId: row["key_id"],
                hostname: row["hostname"],
                machineId: row["machine_id"],
                enrolledAt: Timestamp(nanosecondsSinceEpoch: row["enrolled_at"]),
                revokedAt: revoked.map { Timestamp(nanosecondsSinceEpoch: $0) }
            )
        }
    }

    public func keys(agentId: String) async throws -> [AgentKeyRecord] {
        try await pool.read { db in try Self.keys(db, agentId: agentId) }
    }

    private static func keys(_ db: Database, agentId: String) throws -> [AgentKeyRecord] {
        guard
            let agent = try Row.fetchOne(
                db,
                sql:
                    "SELECT key_id, public_key, enrolled_at, key_rotated_at, key_first_batch_seq, key_statement FROM agents WHERE agent_id = ?",
                arguments: [agentId]
            )
        else { return [] }
        var keys = try Row.fetchAll(
            db,
            sql:
                "SELECT key_id, public_key, activated_at, retired_at, first_batch_seq, last_batch_seq, statement FROM agent_keys WHERE agent_id = ? ORDER BY position",
            arguments: [agentId]
        ).map { row in
            AgentKeyRecord(
                keyId: row["key_id"],
                publicKey: row["public_key"],
                activatedAt: Timestamp(nanosecondsSinceEpoch: row["activated_at"]),
                retiredAt: Timestamp(nanosecondsSinceEpoch: row["retired_at"]),
                firstBatchSeq: UInt64(max(row["first_batch_seq"] as Int64, 0)),
                lastBatchSeq: UInt64(max(row["last_batch_seq"] as Int64, 0)),
                rotation: KeyRotation.decoded(row["statement"])
            )
        }
        let rotatedAt: Int64? = agent["key_rotated_at"]
        keys.append(
            AgentKeyRecord(
                keyId: agent["key_id"],
                publicKey: agent["public_key"],
                activatedAt: Timestamp(nanosecondsSinceEpoch: rotatedAt ?? agent["enrolled_at"]),
                firstBatchSeq: UInt64(max(agent["key_first_batch_seq"] as Int64, 0)),
                rotation: KeyRotation.decoded(agent["key_statement"])
            )
        )
        return keys
    }

    public func rotateKey(_ statement: KeyRotation, at time: Timestamp) async throws -> RotationOutcome {
        let statementJSON = try statement.encodedJSON()
        return try await pool.write { db in
            let agentId = statement.agentId
            guard
                let agent = try Row.fetchOne(
                    db,
                    sql:
                        "SELECT key_id, public_key, enrolled_at, revoked_at, last_batch_seq, key_rotated_at, key_first_batch_seq, key_statement FROM agents WHERE agent_id = ?",
                    arguments: [agentId]
                )
            else { throw CollectorError(.unknownAgent, "agent \(agentId) is not enrolled") }
            let keys = try Self.keys(db, agentId: agentId)
            let current = keys[keys.count - 1]
            if let revoked = agent["revoked_at"] as Int64? {
                throw CollectorError(
                    .revokedAgent,
                    "agent \(agentId) was revoked at \(Timestamp(nanosecondsSinceEpoch: revoked).iso8601); it cannot rotate its key"
                )
            }
            switch KeyRotationRule.judge(statement, keys: keys) {
            case .already: return .alreadyRotated(current)
            case .refuse(let error): throw error
            case .rotate: break
            }
            let lastBatch: Int64 = agent["last_batch_seq"]
            try db.execute(
                sql: """
                    INSERT INTO agent_keys (agent_id, key_id, position, public_key, activated_at, retired_at, first_batch_seq, last_batch_seq, statement)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    agentId, current.keyId, keys.count - 1, current.publicKey,
                    current.activatedAt.nanosecondsSinceEpoch,
                    time.nanosecondsSinceEpoch, Int64(clamping: current.firstBatchSeq), lastBatch,
                    agent["key_statement"] as String?,
                ]
            )
            try db.execute(
                sql: """
                    UPDATE agents SET public_key = ?, key_id = ?, key_rotated_at = ?, key_first_batch_seq = ?, key_statement = ?
                    WHERE agent_id = ?
                    """,
                arguments: [
                    statement.newPublicKey, statement.newKeyId, time.nanosecondsSinceEpoch, lastBatch + 1,
                    statementJSON,
                    agentId,
                ]
            )
            return .rotated(
                AgentKeyRecord(
                    keyId: statement.newKeyId,
                    publicKey: statement.newPublicKey,
                    activatedAt: time,
                    firstBatchSeq: UInt64(lastBatch + 1),
                    rotation: statement
                )
            )
        }
    }

    /// Event rows per `INSERT` (8 parameters each, well under SQLite's 32,766).
    static let insertChunk = 64

    /// `INSERT OR IGNORE` of `rows` event rows: a row whose `(agent_id, seq)` is stored already
    /// is left out, and `changes()` counts the rows that went in.
    static func insertEventsSQL(rows: Int) -> String {
        "INSERT OR IGNORE INTO events (agent_id, seq, batch_seq, type, time_ns, rule_id, alert_level, json) VALUES "
            + repeatElement("(?, ?, ?, ?, ?, ?, ?, ?)", count: rows).joined(separator: ", ")
    }

    public func ingest(
        batch: SealedBatch,
        events: [Event],
        receivedAt: Timestamp,
        predecessorInFlight: Bool
    ) async throws -> IngestOutcome {
        // Encode outside the write transaction: the writer is the bottleneck.
        let rows: [(Event, String, String?, String?)] = events.map { event in
            let json = event.sortedKeysJSON
            var ruleId: String? = nil
            var level: String? = nil
            if case .alert(let alert) = event.payload {
                ruleId = alert.ruleId
                level = alert.level.lowercased()
            }
            return (event, json, ruleId, level)
        }
        let header = batch.header
        let headerHash = Data(batch.headerHash)
        let timeBounds = BatchTimeBounds.of(events)
        let selftest = SelftestSummary.latest(in: events)
        let status = AgentStatusUpdate.latest(in: events)
        return try await pool.write { db in
            let agentId = header.agentId
            if let existing = try Row.fetchOne(
                db,
                sql: "SELECT header_hash FROM batches WHERE agent_id = ? AND batch_seq = ?",
                arguments: [agentId, header.batchSeq]
            ) {
                let stored: Data = existing["header_hash"]
                if stored == headerHash { return .duplicate }
                let detail =
                    "a different batch \(header.batchSeq) was stored before (fork or replay with altered content)"
                try Self.recordAnomaly(
                    db,
                    agentId: agentId,
                    kind: "fork",
                    batchSeq: header.batchSeq,
                    detail: detail,
                    at: receivedAt
                )
                return .fork(detail: detail)
            }
            guard
                let agentRow = try Row.fetchOne(
                    db,
                    sql:
                        "SELECT last_batch_seq, last_header_hash, last_event_seq, declared_through, gap_records, dropped_events, revoked_at, key_id FROM agents WHERE agent_id = ?",
                    arguments: [agentId]
                )
            else {
                throw CollectorError(.unknownAgent, "agent \(agentId) is not enrolled")
            }
            // Checked here, in the transaction, not only by the collector (whose key cache may
            // predate a revocation made through another collector).
            if (agentRow["revoked_at"] as Int64?) != nil {
                throw CollectorError(.revokedAgent, "agent \(agentId) was revoked")
            }
            // Likewise the key: rotated through another collector since this one cached it.
            let currentKey: String = agentRow["key_id"]
            guard header.keyId == currentKey else {
                throw CollectorError(
                    .keyRetired,
                    "agent \(agentId) signed with key \(header.keyId), but its current key is \(currentKey)"
                )
            }
            let lastSeq = UInt64(agentRow["last_batch_seq"] as Int64)
            let lastHash: Data? = agentRow["last_header_hash"]
            if predecessorInFlight, header.batchSeq > lastSeq + 1 { return .predecessorPending }

            let (verdict, detail) = ChainVerdict.judge(header, lastSeq: lastSeq, lastHash: lastHash)
            let advances = header.batchSeq > lastSeq
            if verdict != .ok, let detail {
                try Self.recordAnomaly(
                    db,
                    agentId: agentId,
                    kind: verdict.rawValue,
                    batchSeq: header.batchSeq,
                    detail: detail,
                    at: receivedAt
                )
            }
            var account = SeqAccount(
                lastEventSeq: UInt64(agentRow["last_event_seq"] as Int64),
                declaredThrough: UInt64(agentRow["declared_through"] as Int64),
                gapRecords: UInt64(agentRow["gap_records"] as Int64),
                droppedEvents: UInt64(agentRow["dropped_events"] as Int64)
            )
            if let missing = account.admit(
                firstSeq: header.firstSeq,
                lastSeq: header.lastSeq,
                events: events,
                inOrder: verdict == .ok
            ) {
                try Self.recordAnomaly(
                    db,
                    agentId: agentId,
                    kind: "seq_gap",
                    batchSeq: header.batchSeq,
                    detail: missing,
                    at: receivedAt
                )
            }
            try db.execute(
                sql:
                    "UPDATE agents SET last_event_seq = ?, declared_through = ?, gap_records = ?, dropped_events = ? WHERE agent_id = ?",
                arguments: [
                    Int64(clamping: account.lastEventSeq), Int64(clamping: account.declaredThrough),
                    Int64(clamping: account.gapRecords), Int64(clamping: account.droppedEvents), agentId,
                ]
            )

            try db.execute(
                sql: """
                    INSERT INTO batches (agent_id, batch_seq, header, signature, body, header_hash, first_seq, event_count, received_at, chain, min_time_ns, max_time_ns)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    agentId, header.batchSeq, Data(batch.headerBytes), Data(batch.signature), Data(batch.body),
                    headerHash,
                    header.firstSeq, header.eventCount, receivedAt.nanosecondsSinceEpoch, verdict.rawValue,
                    timeBounds?.lowerBound, timeBounds?.upperBound,
                ]
            )
            // Up to `insertChunk` rows per statement: a batch of 2,000 events takes 32 statements
            // instead of 2,000.
            var inserted: Int64 = 0
            var fullChunk: Statement? = nil
            let agentValue = agentId.databaseValue
            let batchSeq = header.batchSeq.databaseValue
            var start = 0
            while start < rows.count {
                let count = min(Self.insertChunk, rows.count - start)
                let insert: Statement
                if count == Self.insertChunk, let cached = fullChunk {
                    insert = cached
                } else {
                    insert = try db.makeStatement(sql: Self.insertEventsSQL(rows: count))
                    if count == Self.insertChunk { fullChunk = insert }
                }
                var values: [DatabaseValue] = []
                values.reserveCapacity(count * 8)
                for (event, json, ruleId, level) in rows[start..<start + count] {
                    values.append(agentValue)
                    values.append(event.seq.databaseValue)
                    values.append(batchSeq)
                    values.append(event.type.rawValue.databaseValue)
                    values.append(event.time.nanosecondsSinceEpoch.databaseValue)
                    values.append(ruleId.databaseValue)
                    values.append(level.databaseValue)
                    values.append(json.databaseValue)
                }
                try insert.executeBinding(values)
                inserted += Int64(db.changesCount)
                start += count
            }
            if inserted < Int64(rows.count) {
                let dup = Int64(rows.count) - inserted
                try Self.recordAnomaly(
                    db,
                    agentId: agentId,
                    kind: "duplicate_seq",
                    batchSeq: header.batchSeq,
                    detail: "\(dup) event(s) reuse seqs already stored from another batch",
                    at: receivedAt
                )
            }
            if advances {
                try db.execute(
                    sql: """
                        UPDATE agents SET last_batch_seq = ?, last_header_hash = ?, last_seen = ?, event_count = event_count + ?
                        WHERE agent_id = ?
                        """,
                    arguments: [header.batchSeq, headerHash, receivedAt.nanosecondsSinceEpoch, inserted, agentId]
                )
            } else {
                try db.execute(
                    sql: "UPDATE agents SET last_seen = ?, event_count = event_count + ? WHERE agent_id = ?",
                    arguments: [receivedAt.nanosecondsSinceEpoch, inserted, agentId]
                )
            }
            if let (last, passedAt) = selftest {
                try Self.recordSelftest(db, agentId: agentId, last: last, passedAt: passedAt)
            }
            if let status {
                try Self.recordStatus(db, agentId: agentId, status)
            }
            return .accepted(verdict, detail: detail)
        }
    }

    /// Keeps the newest selftest by event time, so a batch that arrives late does not roll it back.
    private static func recordSelftest(
        _ db: Database,
        agentId: String,
        last: SelftestSummary,
        passedAt: Timestamp?
    ) throws {
        let time = last.time.nanosecondsSinceEpoch
        try db.execute(
            sql: """
                UPDATE agents SET selftest_at = ?, selftest_drills = ?, selftest_detected = ?, selftest_missed = ?
                WHERE agent_id = ? AND (selftest_at IS NULL OR selftest_at < ?)
                """,
            arguments: [
                time, Int64(clamping: last.drills), Int64(clamping: last.detected), Int64(clamping: last.missed),
                agentId, time,
            ]
        )
        if let passed = passedAt?.nanosecondsSinceEpoch {
            try db.execute(
                sql: """
                    UPDATE agents SET selftest_passed_at = ?
                    WHERE agent_id = ? AND (selftest_passed_at IS NULL OR selftest_passed_at < ?)
                    """,
                arguments: [passed, agentId, passed]
            )
        }
    }

    /// Keeps the newest version, policy hash and status report by event time, each on its own,
    /// so a batch that arrives late does not roll them back.
    private static func recordStatus(_ db: Database, agentId: String, _ update: AgentStatusUpdate) throws {
        if let version = update.version {
            let time = update.versionAt.nanosecondsSinceEpoch
            try db.execute(
                sql: """
                    UPDATE agents SET agent_version = ?, agent_version_at = ?
                    WHERE agent_id = ? AND (agent_version_at IS NULL OR agent_version_at <= ?)
                    """,
                arguments: [version, time, agentId, time]
            )
        }
        if let hash = update.policyHash {
            let time = update.policyHashAt.nanosecondsSinceEpoch
            try db.execute(
                sql: """
                    UPDATE agents SET policy_hash = ?, policy_hash_at = ?
                    WHERE agent_id = ? AND (policy_hash_at IS NULL OR policy_hash_at <= ?)
                    """,
                arguments: [hash, time, agentId, time]
            )
        }
        if let report = update.status {
            let time = report.time.nanosecondsSinceEpoch
            try db.execute(
                sql: """
                    UPDATE agents SET status_at = ?, status_spool_events = ?, status_spool_bytes = ?,
                        status_spool_dropped = ?, status_events_shed = ?, status_queue_drops = ?, status_kernel_drops = ?
                    WHERE agent_id = ? AND (status_at IS NULL OR status_at <= ?)
                    """,
                arguments: [
                    time, Int64(clamping: report.spoolEvents), Int64(clamping: report.spoolBytes),
                    Int64(clamping: report.spoolDropped), Int64(clamping: report.eventsShed),
                    Int64(clamping: report.queueDrops), Int64(clamping: report.kernelDrops), agentId, time,
                ]
            )
        }
    }

    private static func recordAnomaly(
        _ db: Database,
        agentId: String,
        kind: String,
        batchSeq: UInt64,
        detail: String,
        at time: Timestamp
    ) throws {
        try db.execute(
            sql: "INSERT INTO chain_anomalies (agent_id, kind, batch_seq, detail, detected_at) VALUES (?, ?, ?, ?, ?)",
            arguments: [agentId, kind, batchSeq, detail, time.nanosecondsSinceEpoch]
        )
        // Its alert, in the same transaction, keyed by the negated anomaly id (see `ChainAlert`).
        guard let alert = ChainAlert.row(kind: kind, batchSeq: batchSeq, detail: detail, at: time) else { return }
        try db.execute(
            sql: """
                INSERT INTO events (agent_id, seq, batch_seq, type, time_ns, rule_id, alert_level, json)
                VALUES (?, ?, ?, 'alert', ?, ?, ?, ?)
                """,
            arguments: [
                agentId, -db.lastInsertedRowID, batchSeq, time.nanosecondsSinceEpoch, alert.ruleId, alert.level,
                alert.json,
            ]
        )
    }

    public func events(_ query: EventQuery) async throws -> [StoredEvent] {
        var clauses: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []
        if let agent = query.agentId {
            clauses.append("agent_id = ?")
            args.append(agent)
        }
        if !query.types.isEmpty {
            clauses.append("type IN (\(query.types.map { _ in "?" }.joined(separator: ",")))")
            args.append(contentsOf: query.types.map(\.rawValue))
        }
        if let rule = query.ruleId {
            clauses.append("rule_id = ?")
            args.append(rule)
        }
        if let levels = query.levels {
            guard !levels.isEmpty else { return [] }
            clauses.append("alert_level IN (\(levels.map { _ in "?" }.joined(separator: ",")))")
            args.append(contentsOf: levels.map(\.rawValue))
        }
        for match in query.fields {
            // Paths come from the fixed list of fields and, like the value, are bound.
            let paths = match.field.paths.map { "$." + $0.joined(separator: ".") }
            switch match.field.kind {
            case .text, .integer:
                let lookups = paths.map { _ in "json_extract(events.json, ?)" }
                clauses.append(
                    (lookups.count == 1 ? lookups[0] : "coalesce(\(lookups.joined(separator: ", ")))") + " = ?"
                )
                args.append(contentsOf: paths)
            case .tag:
                clauses.append(
                    "EXISTS (SELECT 1 FROM json_each(events.json, ?) AS t WHERE t.type = 'text' AND t.value = ?)"
                )
                args.append(paths[0])
            }
            switch match.value {
            case .text(let text): args.append(text)
            case .integer(let n): args.append(n)
            }
        }
        // One agent in a time range: its rows come through the (agent_id, seq) index, in the seq
        // range of the batches that hold events of that time (`BatchTimeBounds`); the unary `+`
        // keeps the planner off the time indexes for this case.
        let seqRange = query.agentId != nil && (query.since != nil || query.until != nil)
        let time = seqRange ? "+time_ns" : "time_ns"
        var batchArgs: [(any DatabaseValueConvertible)?] = [query.agentId]
        if let since = query.since {
            clauses.append("\(time) >= ?")
            args.append(since.nanosecondsSinceEpoch)
            batchArgs.append(since.nanosecondsSinceEpoch)
        }
        if let until = query.until {
            clauses.append("\(time) < ?")
            args.append(until.nanosecondsSinceEpoch)
            batchArgs.append(until.nanosecondsSinceEpoch)
        }
        if let after = query.after {
            clauses.append("id > ?")
            args.append(after)
        }
        if let before = query.before {
            clauses.append("id < ?")
            args.append(before)
        }
        let direction = query.order == .desc ? "DESC" : "ASC"
        let seqBoundsSQL = Self.seqBoundsSQL(since: query.since != nil, until: query.until != nil)
        let fixedClauses = clauses
        let fixedArguments = StatementArguments(args)
        let batchArguments = StatementArguments(batchArgs)
        let limit = query.limit
        let rows = try await pool.read { db in
            var clauses = fixedClauses
            var arguments = fixedArguments
            if seqRange {
                let bounds = try Row.fetchOne(db, sql: seqBoundsSQL, arguments: batchArguments)
                if let low = bounds?[0] as Int64?, let high = bounds?[1] as Int64? {
                    clauses.append("(seq < 0 OR seq BETWEEN ? AND ?)")
                    arguments += [low, high]
                } else {
                    clauses.append("seq < 0")
                }
            }
            arguments += [limit]
            let whereSQL = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
            let sql = "SELECT id, agent_id, batch_seq, json FROM events \(whereSQL) ORDER BY id \(direction) LIMIT ?"
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map {
                row -> (Int64, String, Int64, String) in
                (row["id"], row["agent_id"], row["batch_seq"], row["json"])
            }
        }
        let decoder = JSONDecoder()
        return try rows.map { id, agentId, batchSeq, json in
            StoredEvent(
                id: id,
                agentId: agentId,
                batchSeq: UInt64(batchSeq),
                event: try decoder.decode(Event.self, from: Data(json.utf8))
            )
        }
    }

    /// The seq range of one agent's batches that hold events in a time range (`BatchTimeBounds`):
    /// arguments the agent, then the range's start and end where given. Answered from the
    /// `batches_by_agent_time` index alone: the columns sit after each batch's body in the
    /// table, and reading them there walks the body's overflow pages (66 ms for 5,000 batches
    /// of 40 KB, 0.3 ms through the index).
    static func seqBoundsSQL(since: Bool, until: Bool) -> String {
        var clauses = ["agent_id = ?"]
        if since { clauses.append("max_time_ns >= ?") }
        if until { clauses.append("min_time_ns < ?") }
        return "SELECT min(first_seq), max(first_seq + event_count - 1) FROM batches WHERE "
            + clauses.joined(separator: " AND ")
    }

    /// SQLite has one writer at a time, so ids become visible in order: the highest id is final.
    public func commitProbe() async throws -> CommitProbe {
        let maxId = try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT coalesce(max(id), 0) FROM events") ?? 0
        }
        return CommitProbe(maxId: maxId, token: 0, oldestActive: 0)
    }

    public func agents() async throws -> [AgentSummary] {
        try await pool.read { db in
            let anomalyRows = try Row.fetchAll(
                db,
                sql: "SELECT agent_id, kind, batch_seq, detail, detected_at FROM chain_anomalies ORDER BY id"
            )
            var anomalies: [String: [ChainAnomaly]] = [:]
            for row in anomalyRows {
                let anomaly = ChainAnomaly(
                    kind: row["kind"],
                    batchSeq: UInt64(row["batch_seq"] as Int64),
                    detail: row["detail"],
                    detectedAt: Timestamp(nanosecondsSinceEpoch: row["detected_at"])
                )
                anomalies[row["agent_id"], default: []].append(anomaly)
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM agents ORDER BY hostname, agent_id").map { row in
                let id: String = row["agent_id"]
                let lastSeen: Int64? = row["last_seen"]
                let revoked: Int64? = row["revoked_at"]
                let selftestAt: Int64? = row["selftest_at"]
                let selftestPassedAt: Int64? = row["selftest_passed_at"]
                let list = anomalies[id] ?? []
                return AgentSummary(
                    agentId: id,
                    hostname: row["hostname"],
                    keyId: row["key_id"],
                    keyRotatedAt: (row["key_rotated_at"] as Int64?).map { Timestamp(nanosecondsSinceEpoch: $0) },
                    enrolledAt: Timestamp(nanosecondsSinceEpoch: row["enrolled_at"]),
                    revoked: revoked != nil,
                    lastSeen: lastSeen.map { Timestamp(nanosecondsSinceEpoch: $0) },
                    lastBatchSeq: UInt64(row["last_batch_seq"] as Int64),
                    events: UInt64(row["event_count"] as Int64),
                    chainStatus: list.last?.kind ?? "whole",
                    anomalies: list,
                    declaredGaps: UInt64(row["gap_records"] as Int64),
                    droppedEvents: UInt64(row["dropped_events"] as Int64),
                    lastSelftest: selftestAt.map { at in
                        SelftestSummary(
                            time: Timestamp(nanosecondsSinceEpoch: at),
                            drills: UInt64(max(row["selftest_drills"] as Int64, 0)),
                            detected: UInt64(max(row["selftest_detected"] as Int64, 0)),
                            missed: UInt64(max(row["selftest_missed"] as Int64, 0))
                        )
                    },
                    selftestPassedAt: selftestPassedAt.map { Timestamp(nanosecondsSinceEpoch: $0) },
                    version: row["agent_version"],
                    policyHash: row["policy_hash"],
                    lastStatus: (row["status_at"] as Int64?).map { at in
                        func count(_ column: String) -> UInt64 { UInt64(max(row[column] as Int64? ?? 0, 0)) }
                        return AgentStatusReport(
                            time: Timestamp(nanosecondsSinceEpoch: at),
                            spoolEvents: count("status_spool_events"),
                            spoolBytes: count("status_spool_bytes"),
                            spoolDropped: count("status_spool_dropped"),
                            eventsShed: count("status_events_shed"),
                            queueDrops: count("status_queue_drops"),
                            kernelDrops: count("status_kernel_drops")
                        )
                    }
                )
            }
        }
    }

    public func batches(agentId: String, afterBatchSeq: UInt64, limit: Int) async throws -> [StoredBatch] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT batch_seq, header, signature, body, pruned_at FROM batches WHERE agent_id = ? AND batch_seq > ? ORDER BY batch_seq LIMIT ?",
                arguments: [agentId, afterBatchSeq, limit]
            ).map { row in
                StoredBatch(
                    batchSeq: UInt64(row["batch_seq"] as Int64),
                    headerBytes: Array(row["header"] as Data),
                    signature: Array(row["signature"] as Data),
                    body: Array(row["body"] as Data),
                    pruned: (row["pruned_at"] as Int64?) != nil
                )
            }
        }
    }

    public func close() async throws {
        try pool.close()
    }

    /// Runs SQL as it is: tests build databases as older collectors left them.
    func executeRaw(_ sql: String) async throws {
        try await pool.write { try $0.execute(sql: sql) }
    }

    // MARK: retention

    public func deleteOldestEvents(before cutoff: Timestamp?, limit: Int) async throws -> Int {
        guard limit > 0 else { return 0 }
        let prunedAt = Timestamp.now().nanosecondsSinceEpoch
        return try await pool.write { db in
            let rows =
                if let cutoff {
                    try Row.fetchAll(
                        db,
                        sql:
                            "SELECT id, agent_id, batch_seq, seq FROM events WHERE time_ns < ? ORDER BY time_ns LIMIT ?",
                        arguments: [cutoff.nanosecondsSinceEpoch, limit]
                    )
                } else {
                    try Row.fetchAll(
                        db,
                        sql: "SELECT id, agent_id, batch_seq, seq FROM events ORDER BY time_ns LIMIT ?",
                        arguments: [limit]
                    )
                }
            guard !rows.isEmpty else { return 0 }
            let delete = try db.makeStatement(sql: "DELETE FROM events WHERE id = ?")
            var touched = Set<BatchKey>()
            for row in rows {
                try delete.execute(arguments: [row["id"] as Int64])
                // A collector alert (negative seq, `ChainAlert`) is no part of its batch's body.
                guard (row["seq"] as Int64) > 0 else { continue }
                touched.insert(BatchKey(agentId: row["agent_id"], batchSeq: row["batch_seq"]))
            }
            // A batch's events are those of its seq range that name it (the unique (agent_id, seq)
            // index finds them).
            let prune = try db.makeStatement(
                sql: """
                    UPDATE batches SET body = X'', pruned_at = ?
                    WHERE agent_id = ? AND batch_seq = ? AND pruned_at IS NULL AND NOT EXISTS (
                        SELECT 1 FROM events WHERE events.agent_id = batches.agent_id
                            AND events.seq BETWEEN batches.first_seq AND batches.first_seq + batches.event_count - 1
                            AND events.batch_seq = batches.batch_seq)
                    """
            )
            for key in touched {
                try prune.execute(arguments: [prunedAt, key.agentId, key.batchSeq])
            }
            return rows.count
        }
    }

    public func storeUsage() async throws -> StoreUsage {
        try await pool.read { db in
            let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            let free = try Int64.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
            let pageSize = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
            let events = try Int64.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0
            return StoreUsage(bytes: (pages - free) * pageSize, events: events, reflectsDeletesAtOnce: true)
        }
    }

    /// Runs `PRAGMA incremental_vacuum` when the file was created in incremental auto-vacuum mode;
    /// an older file (auto_vacuum=none) reuses freed pages instead of returning them.
    public func reclaimSpace(pages: Int) async throws {
        guard pages > 0 else { return }
        try await pool.writeWithoutTransaction { db in
            guard try Int.fetchOne(db, sql: "PRAGMA auto_vacuum") == 2 else { return }
            try db.execute(sql: "PRAGMA incremental_vacuum(\(pages))")
        }
    }

    /// One collector owns an SQLite file: there is nobody to take turns with.
    public func withRetentionLock(_ body: () async throws -> Void) async throws -> Bool {
        try await body()
        return true
    }

    private struct BatchKey: Hashable {
        var agentId: String
        var batchSeq: Int64
    }
}
