import Foundation
import Logging
import Testing
import VigilCollector
import VigilCore
import VigilWire

/// A collector over a real SQLite file in a fresh directory.
final class CollectorFixture {
    let dir: String
    let store: SQLiteEventStore
    let collector: Collector
    let token = "test-token"

    init() throws {
        dir = NSTemporaryDirectory() + "vigil-collector-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        store = try SQLiteEventStore(path: dir + "/events.sqlite")
        collector = Collector(
            store: store,
            configuration: CollectorConfiguration(store: .sqlite(path: dir + "/events.sqlite"), enrollToken: token),
            logger: Logger(label: "test")
        )
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    func enroll(_ identity: AgentIdentity) async throws {
        _ = try await collector.enroll(
            .init(token: token, agentId: identity.agentId, publicKey: identity.publicKeyBase64, hostname: "test-host", machineId: "m")
        )
    }

    func count(_ agentId: String) async throws -> Int {
        try await store.events(EventQuery(agentId: agentId, limit: 10_000)).count
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
            Event(seq: nextSeq + UInt64(i), payload: .file(FileEvent(action: .create, targetFilename: "/tmp/f\(nextSeq + UInt64(i))")))
        }
        nextSeq += UInt64(count)
        let batch = try BatchSealer(identity: identity).seal(events: events, batchSeq: batchSeq, prevHeaderHash: prev)
        prev = batch.headerHash
        return batch.serialized()
    }
}

func refusal(_ error: any Error) -> String? { (error as? CollectorError)?.code.rawValue }

@Suite("Collector")
struct CollectorTests {
    @Test("an enrolled agent's batches are verified, stored and queryable")
    func storeAndQuery() async throws {
        let f = try CollectorFixture()
        var agent = AgentStream()
        try await f.enroll(agent.identity)
        let r1 = try await f.collector.receive(batch: try agent.next(events: 3))
        let r2 = try await f.collector.receive(batch: try agent.next(events: 2))
        #expect(r1.status == "accepted" && r1.chain == "ok")
        #expect(r2.status == "accepted" && r2.chain == "ok")
        let events = try await f.store.events(EventQuery(agentId: agent.identity.agentId, types: [.file]))
        #expect(events.map(\.event.seq) == [1, 2, 3, 4, 5])
        guard case .file(let file) = events[4].event.payload else { Issue.record("not a file event"); return }
        #expect(file.targetFilename == "/tmp/f5")
        let agents = try await f.store.agents()
        #expect(agents.count == 1)
        #expect(agents[0].chainStatus == "whole")
        #expect(agents[0].lastBatchSeq == 2)
        #expect(agents[0].events == 5)
    }

    @Test("a resent batch is answered as accepted and stored once")
    func dedup() async throws {
        let f = try CollectorFixture()
        var agent = AgentStream()
        try await f.enroll(agent.identity)
        let batch = try agent.next(events: 4)
        _ = try await f.collector.receive(batch: batch)
        let again = try await f.collector.receive(batch: batch)
        #expect(again.status == "duplicate")
        #expect(try await f.count(agent.identity.agentId) == 4)
        #expect(try await f.store.agents()[0].chainStatus == "whole")
    }

    @Test("a missing batch is reported as a chain gap")
    func gap() async throws {
        let f = try CollectorFixture()
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

    @Test("a reordered batch is reported (gap, then late arrival) and everything is stored")
    func reorder() async throws {
        let f = try CollectorFixture()
        var agent = AgentStream()
        try await f.enroll(agent.identity)
        let b1 = try agent.next(), b2 = try agent.next(), b3 = try agent.next()
        _ = try await f.collector.receive(batch: b1)
        #expect(try await f.collector.receive(batch: b3).chain == "gap")
        #expect(try await f.collector.receive(batch: b2).chain == "reordered")
        #expect(try await f.count(agent.identity.agentId) == 9)
        #expect(try await f.store.agents()[0].anomalies.map(\.kind) == ["gap", "reordered"])
    }

    @Test("a different batch with a used sequence number is refused as a fork, nothing stored")
    func fork() async throws {
        let f = try CollectorFixture()
        var agent = AgentStream()
        try await f.enroll(agent.identity)
        _ = try await f.collector.receive(batch: try agent.next())
        var forked = agent
        forked.batchSeq = 0
        forked.prev = genesisHeaderHash
        forked.nextSeq = 100
        await #expect { try await f.collector.receive(batch: try forked.next()) } throws: { refusal($0) == "chain_fork" }
        #expect(try await f.count(agent.identity.agentId) == 3)
        #expect(try await f.store.agents()[0].chainStatus == "fork")
    }

    @Test("a batch that does not link to the previous one is reported as broken")
    func brokenLink() async throws {
        let f = try CollectorFixture()
        var agent = AgentStream()
        try await f.enroll(agent.identity)
        _ = try await f.collector.receive(batch: try agent.next())
        agent.prev = [UInt8](repeating: 7, count: 32)
        #expect(try await f.collector.receive(batch: try agent.next()).chain == "broken")
    }

    @Test("unknown agents, other keys and corrupted batches are refused; nothing is stored")
    func refusals() async throws {
        let f = try CollectorFixture()
        var stranger = AgentStream()
        await #expect { try await f.collector.receive(batch: try stranger.next()) } throws: { refusal($0) == "unknown_agent" }

        var agent = AgentStream()
        try await f.enroll(agent.identity)
        // Same agent id, another key.
        let impostor = AgentIdentity(agentId: agent.identity.agentId, privateKey: AgentIdentity.generate().privateKey)
        let forged = try BatchSealer(identity: impostor).seal(events: Fixtures.one, batchSeq: 1, prevHeaderHash: genesisHeaderHash)
        await #expect { try await f.collector.receive(batch: forged.serialized()) } throws: { refusal($0) == "unknown_key" }

        var tampered = try agent.next()
        tampered[tampered.count - 5] ^= 0x10
        await #expect { try await f.collector.receive(batch: tampered) } throws: { error in
            let code = (error as? CollectorError)?.code
            return code?.status.code == 400 || code?.status.code == 401
        }
        await #expect { try await f.collector.receive(batch: [1, 2, 3]) } throws: { refusal($0) == "malformed_batch" }
        #expect(try await f.store.events(EventQuery()).isEmpty)
    }

