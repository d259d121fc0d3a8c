import Foundation
import Logging
import PostgresNIO
import VigilCore
import VigilWire

/// Where a PostgreSQL store lives: parsed from `--store postgres://USER:PASSWORD@HOST:PORT/DB`.
///
/// Accepted forms: `postgres://` and `postgresql://` URLs (user, password and database
/// percent-decoded; port defaults to 5432; `?host=/run/postgresql` selects a Unix socket directory),
/// with the options `sslmode=disable` (the only mode this build supports) and `pool_size=N`
/// (connections per collector, 1-100, default 10).
public struct PostgresLocation: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// A Unix socket path, when the URL names a socket directory with `?host=`.
    public var unixSocketPath: String?
    public var username: String
    public var password: String?
    public var database: String
    public var poolSize: Int

    public init(
        host: String = "127.0.0.1",
        port: Int = 5432,
        unixSocketPath: String? = nil,
        username: String,
        password: String?,
        database: String,
        poolSize: Int = 10
    ) {
        self.host = host
        self.port = port
        self.unixSocketPath = unixSocketPath
        self.username = username
        self.password = password
        self.database = database
        self.poolSize = poolSize
    }

    /// Parses a `postgres://` or `postgresql://` URL. Errors name what is wrong and show the form.
    public init(url text: String) throws(CollectorError) {
        let example = "e.g. postgres://vigil:PASSWORD@db.example:5432/vigil"
        func bad(_ what: String) -> CollectorError {
            CollectorError(.badRequest, "--store: \(what) (\(example))")
        }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw bad("'\(Self.redacting(text))' is not a URL")
        }
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw bad("unknown scheme '\(scheme)'")
        }
        var unixSocketDirectory: String? = nil
        var poolSize = 10
        for item in components.queryItems ?? [] {
            let value = item.value ?? ""
            switch item.name {
            case "sslmode":
                guard value == "disable" else {
                    throw bad(
                        "sslmode=\(value) is not supported by this build; use sslmode=disable on a trusted network or a local socket"
                    )
                }
            case "pool_size":
                guard let n = Int(value), (1...100).contains(n) else {
                    throw bad("pool_size must be 1-100, got '\(value)'")
                }
                poolSize = n
            case "host":
                guard value.hasPrefix("/") else { throw bad("host= must be a socket directory, an absolute path") }
                unixSocketDirectory = value
            default:
                throw bad("unknown option '\(item.name)' (known: sslmode, pool_size, host)")
            }
        }
        let host = components.host ?? ""
        if host.isEmpty && unixSocketDirectory == nil { throw bad("no host") }
        guard let user = components.user, !user.isEmpty else { throw bad("no user name") }
        var path = components.path
        if path.hasPrefix("/") { path.removeFirst() }
        guard !path.isEmpty, !path.contains("/") else { throw bad("no database name after the host") }
        if let port = components.port, !(1...65535).contains(port) { throw bad("port \(port) is out of range") }
        let port = components.port ?? 5432
        self.init(
            host: host.isEmpty ? "localhost" : host,
            port: port,
            unixSocketPath: unixSocketDirectory.map { "\($0)/.s.PGSQL.\(port)" },
            username: user,
            password: components.password,
            database: path,
            poolSize: poolSize
        )
    }

    /// The URL with the password hidden: safe to log.
    public var description: String {
        let auth = password == nil ? username : "\(username):***"
        let socket = unixSocketPath.map { "?host=\(($0 as NSString).deletingLastPathComponent)" } ?? ""
        return "postgres://\(auth)@\(host):\(port)/\(database)\(socket)"
    }

    private static func redacting(_ text: String) -> String {
        // Hide anything between "://user:" and "@" in a message.
        guard let scheme = text.range(of: "://"),
            let at = text.range(of: "@", range: scheme.upperBound..<text.endIndex),
            let colon = text.range(of: ":", range: scheme.upperBound..<at.lowerBound)
        else { return text }
        return text.replacingCharacters(in: colon.upperBound..<at.lowerBound, with: "***")
    }

    var clientConfiguration: PostgresClient.Configuration {
        var config: PostgresClient.Configuration
        if let socket = unixSocketPath {
            config = .init(unixSocketPath: socket, username: username, password: password, database: database)
        } else {
            config = .init(
                host: host,
                port: port,
                username: username,
                password: password,
                database: database,
                tls: .disable
            )
        }
        config.options.maximumConnections = poolSize
        config.options.connectTimeout = .seconds(10)
        return config
    }

    var connectionConfiguration: PostgresConnection.Configuration {
        var config: PostgresConnection.Configuration
        if let socket = unixSocketPath {
            config = .init(unixSocketPath: socket, username: username, password: password, database: database)
        } else {
            config = .init(
                host: host,
                port: port,
                username: username,
                password: password,
                database: database,
                tls: .disable
            )
        }
        config.options.connectTimeout = .seconds(10)
        return config
    }
}

/// The scale-out store: PostgreSQL through postgres-nio.
///
/// Any number of collectors may share one database. Dedup and chain state live in it: `ingest`
/// runs in one transaction that first locks the agent's row (`SELECT … FOR UPDATE`), so two
/// collectors handed batches of the same agent take turns on the chain check, while different
/// agents ingest in parallel. `(agent_id, batch_seq)` and `(agent_id, seq)` are unique keys as a
/// second line. Migrations are versioned in `schema_migrations` and applied at start under an
/// advisory lock, so collectors starting together do not race.
public final class PostgresEventStore: EventStore {
    public let location: PostgresLocation
    let client: PostgresClient
    let logger: Logger

    private init(location: PostgresLocation, client: PostgresClient, logger: Logger) {
        self.location = location
        self.client = client
        self.logger = logger
    }

