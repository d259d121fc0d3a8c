import Foundation
import Logging
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilCollector

/// The inventory (`GET /v1/agents`) shows what each agent last said about itself in its signed
/// stream: its version and policy hash (attributes of `started`, `policy_loaded`, `status`) and
/// its periodic `status` report (spool backlog, shed and drop counters), newest by event time.
@Suite("Agent status inventory")
struct AgentStatusInventoryTests {
    static let startedAt = Timestamp(nanosecondsSinceEpoch: 1_795_900_000_000_000_000)
    static let laterAt = Timestamp(nanosecondsSinceEpoch: 1_795_900_060_000_000_000)
    static let hashA = String(repeating: "a1", count: 32)
    static let hashB = String(repeating: "b2", count: 32)

    static func started(version: String, hash: String) -> Event.Payload {
        .health(
            AgentHealth(
                kind: "started",
                message: "vigild \(version) started",
                counters: ["watched_roots": 1],
                attributes: ["version": version, "policy_sha256": hash]
            )
        )
    }

    static func status(backlog: UInt64, shed: UInt64, queue: UInt64, kernel: UInt64) -> Event.Payload {
        .health(
            AgentHealth(
                kind: "status",
                message: "status: \(backlog) event(s) spooled",
                counters: [
                    "spool_events": backlog, "spool_bytes": backlog * 150, "spool_dropped": 0, "events_shed": shed,
                    "queue_drops": queue, "kernel_drops": kernel, "hashes_shed": 2, "shed_level": 1,
                ]
            )
        )
    }

    @Test(
        "version, policy hash and status: the newest by event time wins, each on its own",
        arguments: Backend.allCases
    )
    func merge(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var reporting = AgentStream()
            var quiet = AgentStream()
            try await f.enroll(reporting.identity)
            try await f.enroll(quiet.identity)
            #expect(try await f.collector.receive(batch: quiet.next()).status == "accepted")

            let first = try reporting.next(
                at: Self.startedAt,
                [
                    Self.started(version: "0.9.0", hash: Self.hashA),
                    Self.status(backlog: 40, shed: 0, queue: 0, kernel: 0),
                ]
            )
            #expect(try await f.collector.receive(batch: first).chain == "ok")
            var summary = try #require(try await f.store.agents().first { $0.agentId == reporting.identity.agentId })
            #expect(summary.version == "0.9.0")
            #expect(summary.policyHash == Self.hashA)
            #expect(
                summary.lastStatus
                    == AgentStatusReport(time: Self.startedAt, spoolEvents: 40, spoolBytes: 6000)
            )

            // A reload (policy_loaded: a hash, no version) and a newer status.
            let reload = try reporting.next(
                at: Self.laterAt,
                [
                    .health(
                        AgentHealth(
                            kind: "policy_loaded",
                            message: "3 rule(s)",
                            attributes: ["policy_sha256": Self.hashB]
                        )
                    ),
                    Self.status(backlog: 7, shed: 12, queue: 3, kernel: 5),
                ]
            )
            #expect(try await f.collector.receive(batch: reload).chain == "ok")
            // Older reports arriving last roll nothing back.
            let older = Timestamp(nanosecondsSinceEpoch: Self.startedAt.nanosecondsSinceEpoch - 1_000_000_000)
            let late = try reporting.next(
                at: older,
                [
                    Self.started(version: "0.8.0", hash: Self.hashA),
                    Self.status(backlog: 999, shed: 0, queue: 0, kernel: 0),
                ]
            )
            #expect(try await f.collector.receive(batch: late).chain == "ok")

