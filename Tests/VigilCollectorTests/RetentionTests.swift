import Foundation
import Logging
import Synchronization
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilCollector

/// Retention (`--retention-days`, `--max-store-size`): old events go in bounded transactions,
/// while agents, chain state and dedup survive.
@Suite("Retention")
struct RetentionTests {
    static let now = Timestamp(nanosecondsSinceEpoch: 1_795_900_000_000_000_000)
    static let day: Int64 = 86_400 * 1_000_000_000

    static func daysAgo(_ days: Int64) -> Timestamp {
        Timestamp(nanosecondsSinceEpoch: now.nanosecondsSinceEpoch - days * day)
    }

    static func allEvents(_ store: any EventStore) async throws -> [StoredEvent] {
        try await store.events(EventQuery(limit: 100_000))
    }

    /// Whether the store's usage comes to count `events`. PostgreSQL's live-row statistics lag
    /// commits and drift when an autoanalyze races the inserts; ANALYZE (a full count on a table
    /// this small) settles them once every backend has reported. A backend reports its counts at
    /// most once a second: a count taken sooner can match and then grow by an ingest connection's
    /// late report (which made retention delete too much), so the first ANALYZE waits that out.
    static func settled(_ f: CollectorFixture, events: Int) async throws -> Bool {
        var seen: Int64 = -1
        if case .postgres = f.location { try await Task.sleep(for: .milliseconds(1_200)) }
        let settled = try await eventually {
            if case .postgres(let location) = f.location, var url = URLComponents(string: TestPostgres.url) {
                url.path = "/" + location.database
                try await TestPostgres.run("ANALYZE events", on: url.string)
            }
            seen = try await f.store.storeUsage().events
            return seen == Int64(events)
        }
        if !settled { Issue.record("the store counts \(seen) events, not \(events)") }
        return settled
    }

