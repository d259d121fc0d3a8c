import Foundation
import Logging
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilCollector

@Suite("Store backends")
struct StoreBackendTests {
    @Test(
        "two collectors on one store take the same batches at once: each stored once, chains whole",
        arguments: Backend.allCases
    )
    func twoCollectorsRace(backend: Backend) async throws {
        try await withCollector(backend) { first in
            try await first.withSecondCollector { second in
                var agents = (0..<6).map { _ in AgentStream() }
                for agent in agents { try await first.enroll(agent.identity) }
                let batchesPerAgent = 15
                // Batch k of every agent goes to both collectors at the same moment, all agents at once.
                for _ in 0..<batchesPerAgent {
                    var round: [(Int, [UInt8])] = []
                    for i in agents.indices { round.append((i, try agents[i].next(events: 5))) }
                    let statuses = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                        for (i, batch) in round {
                            group.addTask { (i, try await first.collector.receive(batch: batch).status) }
                            group.addTask { (i, try await second.collector.receive(batch: batch).status) }
                        }
                        var byAgent: [Int: [String]] = [:]
                        for try await (i, status) in group { byAgent[i, default: []].append(status) }
                        return byAgent
                    }
                    for (_, pair) in statuses { #expect(pair.sorted() == ["accepted", "duplicate"]) }
                }
                let summaries = try await second.store.agents()
                #expect(summaries.count == agents.count)
                for summary in summaries {
                    #expect(summary.chainStatus == "whole", "\(summary.anomalies)")
                    #expect(summary.lastBatchSeq == UInt64(batchesPerAgent))
                    #expect(summary.events == UInt64(batchesPerAgent * 5))
                }
                for agent in agents {
                    let events = try await first.store.events(
                        EventQuery(agentId: agent.identity.agentId, limit: 10_000)
                    )
                    #expect(events.map(\.event.seq) == Array(1...UInt64(batchesPerAgent * 5)))
                    let batches = try await first.store.batches(
                        agentId: agent.identity.agentId,
                        afterBatchSeq: 0,
                        limit: 1000
                    )
                    #expect(batches.map(\.batchSeq) == Array(1...UInt64(batchesPerAgent)))
                }
            }
        }
    }

    @Test(
        "a batch or event seq beyond 2^63 is refused as a bad request and nothing is stored",
        arguments: Backend.allCases
    )
    func seqOutOfRange(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let identity = AgentIdentity.generate()
            try await f.enroll(identity)
            let sealer = BatchSealer(identity: identity)
            let hugeBatch = try sealer.seal(
                events: Fixtures.one,
                batchSeq: UInt64.max,
                prevHeaderHash: genesisHeaderHash
            )
            await #expect { try await f.collector.receive(batch: hugeBatch.serialized()) } throws: {
                refusal($0) == "bad_request"
            }
            let hugeEvent = [
                Event(seq: UInt64(Int64.max) + 1, payload: .file(FileEvent(action: .create, targetFilename: "/tmp/x")))
            ]
            let batch = try sealer.seal(events: hugeEvent, batchSeq: 1, prevHeaderHash: genesisHeaderHash)
            await #expect { try await f.collector.receive(batch: batch.serialized()) } throws: {
                refusal($0) == "bad_request"
            }
            #expect(try await f.store.events(EventQuery()).isEmpty)
            #expect(try await f.store.batches(agentId: identity.agentId, afterBatchSeq: 0, limit: 10).isEmpty)
        }
    }

    @Test("SQL-looking text in events is stored and read back as data", arguments: Backend.allCases)
    func sqlLookingText(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let identity = AgentIdentity.generate()
            try await f.enroll(identity)
            let name = "/tmp/x'); DROP TABLE events; -- \u{1F600} \\ \" $1"
            let events = [Event(seq: 1, payload: .file(FileEvent(action: .create, targetFilename: name)))]
            let batch = try BatchSealer(identity: identity).seal(
                events: events,
                batchSeq: 1,
                prevHeaderHash: genesisHeaderHash
            )
            #expect(try await f.collector.receive(batch: batch.serialized()).status == "accepted")
            let stored = try await f.store.events(EventQuery(agentId: identity.agentId))
            guard case .file(let file)? = stored.first?.event.payload else {
                Issue.record("no file event stored")
                return
            }
            #expect(file.targetFilename == name)
            #expect(try await f.store.events(EventQuery(agentId: "x' OR '1'='1")).isEmpty)
        }
    }
}