    @Test("enrollment checks the token and refuses a second key for the same agent id")
    func enrollment() async throws {
        let f = try CollectorFixture()
        let identity = AgentIdentity.generate()
        await #expect {
            try await f.collector.enroll(.init(token: "wrong", agentId: identity.agentId, publicKey: identity.publicKeyBase64, hostname: "h", machineId: "m"))
        } throws: { refusal($0) == "bad_token" }
        let first = try await f.collector.enroll(.init(token: f.token, agentId: identity.agentId, publicKey: identity.publicKeyBase64, hostname: "h", machineId: "m"))
        #expect(first.status == "enrolled")
        #expect(first.keyId == identity.keyId)
        let again = try await f.collector.enroll(.init(token: f.token, agentId: identity.agentId, publicKey: identity.publicKeyBase64, hostname: "h", machineId: "m"))
        #expect(again.status == "already_enrolled")
        await #expect {
            try await f.collector.enroll(.init(token: f.token, agentId: identity.agentId, publicKey: AgentIdentity.generate().publicKeyBase64, hostname: "h", machineId: "m"))
        } throws: { refusal($0) == "enroll_conflict" }
        await #expect {
            try await f.collector.enroll(.init(token: f.token, agentId: "bad id; drop table", publicKey: identity.publicKeyBase64, hostname: "h", machineId: "m"))
        } throws: { refusal($0) == "bad_request" }
    }

    @Test("queries filter by type, time and cursor")
    func queries() async throws {
        let f = try CollectorFixture()
        var agent = AgentStream()
        try await f.enroll(agent.identity)
        for _ in 0..<4 { _ = try await f.collector.receive(batch: try agent.next(events: 5)) }
        let page1 = try await f.store.events(EventQuery(limit: 7))
        let page2 = try await f.store.events(EventQuery(after: page1.last!.id, limit: 100))
        #expect(page1.count == 7)
        #expect(page2.count == 13)
        #expect(Set(page1.map(\.event.seq)).isDisjoint(with: page2.map(\.event.seq)))
        #expect(try await f.store.events(EventQuery(types: [.process])).isEmpty)
        #expect(try await f.store.events(EventQuery(since: Timestamp(nanosecondsSinceEpoch: Int64.max - 1))).isEmpty)
        #expect(try await f.store.events(EventQuery(agentId: "someone-else")).isEmpty)
    }

    @Test("the live feed sees stored events")
    func liveFeed() async throws {
        let f = try CollectorFixture()
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

@Suite("Time arguments")
struct TimeSpecTests {
    @Test("durations, epoch seconds and ISO 8601")
    func forms() {
        let now = Timestamp(nanosecondsSinceEpoch: 1_000_000 * 1_000_000_000)
        #expect(TimeSpec.parse("15m", now: now)?.nanosecondsSinceEpoch == now.nanosecondsSinceEpoch - 900 * 1_000_000_000)
        #expect(TimeSpec.parse("2h", now: now)?.nanosecondsSinceEpoch == now.nanosecondsSinceEpoch - 7200 * 1_000_000_000)
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
}

enum Fixtures {
    static let one = [Event(seq: 1, payload: .file(FileEvent(action: .create, targetFilename: "/tmp/x")))]
}
