import Foundation
import Logging
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilCollector

/// The inventory (`GET /v1/agents`) shows each agent's latest attack-drill selftest and when it
/// last passed, from the agent-health events of kind `selftest` its batches carry.
@Suite("Selftest inventory")
struct SelftestInventoryTests {
    static let passedAt = Timestamp(nanosecondsSinceEpoch: 1_795_900_000_000_000_000)
    static let failedAt = Timestamp(nanosecondsSinceEpoch: 1_795_903_600_000_000_000)

    static func selftest(drills: UInt64, detected: UInt64, missed: UInt64) -> Event.Payload {
        .health(
            AgentHealth(
                kind: "selftest",
                message: "selftest: \(detected)/\(drills) drills detected",
                counters: [
                    "drills": drills, "detected": detected, "missed": missed,
                    "skipped": drills - detected - missed, "latency_ms_max": 420,
                ]
            )
        )
    }

    @Test(
        "a later failed selftest is the last one; the earlier pass stays as selftest_passed_at",
        arguments: Backend.allCases
    )
    func lastAndPassed(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var tested = AgentStream()
            var quiet = AgentStream()
            try await f.enroll(tested.identity)
            try await f.enroll(quiet.identity)
            #expect(try await f.collector.receive(batch: quiet.next()).status == "accepted")
            #expect(try await f.collector.receive(batch: tested.next()).status == "accepted")
            let passed = try tested.next(
                at: Self.passedAt,
                [
                    .health(AgentHealth(kind: "started", message: "agent started", counters: ["detected": 9])),
                    Self.selftest(drills: 24, detected: 24, missed: 0),
                ]
            )
            #expect(try await f.collector.receive(batch: passed).chain == "ok")

            var summary = try #require(try await f.store.agents().first { $0.agentId == tested.identity.agentId })
            #expect(
                summary.lastSelftest
                    == SelftestSummary(time: Self.passedAt, drills: 24, detected: 24, missed: 0)
            )
            #expect(summary.lastSelftest?.passed == true)
            #expect(summary.selftestPassedAt == Self.passedAt)

            let failed = try tested.next(
                at: Self.failedAt,
                [
                    Self.selftest(drills: 24, detected: 21, missed: 3)
                ]
            )
            #expect(try await f.collector.receive(batch: failed).chain == "ok")
            // A pass older than both, arriving last, moves neither the last run nor the last pass.
            let older = Timestamp(nanosecondsSinceEpoch: Self.passedAt.nanosecondsSinceEpoch - 60_000_000_000)
            let late = try tested.next(at: older, [Self.selftest(drills: 24, detected: 24, missed: 0)])
            #expect(try await f.collector.receive(batch: late).chain == "ok")

            let summaries = try await f.store.agents()
            summary = try #require(summaries.first { $0.agentId == tested.identity.agentId })
            let last = try #require(summary.lastSelftest)
            #expect(last == SelftestSummary(time: Self.failedAt, drills: 24, detected: 21, missed: 3))
            #expect(!last.passed)
            #expect(summary.selftestPassedAt == Self.passedAt)
            #expect(summary.selftestStatus == "FAILED 3/24 missed")
            #expect(summary.chainStatus == "whole")