            let summaries = try await f.store.agents()
            summary = try #require(summaries.first { $0.agentId == reporting.identity.agentId })
            #expect(summary.version == "0.9.0")
            #expect(summary.policyHash == Self.hashB)
            let status = try #require(summary.lastStatus)
            #expect(
                status
                    == AgentStatusReport(
                        time: Self.laterAt,
                        spoolEvents: 7,
                        spoolBytes: 1050,
                        eventsShed: 12,
                        queueDrops: 3,
                        kernelDrops: 5
                    )
            )
            #expect(summary.chainStatus == "whole")

            let other = try #require(summaries.first { $0.agentId == quiet.identity.agentId })
            #expect(other.version == nil && other.policyHash == nil && other.lastStatus == nil)
        }
    }

    @Test("what a batch says: the latest of each, nothing for batches without reports")
    func latestInBatch() {
        let events = [
            Event(seq: 1, time: Self.laterAt, payload: Self.started(version: "1.0.0", hash: Self.hashB)),
            Event(seq: 2, time: Self.startedAt, payload: Self.started(version: "0.9.0", hash: Self.hashA)),
            Event(seq: 3, time: Self.startedAt, payload: Self.status(backlog: 1, shed: 0, queue: 0, kernel: 0)),
        ]
        let update = AgentStatusUpdate.latest(in: events)
        #expect(update?.version == "1.0.0" && update?.versionAt == Self.laterAt)
        #expect(update?.policyHash == Self.hashB)
        #expect(update?.status?.spoolEvents == 1)
        let plain = [
            Event(seq: 4, payload: .health(AgentHealth(kind: "queue_drop", message: "x", counters: ["file": 3]))),
            Event(seq: 5, payload: .file(FileEvent(action: .create, targetFilename: "/tmp/x"))),
        ]
        #expect(AgentStatusUpdate.latest(in: plain) == nil)
        #expect(AgentStatusReport(plain[0]) == nil)
    }

    @Test("JSON: snake_case, absent when never reported; an older collector's inventory still decodes")
    func json() throws {
        var agent = AgentSummary(
            agentId: "a",
            hostname: "h",
            keyId: "k",
            enrolledAt: Timestamp(nanosecondsSinceEpoch: 1),
            revoked: false,
            lastBatchSeq: 1,
            events: 1,
            chainStatus: "whole",
            anomalies: []
        )
        var object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(agent)) as? [String: Any]
        )
        #expect(object["version"] == nil && object["policy_hash"] == nil && object["last_status"] == nil)
        agent.version = "1.2.3"
        agent.policyHash = Self.hashA
        agent.lastStatus = AgentStatusReport(time: Self.laterAt, spoolEvents: 9, queueDrops: 2)
        object = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(agent)) as? [String: Any])
        #expect(object["version"] as? String == "1.2.3")
        #expect(object["policy_hash"] as? String == Self.hashA)
        let status = try #require(object["last_status"] as? [String: Any])
        #expect(status["time"] as? Int64 == Self.laterAt.nanosecondsSinceEpoch)
        #expect(status["spool_events"] as? Int == 9 && status["queue_drops"] as? Int == 2)
        #expect(status["kernel_drops"] as? Int == 0 && status["events_shed"] as? Int == 0)
        #expect(try JSONDecoder().decode(AgentSummary.self, from: JSONEncoder().encode(agent)) == agent)

        let older = """
            {"agent_id": "a", "hostname": "h", "key_id": "k", "enrolled_at": 1, "revoked": false,
             "last_batch_seq": 1, "events": 1, "chain_status": "whole", "anomalies": [],
             "declared_gaps": 0, "dropped_events": 0, "last_status": {"time": 5, "spool_events": 3}}
            """
        let decoded = try JSONDecoder().decode(AgentSummary.self, from: Data(older.utf8))
        #expect(decoded.version == nil && decoded.policyHash == nil)
        #expect(decoded.lastStatus == AgentStatusReport(time: Timestamp(nanosecondsSinceEpoch: 5), spoolEvents: 3))
    }

    @Test("health events keep their attributes through the wire and JSON; without any, their JSON is as before")
    func healthAttributes() throws {
        let event = Event(seq: 7, time: Self.startedAt, payload: Self.started(version: "1.0.0", hash: Self.hashA))
        let batch = try BatchSealer(identity: AgentIdentity.generate()).seal(
            events: [event],
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash
        )
        let decoded = try BatchOpener.decodeBody(BatchOpener.parse(batch.serialized()))
        #expect(decoded == [event])
        let json = try JSONEncoder().encode(event)
        #expect(try JSONDecoder().decode(Event.self, from: json) == event)
        let plain = Event(
            seq: 8,
            payload: .health(AgentHealth(kind: "queue_drop", message: "m", counters: ["file": 1]))
        )
        let plainJSON = String(decoding: try JSONEncoder().encode(plain), as: UTF8.self)
        #expect(!plainJSON.contains("attributes"))
        let stored = #"{"seq":8,"time":1,"type":"health","health":{"kind":"k","message":"m","counters":{}}}"#
        let old = try JSONDecoder().decode(Event.self, from: Data(stored.utf8))
        #expect(old.payload == .health(AgentHealth(kind: "k", message: "m")))
    }

    @Test("the dashboard shows version, policy hash prefix and backlog, escaped")
    func dashboard() {
        var agent = AgentSummary(
            agentId: "a",
            hostname: "h",
            keyId: "k",
            enrolledAt: Timestamp(nanosecondsSinceEpoch: 1),
            revoked: false,
            lastBatchSeq: 1,
            events: 1,
            chainStatus: "whole",
            anomalies: []
        )
        var html = DashboardPage.agentsSection([agent])
        #expect(html.contains("<td class=\"version\">-</td><td class=\"policy muted\">-</td>"))
        #expect(html.contains("<td class=\"backlog muted\">-</td>"))
        agent.version = "<script>1</script>"
        agent.policyHash = "\"><b>" + Self.hashA
        agent.lastStatus = AgentStatusReport(time: Self.laterAt, spoolEvents: 42, eventsShed: 3, kernelDrops: 1)
        html = DashboardPage.agentsSection([agent])
        #expect(!html.contains("<script>") && !html.contains("\"><b>"))
        #expect(html.contains("<td class=\"version\">&lt;script&gt;1&lt;/script&gt;</td>"))
        #expect(html.contains("<code>&quot;&gt;&lt;b&gt;a1a1a1a</code>"), "\(html)")
        #expect(html.contains(">42</td><td class=\"warn\">3</td><td class=\"warn\">0 / 1</td>"), "\(html)")
    }

    @Test("an SQLite store at v5-alert-level gains the status columns and keeps its agents")
    func sqliteMigration() async throws {
        let dir = NSTemporaryDirectory() + "vigil-status-migration-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/events.sqlite"
        let location = StoreLocation.sqlite(path: path)
        var stream = AgentStream()
        do {
            let old = try SQLiteEventStore(path: path, migratingUpTo: "v5-alert-level")
            // Today's ingest also writes the batch's time bounds (v9), lent for this batch only.
            try await old.lendBatchTimeBounds()
            let f = CollectorFixture(store: old, location: location)
            try await f.enroll(stream.identity)
            #expect(try await f.collector.receive(batch: stream.next(events: 4)).status == "accepted")
            let summary = try #require(try await old.agents().first)
            #expect(summary.version == nil && summary.lastStatus == nil)
            try await old.returnBatchTimeBounds()
            try await old.close()
        }
        let store = try SQLiteEventStore(path: path)
        let f = CollectorFixture(store: store, location: location)
        var summary = try #require(try await store.agents().first)
        #expect(summary.agentId == stream.identity.agentId && summary.events == 4)
        #expect(summary.version == nil && summary.policyHash == nil && summary.lastStatus == nil)
        let batch = try stream.next(
            at: Self.laterAt,
            [Self.started(version: "1.0.0", hash: Self.hashA), Self.status(backlog: 2, shed: 0, queue: 0, kernel: 0)]
        )
        #expect(try await f.collector.receive(batch: batch).chain == "ok")
        summary = try #require(try await store.agents().first)
        #expect(summary.version == "1.0.0" && summary.policyHash == Self.hashA && summary.lastStatus?.spoolEvents == 2)
        try await store.close()
    }

    @Test("a PostgreSQL store at schema version 5 migrates to 6 and keeps its agents")
    func postgresMigration() async throws {
        let oldAgent = """
            INSERT INTO agents (agent_id, public_key, key_id, hostname, machine_id, enrolled_at, last_seen, last_batch_seq, event_count)
            VALUES ('old-agent', 'cGs=', 'k', 'old-host', 'm', 1, 2, 3, 7)
            """
        try await withOlderPostgresStore(atVersion: 5, rows: [oldAgent]) { store, location in
            let old = try #require(try await store.agents().first)
            #expect(old.agentId == "old-agent" && old.events == 7)
            #expect(old.version == nil && old.policyHash == nil && old.lastStatus == nil)

            let f = CollectorFixture(store: store, location: .postgres(location))
            var stream = AgentStream()
            try await f.enroll(stream.identity)
            let batch = try stream.next(
                at: Self.laterAt,
                [
                    Self.started(version: "1.0.0", hash: Self.hashB),
                    Self.status(backlog: 5, shed: 1, queue: 0, kernel: 0),
                ]
            )
            #expect(try await f.collector.receive(batch: batch).chain == "ok")
            let new = try #require(try await store.agents().first { $0.agentId == stream.identity.agentId })
            #expect(new.version == "1.0.0" && new.policyHash == Self.hashB)
            #expect(new.lastStatus?.spoolEvents == 5 && new.lastStatus?.eventsShed == 1)
        } afterwards: { database in
            let applied = try await database.run("SELECT count(*) FROM schema_migrations WHERE version = 6")
            #expect(applied == "1")
        }
    }
}