@Suite("PostgreSQL store")
struct PostgresStoreTests {
    @Test("collectors starting together on an empty database apply each migration once")
    func concurrentMigrations() async throws {
        try await withTestDatabase { database in
            let location = try PostgresLocation(url: database.url)
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await PostgresEventStore.withStore(at: location, logger: Logger(label: "test")) { store in
                            try await store.agents().count
                        }
                    }
                }
                for try await count in group { #expect(count == 0) }
            }
            let known = PostgresEventStore.migrations.map { String($0.version) }
            #expect(
                try await database.run("SELECT version FROM schema_migrations ORDER BY version").split(separator: "\n")
                    .map(String.init) == known
            )
            // And again on a current schema: nothing to do, still one row per version.
            try await PostgresEventStore.withStore(at: location, logger: Logger(label: "test")) { _ in }
            #expect(try await database.run("SELECT count(*) FROM schema_migrations") == String(known.count))
        }
    }

    @Test("a schema newer than the collector is refused with a clear error")
    func newerSchema() async throws {
        try await withTestDatabase { database in
            let location = try PostgresLocation(url: database.url)
            try await PostgresEventStore.withStore(at: location, logger: Logger(label: "test")) { _ in }
            try await database.run("INSERT INTO schema_migrations (version) VALUES (9999)")
            await #expect {
                try await PostgresEventStore.withStore(at: location, logger: Logger(label: "test")) { _ in }
            } throws: { error in
                (error as? CollectorError)?.message.contains("newer than this collector knows") == true
            }
        }
    }

    @Test("an unreachable server and a wrong password are clear start-up errors")
    func unreachable() async throws {
        try await withTestDatabase { database in
            var location = try PostgresLocation(url: database.url)
            location.port = freeLoopbackPort()
            location.host = "127.0.0.1"
            await #expect {
                try await PostgresEventStore.withStore(at: location, logger: Logger(label: "test")) { _ in }
            } throws: { error in
                guard let error = error as? CollectorError else { return false }
                return error.code == .storeFailure && error.message.contains("cannot open the PostgreSQL store")
                    && error.message.contains("refused")
            }
            var wrong = try PostgresLocation(url: database.url)
            wrong.password = "not-the-password"
            await #expect {
                try await PostgresEventStore.withStore(at: wrong, logger: Logger(label: "test")) { _ in }
            } throws: { error in
                guard let error = error as? CollectorError else { return false }
                return error.message.contains("password authentication failed")
                    && !error.message.contains("not-the-password")
            }
        }
    }
}

@Suite("Store locations")
struct StoreLocationTests {
    @Test("postgres URLs: user, password, host, port and database; the password never printed")
    func postgresForms() throws {
        guard case .postgres(let a) = try StoreLocation(parsing: "postgres://vigil:s%40cret@db.example:6543/events")
        else {
            Issue.record("not postgres")
            return
        }
        #expect(
            a.username == "vigil" && a.password == "s@cret" && a.host == "db.example" && a.port == 6543
                && a.database == "events"
        )
        #expect(a.description == "postgres://vigil:***@db.example:6543/events")
        #expect(!StoreLocation.postgres(a).description.contains("cret"))
        guard
            case .postgres(let b) = try StoreLocation(
                parsing: "postgresql://vigil@localhost/vigil?sslmode=disable&pool_size=4"
            )
        else {
            Issue.record("not postgres")
            return
        }
        #expect(b.port == 5432 && b.password == nil && b.poolSize == 4)
        guard case .postgres(let c) = try StoreLocation(parsing: "postgres://vigil@/vigil?host=/run/postgresql") else {
            Issue.record("not postgres")
            return
        }
        #expect(c.unixSocketPath == "/run/postgresql/.s.PGSQL.5432")
        #expect(try StoreLocation(parsing: "sqlite:/tmp/x.sqlite") == .sqlite(path: "/tmp/x.sqlite"))
    }

    @Test(
        "bad store arguments are refused with what is wrong",
        arguments: [
            ("postgres://vigil:pw@db.example:5432/", "no database name"),
            ("postgres://db.example/vigil", "no user name"),
            ("postgres://vigil@db.example:99999/vigil", "port 99999 is out of range"),
            ("not a url at all", "expected sqlite:PATH or postgres://"),
            ("postgres://vigil@db.example/vigil/extra", "no database name"),
            ("postgres://vigil@db.example/vigil?sslmode=require", "sslmode=require is not supported"),
            ("postgres://vigil@db.example/vigil?pool_size=0", "pool_size must be 1-100"),
            ("postgres://vigil@db.example/vigil?search_path=x", "unknown option 'search_path'"),
            ("postgres://vigil:pw@/vigil", "no host"),
            ("mysql://vigil@db/vigil", "expected sqlite:PATH or postgres://"),
            ("sqlite:", "needs a path"),
        ]
    )
    func badForms(text: String, expected: String) {
        #expect {
            try StoreLocation(parsing: text)
        } throws: { error in
            guard let error = error as? CollectorError else { return false }
            return error.message.contains(expected) && !error.message.contains(":pw@")
        }
    }
}

/// A fresh PostgreSQL database built up to schema `version` and given `rows` (SQL run as it is:
/// what an older collector left there), then opened by today's store, which migrates it, for
/// `body`; `database` stays usable for checks after the store is closed.
func withOlderPostgresStore(
    atVersion version: Int,
    rows: [String],
    _ body: (PostgresEventStore, PostgresLocation) async throws -> Void,
    afterwards: (TestDatabase) async throws -> Void = { _ in }
) async throws {
    try await withTestDatabase { database in
        let location = try PostgresLocation(url: database.url)
        try await PostgresEventStore.migrate(location, logger: Logger(label: "test"), upTo: version)
        #expect(try await database.run("SELECT max(version) FROM schema_migrations") == String(version))
        for sql in rows { try await database.run(sql) }
        try await PostgresEventStore.withStore(at: location, logger: Logger(label: "test")) { store in
            try await body(store, location)
        }
        try await afterwards(database)
    }
}

/// A fresh PostgreSQL database for `body`, dropped afterwards (skipped without a server, a
/// failure in CI).
func withTestDatabase(_ body: (TestDatabase) async throws -> Void) async throws {
    let database = try await TestPostgres.requireDatabase()
    do {
        try await body(database)
    } catch {
        await database.drop()
        throw error
    }
    await database.drop()
}
