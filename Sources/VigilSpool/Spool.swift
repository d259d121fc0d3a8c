import Foundation
import GRDB
import VigilCore
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
/// collector confirmed them. After a restart the outbox batch is sent again unchanged, so the
/// collector deduplicates it.
public final class Spool: Sendable {
    private let queue: DatabaseQueue
    public let path: String

    public init(path: String) throws {
        self.path = path
        var config = Configuration()
        config.prepareDatabase { db in
            // WAL + synchronous=FULL: a committed append survives a power cut.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        queue = try DatabaseQueue(path: path, configuration: config)
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
        }
        try Self.migrator.migrate(queue)
    }

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
        return m
    }

    /// Numbers and stores events. Returns them with their seqs. Seqs are strictly increasing
    /// across calls and restarts.
    ///
    /// - Parameter deriving: called with each event once it has its seq; the events it returns
    ///   (alerts, say) are numbered and stored right after it, in the same transaction, so an
    ///   event and what was derived from it are accepted together or not at all.
    @discardableResult
    public func append(_ events: [Event], deriving: ((Event) -> [Event])? = nil) throws -> [Event] {
        guard !events.isEmpty else { return [] }
        return try queue.write { db in
            var next = try Self.integer(db, "next_seq")
            let insert = try db.makeStatement(sql: "INSERT INTO events (seq, type, priority, data) VALUES (?, ?, ?, ?)")
            var numbered: [Event] = []
            numbered.reserveCapacity(events.count)
            func store(_ event: Event) throws -> Event {
                var event = event
                event.seq = UInt64(next)
                let data = try EventCodec.encode(event)
                try insert.execute(arguments: [next, event.type.rawValue, event.isHighPriority ? 1 : 0, Data(data)])
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
            try db.execute(sql: "UPDATE state SET value = ? WHERE key = 'next_seq'", arguments: [next])
            return numbered
        }
    }

    /// A sealed batch ready to send, and what to acknowledge when the collector took it.
    public struct PendingBatch: Sendable {
        public var batchSeq: UInt64
        public var lastSeq: UInt64
        public var eventCount: Int
        /// The serialized `vigil.v1.Batch`.
        public var bytes: [UInt8]
    }

    /// The batch to send next: the one in flight if there is one (resent unchanged), else a new
    /// one sealed from the oldest unsent events. Nil when there is nothing to send.
    ///
    /// - Parameter seal: builds the signed batch from serialized events, their first seq, the
    ///   batch seq and the previous header hash (a `BatchSealer`).
    public func nextBatch(
        maxEvents: Int,
        maxBytes: Int,
        seal: ([[UInt8]], UInt64, UInt64, [UInt8]) throws -> SealedBatch
    ) throws -> PendingBatch? {
        try queue.write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT batch_seq, last_seq, batch FROM outbox ORDER BY batch_seq LIMIT 1") {
                let bytes = Array(row["batch"] as Data)
                let batch = try BatchOpener.parse(bytes, limits: BatchLimits(maxBatchBytes: Int.max))
                return PendingBatch(
                    batchSeq: UInt64(row["batch_seq"] as Int64),
                    lastSeq: UInt64(row["last_seq"] as Int64),
                    eventCount: Int(batch.header.eventCount),
                    bytes: bytes
                )
            }
            let rows = try Row.fetchCursor(db, sql: "SELECT seq, data FROM events ORDER BY seq LIMIT ?", arguments: [maxEvents])
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
            let sealed = try seal(encoded, UInt64(firstSeq), UInt64(batchSeq), prev)
            let serialized = sealed.serialized()
            try db.execute(
                sql: "INSERT INTO outbox (batch_seq, last_seq, header_hash, batch) VALUES (?, ?, ?, ?)",
                arguments: [batchSeq, lastSeq, Data(sealed.headerHash), Data(serialized)]
            )
            try db.execute(sql: "UPDATE state SET value = ? WHERE key = 'next_batch_seq'", arguments: [batchSeq + 1])
            try db.execute(sql: "UPDATE state SET value = ? WHERE key = 'prev_header_hash'", arguments: [Data(sealed.headerHash)])
            return PendingBatch(batchSeq: UInt64(batchSeq), lastSeq: UInt64(lastSeq), eventCount: encoded.count, bytes: serialized)
        }
    }

    /// The collector stored `batch`: forget it and its events.
    public func acknowledge(_ batch: PendingBatch) throws {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM events WHERE seq <= ?", arguments: [batch.lastSeq])
            try db.execute(sql: "DELETE FROM outbox WHERE batch_seq = ?", arguments: [batch.batchSeq])
        }
    }

    /// Counts for health reporting and tests.
    public struct Statistics: Sendable, Hashable {
        public var pendingEvents: Int
        public var batchesInFlight: Int
        public var nextSeq: UInt64
        public var nextBatchSeq: UInt64
    }

    public func statistics() throws -> Statistics {
        try queue.read { db in
            Statistics(
                pendingEvents: try Int.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0,
                batchesInFlight: try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") ?? 0,
                nextSeq: UInt64(try Self.integer(db, "next_seq")),
                nextBatchSeq: UInt64(try Self.integer(db, "next_batch_seq"))
            )
        }
    }

    private static func integer(_ db: Database, _ key: String) throws -> Int64 {
        guard let v = try Int64.fetchOne(db, sql: "SELECT value FROM state WHERE key = ?", arguments: [key]) else {
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
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
