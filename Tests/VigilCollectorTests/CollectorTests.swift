import Foundation
import Logging
import Testing
import VigilCollector
import VigilCore
import VigilTestSupport
import VigilWire

/// The store engines every collector test runs against.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }
}

/// A collector over a real store in a fresh place: an SQLite file in a new directory, or a new
/// PostgreSQL database (see `TestPostgres`).
struct CollectorFixture {
    let store: any EventStore
    let collector: Collector
    let location: StoreLocation
    let token = "test-token"

    init(store: any EventStore, location: StoreLocation) {
        self.store = store
        self.location = location
        collector = Collector(
            store: store,
            configuration: CollectorConfiguration(store: location, enrollToken: "test-token"),
            logger: Logger(label: "test")
        )
    }

    func enroll(_ identity: AgentIdentity) async throws {
        _ = try await collector.enroll(
            .init(
                token: token,
                agentId: identity.agentId,
                publicKey: identity.publicKeyBase64,
                hostname: "test-host",
                machineId: "m"
            )
        )
    }

    /// The agent's own stored events: the collector's chain-anomaly alerts (`ChainAlert`) left out.
    func count(_ agentId: String) async throws -> Int {
        try await store.events(EventQuery(agentId: agentId, limit: 10_000)).filter {
            guard case .alert(let alert) = $0.event.payload else { return true }
            return !alert.isCollectorGenerated
        }.count
    }

    /// A second collector on the same store location (the scale-out shape): runs `body` with it.
    func withSecondCollector(_ body: (CollectorFixture) async throws -> Void) async throws {
        try await location.withStore(logger: Logger(label: "test-2")) { store in
            try await body(CollectorFixture(store: store, location: location))
        }
    }
}

/// Runs `body` with a collector on a fresh store of `backend`. PostgreSQL: fails when `CI=true`
/// and the server is unreachable; elsewhere the test is skipped with the reason.
func withCollector(_ backend: Backend, _ body: (CollectorFixture) async throws -> Void) async throws {
    switch backend {
    case .sqlite:
        let dir = NSTemporaryDirectory() + "vigil-collector-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let location = StoreLocation.sqlite(path: dir + "/events.sqlite")
        try await location.withStore(logger: Logger(label: "test")) { store in
            try await body(CollectorFixture(store: store, location: location))
        }
    case .postgres:
        let database = try await TestPostgres.requireDatabase()
        do {
            let location = try StoreLocation(parsing: database.url)
            try await location.withStore(logger: Logger(label: "test")) { store in
                try await body(CollectorFixture(store: store, location: location))
            }
        } catch {
            await database.drop()
            throw error
        }
        await database.drop()
    }
}

/// Builds consecutive signed batches for one agent.
struct AgentStream {
    let identity = AgentIdentity.generate()
    var batchSeq: UInt64 = 0
    var nextSeq: UInt64 = 1
    var prev = genesisHeaderHash

    mutating func next(events count: Int = 3) throws -> [UInt8] {
        batchSeq += 1
        let events = (0..<count).map { i in
            Event(
                seq: nextSeq + UInt64(i),
                payload: .file(FileEvent(action: .create, targetFilename: "/tmp/f\(nextSeq + UInt64(i))"))
            )
        }
        nextSeq += UInt64(count)
        let batch = try BatchSealer(identity: identity).seal(events: events, batchSeq: batchSeq, prevHeaderHash: prev)
        prev = batch.headerHash
        return batch.serialized()
    }
}

/// The code of a collector refusal, or nil for any other error.
func refusal(_ error: any Error) -> String? { (error as? CollectorError)?.code.rawValue }

/// The code of the collector refusal `body` throws, or nil when it throws nothing; any other
/// error is recorded as an issue.
func refusal(_ body: () async throws -> Void) async -> CollectorError.Code? {
    do {
        try await body()
        return nil
    } catch let error as CollectorError {
        return error.code
    } catch {
        Issue.record("not a collector refusal: \(error)")
        return nil
    }
}