            let other = try #require(summaries.first { $0.agentId == quiet.identity.agentId })
            #expect(other.lastSelftest == nil)
            #expect(other.selftestPassedAt == nil)
            #expect(other.selftestStatus == "never")
        }
    }

    @Test("a run that detected nothing did not pass, though nothing was missed")
    func nothingDetected() {
        let event = Event(seq: 1, time: Self.passedAt, payload: Self.selftest(drills: 5, detected: 0, missed: 0))
        let summary = SelftestSummary(event)
        #expect(summary == SelftestSummary(time: Self.passedAt, drills: 5, detected: 0, missed: 0))
        #expect(summary?.passed == false)
        #expect(
            SelftestSummary(Event(seq: 2, payload: .health(AgentHealth(kind: "started", message: "up")))) == nil
        )
        var agent = AgentSummary(
            agentId: "a",
            hostname: "h",
            keyId: "k",
            enrolledAt: Self.passedAt,
            revoked: false,
            lastBatchSeq: 1,
            events: 1,
            chainStatus: "whole",
            anomalies: []
        )
        agent.lastSelftest = summary
        #expect(agent.selftestStatus == "FAILED 0/5 detected")
        agent.lastSelftest = SelftestSummary(time: Self.passedAt, drills: 5, detected: 5, missed: 0)
        #expect(agent.selftestStatus == "passed 2026-11-28 21:06")
    }

    @Test("JSON: times as nanoseconds like the other fields; an older collector's inventory still decodes")
    func json() throws {
        var agent = AgentSummary(
            agentId: "a",
            hostname: "h",
            keyId: "k",
            enrolledAt: Timestamp(nanosecondsSinceEpoch: 1),
            revoked: false,
            lastSeen: Timestamp(nanosecondsSinceEpoch: 2),
            lastBatchSeq: 1,
            events: 1,
            chainStatus: "whole",
            anomalies: []
        )
        agent.lastSelftest = SelftestSummary(time: Self.failedAt, drills: 24, detected: 21, missed: 3)
        agent.selftestPassedAt = Self.passedAt
        let object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(agent)) as? [String: Any]
        )
        let last = try #require(object["last_selftest"] as? [String: Any])
        #expect(last["time"] as? Int64 == Self.failedAt.nanosecondsSinceEpoch)
        #expect(last["passed"] as? Bool == false)
        #expect(last["drills"] as? Int == 24 && last["detected"] as? Int == 21 && last["missed"] as? Int == 3)
        #expect(object["selftest_passed_at"] as? Int64 == Self.passedAt.nanosecondsSinceEpoch)
        #expect(try JSONDecoder().decode(AgentSummary.self, from: JSONEncoder().encode(agent)) == agent)

        let older = """
            {"agent_id": "a", "hostname": "h", "key_id": "k", "enrolled_at": 1, "revoked": false, "last_seen": 2,
             "last_batch_seq": 1, "events": 1, "chain_status": "whole", "anomalies": [],
             "declared_gaps": 0, "dropped_events": 0}
            """
        let decoded = try JSONDecoder().decode(AgentSummary.self, from: Data(older.utf8))
        #expect(decoded.lastSelftest == nil && decoded.selftestPassedAt == nil)
    }

    @Test("an SQLite store from before selftests gains the columns and keeps its agents and events")
    func sqliteMigration() async throws {
        let dir = NSTemporaryDirectory() + "vigil-selftest-migration-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/events.sqlite"
        let location = StoreLocation.sqlite(path: path)
        var stream = AgentStream()
        do {
            let old = try SQLiteEventStore(path: path, migratingUpTo: "v2-seq-account")
            // Today's ingest also writes alert_level (v5-alert-level) and the batch's time
            // bounds (v9): the old tables lend it those columns for this batch only.
            try await old.executeRaw("ALTER TABLE events ADD COLUMN alert_level TEXT")
            try await old.lendBatchTimeBounds()
            let f = CollectorFixture(store: old, location: location)
            try await f.enroll(stream.identity)
            #expect(try await f.collector.receive(batch: stream.next(events: 4)).status == "accepted")
            try await old.executeRaw("ALTER TABLE events DROP COLUMN alert_level")
            try await old.returnBatchTimeBounds()
            try await old.close()
        }
        let store = try SQLiteEventStore(path: path)
        let f = CollectorFixture(store: store, location: location)
        var summary = try #require(try await store.agents().first)
        #expect(summary.agentId == stream.identity.agentId && summary.events == 4 && summary.lastBatchSeq == 1)
        #expect(summary.lastSelftest == nil && summary.selftestPassedAt == nil)
        let batch = try stream.next(
            at: Self.passedAt,
            [
                Self.selftest(drills: 3, detected: 3, missed: 0)
            ]
        )
        #expect(try await f.collector.receive(batch: batch).chain == "ok")
        summary = try #require(try await store.agents().first)
        #expect(summary.lastSelftest?.passed == true && summary.selftestPassedAt == Self.passedAt)
        #expect(summary.events == 5)
        try await store.close()
    }

    @Test("a PostgreSQL store at schema version 2 migrates to the current one and keeps its agents")
    func postgresMigration() async throws {
        let oldAgent = """
            INSERT INTO agents (agent_id, public_key, key_id, hostname, machine_id, enrolled_at, last_seen, last_batch_seq, event_count, gap_records)
            VALUES ('old-agent', 'cGs=', 'k', 'old-host', 'm', 1, 2, 3, 7, 1)
            """
        try await withOlderPostgresStore(atVersion: 2, rows: [oldAgent]) { store, location in
            let old = try #require(try await store.agents().first)
            #expect(old.agentId == "old-agent" && old.events == 7 && old.lastBatchSeq == 3 && old.declaredGaps == 1)
            #expect(old.lastSelftest == nil && old.selftestPassedAt == nil)

            let f = CollectorFixture(store: store, location: .postgres(location))
            var stream = AgentStream()
            try await f.enroll(stream.identity)
            let batch = try stream.next(
                at: Self.failedAt,
                [
                    Self.selftest(drills: 4, detected: 3, missed: 1)
                ]
            )
            #expect(try await f.collector.receive(batch: batch).chain == "ok")
            let new = try #require(try await store.agents().first { $0.agentId == stream.identity.agentId })
            #expect(new.lastSelftest == SelftestSummary(time: Self.failedAt, drills: 4, detected: 3, missed: 1))
            #expect(new.selftestPassedAt == nil)
        } afterwards: { database in
            let applied = try await database.run("SELECT version FROM schema_migrations ORDER BY version")
            #expect(
                applied.split(separator: "\n") == PostgresEventStore.migrations.map { Substring(String($0.version)) }
            )
        }
    }
}

extension AgentStream {
    /// The next signed batch, carrying `payloads` as consecutive events at `time`.
    mutating func next(at time: Timestamp, _ payloads: [Event.Payload]) throws -> [UInt8] {
        batchSeq += 1
        let events = payloads.enumerated().map { i, payload in
            Event(seq: nextSeq + UInt64(i), time: time, payload: payload)
        }
        nextSeq += UInt64(payloads.count)
        let batch = try BatchSealer(identity: identity).seal(events: events, batchSeq: batchSeq, prevHeaderHash: prev)
        prev = batch.headerHash
        return batch.serialized()
    }
}
