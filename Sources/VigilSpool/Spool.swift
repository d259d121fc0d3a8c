import Foundation
import GRDB
import Synchronization
import VigilCore
import VigilSQLite
import VigilWire

/// The agent's durable queue between the sensors and the shipper, in one SQLite file (WAL).
///
/// Why SQLite through GRDB rather than hand-written segment files: an append is a transaction,
/// so after a crash at any moment the file holds exactly the committed appends (SQLite's journal
/// cuts a torn tail for us); seq numbering, chain state and the batch in flight are updated in
/// the same transactions as the events they describe, so they can never disagree.
///
/// The life of an event: `append` gives it the next `seq` and stores it (from then on it is
/// *accepted*); `nextBatch` seals the oldest unsent events into a signed batch and records that
/// batch in the outbox before it is sent; `acknowledge` deletes the batch's events once the
/// collector confirmed them. After a restart the outbox batches are sent again unchanged, in
/// order, so the collector deduplicates them.
public final class Spool: Sendable {
    private let queue: DatabaseQueue
    public let path: String
    /// Most serialized event bytes the spool holds (see `Limits`).
    public let limits: Limits
    /// Gap records written since the last `takeShedReports()`, for the agent's log.
    private let shedReports = Mutex<[GapRecord]>([])

    /// How much the spool may hold.
    public struct Limits: Sendable, Hashable {
        /// The bound on the serialized bytes of the events held (sealed or not). When an append
        /// takes the spool past it, the oldest unsealed raw events (then, only if that is not
        /// enough, the oldest unsealed alerts and health records) are dropped until the spool is
        /// at `shedTarget`, and one signed gap record says so. The file on disk is larger than
        /// this by SQLite's page overhead and the WAL.
        public var maxBytes: Int
        /// Where shedding stops: 90% of `maxBytes`, so that a full spool sheds in large steps
        /// (few gap records) rather than on every append.
        public var shedTarget: Int { maxBytes - maxBytes / 10 }

        /// 256 MiB: about 1.5 million file events at their typical 150-180 serialized bytes.
        public static let defaultMaxBytes = 256 << 20

        public init(maxBytes: Int = Limits.defaultMaxBytes) {
            self.maxBytes = maxBytes
        }
    }

    /// What opening the spool had to repair, if anything (see `SpoolAnchor`).
    public struct Recovery: Sendable, Hashable {
        /// For the log and the agent-health event.
        public var message: String
        /// Where the damaged database was moved, when it was.
        public var movedAsideTo: String?
        /// The gap record declaring what may have been lost, when seqs were lost.
        public var gap: GapRecord?
    }

    /// Set when opening found a damaged database or a lost tail and repaired it.
    public let recovery: Recovery?
    private let anchorPath: String
    private let anchor: Mutex<SpoolAnchor>
    /// See `reserveBytes`.
    private let reservePath: String
    private let hasReserve = Mutex(false)
    /// SQLite's `max_page_count` before a full disk set it (see `makeRoomOnFullDisk`).
    private let pageLimit: Int64