    @Test(
        "events older than the cutoff go, newer stay; the chain goes on and old batches stay duplicates",
        arguments: Backend.allCases
    )
    func byAge(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            let old1 = try agent.next(times: Array(repeating: Self.daysAgo(40), count: 4))
            let old2 = try agent.next(times: Array(repeating: Self.daysAgo(31), count: 3))
            // Half old, half new: its newer events keep the batch whole.
            let mixed = try agent.next(times: [Self.daysAgo(35), Self.daysAgo(35), Self.daysAgo(1), Self.daysAgo(1)])
            let new = try agent.next(times: [Self.daysAgo(2), Self.now])
            for batch in [old1, old2, mixed, new] {
                #expect(try await f.collector.receive(batch: batch).chain == "ok")
            }

            var policy = RetentionPolicy(maxAgeDays: 30)
            policy.pause = .zero
            let report = try await Retention.pass(policy, store: f.store, now: Self.now)
            #expect(report.ran && report.deletedByAge == 9 && report.deletedBySize == 0)
            #expect(report.transactions == 1)

            let left = try await Self.allEvents(f.store)
            #expect(left.map(\.event.seq) == [10, 11, 12, 13])
            #expect(left.allSatisfy { $0.event.time.nanosecondsSinceEpoch >= Self.daysAgo(30).nanosecondsSinceEpoch })
            // Batches 1 and 2 lost their bodies; their signed headers stay and still verify, so
            // the chain re-checks whole (what vigilctl verify does).
            let batches = try await f.store.batches(agentId: agent.identity.agentId, afterBatchSeq: 0, limit: 100)
            #expect(batches.map(\.batchSeq) == [1, 2, 3, 4])
            #expect(batches.map(\.pruned) == [true, true, false, false])
            #expect(batches.filter(\.pruned).allSatisfy { $0.body.isEmpty })
            var verifier = ChainVerifier(agentId: agent.identity.agentId, publicKey: agent.identity.publicKey)
            for batch in batches { verifier.check(batch) }
            #expect(verifier.isWhole && verifier.pruned == 2 && verifier.events == 6, "\(verifier.breaks)")
            // A pruned header altered in the store is still caught.
            var forged = batches[0]
            forged.headerBytes[forged.headerBytes.count - 1] ^= 1
            var tampered = ChainVerifier(agentId: agent.identity.agentId, publicKey: agent.identity.publicKey)
            for batch in [forged] + batches.dropFirst() { tampered.check(batch) }
            #expect(!tampered.isWhole, "a forged pruned header verified")

            var summary = try #require(try await f.store.agents().first)
            #expect(summary.agentId == agent.identity.agentId && summary.lastBatchSeq == 4)
            #expect(summary.chainStatus == "whole" && summary.events == 13)

            // Resent old batches are recognized, not stored again.
            #expect(try await f.collector.receive(batch: old1).status == "duplicate")
            #expect(try await f.collector.receive(batch: old2).status == "duplicate")
            #expect(try await f.collector.receive(batch: mixed).status == "duplicate")
            // The next batch still links to the last one.
            let next = try agent.next(times: [Self.now])
            let response = try await f.collector.receive(batch: next)
            #expect(response.status == "accepted" && response.chain == "ok")
            #expect(try await Self.allEvents(f.store).map(\.event.seq) == [10, 11, 12, 13, 14])
            summary = try #require(try await f.store.agents().first)
            #expect(summary.chainStatus == "whole" && summary.lastBatchSeq == 5, "\(summary.anomalies)")

            // Later, the mixed batch's last events age out too and the batch is pruned.
            let later = Timestamp(nanosecondsSinceEpoch: Self.now.nanosecondsSinceEpoch + 30 * Self.day)
            #expect(try await Retention.pass(policy, store: f.store, now: later).deletedByAge == 3)
            let rest = try await f.store.batches(agentId: agent.identity.agentId, afterBatchSeq: 0, limit: 100)
            #expect(rest.filter { !$0.pruned }.map(\.batchSeq) == [4, 5])
            var again = ChainVerifier(agentId: agent.identity.agentId, publicKey: agent.identity.publicKey)
            for batch in rest { again.check(batch) }
            #expect(again.isWhole && again.pruned == 3, "\(again.breaks)")
        }
    }

    @Test(
        "deletion runs in bounded transactions: 35 old events with a batch size of 10 take 4",
        arguments: Backend.allCases
    )
    func boundedBatches(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            func ingestOld() async throws {
                for _ in 0..<7 {
                    _ = try await f.collector.receive(
                        batch: agent.next(times: Array(repeating: Self.daysAgo(50), count: 5))
                    )
                }
            }
            try await ingestOld()
            _ = try await f.collector.receive(batch: agent.next(times: [Self.now, Self.now]))

            var policy = RetentionPolicy(maxAgeDays: 7)
            policy.batchSize = 10
            policy.pause = .zero
            let report = try await Retention.pass(policy, store: f.store, now: Self.now)
            #expect(report.deletedByAge == 35 && report.transactions == 4)
            #expect(try await Self.allEvents(f.store).map(\.event.seq) == [36, 37])

            // The store operation itself: at most `limit` per call, then nothing left.
            try await ingestOld()
            var counts: [Int] = []
            for _ in 0..<5 {
                counts.append(try await f.store.deleteOldestEvents(before: Self.daysAgo(7), limit: 10))
            }
            #expect(counts == [10, 10, 10, 5, 0])
            #expect(try await Self.allEvents(f.store).map(\.event.seq) == [36, 37])
            #expect(try await f.store.agents().first?.chainStatus == "whole")
        }
    }

    @Test("over the size bound, the oldest events go until the store is under it", arguments: Backend.allCases)
    func bySize(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            let batches = 100
            let perBatch = 20
            let total = batches * perBatch
            // Through a second collector whose store is closed afterwards: a PostgreSQL backend
            // reports its row counts when it exits, where a pooled one may hold them back for
            // seconds (retrying under lock contention) and inflate the count after it settled,
            // which made this pass delete too much.
            try await f.withSecondCollector { ingest in
                for b in 0..<batches {
                    // Event time grows with seq: the oldest events are the lowest seqs.
                    let time = Self.daysAgo(Int64(batches - b))
                    _ = try await ingest.collector.receive(
                        batch: agent.next(times: Array(repeating: time, count: perBatch))
                    )
                }
            }
            // PostgreSQL's row counts come from statistics, which lag commits by a second or so.
            #expect(try await Self.settled(f, events: total))
            let before = try await f.store.storeUsage()
            let bound = before.bytes / 2

            var policy = RetentionPolicy(maxStoreBytes: bound)
            policy.batchSize = 300
            policy.pause = .zero
            let report = try await Retention.pass(policy, store: f.store, now: Self.now)
            #expect(report.deletedByAge == 0 && report.deletedBySize > 0)
            #expect(report.transactions >= 3, "bounded: at most 300 per transaction")

            let left = try await Self.allEvents(f.store).map(\.event.seq)
            let firstKept = UInt64(total - left.count + 1)
            #expect(left == Array(firstKept...UInt64(total)), "the newest events stay")
            #expect(left.count > total / 4 && left.count < total * 3 / 4, "\(left.count) of \(total) left")
            switch backend {
            case .sqlite:
                #expect(try #require(report.usage).bytes <= bound)
                #expect(try await f.store.storeUsage().bytes <= bound)
            case .postgres:
                #expect(try await Self.settled(f, events: left.count))
                let after = try await f.store.storeUsage().bytes
                #expect(after <= bound + bound / 20, "\(after) > \(bound)")
            }
            #expect(try await f.store.agents().first?.chainStatus == "whole")
            #expect(try await f.collector.receive(batch: agent.next(times: [Self.now])).chain == "ok")

            // Under the bound: a second pass deletes nothing.
            if backend == .sqlite {
                #expect(try await Retention.pass(policy, store: f.store, now: Self.now).deleted == 0)
            }
        }
    }

    @Test("the collector's retention service runs a pass at start, logs what it deleted, and stops when cancelled")
    func service() async throws {
        try await withCollector(.sqlite) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            _ = try await f.collector.receive(batch: agent.next(times: [Self.daysAgo(400), Self.daysAgo(400)]))
            _ = try await f.collector.receive(batch: agent.next(times: [.now()]))
            let messages = LogRecorder()
            let logger = Logger(label: "retention-test") { _ in messages }
            var policy = RetentionPolicy(maxAgeDays: 365)
            policy.interval = .milliseconds(100)
            let service = RetentionService(policy: policy, store: f.store, logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                #expect(try await eventually(timeout: .seconds(10)) { try await Self.allEvents(f.store).count == 1 })
                #expect(await eventually(timeout: .seconds(10)) { messages.contains("retention deleted events") })
                group.cancelAll()
                try await group.waitForAll()
            }
            #expect(
                messages.lines.contains { $0.contains("retention deleted events") && $0.contains("deleted_by_age=2") }
            )
        }
    }

    @Test("a new SQLite file uses incremental auto-vacuum, and retention gives freed pages back")
    func sqliteReclaims() async throws {
        try await withCollector(.sqlite) { f in
            guard case .sqlite(let path) = f.location else { return }
            #expect(try await sqliteRows(path, "PRAGMA auto_vacuum") == [["2"]])
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            for _ in 0..<50 {
                _ = try await f.collector.receive(
                    batch: agent.next(times: Array(repeating: Self.daysAgo(9), count: 20))
                )
            }
            var policy = RetentionPolicy(maxAgeDays: 1)
            policy.pause = .zero
            #expect(try await Retention.pass(policy, store: f.store, now: Self.now).deletedByAge == 1_000)
            #expect(try await sqliteRows(path, "PRAGMA freelist_count") == [["0"]])
        }
    }

    @Test("collectors sharing a PostgreSQL store take turns: one runs retention, the other skips")
    func postgresLock() async throws {
        try await withCollector(.postgres) { f in
            try await f.withSecondCollector { second in
                var inner: Bool? = nil
                let outer = try await f.store.withRetentionLock {
                    inner = try await second.store.withRetentionLock {}
                }
                #expect(outer && inner == false)
                // Released afterwards.
                #expect(try await second.store.withRetentionLock {})
                var policy = RetentionPolicy(maxAgeDays: 1)
                policy.pause = .zero
                #expect(try await Retention.pass(policy, store: second.store).ran)
            }
        }
    }

    @Test(
        "sizes and days parse; bad values are refused with what is wrong",
        arguments: [
            ("10GiB", 10 << 30), ("500MiB", 500 << 20), ("2GB", 2_000_000_000), ("1.5 GiB", 3 << 29),
            ("2048k", 2 << 20), ("1048576", 1 << 20),
        ] as [(String, Int64)]
    )
    func parseSizes(text: String, bytes: Int64) throws {
        #expect(try RetentionPolicy.parseSize(text) == bytes)
    }

    @Test("bad flags: the collector refuses to start and says why")
    func badFlags() async throws {
        #expect(try RetentionPolicy.parseDays("30") == 30)
        for (flag, value, expected) in [
            ("--retention-days", "0", "must be a whole number of days from 1 to 36500"),
            ("--retention-days", "7d", "must be a whole number of days"),
            ("--max-store-size", "10XB", "'10XB' is not a size; use e.g. 500MiB or 10GiB"),
            ("--max-store-size", "5 parsecs", "is not a size"),
            ("--max-store-size", "100KiB", "below the minimum of 1MiB"),
        ] {
            let result = try await runCommand(BuiltProducts.path("vigil-collector"), [flag, value])
            #expect(result.status == 64, "\(flag) \(value): \(result.stderr)")
            #expect(result.stderr.contains(expected), "\(result.stderr)")
        }
    }
}