    /// Connects, applies pending migrations, and runs `body` with the store. The connection pool
    /// runs for the duration of `body` and is shut down when it returns or throws.
    ///
    /// Throws `CollectorError(.storeFailure)` with the reason when the database cannot be reached
    /// or refuses the login, before `body` runs.
    public static func withStore<Result>(
        at location: PostgresLocation,
        logger: Logger,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresEventStore) async throws -> Result
    ) async throws -> Result {
        try await migrate(location, logger: logger)
        let client = PostgresClient(configuration: location.clientConfiguration, backgroundLogger: logger)
        let store = PostgresEventStore(location: location, client: client, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self, returning: Result.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            return try await body(store)
        }
    }

    // MARK: migrations

    /// Versioned schema changes, applied in order, each once. Append; never edit a shipped one.
    static let migrations: [(version: Int, statements: [String])] = [
        (
            1,
            [
                """
                CREATE TABLE agents (
                    agent_id TEXT PRIMARY KEY,
                    public_key TEXT NOT NULL,
                    key_id TEXT NOT NULL,
                    hostname TEXT NOT NULL,
                    machine_id TEXT NOT NULL,
                    enrolled_at BIGINT NOT NULL,
                    revoked_at BIGINT,
                    last_seen BIGINT,
                    last_batch_seq BIGINT NOT NULL DEFAULT 0,
                    last_header_hash BYTEA,
                    event_count BIGINT NOT NULL DEFAULT 0
                )
                """,
                """
                CREATE TABLE batches (
                    agent_id TEXT NOT NULL REFERENCES agents (agent_id),
                    batch_seq BIGINT NOT NULL,
                    header BYTEA NOT NULL,
                    signature BYTEA NOT NULL,
                    body BYTEA NOT NULL,
                    header_hash BYTEA NOT NULL,
                    first_seq BIGINT NOT NULL,
                    event_count INTEGER NOT NULL,
                    received_at BIGINT NOT NULL,
                    chain TEXT NOT NULL,
                    PRIMARY KEY (agent_id, batch_seq)
                )
                """,
                """
                CREATE TABLE events (
                    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    agent_id TEXT NOT NULL,
                    seq BIGINT NOT NULL,
                    batch_seq BIGINT NOT NULL,
                    type TEXT NOT NULL,
                    time_ns BIGINT NOT NULL,
                    rule_id TEXT,
                    json TEXT NOT NULL,
                    UNIQUE (agent_id, seq)
                )
                """,
                "CREATE INDEX events_by_type_time ON events (type, time_ns)",
                "CREATE INDEX events_by_agent_time ON events (agent_id, time_ns)",
                "CREATE INDEX events_by_rule ON events (rule_id) WHERE rule_id IS NOT NULL",
                """
                CREATE TABLE chain_anomalies (
                    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    agent_id TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    batch_seq BIGINT NOT NULL,
                    detail TEXT NOT NULL,
                    detected_at BIGINT NOT NULL
                )
                """,
                "CREATE INDEX chain_anomalies_by_agent ON chain_anomalies (agent_id, id)",
            ]
        ),
        // Seq accounting (SeqAccount): declared gaps versus silently missing events.
        (
            2,
            [
                """
                ALTER TABLE agents
                    ADD COLUMN last_event_seq BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN declared_through BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN gap_records BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN dropped_events BIGINT NOT NULL DEFAULT 0
                """,
                """
                UPDATE agents SET last_event_seq = coalesce((SELECT max(seq) FROM events WHERE events.agent_id = agents.agent_id), 0)
                """,
            ]
        ),
        // The latest attack-drill selftest each agent reported (`SelftestSummary`).
        (
            3,
            [
                """
                ALTER TABLE agents
                    ADD COLUMN selftest_at BIGINT,
                    ADD COLUMN selftest_drills BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN selftest_detected BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN selftest_missed BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN selftest_passed_at BIGINT
                """
            ]
        ),
        // Retention: deleting the oldest events by time needs a time index, and a batch whose
        // events are all gone loses its body but keeps its row (dedup and the chain need it).
        // The index is built in the migration's transaction: on a large events table, ingest
        // waits for it once.
        (
            4,
            [
                "CREATE INDEX events_by_time ON events (time_ns)",
                "ALTER TABLE batches ADD COLUMN pruned_at BIGINT",
            ]
        ),
        // Alerts' levels in a column of their own, for `level=` and `min_level=` queries; alerts
        // stored before get theirs from their JSON (one pass over the alerts, in the migration's
        // transaction).
        (
            5,
            [
                "ALTER TABLE events ADD COLUMN alert_level TEXT",
                "UPDATE events SET alert_level = lower(\(jsonbOfEvent) #>> '{alert,level}') WHERE type = 'alert'",
                "CREATE INDEX events_by_alert_level ON events (alert_level, id) WHERE alert_level IS NOT NULL",
            ]
        ),
        // What each agent last said about itself (`AgentStatusUpdate`): version, policy hash and
        // its periodic status report (spool backlog, shed and drop counters).
        (
            6,
            [
                """
                ALTER TABLE agents
                    ADD COLUMN agent_version TEXT,
                    ADD COLUMN agent_version_at BIGINT,
                    ADD COLUMN policy_hash TEXT,
                    ADD COLUMN policy_hash_at BIGINT,
                    ADD COLUMN status_at BIGINT,
                    ADD COLUMN status_spool_events BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN status_spool_bytes BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN status_spool_dropped BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN status_events_shed BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN status_queue_drops BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN status_kernel_drops BIGINT NOT NULL DEFAULT 0
                """
            ]
        ),
        // Issued enrollment tokens, hashed (PostgresEventStore+EnrollmentTokens.swift).
        (7, enrollTokensMigration),
        // v8-key-rotation (`rotateKey`): the current key's history in `agents`, retired keys with
        // the batches each signed in `agent_keys`.
        (
            8,
            [
                """
                ALTER TABLE agents
                    ADD COLUMN key_rotated_at BIGINT,
                    ADD COLUMN key_first_batch_seq BIGINT NOT NULL DEFAULT 1,
                    ADD COLUMN key_statement TEXT
                """,
                """
                CREATE TABLE agent_keys (
                    agent_id TEXT NOT NULL REFERENCES agents (agent_id),
                    key_id TEXT NOT NULL,
                    position INTEGER NOT NULL,
                    public_key TEXT NOT NULL,
                    activated_at BIGINT NOT NULL,
                    retired_at BIGINT NOT NULL,
                    first_batch_seq BIGINT NOT NULL,
                    last_batch_seq BIGINT NOT NULL,
                    statement TEXT,
                    PRIMARY KEY (agent_id, key_id)
                )
                """,
            ]
        ),
        // v9-batch-time-bounds: agent-and-time queries find their rows through the (agent_id, seq)
        // index and each batch's event time bounds (`BatchTimeBounds`), instead of an (agent_id,
        // time_ns) index that every ingested event paid for. Batches stored before get their
        // bounds from their events, in the migration's transaction.
        (
            9,
            [
                "ALTER TABLE batches ADD COLUMN min_time_ns BIGINT, ADD COLUMN max_time_ns BIGINT",
                """
                UPDATE batches SET (min_time_ns, max_time_ns) = (
                    SELECT min(time_ns), max(time_ns) FROM events WHERE events.agent_id = batches.agent_id
                        AND events.seq BETWEEN batches.first_seq AND batches.first_seq + batches.event_count - 1)
                """,
                "DROP INDEX events_by_agent_time",
                "CREATE INDEX batches_by_agent_time ON batches (agent_id, max_time_ns) INCLUDE (min_time_ns, first_seq, event_count)",
            ]
        ),
    ]

    /// The events' json column (text) as jsonb, for field lookups. jsonb cannot hold U+0000, and
    /// one `\u0000` escape anywhere in a row would fail the whole statement, so the escape becomes
    /// `\ufffd` first (still valid JSON wherever the six characters occur).
    static let jsonbOfEvent = #"replace(json, '\u0000', '\ufffd')::jsonb"#

    /// The advisory-lock key that serializes migrations across collectors ("vigil" in ASCII).
    static let migrationLockKey: Int64 = 0x7669_6769_6C00_0001

    /// Applies pending migrations on one dedicated connection, in one transaction, holding a
    /// transaction-scoped advisory lock: a second collector starting at the same time waits, then
    /// finds the schema current. `last` stops after that version (tests build older schemas).
    static func migrate(_ location: PostgresLocation, logger: Logger, upTo last: Int? = nil) async throws {
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                configuration: location.connectionConfiguration,
                id: 1,
                logger: logger
            )
        } catch {
            throw CollectorError(.storeFailure, "cannot open the PostgreSQL store \(location): \(Self.reason(error))")
        }
        do {
            try await connection.withTransaction(logger: logger) { db in
                try await db.query("SELECT pg_advisory_xact_lock(\(migrationLockKey))", logger: logger)
                try await db.query(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                    logger: logger
                )
                var applied = Set<Int>()
                for try await version in try await db.query("SELECT version FROM schema_migrations", logger: logger)
                    .decode(Int.self)
                {
                    applied.insert(version)
                }
                if let newest = applied.max(), let known = migrations.map(\.version).max(), newest > known {
                    throw CollectorError(
                        .storeFailure,
                        "the database schema is at version \(newest), newer than this collector knows (\(known)); upgrade the collector"
                    )
                }
                for migration in migrations
                where !applied.contains(migration.version) && migration.version <= last ?? Int.max {
                    for statement in migration.statements {
                        try await db.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await db.query(
                        "INSERT INTO schema_migrations (version) VALUES (\(migration.version))",
                        logger: logger
                    )
                    logger.info(
                        "store migrated",
                        metadata: ["store": "\(location)", "version": "\(migration.version)"]
                    )
                }
            }
        } catch let error as CollectorError {
            try? await connection.close()
            throw error
        } catch {
            try? await connection.close()
            throw CollectorError(
                .storeFailure,
                "cannot migrate the PostgreSQL store \(location): \(Self.reason(error))"
            )
        }
        try? await connection.close()
    }

    /// A one-line reason from a postgres-nio error (its `description` hides details on purpose).
    static func reason(_ error: any Error) -> String {
        if let psql = error as? PSQLError {
            if let message = psql.serverInfo?[.message] {
                return message
            }
            if let underlying = psql.underlying {
                return "\(underlying)"
            }
            return "\(psql.code)"
        }
        if let transaction = error as? PostgresTransactionError {
            if let closure = transaction.closureError { return reason(closure) }
            if let begin = transaction.beginError { return reason(begin) }
            if let commit = transaction.commitError { return reason(commit) }
        }
        return "\(error)"
    }

    // MARK: EventStore

    public func enroll(_ agent: AgentRecord) async throws -> EnrollOutcome {
        let inserted = try await client.query(
            """
            INSERT INTO agents (agent_id, public_key, key_id, hostname, machine_id, enrolled_at)
            VALUES (\(agent.agentId), \(agent.publicKey), \(agent.keyId), \(agent.hostname), \(agent.machineId), \(agent.enrolledAt.nanosecondsSinceEpoch))
            ON CONFLICT (agent_id) DO NOTHING
            RETURNING agent_id
            """,
            logger: logger
        ).collect()
        if !inserted.isEmpty { return .enrolled }
        for try await existing in try await client.query(
            "SELECT public_key FROM agents WHERE agent_id = \(agent.agentId)",
            logger: logger
        ).decode(String.self) {
            return existing == agent.publicKey ? .alreadyEnrolled : .conflict
        }
        throw CollectorError(.storeFailure, "agent \(agent.agentId) vanished during enrollment")
    }

    public func revoke(agentId: String, at time: Timestamp) async throws -> Timestamp? {
        let rows = try await client.query(
            """
            UPDATE agents SET revoked_at = COALESCE(revoked_at, \(time.nanosecondsSinceEpoch))
            WHERE agent_id = \(agentId) RETURNING revoked_at
            """,
            logger: logger
        )
        for try await revokedAt in rows.decode(Int64.self) {
            return Timestamp(nanosecondsSinceEpoch: revokedAt)
        }
        return nil
    }

    public func agent(id: String) async throws -> AgentRecord? {
        let rows = try await client.query(
            "SELECT agent_id, public_key, key_id, hostname, machine_id, enrolled_at, revoked_at FROM agents WHERE agent_id = \(id)",
            logger: logger
        )
        for try await (agentId, publicKey, keyId, hostname, machineId, enrolledAt, revokedAt) in rows.decode(
            (String, String, String, String, String, Int64, Int64?).self
        ) {
            return AgentRecord(
                agentId: agentId,
                publicKey: publicKey,
                keyId: keyId,
                hostname: hostname,
                machineId: machineId,
                enrolledAt: Timestamp(nanosecondsSinceEpoch: enrolledAt),
                revokedAt: revokedAt.map { Timestamp(nanosecondsSinceEpoch: $0) }
            )
        }
        return nil
    }

    public func keys(agentId: String) async throws -> [AgentKeyRecord] {
        let logger = self.logger
        return try await client.withConnection { db in
            try await Self.keys(db, logger: logger, agentId: agentId, locking: false)
        }
    }

    /// The agent's keys, oldest first; `locking` takes the agent's row lock (in a transaction).
    private static func keys(
        _ db: PostgresConnection,
        logger: Logger,
        agentId: String,
        locking: Bool
    ) async throws -> [AgentKeyRecord] {
        var current: AgentKeyRecord? = nil
        let lock = locking ? " FOR UPDATE" : ""
        for try await (keyId, publicKey, enrolledAt, rotatedAt, firstBatch, statement) in try await db.query(
            PostgresQuery(
                unsafeSQL:
                    "SELECT key_id, public_key, enrolled_at, key_rotated_at, key_first_batch_seq, key_statement FROM agents WHERE agent_id = $1"
                    + lock,
                binds: {
                    var binds = PostgresBindings()
                    binds.append(agentId)
                    return binds
                }()
            ),
            logger: logger
        ).decode((String, String, Int64, Int64?, Int64, String?).self) {
            current = AgentKeyRecord(
                keyId: keyId,
                publicKey: publicKey,
                activatedAt: Timestamp(nanosecondsSinceEpoch: rotatedAt ?? enrolledAt),
                firstBatchSeq: UInt64(max(firstBatch, 0)),
                rotation: KeyRotation.decoded(statement)
            )
        }
        guard let current else { return [] }
        var keys: [AgentKeyRecord] = []
        for try await (keyId, publicKey, activatedAt, retiredAt, firstBatch, lastBatch, statement)
            in try await db.query(
                """
                SELECT key_id, public_key, activated_at, retired_at, first_batch_seq, last_batch_seq, statement
                FROM agent_keys WHERE agent_id = \(agentId) ORDER BY position
                """,
                logger: logger
            ).decode((String, String, Int64, Int64, Int64, Int64, String?).self)
        {
            keys.append(
                AgentKeyRecord(
                    keyId: keyId,
                    publicKey: publicKey,
                    activatedAt: Timestamp(nanosecondsSinceEpoch: activatedAt),
                    retiredAt: Timestamp(nanosecondsSinceEpoch: retiredAt),
                    firstBatchSeq: UInt64(max(firstBatch, 0)),
                    lastBatchSeq: UInt64(max(lastBatch, 0)),
                    rotation: KeyRotation.decoded(statement)
                )
            )
        }
        return keys + [current]
    }

    public func rotateKey(_ statement: KeyRotation, at time: Timestamp) async throws -> RotationOutcome {
        let statementJSON = try statement.encodedJSON()
        let agentId = statement.agentId
        let logger = self.logger
        let now = time.nanosecondsSinceEpoch
        do {
            return try await client.withTransaction(logger: logger) { db -> RotationOutcome in
                let keys = try await Self.keys(db, logger: logger, agentId: agentId, locking: true)
                guard let current = keys.last else {
                    throw CollectorError(.unknownAgent, "agent \(agentId) is not enrolled")
                }
                var state: (revokedAt: Int64?, lastBatch: Int64, statement: String?)? = nil
                for try await row in try await db.query(
                    "SELECT revoked_at, last_batch_seq, key_statement FROM agents WHERE agent_id = \(agentId)",
                    logger: logger
                ).decode((Int64?, Int64, String?).self) {
                    state = row
                }
                guard let state else { throw CollectorError(.unknownAgent, "agent \(agentId) is not enrolled") }
                if let revoked = state.revokedAt {
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
                let position = keys.count - 1
                let activated = current.activatedAt.nanosecondsSinceEpoch
                let first = Int64(clamping: current.firstBatchSeq)
                try await db.query(
                    """
                    INSERT INTO agent_keys (agent_id, key_id, position, public_key, activated_at, retired_at, first_batch_seq, last_batch_seq, statement)
                    VALUES (\(agentId), \(current.keyId), \(position), \(current.publicKey), \(activated), \(now), \(first), \(state.lastBatch), \(state.statement))
                    """,
                    logger: logger
                )
                let next = state.lastBatch + 1
                try await db.query(
                    """
                    UPDATE agents SET public_key = \(statement.newPublicKey), key_id = \(statement.newKeyId), key_rotated_at = \(now),
                        key_first_batch_seq = \(next), key_statement = \(statementJSON)
                    WHERE agent_id = \(agentId)
                    """,
                    logger: logger
                )
                return .rotated(
                    AgentKeyRecord(
                        keyId: statement.newKeyId,
                        publicKey: statement.newPublicKey,
                        activatedAt: time,
                        firstBatchSeq: UInt64(next),
                        rotation: statement
                    )
                )
            }
        } catch let error as PostgresTransactionError {
            if let refusal = error.closureError as? CollectorError { throw refusal }
            throw error
        }
    }

    public func ingest(
        batch: SealedBatch,
        events: [Event],
        receivedAt: Timestamp,
        predecessorInFlight: Bool
    ) async throws -> IngestOutcome {
        let header = batch.header
        guard let batchSeq = Int64(exactly: header.batchSeq), let firstSeq = Int64(exactly: header.firstSeq) else {
            throw CollectorError(.badRequest, "batch_seq and first_seq must be below 2^63")
        }
        // Column arrays for one multi-row INSERT … SELECT unnest(…): one round trip per batch.
        var seqs: [Int64] = []
        var types: [String] = []
        var times: [Int64] = []
        var rules: [String] = []
        var levels: [String] = []
        var jsons: [String] = []
        seqs.reserveCapacity(events.count)
        types.reserveCapacity(events.count)
        times.reserveCapacity(events.count)
        rules.reserveCapacity(events.count)
        levels.reserveCapacity(events.count)
        jsons.reserveCapacity(events.count)
        for event in events {
            guard let seq = Int64(exactly: event.seq) else {
                throw CollectorError(.badRequest, "event seq \(event.seq) must be below 2^63")
            }
            seqs.append(seq)
            types.append(event.type.rawValue)
            times.append(event.time.nanosecondsSinceEpoch)
            // "" stands for "no rule" and "no level" in the arrays; NULLIF turns it back into NULL.
            if case .alert(let alert) = event.payload {
                rules.append(alert.ruleId)
                levels.append(alert.level.lowercased())
            } else {
                rules.append("")
                levels.append("")
            }
            jsons.append(event.sortedKeysJSON)
        }
        let agentId = header.agentId
        let headerHash = Data(batch.headerHash)
        let timeBounds = BatchTimeBounds.of(events)
        let minTime = timeBounds?.lowerBound
        let maxTime = timeBounds?.upperBound
        let received = receivedAt.nanosecondsSinceEpoch
        let selftest = SelftestSummary.latest(in: events)
        let status = AgentStatusUpdate.latest(in: events)
        let logger = self.logger

        do {
            return try await client.withTransaction(logger: logger) { db -> IngestOutcome in
                // The agent's row is the chain's lock: ingests of one agent take turns here.
                // Taking it also gives the transaction its xid before it takes event ids, which
                // the live tail's horizon relies on (`LiveTail`, `commitProbe`).
                var chainState: (Int64, Data?, Int64, Int64, Int64, Int64)? = nil
                var revoked = false
                var currentKey = ""
                for try await row in try await db.query(
                    """
                    SELECT last_batch_seq, last_header_hash, last_event_seq, declared_through, gap_records, dropped_events,
                           revoked_at IS NOT NULL, key_id
                    FROM agents WHERE agent_id = \(agentId) FOR UPDATE
                    """,
                    logger: logger
                ).decode((Int64, Data?, Int64, Int64, Int64, Int64, Bool, String).self) {
                    chainState = (row.0, row.1, row.2, row.3, row.4, row.5)
                    revoked = row.6
                    currentKey = row.7
                }
                guard
                    let (lastSeqSigned, lastHash, lastEventSeq, declaredThrough, gapRecords, droppedEvents) = chainState
                else {
                    throw CollectorError(.unknownAgent, "agent \(agentId) is not enrolled")
                }
                // Checked here, under the row lock, not only by the collector (whose key cache may
                // predate a revocation made through another collector).
                if revoked { throw CollectorError(.revokedAgent, "agent \(agentId) was revoked") }
                // Likewise the key: rotated through another collector since this one cached it.
                guard header.keyId == currentKey else {
                    throw CollectorError(
                        .keyRetired,
                        "agent \(agentId) signed with key \(header.keyId), but its current key is \(currentKey)"
                    )
                }
                for try await stored in try await db.query(
                    "SELECT header_hash FROM batches WHERE agent_id = \(agentId) AND batch_seq = \(batchSeq)",
                    logger: logger
                ).decode(Data.self) {
                    if stored == headerHash { return .duplicate }
                    let detail =
                        "a different batch \(header.batchSeq) was stored before (fork or replay with altered content)"
                    try await Self.recordAnomaly(
                        db,
                        logger: logger,
                        agentId: agentId,
                        kind: "fork",
                        batchSeq: batchSeq,
                        detail: detail,
                        at: received
                    )
                    return .fork(detail: detail)
                }
                let lastSeq = UInt64(max(lastSeqSigned, 0))
                if predecessorInFlight, header.batchSeq > lastSeq + 1 { return .predecessorPending }
                let (verdict, detail) = ChainVerdict.judge(header, lastSeq: lastSeq, lastHash: lastHash)
                let advances = header.batchSeq > lastSeq
                if verdict != .ok, let detail {
                    try await Self.recordAnomaly(
                        db,
                        logger: logger,
                        agentId: agentId,
                        kind: verdict.rawValue,
                        batchSeq: batchSeq,
                        detail: detail,
                        at: received
                    )
                }
                var account = SeqAccount(
                    lastEventSeq: UInt64(max(lastEventSeq, 0)),
                    declaredThrough: UInt64(max(declaredThrough, 0)),
                    gapRecords: UInt64(max(gapRecords, 0)),
                    droppedEvents: UInt64(max(droppedEvents, 0))
                )
                if let missing = account.admit(
                    firstSeq: header.firstSeq,
                    lastSeq: header.lastSeq,
                    events: events,
                    inOrder: verdict == .ok
                ) {
                    try await Self.recordAnomaly(
                        db,
                        logger: logger,
                        agentId: agentId,
                        kind: "seq_gap",
                        batchSeq: batchSeq,
                        detail: missing,
                        at: received
                    )
                }
                try await db.query(
                    """
                    UPDATE agents SET last_event_seq = \(Int64(clamping: account.lastEventSeq)), declared_through = \(Int64(clamping: account.declaredThrough)),
                        gap_records = \(Int64(clamping: account.gapRecords)), dropped_events = \(Int64(clamping: account.droppedEvents))
                    WHERE agent_id = \(agentId)
                    """,
                    logger: logger
                )
                try await db.query(
                    """
                    INSERT INTO batches (agent_id, batch_seq, header, signature, body, header_hash, first_seq, event_count, received_at, chain,
                                         min_time_ns, max_time_ns)
                    VALUES (\(agentId), \(batchSeq), \(Data(batch.headerBytes)), \(Data(batch.signature)), \(Data(batch.body)), \(headerHash),
                            \(firstSeq), \(Int32(clamping: header.eventCount)), \(received), \(verdict.rawValue), \(minTime), \(maxTime))
                    """,
                    logger: logger
                )
                var inserted: Int64 = 0
                if !seqs.isEmpty {
                    let result = try await db.query(
                        """
                        WITH rows AS (
                            INSERT INTO events (agent_id, seq, batch_seq, type, time_ns, rule_id, alert_level, json)
                            SELECT \(agentId), e.seq, \(batchSeq), e.type, e.time_ns, NULLIF(e.rule_id, ''), NULLIF(e.alert_level, ''), e.json
                            FROM unnest(\(seqs)::bigint[], \(types)::text[], \(times)::bigint[], \(rules)::text[], \(levels)::text[], \(jsons)::text[])
                                AS e (seq, type, time_ns, rule_id, alert_level, json)
                            ORDER BY e.seq
                            ON CONFLICT (agent_id, seq) DO NOTHING
                            RETURNING 1
                        )
                        SELECT count(*) FROM rows
                        """,
                        logger: logger
                    )
                    for try await count in result.decode(Int64.self) { inserted = count }
                }
                if inserted < Int64(seqs.count) {
                    let dup = Int64(seqs.count) - inserted
                    try await Self.recordAnomaly(
                        db,
                        logger: logger,
                        agentId: agentId,
                        kind: "duplicate_seq",
                        batchSeq: batchSeq,
                        detail: "\(dup) event(s) reuse seqs already stored from another batch",
                        at: received
                    )
                }
                if advances {
                    try await db.query(
                        """
                        UPDATE agents SET last_batch_seq = \(batchSeq), last_header_hash = \(headerHash), last_seen = \(received),
                            event_count = event_count + \(inserted)
                        WHERE agent_id = \(agentId)
                        """,
                        logger: logger
                    )
                } else {
                    try await db.query(
                        "UPDATE agents SET last_seen = \(received), event_count = event_count + \(inserted) WHERE agent_id = \(agentId)",
                        logger: logger
                    )
                }
                if let (last, passedAt) = selftest {
                    try await Self.recordSelftest(db, logger: logger, agentId: agentId, last: last, passedAt: passedAt)
                }
                if let status {
                    try await Self.recordStatus(db, logger: logger, agentId: agentId, status)
                }
                return .accepted(verdict, detail: detail)
            }
        } catch let error as PostgresTransactionError {
            // A refusal from inside the transaction (a revoked agent, say) is the answer.
            if let refusal = error.closureError as? CollectorError { throw refusal }
            throw error
        }
    }

    /// Keeps the newest selftest by event time, so a batch that arrives late does not roll it back.
    private static func recordSelftest(
        _ db: PostgresConnection,
        logger: Logger,
        agentId: String,
        last: SelftestSummary,
        passedAt: Timestamp?
    ) async throws {
        let time = last.time.nanosecondsSinceEpoch
        try await db.query(
            """
            UPDATE agents SET selftest_at = \(time), selftest_drills = \(Int64(clamping: last.drills)),
                selftest_detected = \(Int64(clamping: last.detected)), selftest_missed = \(Int64(clamping: last.missed))
            WHERE agent_id = \(agentId) AND (selftest_at IS NULL OR selftest_at < \(time))
            """,
            logger: logger
        )
        if let passed = passedAt?.nanosecondsSinceEpoch {
            try await db.query(
                """
                UPDATE agents SET selftest_passed_at = \(passed)
                WHERE agent_id = \(agentId) AND (selftest_passed_at IS NULL OR selftest_passed_at < \(passed))
                """,
                logger: logger
            )
        }
    }

    /// Keeps the newest version, policy hash and status report by event time, each on its own,
    /// so a batch that arrives late does not roll them back.
    private static func recordStatus(
        _ db: PostgresConnection,
        logger: Logger,
        agentId: String,
        _ update: AgentStatusUpdate
    ) async throws {
        if let version = update.version {
            let time = update.versionAt.nanosecondsSinceEpoch
            try await db.query(
                """
                UPDATE agents SET agent_version = \(version), agent_version_at = \(time)
                WHERE agent_id = \(agentId) AND (agent_version_at IS NULL OR agent_version_at <= \(time))
                """,
                logger: logger
            )
        }
        if let hash = update.policyHash {
            let time = update.policyHashAt.nanosecondsSinceEpoch
            try await db.query(
                """
                UPDATE agents SET policy_hash = \(hash), policy_hash_at = \(time)
                WHERE agent_id = \(agentId) AND (policy_hash_at IS NULL OR policy_hash_at <= \(time))
                """,
                logger: logger
            )
        }
        if let report = update.status {
            let time = report.time.nanosecondsSinceEpoch
            let (spoolEvents, spoolBytes, spoolDropped) = (
                Int64(clamping: report.spoolEvents), Int64(clamping: report.spoolBytes),
                Int64(clamping: report.spoolDropped)
            )
            let (shed, queue, kernel) = (
                Int64(clamping: report.eventsShed), Int64(clamping: report.queueDrops),
                Int64(clamping: report.kernelDrops)
            )
            try await db.query(
                """
                UPDATE agents SET status_at = \(time), status_spool_events = \(spoolEvents),
                    status_spool_bytes = \(spoolBytes), status_spool_dropped = \(spoolDropped),
                    status_events_shed = \(shed), status_queue_drops = \(queue), status_kernel_drops = \(kernel)
                WHERE agent_id = \(agentId) AND (status_at IS NULL OR status_at <= \(time))
                """,
                logger: logger
            )
        }
    }

    private static func recordAnomaly(
        _ db: PostgresConnection,
        logger: Logger,
        agentId: String,
        kind: String,
        batchSeq: Int64,
        detail: String,
        at time: Int64
    ) async throws {
        // Its alert goes in with it, keyed by the negated anomaly id (see `ChainAlert`).
        guard
            let alert = ChainAlert.row(
                kind: kind,
                batchSeq: UInt64(max(batchSeq, 0)),
                detail: detail,
                at: Timestamp(nanosecondsSinceEpoch: time)
            )
        else {
            try await db.query(
                "INSERT INTO chain_anomalies (agent_id, kind, batch_seq, detail, detected_at) VALUES (\(agentId), \(kind), \(batchSeq), \(detail), \(time))",
                logger: logger
            )
            return
        }
        try await db.query(
            """
            WITH anomaly AS (
                INSERT INTO chain_anomalies (agent_id, kind, batch_seq, detail, detected_at)
                VALUES (\(agentId), \(kind), \(batchSeq), \(detail), \(time))
                RETURNING id
            )
            INSERT INTO events (agent_id, seq, batch_seq, type, time_ns, rule_id, alert_level, json)
            SELECT \(agentId), -anomaly.id, \(batchSeq), 'alert', \(time), \(alert.ruleId), \(alert.level), \(alert.json)
            FROM anomaly
            """,
            logger: logger
        )
    }

    public func events(_ query: EventQuery) async throws -> [StoredEvent] {
        var clauses: [String] = []
        var binds = PostgresBindings()
        func placeholder() -> String { "$\(binds.count)" }
        if let agent = query.agentId {
            binds.append(agent)
            clauses.append("agent_id = \(placeholder())")
        }
        if !query.types.isEmpty {
            binds.append(query.types.map(\.rawValue))
            clauses.append("type = ANY(\(placeholder())::text[])")
        }
        if let rule = query.ruleId {
            binds.append(rule)
            clauses.append("rule_id = \(placeholder())")
        }
        if let levels = query.levels {
            guard !levels.isEmpty else { return [] }
            binds.append(levels.map(\.rawValue))
            clauses.append("alert_level = ANY(\(placeholder())::text[])")
        }
        for match in query.fields {
            // Paths come from the fixed list of fields and, like the value, are bound. The json
            // column is text: each lookup parses it as jsonb.
            var lookups: [String] = []
            for path in match.field.paths {
                binds.append(path)
                switch match.field.kind {
                case .text, .integer: lookups.append("(\(Self.jsonbOfEvent) #>> \(placeholder())::text[])")
                case .tag: lookups.append("(\(Self.jsonbOfEvent) #> \(placeholder())::text[])")
                }
            }
            // jsonb prints an integer in plain decimal, so an integer compares as its text.
            switch match.value {
            case .text(let text): binds.append(text)
            case .integer(let n): binds.append(String(n))
            }
            switch match.field.kind {
            case .text, .integer:
                let value = lookups.count == 1 ? lookups[0] : "coalesce(\(lookups.joined(separator: ", ")))"
                clauses.append("\(value) = \(placeholder())::text")
            case .tag:
                clauses.append("\(lookups[0]) @> jsonb_build_array(\(placeholder())::text)")
            }
        }
        // One agent in a time range: its rows come through the (agent_id, seq) index, in the seq
        // range of the batches that hold events of that time (`BatchTimeBounds`), computed in the
        // same statement (one snapshot). The planner, with its statistics, may still prefer
        // walking ids backwards through a window that holds most rows.
        var from = "events"
        var batchClauses: [String] = []
        if let since = query.since {
            binds.append(since.nanosecondsSinceEpoch)
            clauses.append("time_ns >= \(placeholder())")
            batchClauses.append("max_time_ns >= \(placeholder())")
        }
        if let until = query.until {
            binds.append(until.nanosecondsSinceEpoch)
            clauses.append("time_ns < \(placeholder())")
            batchClauses.append("min_time_ns < \(placeholder())")
        }
        if let agent = query.agentId, !batchClauses.isEmpty {
            binds.append(agent)
            from = """
                events, (SELECT min(first_seq) AS low, max(first_seq + event_count - 1) AS high FROM batches
                         WHERE agent_id = \(placeholder()) AND \(batchClauses.joined(separator: " AND "))) AS seqs
                """
            clauses.append("(seq < 0 OR seq BETWEEN seqs.low AND seqs.high)")
        }
        if let after = query.after {
            binds.append(after)
            clauses.append("id > \(placeholder())")
        }
        if let before = query.before {
            binds.append(before)
            clauses.append("id < \(placeholder())")
        }
        binds.append(Int64(max(0, query.limit)))
        let limit = placeholder()
        let whereSQL = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        let direction = query.order == .desc ? "DESC" : "ASC"
        let sql =
            "SELECT id, agent_id, batch_seq, json FROM \(from) \(whereSQL) ORDER BY id \(direction) LIMIT \(limit)"
        let rows = try await client.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
        let decoder = JSONDecoder()
        var result: [StoredEvent] = []
        for try await (id, agentId, batchSeq, json) in rows.decode((Int64, String, Int64, String).self) {
            let event = try decoder.decode(Event.self, from: Data(json.utf8))
            result.append(StoredEvent(id: id, agentId: agentId, batchSeq: UInt64(max(batchSeq, 0)), event: event))
        }
        return result
    }

    /// One statement, so one snapshot: the highest visible event id, the snapshot's oldest
    /// running xid, and a fresh xid assigned after the snapshot (see `LiveTail` for why that
    /// makes a horizon). The probe's own transaction commits asynchronously: it wrote nothing.
    public func commitProbe() async throws -> CommitProbe {
        let rows = try await client.query(
            """
            SELECT set_config('synchronous_commit', 'off', true), coalesce((SELECT max(id) FROM events), 0),
                pg_snapshot_xmin(pg_current_snapshot())::text, pg_current_xact_id()::text
            """,
            logger: logger
        )
        for try await (_, maxId, xmin, xid) in rows.decode((String, Int64, String, String).self) {
            guard let oldest = UInt64(xmin), let token = UInt64(xid) else { break }
            return CommitProbe(maxId: maxId, token: token, oldestActive: oldest)
        }
        throw CollectorError(.storeFailure, "the PostgreSQL commit probe returned no transaction ids")
    }

    public func agents() async throws -> [AgentSummary] {
        var anomalies: [String: [ChainAnomaly]] = [:]
        let anomalyRows = try await client.query(
            "SELECT agent_id, kind, batch_seq, detail, detected_at FROM chain_anomalies ORDER BY id",
            logger: logger
        )
        for try await (agentId, kind, batchSeq, detail, detectedAt) in anomalyRows.decode(
            (String, String, Int64, String, Int64).self
        ) {
            anomalies[agentId, default: []].append(
                ChainAnomaly(
                    kind: kind,
                    batchSeq: UInt64(max(batchSeq, 0)),
                    detail: detail,
                    detectedAt: Timestamp(nanosecondsSinceEpoch: detectedAt)
                )
            )
        }
        // What agents said about themselves (v6), read apart to keep the row tuples short.
        var reported: [String: (version: String?, policyHash: String?, status: AgentStatusReport?)] = [:]
        let statusRows = try await client.query(
            """
            SELECT agent_id, agent_version, policy_hash, status_at, status_spool_events, status_spool_bytes,
                status_spool_dropped, status_events_shed, status_queue_drops, status_kernel_drops
            FROM agents
            """,
            logger: logger
        )
        for try await (id, version, policyHash, statusAt, spoolEvents, spoolBytes, spoolDropped, shed, queue, kernel)
            in statusRows.decode((String, String?, String?, Int64?, Int64, Int64, Int64, Int64, Int64, Int64).self)
        {
            reported[id] = (
                version,
                policyHash,
                statusAt.map {
                    AgentStatusReport(
                        time: Timestamp(nanosecondsSinceEpoch: $0),
                        spoolEvents: UInt64(max(spoolEvents, 0)),
                        spoolBytes: UInt64(max(spoolBytes, 0)),
                        spoolDropped: UInt64(max(spoolDropped, 0)),
                        eventsShed: UInt64(max(shed, 0)),
                        queueDrops: UInt64(max(queue, 0)),
                        kernelDrops: UInt64(max(kernel, 0))
                    )
                }
            )
        }
        var rotated: [String: Timestamp?] = [:]
        for try await (id, at) in try await client.query(
            "SELECT agent_id, key_rotated_at FROM agents",
            logger: logger
        ).decode((String, Int64?).self) {
            rotated[id] = at.map { Timestamp(nanosecondsSinceEpoch: $0) }
        }
        let rows = try await client.query(
            """
            SELECT agent_id, hostname, key_id, enrolled_at, revoked_at, last_seen, last_batch_seq, event_count, gap_records, dropped_events,
                selftest_at, selftest_drills, selftest_detected, selftest_missed, selftest_passed_at
            FROM agents ORDER BY hostname, agent_id
            """,
            logger: logger
        )
        var result: [AgentSummary] = []
        for try await (
            id, hostname, keyId, enrolledAt, revokedAt, lastSeen, lastBatchSeq, eventCount, gapRecords, droppedEvents,
            selftestAt, selftestDrills, selftestDetected, selftestMissed, selftestPassedAt
        ) in rows.decode(
            (
                String, String, String, Int64, Int64?, Int64?, Int64, Int64, Int64, Int64,
                Int64?, Int64, Int64, Int64, Int64?
            ).self
        ) {
            let list = anomalies[id] ?? []
            result.append(
                AgentSummary(
                    agentId: id,
                    hostname: hostname,
                    keyId: keyId,
                    keyRotatedAt: rotated[id] ?? nil,
                    enrolledAt: Timestamp(nanosecondsSinceEpoch: enrolledAt),
                    revoked: revokedAt != nil,
                    lastSeen: lastSeen.map { Timestamp(nanosecondsSinceEpoch: $0) },
                    lastBatchSeq: UInt64(max(lastBatchSeq, 0)),
                    events: UInt64(max(eventCount, 0)),
                    chainStatus: list.last?.kind ?? "whole",
                    anomalies: list,
                    declaredGaps: UInt64(max(gapRecords, 0)),
                    droppedEvents: UInt64(max(droppedEvents, 0)),
                    lastSelftest: selftestAt.map {
                        SelftestSummary(
                            time: Timestamp(nanosecondsSinceEpoch: $0),
                            drills: UInt64(max(selftestDrills, 0)),
                            detected: UInt64(max(selftestDetected, 0)),
                            missed: UInt64(max(selftestMissed, 0))
                        )
                    },
                    selftestPassedAt: selftestPassedAt.map { Timestamp(nanosecondsSinceEpoch: $0) },
                    version: reported[id]?.version,
                    policyHash: reported[id]?.policyHash,
                    lastStatus: reported[id]?.status
                )
            )
        }
        return result
    }

    public func batches(agentId: String, afterBatchSeq: UInt64, limit: Int) async throws -> [StoredBatch] {
        let after = Int64(clamping: afterBatchSeq)
        let rows = try await client.query(
            """
            SELECT batch_seq, header, signature, body, pruned_at IS NOT NULL FROM batches
            WHERE agent_id = \(agentId) AND batch_seq > \(after) ORDER BY batch_seq LIMIT \(Int64(max(0, limit)))
            """,
            logger: logger
        )
        var result: [StoredBatch] = []
        for try await (batchSeq, header, signature, body, pruned) in rows.decode((Int64, Data, Data, Data, Bool).self) {
            result.append(
                StoredBatch(
                    batchSeq: UInt64(max(batchSeq, 0)),
                    headerBytes: Array(header),
                    signature: Array(signature),
                    body: Array(body),
                    pruned: pruned
                )
            )
        }
        return result
    }

    /// The pool closes when `withStore`'s body returns.
    public func close() async throws {}

    // MARK: retention

    /// The advisory-lock key that lets one collector at a time run retention.
    static let retentionLockKey: Int64 = 0x7669_6769_6C00_0002

    /// Tuple header and line pointer plus an entry in each of the events table's indexes: what a
    /// row costs beyond its own bytes, roughly.
    static let eventRowOverhead: Int64 = 28 + 6 * 40

    public func deleteOldestEvents(before cutoff: Timestamp?, limit: Int) async throws -> Int {
        guard limit > 0 else { return 0 }
        let limit = Int64(limit)
        let prunedAt = Timestamp.now().nanosecondsSinceEpoch
        let logger = self.logger
        return try await client.withTransaction(logger: logger) { db -> Int in
            // SKIP LOCKED: rows another transaction holds are left for a later round.
            let rows =
                if let cutoff {
                    try await db.query(
                        """
                        DELETE FROM events WHERE id IN (
                            SELECT id FROM events WHERE time_ns < \(cutoff.nanosecondsSinceEpoch)
                            ORDER BY time_ns LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                        RETURNING agent_id, batch_seq, seq
                        """,
                        logger: logger
                    )
                } else {
                    try await db.query(
                        """
                        DELETE FROM events WHERE id IN (
                            SELECT id FROM events ORDER BY time_ns LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                        RETURNING agent_id, batch_seq, seq
                        """,
                        logger: logger
                    )
                }
            var deleted = 0
            var touched = Set<BatchKey>()
            for try await (agentId, batchSeq, seq) in rows.decode((String, Int64, Int64).self) {
                deleted += 1
                // A collector alert (negative seq, `ChainAlert`) is no part of its batch's body.
                guard seq > 0 else { continue }
                touched.insert(BatchKey(agentId: agentId, batchSeq: batchSeq))
            }
            guard deleted > 0 else { return 0 }
            let agents = touched.map(\.agentId)
            let seqs = touched.map(\.batchSeq)
            // A second statement, so it sees the deletions. A batch's events are those of its seq
            // range that name it (the unique (agent_id, seq) index finds them).
            try await db.query(
                """
                UPDATE batches b SET body = ''::bytea, pruned_at = \(prunedAt)
                FROM unnest(\(agents)::text[], \(seqs)::bigint[]) AS t (agent_id, batch_seq)
                WHERE b.agent_id = t.agent_id AND b.batch_seq = t.batch_seq AND b.pruned_at IS NULL
                    AND NOT EXISTS (
                        SELECT 1 FROM events e WHERE e.agent_id = b.agent_id
                            AND e.seq BETWEEN b.first_seq AND b.first_seq + b.event_count - 1
                            AND e.batch_seq = b.batch_seq)
                """,
                logger: logger
            )
            return deleted
        }
    }

    /// An estimate of the live events' size: the statistics' live-row count times the average
    /// size of the newest 1,000 rows plus `eventRowOverhead`. Not `pg_total_relation_size`:
    /// PostgreSQL does not shrink a table when rows are deleted (VACUUM makes the space reusable,
    /// the file keeps its size), so a bound on the file size would delete every event.
    public func storeUsage() async throws -> StoreUsage {
        let rows = try await client.query(
            """
            SELECT coalesce((SELECT greatest(n_live_tup, 0) FROM pg_stat_user_tables WHERE relid = 'events'::regclass), 0)::bigint,
                coalesce((SELECT avg(pg_column_size(r)) FROM (SELECT * FROM events ORDER BY id DESC LIMIT 1000) r), 0)::bigint
            """,
            logger: logger
        )
        for try await (events, averageRow) in rows.decode((Int64, Int64).self) {
            let perRow = averageRow > 0 ? averageRow + Self.eventRowOverhead : 0
            return StoreUsage(
                bytes: events.multipliedReportingOverflow(by: perRow).partialValue,
                events: events,
                reflectsDeletesAtOnce: false
            )
        }
        return StoreUsage(bytes: 0, events: 0, reflectsDeletesAtOnce: false)
    }

    /// PostgreSQL's (auto)vacuum makes deleted rows' space reusable; nothing to do here.
    public func reclaimSpace(pages: Int) async throws {}

    /// Holds a session advisory lock on a connection of its own (not one of the pool's, which
    /// `body` needs), so one collector at a time runs retention; the lock goes with the connection
    /// if the collector dies.
    public func withRetentionLock(_ body: () async throws -> Void) async throws -> Bool {
        let connection = try await PostgresConnection.connect(
            configuration: location.connectionConfiguration,
            id: 2,
            logger: logger
        )
        do {
            var acquired = false
            for try await got in try await connection.query(
                "SELECT pg_try_advisory_lock(\(Self.retentionLockKey))",
                logger: logger
            ).decode(Bool.self) {
                acquired = got
            }
            if acquired {
                // Unlock explicitly: the server may take a moment to notice the closed connection.
                do {
                    try await body()
                } catch {
                    _ = try? await connection.query(
                        "SELECT pg_advisory_unlock(\(Self.retentionLockKey))",
                        logger: logger
                    )
                    throw error
                }
                try await connection.query("SELECT pg_advisory_unlock(\(Self.retentionLockKey))", logger: logger)
            }
            try await connection.close()
            return acquired
        } catch {
            try? await connection.close()
            throw error
        }
    }

    private struct BatchKey: Hashable {
        var agentId: String
        var batchSeq: Int64
    }
}