    /// Opens (creating if needed) the spool at `path`, its anchor at `path + ".anchor"`.
    ///
    /// Never fails because of what is in the spool file: a database that cannot be opened or
    /// checked is moved aside and replaced, and numbering continues from the anchor (see
    /// `SpoolAnchor`); `recovery` says what happened. Throws only when the directory itself is
    /// unusable (cannot create or rename files).
    public init(path: String, limits: Limits = Limits()) throws {
        self.path = path
        self.limits = limits
        anchorPath = path + ".anchor"
        reservePath = path + ".reserve"
        var notes: [String] = []
        var saved: SpoolAnchor? = nil
        do {
            saved = try SpoolAnchor.load(anchorPath)
        } catch {
            notes.append("the spool anchor is unreadable (\(error)); numbering continues from the database")
        }
        var movedAside: String? = nil
        var opened: DatabaseQueue
        do {
            let repaired: String?
            (opened, repaired) = try Self.openChecked(path)
            if let repaired { notes.append("the spool database had damaged indexes: \(repaired); no event was lost") }
        } catch {
            let aside = path + ".damaged-\(Int(Date().timeIntervalSince1970))"
            for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
                guard rename(path + suffix, aside + suffix) == 0 else {
                    throw SpoolError(
                        "\(path + suffix): damaged (\(error)) and cannot be moved aside: \(String(cString: strerror(errno)))"
                    )
                }
            }
            movedAside = aside
            notes.append("the spool database was damaged (\(error)); moved aside to \(aside) and started afresh")
            if saved == nil {
                notes.append(
                    "no spool anchor either: seqs and batch numbers restart at 1, the collector will see a fork"
                )
            }
            (opened, _) = try Self.openChecked(path)
        }
        queue = opened
        pageLimit = try opened.read { db in try Int64.fetchOne(db, sql: "PRAGMA max_page_count") } ?? 0xFFFF_FFFE
        let (current, gap) = try opened.write { db in
            try Self.dropDamagedOutbox(db, notes: &notes)
            return try Self.reconcile(db, with: saved, notes: &notes)
        }
        anchor = Mutex(current)
        try current.save(anchorPath)
        recovery =
            notes.isEmpty ? nil : Recovery(message: notes.joined(separator: "; "), movedAsideTo: movedAside, gap: gap)
        // A reserve of another size (or cut short) is made anew.
        var status = stat()
        if stat(reservePath, &status) == 0 {
            if status.st_size == off_t(Self.reserveBytes), status.st_blocks * 512 >= off_t(Self.reserveBytes) {
                hasReserve.withLock { $0 = true }
            } else {
                unlink(reservePath)
            }
        }
        restoreReserve()
    }

    /// Opens, migrates and checks the database; throws when any of it fails.
    /// Returns what it repaired, when it rebuilt damaged indexes.
    static func openChecked(_ path: String) throws -> (DatabaseQueue, repaired: String?) {
        var config = Configuration()
        config.prepareDatabase { db in
            // WAL + synchronous=FULL: a committed append survives a power cut.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // The WAL is truncated back to this size after checkpoints instead of keeping its
            // high-water mark on disk.
            try db.execute(sql: "PRAGMA journal_size_limit = 4194304")
            // A 256 KiB page cache (SQLite's default is 2 MiB): the spool appends at one end and
            // reads the other, pages it rarely needs twice, and the kernel's page cache is
            // behind it anyway. Under load this is 1-2 MiB of the agent's resident memory.
            try db.execute(sql: "PRAGMA cache_size = -256")
        }
        let queue = try DatabaseQueue(path: path, configuration: config)
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
        }
        try migrator.migrate(queue)
        var repaired: String? = nil
        try queue.writeWithoutTransaction { db in
            // integrity_check, not quick_check: quick_check does not compare indexes with their
            // tables, and a table row missing from an index opens fine, then fails every
            // DELETE with SQLITE_CORRUPT — the agent could spool but never ship (found by
            // Fuzz/Sources/FuzzSpool). Indexes are derived data: rebuilt, nothing is lost.
            var check = try String.fetchAll(db, sql: "PRAGMA integrity_check")
            if check != ["ok"], check.allSatisfy(Self.isIndexDamage) {
                try db.execute(sql: "REINDEX")
                repaired = "rebuilt damaged indexes (\(check.prefix(3).joined(separator: "; ")))"
                check = try String.fetchAll(db, sql: "PRAGMA integrity_check")
            }
            guard check == ["ok"] else {
                throw SpoolError("integrity check failed: \(check.prefix(3).joined(separator: "; "))")
            }
        }
        try queue.read { db in
            // A schema altered on disk (a damaged sqlite_master) passes the integrity check but
            // fails the first seal or append: refuse it here, so it is moved aside.
            for (table, columns) in Self.expectedColumns {
                let found = Set(
                    try Row.fetchAll(db, sql: "PRAGMA table_info(\(table))").compactMap { row -> String? in
                        let name: DatabaseValue = row["name"]
                        return String.fromDatabaseValue(name)
                    }
                )
                let missing = columns.subtracting(found)
                guard missing.isEmpty else {
                    throw SpoolError("table \(table) lacks column(s) \(missing.sorted().joined(separator: ", "))")
                }
            }
            for key in ["next_seq", "next_batch_seq", "prev_header_hash", "bytes", "shed_floor", "dropped_total"] {
                _ = try Self.integerOrBlob(db, key)
            }
        }
        return (queue, repaired)
    }

    /// Deletes sealed batches in the outbox whose bytes no longer parse (damaged on disk while
    /// the database itself checks out): sending one would be refused forever and the agent
    /// could never ship again (found by Fuzz/Sources/FuzzSpool). Their events stay in the
    /// spool until a batch that carries them is acknowledged, so the next seal carries them
    /// again under the next batch number; the collector sees the dropped number as a chain gap.
    /// Sealed batches after a damaged one go too (sealing continues behind the newest sealed
    /// batch, so the damaged one's events would otherwise never be sealed again).
    private static func dropDamagedOutbox(_ db: Database, notes: inout [String]) throws {
        // batch_seq is the table's INTEGER PRIMARY KEY (its rowid): always an integer.
        let rows = try Row.fetchAll(db, sql: "SELECT batch_seq, batch FROM outbox ORDER BY batch_seq")
        var dropping = false
        for row in rows {
            // Read as stored values: a damaged row may hold any type where a blob belongs.
            let batch: DatabaseValue = row["batch"]
            let number: DatabaseValue = row["batch_seq"]
            let batchSeq: String
            var damaged = !Self.isParsable(batch)
            if case .int64(let n) = number.storage {
                batchSeq = String(n)
            } else {
                batchSeq = "\(number)"
                damaged = true
            }
            guard damaged || dropping else { continue }
            try db.execute(sql: "DELETE FROM outbox WHERE batch_seq = ?", arguments: [number])
            notes.append(
                damaged
                    ? "sealed batch \(batchSeq) was damaged on disk and dropped; its events are sealed again in the next batch"
                    : "sealed batch \(batchSeq) follows a damaged one and was dropped; its events are sealed again"
            )
            dropping = true
        }
    }

    private static func isParsable(_ batch: DatabaseValue) -> Bool {
        guard case .blob(let data) = batch.storage else { return false }
        return (try? BatchOpener.parse(Array(data), limits: BatchLimits(maxBatchBytes: Int.max))) != nil
    }

    /// Whether an integrity_check message is about an index only (its table rows are intact).
    private static func isIndexDamage(_ message: String) -> Bool {
        message.contains("missing from index") || message.hasPrefix("wrong # of entries in index")
    }

    /// Brings the database in line with the anchor when it lost committed transactions (or is
    /// new after a damaged one was moved aside), and returns the anchor to keep from now on.
    private static func reconcile(
        _ db: Database,
        with saved: SpoolAnchor?,
        notes: inout [String]
    ) throws -> (SpoolAnchor, GapRecord?) {
        var next = try integer(db, "next_seq")
        var nextBatch = try integer(db, "next_batch_seq")
        var prev = try blob(db, "prev_header_hash")
        var sealedThrough = try Self.sealedThrough(db)
        var gap: GapRecord? = nil
        if let saved {
            let lostSeqs = next < saved.nextSeq
            // One batch ahead with every append still there is the ordinary crash between
            // writing the anchor for a seal and committing it: that batch was never sent, and
            // sealing it again under the same number is right.
            if saved.nextBatchSeq > nextBatch + 1 || (saved.nextBatchSeq == nextBatch + 1 && lostSeqs) {
                // Batches were sealed that the database forgot: never number one twice.
                notes.append(
                    "the spool lost sealed batches \(nextBatch)-\(saved.nextBatchSeq - 1); continuing the chain from the anchor"
                )
                nextBatch = saved.nextBatchSeq
                prev = Hex.decode(saved.prevHeaderHash) ?? genesisHeaderHash
                sealedThrough = max(sealedThrough, saved.sealedThrough)
                try db.execute(sql: "UPDATE state SET value = ? WHERE key = 'next_batch_seq'", arguments: [nextBatch])
                try db.execute(
                    sql: "UPDATE state SET value = ? WHERE key = 'prev_header_hash'",
                    arguments: [Data(prev)]
                )
            }
            if lostSeqs {
                // Committed events are gone. Continue above every seq ever handed out, and
                // declare the seqs that may have held them.
                let first = max(next, sealedThrough + 1)
                let last = saved.seqCeiling - 1
                notes.append(
                    "the spool lost committed events (it held seqs below \(next), \(saved.nextSeq - 1) had been accepted); continuing from seq \(saved.seqCeiling)"
                )
                if first <= last {
                    let record = GapRecord(
                        firstSeq: UInt64(first),
                        lastSeq: UInt64(last),
                        droppedByType: ["unknown": UInt64(last - first + 1)],
                        reason:
                            "spool_lost: the spool database lost events; seqs \(first)-\(last) may have held them (at least \(first)-\(saved.nextSeq - 1) did)"
                    )
                    let event = Event(seq: UInt64(first), payload: .gap(record))
                    let data = try EventCodec.encode(event)
                    try db.execute(
                        sql: "INSERT OR REPLACE INTO events (seq, type, priority, data) VALUES (?, 'gap', 2, ?)",
                        arguments: [first, Data(data)]
                    )
                    try db.execute(
                        sql: "UPDATE state SET value = value + ? WHERE key = 'bytes'",
                        arguments: [data.count]
                    )
                    gap = record
                }
                next = saved.seqCeiling
                try db.execute(sql: "UPDATE state SET value = ? WHERE key = 'next_seq'", arguments: [next])
            }
        }
        let anchor = SpoolAnchor(
            seqCeiling: next + SpoolAnchor.ceilingStep,
            nextSeq: next,
            nextBatchSeq: nextBatch,
            prevHeaderHash: Hex.encode(prev),
            sealedThrough: max(sealedThrough, saved?.sealedThrough ?? 0)
        )
        return (anchor, gap)
    }

    /// The columns each table must have (what the migrations make).
    static let expectedColumns: [(table: String, columns: Set<String>)] = [
        ("events", ["seq", "type", "priority", "data"]),
        ("outbox", ["batch_seq", "last_seq", "header_hash", "batch"]),
        ("state", ["key", "value"]),
    ]

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE events (
                        seq INTEGER PRIMARY KEY NOT NULL,
                        type TEXT NOT NULL,
                        priority INTEGER NOT NULL,
                        data BLOB NOT NULL
                    );
                    CREATE TABLE outbox (
                        batch_seq INTEGER PRIMARY KEY NOT NULL,
                        last_seq INTEGER NOT NULL,
                        header_hash BLOB NOT NULL,
                        batch BLOB NOT NULL
                    );
                    CREATE TABLE state (
                        key TEXT PRIMARY KEY NOT NULL,
                        value BLOB NOT NULL
                    );
                    INSERT INTO state (key, value) VALUES ('next_seq', 1), ('next_batch_seq', 1);
                    INSERT INTO state (key, value) VALUES ('prev_header_hash', zeroblob(32));
                    """
            )
        }
        // The byte bound: a running total of the events' serialized bytes, an index to find the
        // oldest events of a priority (partial since v3), and the seq below which nothing may be
        // shed any more.
        // Priorities: 0 raw events, 1 alerts and health, 2 gap records (never shed, merged).
        m.registerMigration("v2-bound") { db in
            try db.execute(
                sql: """
                    CREATE INDEX events_by_priority ON events (priority, seq);
                    UPDATE events SET priority = 2 WHERE type = 'gap';
                    INSERT INTO state (key, value) VALUES ('bytes', (SELECT coalesce(sum(length(data)), 0) FROM events));
                    INSERT INTO state (key, value) VALUES ('shed_floor', 0), ('dropped_total', 0);
                    """
            )
        }
        // Raw events are nearly every row, and an index over them doubled the B-tree work of
        // every append and every acknowledge; only the rarer priorities need one (shedding
        // alerts and health oldest first, finding gap records). The raw events a shed drops
        // are found by walking the table in seq order, where they are nearly all of it.
        m.registerMigration("v3-partial-priority-index") { db in
            try db.execute(
                sql: """
                    DROP INDEX events_by_priority;
                    CREATE INDEX events_kept_by_priority ON events (priority, seq) WHERE priority > 0;
                    """
            )
        }
        return m
    }

    /// The SQL condition that selects the events of one priority the cheapest way: raw events
    /// (0, nearly every row) by walking the table in seq order, the others through the partial
    /// index `events_kept_by_priority`. SQLite uses a partial index only when the query repeats
    /// the index's own condition (`priority > 0`) and the priority is a literal.
    static func ofPriority(_ priority: Int) -> String {
        priority == 0 ? "priority = 0" : "priority > 0 AND priority = \(priority)"
    }

    static func priority(of event: Event) -> Int {
        switch event.payload {
        case .file, .process, .flow: 0
        case .alert, .health: 1
        case .gap: 2
        }
    }

    /// Rows per INSERT statement in `append`.
    static let appendChunk = 64
    static let appendChunkSQL = appendSQL(rows: appendChunk)

    static func appendSQL(rows: Int) -> String {
        "INSERT INTO events (seq, type, priority, data) VALUES "
            + repeatElement("(?, ?, ?, ?)", count: rows).joined(separator: ", ")
    }

    /// Numbers and stores events. Returns them with their seqs. Seqs are strictly increasing
    /// across calls and restarts.
    ///
    /// When the append takes the spool past `limits.maxBytes`, the oldest events that are not yet
    /// sealed into a batch are dropped in the same transaction and a gap record takes their place
    /// (see `shed`). The returned events may therefore include some that were dropped at once.
    ///
    /// - Parameter deriving: called with each event once it has its seq; the events it returns
    ///   (alerts, say) are numbered and stored right after it, in the same transaction, so an
    ///   event and what was derived from it are accepted together or not at all.
    @discardableResult
    public func append(_ events: [Event], deriving: ((Event) -> [Event])? = nil) throws -> [Event] {
        guard !events.isEmpty else { return [] }
        let (numbered, gap) = try queue.write { db -> ([Event], GapRecord?) in
            var next = try Self.integer(db, "next_seq")
            let committed = next
            var numbered: [Event] = []
            numbered.reserveCapacity(events.count)
            var added: Int64 = 0
            // Rows go in `appendChunk` to a statement: per-statement overhead, not per row.
            var values: [DatabaseValue] = []
            values.reserveCapacity(4 * min(events.count, Self.appendChunk))
            func flush() throws {
                let rows = values.count / 4
                guard rows > 0 else { return }
                let insert = try db.cachedStatement(
                    sql: rows == Self.appendChunk ? Self.appendChunkSQL : Self.appendSQL(rows: rows)
                )
                try insert.executeBinding(values)
                values.removeAll(keepingCapacity: true)
            }
            func store(_ event: Event) throws -> Event {
                var event = event
                event.seq = UInt64(next)
                let data = try EventCodec.encode(event)
                values.append(next.databaseValue)
                values.append(event.type.rawValue.databaseValue)
                values.append(Self.priority(of: event).databaseValue)
                values.append(Data(data).databaseValue)
                if values.count == 4 * Self.appendChunk { try flush() }
                added += Int64(data.count)
                numbered.append(event)
                next += 1
                return event
            }
            for event in events {
                let stored = try store(event)
                for derived in deriving?(stored) ?? [] {
                    _ = try store(derived)
                }
            }
            try flush()
            try db.execute(sql: "UPDATE state SET value = ? WHERE key = 'next_seq'", arguments: [next])
            // Seqs up to `next - 1` are handed out: the anchor must say so before they commit.
            try anchor.withLock { anchor in
                guard next > anchor.seqCeiling else { return }
                var raised = anchor
                raised.seqCeiling = next + SpoolAnchor.ceilingStep
                raised.nextSeq = committed
                try raised.save(anchorPath)
                anchor = raised
            }
            let bytes = try Self.integer(db, "bytes") + added
            try db.execute(sql: "UPDATE state SET value = ? WHERE key = 'bytes'", arguments: [bytes])
            var gap: GapRecord? = nil
            if bytes > Int64(limits.maxBytes) {
                gap = try shed(
                    db,
                    bytes: bytes,
                    need: bytes - Int64(limits.shedTarget),
                    reason: "spool_full: the spool reached its bound of \(limits.maxBytes) bytes"
                )
            } else if let bound = diskBound.withLock({ $0 }), bytes > bound {
                gap = try shed(
                    db,
                    bytes: bytes,
                    need: bytes - (bound - bound / 10),
                    reason:
                        "disk_full: the disk under the spool is full; it holds at most \(bound) bytes until delivered"
                )
            }
            return (numbered, gap)
        }
        // Reported once committed: a transaction that failed (a full disk) dropped nothing.
        if let gap { shedReports.withLock { $0.append(gap) } }
        return numbered
    }

    /// Brings the spool back to `limits.shedTarget` by dropping events nobody has sealed yet:
    /// raw events (file, process, flow) oldest first, then, only if that is not enough, alerts
    /// and health records oldest first. Gap records are never dropped.
    ///
    /// How the loss looks in the stream: the dropped events' seqs stay unused (seqs are never
    /// reassigned: alerts quote them), except that a gap record takes the seq `first` of the
    /// first event it replaces and declares the range `first...last` of the events it dropped.
    /// So it travels exactly where the hole begins, before any event that follows the hole, and
    /// a collector reading the stream in order meets the explanation before the hole. Inside
    /// its range, every seq that holds no other event was dropped and counted:
    /// `sum(droppedByType) == (last - first + 1) - (other events stored with a seq in the range)`.
    /// An unsealed gap record is absorbed into the new one (its range and counts merged), and
    /// nothing at or below `shed_floor` (the end of the last sealed gap record's range) or in a
    /// sealed batch is touched, so ranges never overlap and the sum holds for every record.
    ///
    /// - Parameters:
    ///   - bytes: the serialized bytes held now; `need`: how many of them to drop (at least);
    ///     `reason`: the gap record's.
    /// - Returns: the gap record written (for `takeShedReports` once the transaction commits);
    ///   nil when there was nothing to drop.
    private func shed(_ db: Database, bytes: Int64, need: Int64, reason: String) throws -> GapRecord? {
        var need = need
        let sealedThrough = try Self.sealedThrough(db)
        let floor = max(sealedThrough, try Self.integer(db, "shed_floor"))
        var dropped: [Int64] = []
        var counts: [String: UInt64] = [:]
        var freed: Int64 = 0
        for tier in 0...1 where need > 0 {
            let rows = try Row.fetchCursor(
                db,
                sql:
                    "SELECT seq, type, length(data) AS size FROM events WHERE \(Self.ofPriority(tier)) AND seq > ? ORDER BY seq",
                arguments: [floor]
            )
            while need > 0, let row = try rows.next() {
                let size: Int64 = row["size"]
                dropped.append(row["seq"])
                counts[row["type"], default: 0] += 1
                need -= size
                freed += size
            }
        }
        guard var first = dropped.min(), var last = dropped.max() else { return nil }  // only gap records left
        var damagedRecords = 0
        let droppedNow = UInt64(dropped.count)
        let delete = try db.makeStatement(sql: "DELETE FROM events WHERE seq = ?")
        for seq in dropped { try delete.execute(arguments: [seq]) }

        // Absorb every unsealed gap record: at most one is ever waiting to be sent, and it
        // covers everything dropped since the last one sealed.
        for row in try Row.fetchAll(
            db,
            sql: "SELECT seq, data FROM events WHERE \(Self.ofPriority(2)) AND seq > ?",
            arguments: [floor]
        ) {
            let data: Data = row["data"]
            let seq: Int64 = row["seq"]
            switch (try? EventCodec.decode(Array(data)))?.payload {
            case .gap(let gap):
                first = min(first, Int64(gap.firstSeq))
                last = max(last, Int64(gap.lastSeq))
                counts.merge(gap.droppedByType, uniquingKeysWith: +)
            case nil:
                // Damaged on disk: its range and counts are lost; counted below.
                first = min(first, seq)
                last = max(last, seq)
                damagedRecords += 1
            case .some:
                continue
            }
            freed += Int64(data.count)
            try delete.execute(arguments: [seq])
        }
        if damagedRecords > 0 {
            // What a damaged record counted is no longer known by type: every seq of the new
            // range that holds nothing and is not counted otherwise is declared "damaged", so
            // the counts still add up to the seqs of the range that hold nothing.
            let stored = try Int64.fetchOne(
                db,
                sql: "SELECT count(*) FROM events WHERE seq BETWEEN ? AND ?",
                arguments: [first, last]
            )
            let known = counts.values.reduce(0, +)
            let empty = UInt64(last - first + 1) - UInt64(stored ?? 0)
            if empty > known { counts["damaged", default: 0] += empty - known }
        }
        let record = Event(
            seq: UInt64(first),
            payload: .gap(
                GapRecord(
                    firstSeq: UInt64(first),
                    lastSeq: UInt64(last),
                    droppedByType: counts,
                    reason: reason
                )
            )
        )
        let data = try EventCodec.encode(record)
        try db.execute(
            sql: "INSERT INTO events (seq, type, priority, data) VALUES (?, ?, 2, ?)",
            arguments: [first, record.type.rawValue, Data(data)]
        )
        try db.execute(
            sql: "UPDATE state SET value = ? WHERE key = 'bytes'",
            arguments: [bytes - freed + Int64(data.count)]
        )
        try db.execute(
            sql: "UPDATE state SET value = value + ? WHERE key = 'dropped_total'",
            arguments: [Int64(droppedNow)]
        )
        guard case .gap(let gap) = record.payload else { return nil }
        return gap
    }

    /// Makes room after the disk under the spool filled up before `limits.maxBytes` was
    /// reached (an append, seal or acknowledgement failed with `isDiskFull`). Returns whether
    /// it could free anything; throws when even its own transaction cannot be written.
    ///
    /// In WAL mode every write needs room on disk for the write-ahead log, deletes included,
    /// and a checkpoint needs room for every page the log added at the end of the database. A
    /// disk that stays full (filled by the spool itself, or by another writer that keeps what
    /// it took) must never leave the spool unable to write the delete that makes room; so:
    /// 1. the reserve (`reserveBytes`) is given back and stays given back: the database may
    ///    grow into it once, while the log is checkpointed (below);
    /// 2. the log is checkpointed into the database and restarted, not truncated: its blocks
    ///    stay the spool's, the room every later transaction is written in; from now on it is
    ///    checkpointed every 100 pages instead of 1,000, so that it needs little of them;
    /// 3. the database file stops growing (`PRAGMA max_page_count` at its size now): a write
    ///    that needs a new page fails as disk-full before anything is written, and room is made
    ///    again, so no page in the log ever needs room the disk may not have, every checkpoint
    ///    completes and the log's blocks are reused;
    /// 4. the spool's bound is lowered to 80% of what it holds now (until delivery empties
    ///    it), and the oldest events nobody has sealed yet are dropped down to that bound's
    ///    shed target, as `shed` does at `limits.maxBytes`, under a gap record whose reason
    ///    says the disk was full, `diskFullShedChunk` bytes a transaction, the log checkpointed
    ///    after each (so a large spool is trimmed within a small log); appends then reuse the
    ///    pages freed inside the database.
    @discardableResult
    public func makeRoomOnFullDisk() throws -> Bool {
        let released = releaseReserve()
        limitGrowth(true)
        let bytes = try queue.read { db in try Self.integer(db, "bytes") }
        let bound = bytes - bytes / 5
        diskBound.withLock { $0 = min($0 ?? .max, bound) }
        let target = min(bound - bound / 10, bytes - Self.diskFullShedMinimum)
        var last: GapRecord? = nil
        var held = bytes
        while held > target {
            let (gap, now) = try queue.write { db -> (GapRecord?, Int64) in
                let now = try Self.integer(db, "bytes")
                let gap = try shed(
                    db,
                    bytes: now,
                    need: min(now - target, Self.diskFullShedChunk),
                    reason: "disk_full: the disk under the spool filled up with \(bytes) bytes spooled"
                )
                return (gap, try Self.integer(db, "bytes"))
            }
            guard let gap, now < held else { break }
            // Each record absorbed the one before: the last says it all.
            last = gap
            held = now
            checkpoint(.restart)
        }
        if let last { shedReports.withLock { $0.append(last) } }
        return released || last != nil
    }

    /// Runs `write` (an append, a seal, an acknowledgement of this spool) and, when it fails
    /// because the disk is full, makes room (`makeRoomOnFullDisk`) and runs it again, up to
    /// `fullDiskRounds` times: once the disk has filled the database no longer grows, so a write
    /// larger than what one round drops (a large flush after a stall) needs several. `onFull`
    /// hears of the first failure. Throws the disk-full error when nothing more could be freed.
    public func makingRoom<T>(_ write: () throws -> T, onFull: (any Error) -> Void = { _ in }) throws -> T {
        var rounds = 0
        while true {
            do {
                return try write()
            } catch  where Self.isDiskFull(error) && rounds < Self.fullDiskRounds {
                if rounds == 0 { onFull(error) }
                rounds += 1
                guard try makeRoomOnFullDisk() else { throw error }
            }
        }
    }

    /// How many times `makingRoom` makes room for one write: each round drops at least a
    /// fifth of what is held, so eight leave at most a sixth of it.
    static let fullDiskRounds = 8

    /// Checkpoints the write-ahead log, best effort: a checkpoint that cannot finish now is
    /// finished by a later one.
    private func checkpoint(_ kind: Database.CheckpointMode) {
        try? queue.writeWithoutTransaction { db in _ = try db.checkpoint(kind) }
    }

    /// Enters the full-disk regime of `makeRoomOnFullDisk` (steps 2 and 3), or leaves it: the
    /// log checkpointed every 1,000 pages again and truncated, the database free to grow.
    private func limitGrowth(_ limited: Bool) {
        try? queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA wal_autocheckpoint = \(limited ? Self.fullDiskCheckpointPages : 1000)")
            _ = try? db.checkpoint(limited ? .restart : .truncate)
            let pages = limited ? max(try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 1, 1) : pageLimit
            try db.execute(sql: "PRAGMA max_page_count = \(pages)")
        }
    }

    /// The spool's bound while the disk under it is full (see `makeRoomOnFullDisk`); nil when
    /// it is not, or once delivery has emptied the spool since.
    private let diskBound = Mutex<Int64?>(nil)

    /// Room kept beside the spool (`path + ".reserve"`, allocated, never read) for the day the
    /// disk fills: room for the write-ahead log (up to 1,000 pages, 4 MiB, between SQLite's
    /// checkpoints) when nothing else is left, for the transaction that drops events and for
    /// every append after it. Made at open and again once the
    /// spool has been emptied by delivery, when the disk has room for it.
    public static let reserveBytes = 4 << 20

    /// Makes the reserve file when it is missing and the disk has room; false otherwise.
    @discardableResult
    private func restoreReserve() -> Bool {
        hasReserve.withLock { has in
            if has { return true }
            let fd = open(reservePath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { return false }
            let allocated = posix_fallocate(fd, 0, off_t(Self.reserveBytes)) == 0 && fsync(fd) == 0
            close(fd)
            if !allocated { unlink(reservePath) }
            has = allocated
            return allocated
        }
    }

    /// Deletes the reserve file; false when there was none.
    private func releaseReserve() -> Bool {
        hasReserve.withLock { has in
            guard has else { return false }
            has = false
            return unlink(reservePath) == 0
        }
    }

    /// The write-ahead log's checkpoint interval while the disk is full (SQLite's default is
    /// 1,000 pages).
    static let fullDiskCheckpointPages = 100

    /// The least `makeRoomOnFullDisk` drops.
    static let diskFullShedMinimum: Int64 = 64 << 10

    /// The most `makeRoomOnFullDisk` drops in one transaction: the log has to hold it.
    static let diskFullShedChunk: Int64 = 512 << 10

    /// Whether `error` says the disk under the spool is full: SQLite's SQLITE_FULL ("database
    /// or disk is full") or an anchor that could not be written for lack of space.
    public static func isDiskFull(_ error: any Error) -> Bool {
        if let error = error as? DatabaseError { return error.resultCode == .SQLITE_FULL }
        if let error = error as? SpoolError { return error.isDiskFull }
        return false
    }

    /// The gap records written since the last call (for the agent's log), oldest first.
    public func takeShedReports() -> [GapRecord] {
        shedReports.withLock { reports in
            defer { reports.removeAll() }
            return reports
        }
    }

    /// A sealed batch ready to send, and what to acknowledge when the collector took it.
    public struct PendingBatch: Sendable {
        public var batchSeq: UInt64
        public var lastSeq: UInt64
        public var eventCount: Int
        /// The serialized `vigil.v1.Batch`.
        public var bytes: [UInt8]
        /// Whether unsealed events were waiting behind this batch when it was handed out: a
        /// backlog, so sealing the next batch before this one is answered is worth it.
        public var backlog: Bool = false
    }

    /// The batch to send next: the oldest sealed batch not yet acknowledged (resent unchanged),
    /// else a new one sealed from the oldest unsent events. Nil when there is nothing to send.
    ///
    /// Several batches can be in flight at once: `after` names the newest batch already handed
    /// out and not yet acknowledged, and the answer is the sealed batch after it, else a new
    /// one sealed from the events behind every sealed batch. Batches are acknowledged in order.
    ///
    /// - Parameters:
    ///   - after: the batch seq of the newest batch in flight; nil for the oldest in the outbox.
    ///   - seal: builds the signed batch from serialized events, their first seq, the batch seq
    ///     and the previous header hash (a `BatchSealer`).
    public func nextBatch(
        after: UInt64? = nil,
        maxEvents: Int,
        maxBytes: Int,
        seal: ([[UInt8]], UInt64, UInt64, [UInt8]) throws -> SealedBatch
    ) throws -> PendingBatch? {
        try queue.write { db in
            if let row = try Row.fetchOne(
                db,
                sql: "SELECT batch_seq, last_seq, batch FROM outbox WHERE batch_seq > ? ORDER BY batch_seq LIMIT 1",
                arguments: [Int64(clamping: after ?? 0)]
            ) {
                let bytes = Array(row["batch"] as Data)
                let batch = try BatchOpener.parse(bytes, limits: BatchLimits(maxBatchBytes: Int.max))
                let lastSeq: Int64 = row["last_seq"]
                return PendingBatch(
                    batchSeq: UInt64(row["batch_seq"] as Int64),
                    lastSeq: UInt64(lastSeq),
                    eventCount: Int(batch.header.eventCount),
                    bytes: bytes,
                    backlog: try Self.hasEvents(db, after: lastSeq)
                )
            }
            // Every sealed batch left is at or before `after` (in flight): seal what follows them.
            let sealedThrough = try Self.sealedThrough(db)
            let rows = try Row.fetchCursor(
                db,
                sql: "SELECT seq, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                arguments: [sealedThrough, maxEvents]
            )
            var encoded: [[UInt8]] = []
            var firstSeq: Int64 = 0
            var lastSeq: Int64 = 0
            var bytes = 0
            while let row = try rows.next() {
                let data = row["data"] as Data
                if !encoded.isEmpty, bytes + data.count > maxBytes { break }
                let seq: Int64 = row["seq"]
                if encoded.isEmpty { firstSeq = seq }
                guard seq == firstSeq + Int64(encoded.count) else { break }  // never seal across a hole
                lastSeq = seq
                encoded.append(Array(data))
                bytes += data.count
            }
            guard !encoded.isEmpty else { return nil }
            let batchSeq = try Self.integer(db, "next_batch_seq")
            let prev = try Self.blob(db, "prev_header_hash")
            let sealed: SealedBatch
            do {
                sealed = try seal(encoded, UInt64(firstSeq), UInt64(batchSeq), prev)
            } catch let error as WireError where error.code == .malformedEvent {
                // An event damaged on disk while the database checks out: sealing it would fail
                // the same way forever and the agent could never ship again (found by
                // Fuzz/Sources/FuzzSpool). It goes; a gap record of its seq says so in the stream.
                let records = try Self.replaceDamaged(db, encoded: &encoded, firstSeq: UInt64(firstSeq))
                guard !records.isEmpty else { throw error }
                shedReports.withLock { $0.append(contentsOf: records) }
                sealed = try seal(encoded, UInt64(firstSeq), UInt64(batchSeq), prev)
            }
            let serialized = sealed.serialized()
            try db.execute(
                sql: "INSERT INTO outbox (batch_seq, last_seq, header_hash, batch) VALUES (?, ?, ?, ?)",
                arguments: [batchSeq, lastSeq, Data(sealed.headerHash), Data(serialized)]
            )
            try setChain(db, nextBatchSeq: batchSeq + 1, prevHeaderHash: sealed.headerHash, sealedThrough: lastSeq)
            // A gap record now sealed: the seqs of its range are spoken for (see `shed`).
            for data in try Data.fetchAll(
                db,
                sql: "SELECT data FROM events WHERE \(Self.ofPriority(2)) AND seq BETWEEN ? AND ?",
                arguments: [firstSeq, lastSeq]
            ) {
                if case .gap(let gap) = (try? EventCodec.decode(Array(data)))?.payload {
                    try db.execute(
                        sql: "UPDATE state SET value = max(value, ?) WHERE key = 'shed_floor'",
                        arguments: [Int64(gap.lastSeq)]
                    )
                }
            }
            return PendingBatch(
                batchSeq: UInt64(batchSeq),
                lastSeq: UInt64(lastSeq),
                eventCount: encoded.count,
                bytes: serialized,
                backlog: try Self.hasEvents(db, after: lastSeq)
            )
        }
    }

    /// Forgets the sealed batches from `batchSeq` on, so that their events are sealed again (in
    /// smaller batches) under the same batch numbers, linked to the same previous header: what
    /// the shipper does when the collector, or a proxy before it, refuses a batch as too large
    /// (413). Safe because none of them was stored: the refused one was not, and a batch sent
    /// ahead is stored only after its predecessor (`BatchTransport.previousBatchHeader`); the
    /// caller waits for their answers first.
    ///
    /// - Parameter replacingEvent: an event of that batch to replace with a gap record stating
    ///   `reason` (a batch of one event still too large: it can never be delivered). A gap record
    ///   is never replaced: the loss it declares would go undeclared.
    /// - Returns: how many batches were forgotten; 0 when `batchSeq` is not in the outbox.
    @discardableResult
    public func unseal(from batchSeq: UInt64, replacingEvent seq: UInt64? = nil, reason: String = "") throws -> Int {
        let (forgotten, gap) = try queue.write { db -> (Int, GapRecord?) in
            guard
                let data = try Data.fetchOne(
                    db,
                    sql: "SELECT batch FROM outbox WHERE batch_seq = ?",
                    arguments: [Int64(clamping: batchSeq)]
                )
            else { return (0, nil) }
            let prev = try BatchOpener.parse(Array(data), limits: BatchLimits(maxBatchBytes: Int.max)).header
                .prevHeaderHash
            try db.execute(sql: "DELETE FROM outbox WHERE batch_seq >= ?", arguments: [Int64(clamping: batchSeq)])
            let forgotten = db.changesCount
            // The chain is back where it was before `batchSeq` was sealed.
            try setChain(
                db,
                nextBatchSeq: Int64(clamping: batchSeq),
                prevHeaderHash: prev,
                sealedThrough: try Self.sealedThrough(db)
            )
            var gap: GapRecord? = nil
            if let seq,
                let old = try Data.fetchOne(
                    db,
                    sql: "SELECT data FROM events WHERE seq = ? AND type != 'gap'",
                    arguments: [Int64(clamping: seq)]
                )
            {
                let type = (try? EventCodec.decode(Array(old)))?.type.rawValue ?? "unknown"
                let record = GapRecord(firstSeq: seq, lastSeq: seq, droppedByType: [type: 1], reason: reason)
                _ = try Self.replace(db, seq: seq, of: old.count, with: record)
                gap = record
            }
            return (forgotten, gap)
        }
        if let gap { shedReports.withLock { $0.append(gap) } }
        return forgotten
    }

    /// Replaces each event of `encoded` (seqs from `firstSeq`) that is not intact
    /// (`EventCodec.isIntact`) with a gap record of its one seq, in the database and in
    /// `encoded`; returns the records written.
    private static func replaceDamaged(
        _ db: Database,
        encoded: inout [[UInt8]],
        firstSeq: UInt64
    ) throws -> [GapRecord] {
        var records: [GapRecord] = []
        for index in encoded.indices {
            let seq = firstSeq + UInt64(index)
            guard !EventCodec.isIntact(encoded[index], seq: seq) else { continue }
            let record = GapRecord(
                firstSeq: seq,
                lastSeq: seq,
                droppedByType: ["damaged": 1],
                reason: "spool_damaged: the event stored with seq \(seq) was damaged on disk and cannot be sent"
            )
            encoded[index] = try replace(db, seq: seq, of: encoded[index].count, with: record)
            records.append(record)
        }
        return records
    }

    /// Stores `record` in place of the event at `seq` (`size` serialized bytes), keeping the
    /// byte count; returns the record's serialized event.
    private static func replace(_ db: Database, seq: UInt64, of size: Int, with record: GapRecord) throws -> [UInt8] {
        let data = try EventCodec.encode(Event(seq: seq, payload: .gap(record)))
        try db.execute(
            sql: "UPDATE events SET type = 'gap', priority = 2, data = ? WHERE seq = ?",
            arguments: [Data(data), Int64(clamping: seq)]
        )
        try db.execute(
            sql: "UPDATE state SET value = value + ? WHERE key = 'bytes'",
            arguments: [data.count - size]
        )
        return data
    }

    /// Sets the chain after the last sealed batch (the next batch number and the header it
    /// links to) in the database and in the anchor, which says it before the transaction
    /// commits: a batch number and chain link are spoken for once handed out.
    private func setChain(_ db: Database, nextBatchSeq: Int64, prevHeaderHash: [UInt8], sealedThrough: Int64) throws {
        try db.execute(sql: "UPDATE state SET value = ? WHERE key = 'next_batch_seq'", arguments: [nextBatchSeq])
        try db.execute(
            sql: "UPDATE state SET value = ? WHERE key = 'prev_header_hash'",
            arguments: [Data(prevHeaderHash)]
        )
        let committedNext = try Self.integer(db, "next_seq")
        try anchor.withLock { anchor in
            var changed = anchor
            changed.nextBatchSeq = nextBatchSeq
            changed.prevHeaderHash = Hex.encode(prevHeaderHash)
            changed.sealedThrough = sealedThrough
            changed.nextSeq = committedNext
            try changed.save(anchorPath)
            anchor = changed
        }
    }

    /// The last seq in a sealed batch still in the outbox; 0 when it is empty.
    private static func sealedThrough(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT coalesce(max(last_seq), 0) FROM outbox") ?? 0
    }

    private static func hasEvents(_ db: Database, after seq: Int64) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM events WHERE seq > ?)", arguments: [seq]) ?? false
    }

    /// `nextBatch(after:maxEvents:maxBytes:seal:)`, sealed by `sealer` (protobuf, zstd, Ed25519,
    /// hash chain): what the agent's shipper does.
    public func nextBatch(
        after: UInt64? = nil,
        maxEvents: Int,
        maxBytes: Int,
        sealer: BatchSealer
    ) throws -> PendingBatch? {
        try nextBatch(after: after, maxEvents: maxEvents, maxBytes: maxBytes) { encoded, firstSeq, batchSeq, prev in
            try sealer.seal(encodedEvents: encoded, firstSeq: firstSeq, batchSeq: batchSeq, prevHeaderHash: prev)
        }
    }

    /// The collector stored `batch`: forget it and its events.
    public func acknowledge(_ batch: PendingBatch) throws {
        let emptied = try queue.write { db in
            let freed =
                try Int64.fetchOne(
                    db,
                    sql: "SELECT coalesce(sum(length(data)), 0) FROM events WHERE seq <= ?",
                    arguments: [batch.lastSeq]
                ) ?? 0
            try db.execute(sql: "UPDATE state SET value = value - ? WHERE key = 'bytes'", arguments: [freed])
            try db.execute(sql: "DELETE FROM events WHERE seq <= ?", arguments: [batch.lastSeq])
            try db.execute(sql: "DELETE FROM outbox WHERE batch_seq = ?", arguments: [batch.batchSeq])
            return try Self.integer(db, "bytes") == 0
        }
        // Everything delivered after the disk filled: the reserve back, then the bound lifted
        // and the database free to grow. Not before the reserve is back: a disk that filled
        // again with the log holding pages past the end of the database could not be
        // checkpointed, nor anything deleted (see `makeRoomOnFullDisk`). Tried at most every
        // `reserveRetryInterval` while the disk has no room for it.
        if emptied, !hasReserve.withLock({ $0 }) {
            let now = ContinuousClock.now
            let due = lastReserveAttempt.withLock { last in
                guard last.map({ now - $0 >= Self.reserveRetryInterval }) ?? true else { return false }
                last = now
                return true
            }
            if due {
                checkpoint(.truncate)
                if restoreReserve() {
                    diskBound.withLock { $0 = nil }
                    limitGrowth(false)
                }
            }
        }
    }

    /// When `acknowledge` last tried to make the reserve again.
    private let lastReserveAttempt = Mutex<ContinuousClock.Instant?>(nil)
    static let reserveRetryInterval = Duration.seconds(10)

    /// Counts for health reporting and tests.
    public struct Statistics: Sendable, Hashable {
        public var pendingEvents: Int
        public var batchesInFlight: Int
        public var nextSeq: UInt64
        public var nextBatchSeq: UInt64
        /// Serialized bytes of the events held: what `Limits.maxBytes` bounds.
        public var bytes: Int
        /// Events dropped because the spool was full, over the spool's life.
        public var droppedTotal: UInt64
    }

    public func statistics() throws -> Statistics {
        try queue.read { db in
            Statistics(
                pendingEvents: try Int.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0,
                batchesInFlight: try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") ?? 0,
                nextSeq: UInt64(try Self.integer(db, "next_seq")),
                nextBatchSeq: UInt64(try Self.integer(db, "next_batch_seq")),
                bytes: Int(try Self.integer(db, "bytes")),
                droppedTotal: UInt64(try Self.integer(db, "dropped_total"))
            )
        }
    }

    private static func integer(_ db: Database, _ key: String) throws -> Int64 {
        guard let v = try Int64.fetchOne(db, sql: "SELECT value FROM state WHERE key = ?", arguments: [key]) else {
            throw SpoolError("spool state '\(key)' is missing; the spool file is damaged")
        }
        return v
    }

    private static func integerOrBlob(_ db: Database, _ key: String) throws -> DatabaseValue {
        guard let v = try DatabaseValue.fetchOne(db, sql: "SELECT value FROM state WHERE key = ?", arguments: [key]),
            !v.isNull
        else {
            throw SpoolError("spool state '\(key)' is missing; the spool file is damaged")
        }
        return v
    }

    private static func blob(_ db: Database, _ key: String) throws -> [UInt8] {
        guard let v = try Data.fetchOne(db, sql: "SELECT value FROM state WHERE key = ?", arguments: [key]) else {
            throw SpoolError("spool state '\(key)' is missing; the spool file is damaged")
        }
        return Array(v)
    }
}

public struct SpoolError: Error, CustomStringConvertible, Sendable {
    public var message: String
    /// A write failed for lack of space (ENOSPC, EDQUOT): see `Spool.isDiskFull`.
    public var isDiskFull: Bool
    public init(_ message: String, isDiskFull: Bool = false) {
        self.message = message
        self.isDiskFull = isDiskFull
    }
    public var description: String { message }
}
