import Foundation
import Logging
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilCollector

/// One agent's events in a time range: the stores find them through each batch's event time
/// bounds and the (agent, seq) index (`BatchTimeBounds`), so these tests compare that path with
/// the same filter applied to everything stored.
@Suite("Agent and time queries")
struct AgentTimeQueryTests {
    static let t0: Int64 = 1_795_870_800 * 1_000_000_000
    static func at(_ seconds: Int64) -> Timestamp { Timestamp(nanosecondsSinceEpoch: t0 + seconds * 1_000_000_000) }

    /// What the agent-and-time path must return: every stored event of `agentId` whose time is
    /// in `[since, until)`, in id order, picked from an unfiltered read of the store.
    static func expected(
        _ all: [StoredEvent],
        agentId: String,
        since: Timestamp?,
        until: Timestamp?
    ) -> [Int64] {
        all.filter { stored in
            let time = stored.event.time.nanosecondsSinceEpoch
            return stored.agentId == agentId
                && since.map { time >= $0.nanosecondsSinceEpoch } ?? true
                && until.map { time < $0.nanosecondsSinceEpoch } ?? true
        }.map(\.id)
    }

    /// Windows over the stream: open on either side, empty, inside one batch, across batches,
    /// and around the times a clock jump sent back.
    static let windows: [(Int64?, Int64?)] = [
        (nil, 0), (0, nil), (nil, 5), (5, 6), (3, 47), (40, 60), (58, 61), (100, 130), (131, 140),
        (119, 121), (-100, -50), (200, nil), (nil, 10_000), (7, 7),
    ]