@Suite("Collector")
struct CollectorTests {
    @Test("an enrolled agent's batches are verified, stored and queryable", arguments: Backend.allCases)
    func storeAndQuery(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            let r1 = try await f.collector.receive(batch: try agent.next(events: 3))
            let r2 = try await f.collector.receive(batch: try agent.next(events: 2))
            #expect(r1.status == "accepted" && r1.chain == "ok")
            #expect(r2.status == "accepted" && r2.chain == "ok")
            let events = try await f.store.events(EventQuery(agentId: agent.identity.agentId, types: [.file]))
            #expect(events.map(\.event.seq) == [1, 2, 3, 4, 5])
            guard case .file(let file) = events[4].event.payload else {
                Issue.record("not a file event")
                return
            }
            #expect(file.targetFilename == "/tmp/f5")
            let agents = try await f.store.agents()
            #expect(agents.count == 1)
            #expect(agents[0].chainStatus == "whole")
            #expect(agents[0].lastBatchSeq == 2)
            #expect(agents[0].events == 5)
        }
    }

    @Test("a resent batch is answered as accepted and stored once", arguments: Backend.allCases)
    func dedup(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            let batch = try agent.next(events: 4)
            _ = try await f.collector.receive(batch: batch)
            let again = try await f.collector.receive(batch: batch)
            #expect(again.status == "duplicate")
            #expect(try await f.count(agent.identity.agentId) == 4)
            #expect(try await f.store.agents()[0].chainStatus == "whole")
        }
    }

    @Test("a missing batch is reported as a chain gap", arguments: Backend.allCases)
    func gap(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            _ = try await f.collector.receive(batch: try agent.next())
            _ = try agent.next()  // batch 2 never arrives
            let r = try await f.collector.receive(batch: try agent.next())
            #expect(r.chain == "gap")
            #expect(r.detail == "batch 2 is missing")
            let summary = try await f.store.agents()[0]
            #expect(summary.chainStatus == "gap")
            #expect(summary.anomalies.map(\.batchSeq) == [3])
        }
    }

    @Test(
        "a reordered batch is reported (gap, then late arrival) and everything is stored",
        arguments: Backend.allCases
    )
    func reorder(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            let b1 = try agent.next()
            let b2 = try agent.next()
            let b3 = try agent.next()
            _ = try await f.collector.receive(batch: b1)
            #expect(try await f.collector.receive(batch: b3).chain == "gap")
            #expect(try await f.collector.receive(batch: b2).chain == "reordered")
            #expect(try await f.count(agent.identity.agentId) == 9)
            #expect(try await f.store.agents()[0].anomalies.map(\.kind) == ["gap", "reordered"])
        }
    }

    @Test(
        "a different batch with a used sequence number is refused as a fork, nothing stored",
        arguments: Backend.allCases
    )
    func fork(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            _ = try await f.collector.receive(batch: try agent.next())
            var forked = agent
            forked.batchSeq = 0
            forked.prev = genesisHeaderHash
            forked.nextSeq = 100
            await #expect { try await f.collector.receive(batch: try forked.next()) } throws: {
                refusal($0) == "chain_fork"
            }
            #expect(try await f.count(agent.identity.agentId) == 3)
            #expect(try await f.store.agents()[0].chainStatus == "fork")
        }
    }

    @Test("a batch that does not link to the previous one is reported as broken", arguments: Backend.allCases)
    func brokenLink(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            _ = try await f.collector.receive(batch: try agent.next())
            agent.prev = [UInt8](repeating: 7, count: 32)
            #expect(try await f.collector.receive(batch: try agent.next()).chain == "broken")
        }
    }

    @Test(
        "unknown agents, other keys and corrupted batches are refused; nothing is stored",
        arguments: Backend.allCases
    )
    func refusals(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var stranger = AgentStream()
            await #expect { try await f.collector.receive(batch: try stranger.next()) } throws: {
                refusal($0) == "unknown_agent"
            }

            var agent = AgentStream()
            try await f.enroll(agent.identity)
            // Same agent id, another key.
            let impostor = AgentIdentity(
                agentId: agent.identity.agentId,
                privateKey: AgentIdentity.generate().privateKey
            )
            let forged = try BatchSealer(identity: impostor).seal(
                events: Fixtures.one,
                batchSeq: 1,
                prevHeaderHash: genesisHeaderHash
            )
            await #expect { try await f.collector.receive(batch: forged.serialized()) } throws: {
                refusal($0) == "unknown_key"
            }

            var tampered = try agent.next()
            tampered[tampered.count - 5] ^= 0x10
            await #expect { try await f.collector.receive(batch: tampered) } throws: { error in
                let code = (error as? CollectorError)?.code
                return code?.status.code == 400 || code?.status.code == 401
            }
            await #expect { try await f.collector.receive(batch: [1, 2, 3]) } throws: {
                refusal($0) == "malformed_batch"
            }
            #expect(try await f.store.events(EventQuery()).isEmpty)
        }
    }

    @Test("enrollment checks the token and refuses a second key for the same agent id", arguments: Backend.allCases)
    func enrollment(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let identity = AgentIdentity.generate()
            await #expect {
                try await f.collector.enroll(
                    .init(
                        token: "wrong",
                        agentId: identity.agentId,
                        publicKey: identity.publicKeyBase64,
                        hostname: "h",
                        machineId: "m"
                    )
                )
            } throws: { refusal($0) == "bad_token" }
            let first = try await f.collector.enroll(
                .init(
                    token: f.token,
                    agentId: identity.agentId,
                    publicKey: identity.publicKeyBase64,
                    hostname: "h",
                    machineId: "m"
                )
            )
            #expect(first.status == "enrolled")
            #expect(first.keyId == identity.keyId)
            let again = try await f.collector.enroll(
                .init(
                    token: f.token,
                    agentId: identity.agentId,
                    publicKey: identity.publicKeyBase64,
                    hostname: "h",
                    machineId: "m"
                )
            )
            #expect(again.status == "already_enrolled")
            await #expect {
                try await f.collector.enroll(
                    .init(
                        token: f.token,
                        agentId: identity.agentId,
                        publicKey: AgentIdentity.generate().publicKeyBase64,
                        hostname: "h",
                        machineId: "m"
                    )
                )
            } throws: { refusal($0) == "enroll_conflict" }
            await #expect {
                try await f.collector.enroll(
                    .init(
                        token: f.token,
                        agentId: "bad id; drop table",
                        publicKey: identity.publicKeyBase64,
                        hostname: "h",
                        machineId: "m"
                    )
                )
            } throws: { refusal($0) == "bad_request" }
        }
    }

    @Test("queries filter by type, time and cursor", arguments: Backend.allCases)
    func queries(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            for _ in 0..<4 { _ = try await f.collector.receive(batch: try agent.next(events: 5)) }
            let page1 = try await f.store.events(EventQuery(limit: 7))
            let page2 = try await f.store.events(EventQuery(after: page1.last!.id, limit: 100))
            #expect(page1.count == 7)
            #expect(page2.count == 13)
            #expect(Set(page1.map(\.event.seq)).isDisjoint(with: page2.map(\.event.seq)))
            #expect(try await f.store.events(EventQuery(types: [.process])).isEmpty)
            #expect(
                try await f.store.events(EventQuery(since: Timestamp(nanosecondsSinceEpoch: Int64.max - 1))).isEmpty
            )
            #expect(try await f.store.events(EventQuery(agentId: "someone-else")).isEmpty)
        }
    }

    @Test("the live feed sees stored events", arguments: Backend.allCases)
    func liveFeed(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            let feed = f.collector.subscribe()
            _ = try await f.collector.receive(batch: try agent.next(events: 2))
            var iterator = feed.makeAsyncIterator()
            let first = await iterator.next()
            let second = await iterator.next()
            #expect(first?.event.seq == 1)
            #expect(second?.event.seq == 2)
            #expect(first?.agentId == agent.identity.agentId)
        }
    }
}