/// Keeps what is logged through it, one line per message with its metadata.
struct LogRecorder: LogHandler {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
    }

    let recorded = Lines()
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        recorded.lines.withLock { $0.append(([event.message.description] + fields).joined(separator: " ")) }
    }

    var lines: [String] { recorded.lines.withLock { $0 } }

    func contains(_ text: String) -> Bool { lines.contains { $0.contains(text) } }
}

extension AgentStream {
    /// The next signed batch: one file event per time, in seq order.
    mutating func next(times: [Timestamp]) throws -> [UInt8] {
        try next(
            eventsAt: times,
            payload: { seq in
                .file(
                    FileEvent(
                        action: .create,
                        targetFilename: "/var/tmp/retention/\(seq)/" + String(repeating: "x", count: 120)
                    )
                )
            }
        )
    }

    private mutating func next(eventsAt times: [Timestamp], payload: (UInt64) -> Event.Payload) throws -> [UInt8] {
        batchSeq += 1
        let events = times.enumerated().map { i, time in
            Event(seq: nextSeq + UInt64(i), time: time, payload: payload(nextSeq + UInt64(i)))
        }
        nextSeq += UInt64(times.count)
        let batch = try BatchSealer(identity: identity).seal(events: events, batchSeq: batchSeq, prevHeaderHash: prev)
        prev = batch.headerHash
        return batch.serialized()
    }
}