    @Test(
        "one agent in a time range: exactly the rows of that agent and time, with clock jumps and collector alerts",
        arguments: Backend.allCases
    )
    func matchesFullScan(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var generator = SplitMix64(seed: 7)
            var agents = [AgentStream(), AgentStream(), AgentStream()]
            for i in agents.indices { try await f.enroll(agents[i].identity) }
            var clock: [Int64] = [0, 0, 0]
            for round in 0..<12 {
                for i in agents.indices {
                    // Mostly forward with jitter inside a batch, the agents' batches interleaved;
                    // agent 1's clock jumps back 45 s at round 6.
                    if i == 1, round == 6 { clock[i] -= 45 }
                    let times = (0..<5).map { _ in
                        clock[i] += Int64.random(in: 0...3, using: &generator)
                        return Self.at(clock[i] - Int64.random(in: 0...2, using: &generator))
                    }
                    if i == 2, round == 9 {
                        // A skipped batch seq: the collector stores a gap alert of its own
                        // (negative seq, received now, far after the stream's times).
                        agents[i].batchSeq += 1
                    }
                    #expect(try await f.collector.receive(batch: agents[i].next(times: times)).status == "accepted")
                }
            }
            let all = try await f.store.events(EventQuery(limit: 100_000))
            let streamed = 3 * 12 * 5
            #expect(all.count == streamed + 1)
            let collectorAlerts = all.filter { stored in
                guard case .alert(let alert) = stored.event.payload else { return false }
                return alert.isCollectorGenerated
            }
            #expect(collectorAlerts.map(\.agentId) == [agents[2].identity.agentId])
            var nonEmpty = 0
            for agent in agents {
                let id = agent.identity.agentId
                for (since, until) in Self.windows {
                    let s = since.map { Self.at($0) }
                    let u = until.map { Self.at($0) }
                    let want = Self.expected(all, agentId: id, since: s, until: u)
                    if !want.isEmpty { nonEmpty += 1 }
                    let asc = try await f.store.events(EventQuery(agentId: id, since: s, until: u, limit: 10_000))
                    #expect(
                        asc.map(\.id) == want,
                        "agent \(id) since \(String(describing: since)) until \(String(describing: until))"
                    )
                    let desc = try await f.store.events(
                        EventQuery(agentId: id, since: s, until: u, order: .desc, limit: 10_000)
                    )
                    #expect(desc.map(\.id) == want.reversed())
                    // Cursor paging of three at a time gives the same rows.
                    var paged: [Int64] = []
                    var after: Int64? = nil
                    while true {
                        let page = try await f.store.events(
                            EventQuery(agentId: id, since: s, until: u, after: after, limit: 3)
                        )
                        paged += page.map(\.id)
                        guard page.count == 3, let last = page.last else { break }
                        after = last.id
                    }
                    #expect(paged == want)
                    // With a type on top: the same rows of that type (all are file events but the alert).
                    let alerts = try await f.store.events(
                        EventQuery(agentId: id, types: [.alert], since: s, until: u, limit: 10_000)
                    )
                    #expect(alerts.map(\.id) == want.filter { w in all.first { $0.id == w }?.event.type == .alert })
                }
            }
            // Most windows hold rows (22 of the 42 with this seed).
            #expect(nonEmpty > 15)
        }
    }

    @Test("SQLite answers the batch seq range from its index, without reading batch bodies")
    func sqliteSeqBoundsPlan() async throws {
        let dir = try TemporaryDirectory(prefix: "vigil-bounds-plan")
        let path = dir.path + "/events.sqlite"
        try await SQLiteEventStore(path: path).close()
        for (since, until) in [(true, true), (true, false), (false, true)] {
            let sql = SQLiteEventStore.seqBoundsSQL(since: since, until: until)
            let plan = try await sqliteRows(path, "EXPLAIN QUERY PLAN " + sql).map { $0.joined(separator: "|") }
            #expect(plan.contains { $0.contains("USING COVERING INDEX batches_by_agent_time") }, "\(sql): \(plan)")
        }
    }

    /// Rows as a collector before batch time bounds stored them (the same SQL for both engines):
    /// three batches of `old-agent`, the second with a time that goes back, and a collector alert.
    static func oldRowsInsert() throws -> [String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let batches: [(batchSeq: Int, times: [Int64])] = [(1, [0, 1, 2]), (2, [10, 5, 11]), (3, [20, 21])]
        var batchRows: [String] = []
        var eventRows: [String] = []
        var seq: UInt64 = 1
        for batch in batches {
            batchRows.append(
                "('old-agent', \(batch.batchSeq), '\\x00', '\\x00', '\\x00', '\\x00', \(seq), \(batch.times.count), 0, 'ok')"
            )
            for time in batch.times {
                let event = Event(
                    seq: seq,
                    time: at(time),
                    payload: .file(FileEvent(action: .create, targetFilename: "/tmp/old\(seq)"))
                )
                let json = String(decoding: try encoder.encode(event), as: UTF8.self)
                eventRows.append(
                    "('old-agent', \(seq), \(batch.batchSeq), 'file', \(event.time.nanosecondsSinceEpoch), '\(json)')"
                )
                seq += 1
            }
        }
        let alert = Event(
            seq: 0,
            time: at(50),
            payload: .alert(Alert(ruleId: "vigil-chain-gap", title: "gap", level: "high"))
        )
        let alertJSON = String(decoding: try encoder.encode(alert), as: UTF8.self)
        eventRows.append("('old-agent', -1, 3, 'alert', \(alert.time.nanosecondsSinceEpoch), '\(alertJSON)')")
        return [
            "INSERT INTO agents (agent_id, public_key, key_id, hostname, machine_id, enrolled_at) VALUES ('old-agent', 'k', 'k', 'h', 'm', 0)",
            "INSERT INTO batches (agent_id, batch_seq, header, signature, body, header_hash, first_seq, event_count, received_at, chain) VALUES "
                + batchRows.joined(separator: ", "),
            "INSERT INTO events (agent_id, seq, batch_seq, type, time_ns, json) VALUES "
                + eventRows.joined(separator: ", "),
        ]
    }

    /// What a store migrated from before batch time bounds answers about `oldRowsInsert`'s rows.
    static func expectBounded(_ store: any EventStore) async throws {
        func seqs(_ since: Int64?, _ until: Int64?) async throws -> [Int64] {
            try await store.events(
                EventQuery(agentId: "old-agent", since: since.map { at($0) }, until: until.map { at($0) })
            ).map { Int64($0.event.seq) }
        }
        #expect(try await seqs(5, 11) == [4, 5])
        #expect(try await seqs(nil, 3) == [1, 2, 3])
        #expect(try await seqs(21, nil) == [8, 0])
        #expect(try await seqs(3, 5).isEmpty)
        #expect(try await seqs(nil, nil).count == 9)
    }

    @Test("an SQLite store from before batch time bounds gets them from its events")
    func sqliteMigration() async throws {
        let dir = try TemporaryDirectory(prefix: "vigil-bounds-migration")
        let path = dir.path + "/events.sqlite"
        do {
            let old = try SQLiteEventStore(path: path, migratingUpTo: "v8-key-rotation")
            for sql in try Self.oldRowsInsert() { try await old.executeRaw(sql) }
            try await old.close()
        }
        let store = try SQLiteEventStore(path: path)
        try await Self.expectBounded(store)
        try await store.close()
    }

    @Test("a PostgreSQL store from before batch time bounds gets them from its events")
    func postgresMigration() async throws {
        try await withOlderPostgresStore(atVersion: 8, rows: try Self.oldRowsInsert()) { store, _ in
            try await Self.expectBounded(store)
        }
    }
}

extension SQLiteEventStore {
    /// For a store at an older schema that today's ingest writes into: the batch time bound
    /// columns (v9-batch-time-bounds), added for a while and then taken away again.
    func lendBatchTimeBounds() async throws {
        try await executeRaw(
            "ALTER TABLE batches ADD COLUMN min_time_ns INTEGER; ALTER TABLE batches ADD COLUMN max_time_ns INTEGER"
        )
    }

    func returnBatchTimeBounds() async throws {
        try await executeRaw("ALTER TABLE batches DROP COLUMN min_time_ns; ALTER TABLE batches DROP COLUMN max_time_ns")
    }
}