@Suite("Time arguments")
struct TimeSpecTests {
    @Test("durations, epoch seconds and ISO 8601")
    func forms() {
        let now = Timestamp(nanosecondsSinceEpoch: 1_000_000 * 1_000_000_000)
        #expect(
            TimeSpec.parse("15m", now: now)?.nanosecondsSinceEpoch == now.nanosecondsSinceEpoch - 900 * 1_000_000_000
        )
        #expect(
            TimeSpec.parse("2h", now: now)?.nanosecondsSinceEpoch == now.nanosecondsSinceEpoch - 7200 * 1_000_000_000
        )
        let second: Int64 = 1_000_000_000
        let epoch: Int64 = 1_764_334_800 * second
        let isoTime: Int64 = 1_795_870_800 * second
        let isoDate: Int64 = 1_795_824_000 * second
        #expect(TimeSpec.parse("1764334800")?.nanosecondsSinceEpoch == epoch)
        #expect(TimeSpec.parse("2026-11-28T13:00:00Z")?.nanosecondsSinceEpoch == isoTime)
        #expect(TimeSpec.parse("2026-11-28T13:00:00.5Z")?.nanosecondsSinceEpoch == isoTime + second / 2)
        #expect(TimeSpec.parse("2026-11-28")?.nanosecondsSinceEpoch == isoDate)
        #expect(TimeSpec.parse("yesterday") == nil)
        #expect(TimeSpec.parse("2026-13-01") == nil)
        #expect(TimeSpec.parse("") == nil)
        #expect(Timestamp(nanosecondsSinceEpoch: 1_795_870_800_500_000_000).iso8601 == "2026-11-28T13:00:00.500000Z")
    }

    /// Found by Fuzz/run FuzzQuery: `GET /v1/events?until=4052-11-28T13:00:00Z` trapped on
    /// overflow and took the collector down. Times a Timestamp cannot hold are refused instead.
    @Test("times past 2262, huge durations and huge epoch seconds are refused, not trapped on")
    func outOfRange() {
        #expect(TimeSpec.parse("4052-11-28T13:00:00Z") == nil)
        #expect(TimeSpec.parse("2262-04-12") == nil)
        #expect(TimeSpec.parse("1969-12-31") == nil)
        #expect(TimeSpec.parse("2261-12-31T23:59:59Z") != nil)
        #expect(TimeSpec.parse("99999999999") == nil)
        #expect(TimeSpec.parse("9300000000") == nil)
        #expect(TimeSpec.parse("1e300d") == nil)
        #expect(TimeSpec.parse("nand") == nil)
        #expect(TimeSpec.parse("infd") == nil)
        #expect(TimeSpec.parse("36500d") != nil)
        #expect(TimeSpec.parse("36600d", now: Timestamp(nanosecondsSinceEpoch: 0)) != nil)
    }
}

enum Fixtures {
    static let one = [Event(seq: 1, payload: .file(FileEvent(action: .create, targetFilename: "/tmp/x")))]
}
