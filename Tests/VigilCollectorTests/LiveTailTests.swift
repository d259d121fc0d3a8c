import Foundation
import Logging
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilCollector

/// `GET /v1/events/stream` over real HTTP (the collector's own server on a free loopback port,
/// curl as the client), against SQLite and PostgreSQL.
@Suite("Live tail")
struct LiveTailTests {
    /// A collector over `store` serving HTTP on a free port: runs `body` with it and its base URL.
    static func withServer(
        store: any EventStore,
        location: StoreLocation,
        maxTailStreams: Int = 64,
        _ body: (Collector, String) async throws -> Void
    ) async throws {
        var configuration = CollectorConfiguration(port: 0, store: location, enrollToken: "test-token")
        configuration.maxTailStreams = maxTailStreams
        // The server is cancelled at the end, which it logs as errors: keep those out of the way.
        var logger = Logger(label: "tail-test")
        logger.logLevel = .critical
        let collector = Collector(store: store, configuration: configuration, logger: logger)
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let app = try CollectorServer.makeApplication(collector: collector, logger: logger) {
            portSink.yield($0)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { return }
            try await body(collector, "http://127.0.0.1:\(port)")
            group.cancelAll()
        }
    }

    /// curl streaming `url` into a file (its `stdout`).
    static func openStream(_ url: String, headers: [String] = []) throws -> ChildProcess {
        try ChildProcess("/usr/bin/curl", ["-sN", url] + headers.flatMap { ["-H", $0] })
    }

    /// Waits until the stream has sent its opening comment.
    static func waitOpen(_ stream: ChildProcess) async -> Bool {
        await eventually(timeout: .seconds(90), every: .milliseconds(50)) {
            stream.stdout.contains(": vigil live tail after")
        }
    }

    /// The events in an SSE text: (id, event seq, agent id) of every message with data.
    static func events(_ text: String) -> [(id: Int64, seq: UInt64, agent: String)] {
        text.components(separatedBy: "\n\n").compactMap { block in
            var id: Int64? = nil
            var data: String? = nil
            for line in block.split(separator: "\n") {
                if line.hasPrefix("id: ") { id = Int64(line.dropFirst(4)) }
                if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
            }
            guard let id, let data,
                let stored = try? JSONDecoder().decode(StoredEvent.self, from: Data(data.utf8))
            else { return nil }
            return (id, stored.event.seq, stored.agentId)
        }
    }

    static func enroll(_ collector: Collector, _ identity: AgentIdentity) async throws {
        _ = try await collector.enroll(
            .init(
                token: "test-token",
                agentId: identity.agentId,
                publicKey: identity.publicKeyBase64,
                hostname: "h",
                machineId: "m"
            )
        )
    }

    @Test("a tail gets the matching events stored after it started, in id order", arguments: Backend.allCases)
    func newEventsFiltered(backend: Backend) async throws {
        try await withCollector(backend) { f in
            try await Self.withServer(store: f.store, location: f.location) { collector, base in
                var a = AgentStream()
                var b = AgentStream()
                try await Self.enroll(collector, a.identity)
                try await Self.enroll(collector, b.identity)
                _ = try await collector.receive(batch: try a.next(events: 2))  // before: not tailed
                let stream = try Self.openStream(base + "/v1/events/stream?type=file&agent=\(a.identity.agentId)")
                #expect(await Self.waitOpen(stream), "stream did not open: \(stream.stdout)")
                for _ in 0..<3 {
                    _ = try await collector.receive(batch: try a.next(events: 2))
                    _ = try await collector.receive(batch: try b.next(events: 2))
                }
                let got = await eventually(timeout: .seconds(20)) { Self.events(stream.stdout).count >= 6 }
                try await Task.sleep(for: .milliseconds(700))  // anything more would be a mistake
                let events = Self.events(stream.stdout)
                #expect(got, "\(stream.stdout)")
                #expect(events.map(\.seq) == [3, 4, 5, 6, 7, 8], "\(stream.stdout)")
                #expect(events.allSatisfy { $0.agent == a.identity.agentId })
                #expect(events.map(\.id) == events.map(\.id).sorted())
                await stream.stop()
            }
        }
    }

    @Test("resuming with Last-Event-ID gets every later event once", arguments: Backend.allCases)
    func resume(backend: Backend) async throws {
        try await withCollector(backend) { f in
            try await Self.withServer(store: f.store, location: f.location) { collector, base in
                var a = AgentStream()
                try await Self.enroll(collector, a.identity)
                let first = try Self.openStream(base + "/v1/events/stream")
                #expect(await Self.waitOpen(first))
                _ = try await collector.receive(batch: try a.next(events: 3))
                #expect(await eventually { Self.events(first.stdout).count == 3 }, "\(first.stdout)")
                await first.stop(signal: SIGKILL)
                let seen = Self.events(first.stdout)
                // Stored while nobody was listening.
                _ = try await collector.receive(batch: try a.next(events: 3))
                _ = try await collector.receive(batch: try a.next(events: 3))
                // Last-Event-ID wins over after=0.
                let second = try Self.openStream(
                    base + "/v1/events/stream?after=0",
                    headers: ["Last-Event-ID: \(seen.last?.id ?? -1)"]
                )
                #expect(await eventually { Self.events(second.stdout).count >= 6 }, "\(second.stdout)")
                _ = try await collector.receive(batch: try a.next(events: 1))
                #expect(await eventually { Self.events(second.stdout).count >= 7 }, "\(second.stdout)")
                try await Task.sleep(for: .milliseconds(700))
                let all = seen + Self.events(second.stdout)
                #expect(all.map(\.seq) == Array(1...10), "first:\n\(first.stdout)\nsecond:\n\(second.stdout)")
                #expect(Set(all.map(\.id)).count == all.count)
                await second.stop()
            }
        }
    }

    @Test("streams beyond the bound are refused with 503 until one closes")
    func bound() async throws {
        try await withCollector(.sqlite) { f in
            try await Self.withServer(store: f.store, location: f.location, maxTailStreams: 2) { collector, base in
                let open = [
                    try Self.openStream(base + "/v1/events/stream"), try Self.openStream(base + "/v1/events/stream"),
                ]
                for stream in open { #expect(await Self.waitOpen(stream)) }
                #expect(collector.liveTail.openStreams == 2)
                let refused = try await runCommand(
                    "/usr/bin/curl",
                    ["-s", "-o", "-", "-w", "\n%{http_code}", base + "/v1/events/stream"]
                )
                #expect(refused.stdout.hasSuffix("\n503"), "\(refused.stdout)")
                #expect(refused.stdout.contains("\"error\":\"too_many_streams\""), "\(refused.stdout)")
                // A client that leaves gives its place back (noticed at its next write).
                await open[0].stop(signal: SIGKILL)
                let reopened = await eventually(timeout: .seconds(40), every: .milliseconds(500)) {
                    let r = try? await runCommand(
                        "/usr/bin/curl",
                        ["-s", "-o", "/dev/null", "-w", "%{http_code}", base + "/v1/events/stream?timeout=1"]
                    )
                    return r?.stdout == "200"
                }
                #expect(reopened)
                await open[1].stop()
            }
        }
    }

    @Test("PostgreSQL: a tail on one collector gets what another collector stores")
    func scaleOut() async throws {
        try await withCollector(.postgres) { f in
            try await Self.withServer(store: f.store, location: f.location) { _, base in
                try await f.withSecondCollector { other in
                    var a = AgentStream()
                    try await other.enroll(a.identity)
                    let stream = try Self.openStream(base + "/v1/events/stream")
                    #expect(await Self.waitOpen(stream))
                    for _ in 0..<4 { _ = try await other.collector.receive(batch: try a.next(events: 5)) }
                    #expect(await eventually { Self.events(stream.stdout).count >= 20 }, "\(stream.stdout)")
                    #expect(Self.events(stream.stdout).map(\.seq) == Array(1...20))
                    await stream.stop()
                }
            }
        }
    }

    /// The case a naive cursor gets wrong: a transaction takes a lower id, a later one commits a
    /// higher id first. The tail must wait for the lower one and then deliver both, in order.
    @Test("PostgreSQL: a row that commits after a higher id is still delivered, in id order")
    func lateCommit() async throws {
        try await withCollector(.postgres) { f in
            guard case .postgres(let location) = f.location else { return }
            let url =
                "postgres://\(location.username):\(location.password ?? "")@\(location.host):\(location.port)/\(location.database)"
            try await Self.withServer(store: f.store, location: f.location) { collector, base in
                var a = AgentStream()
                try await Self.enroll(collector, a.identity)
                _ = try await collector.receive(batch: try a.next(events: 1))
                let stream = try Self.openStream(base + "/v1/events/stream")
                #expect(await Self.waitOpen(stream))
                // Like ingest: the transaction has its xid (row lock) before it takes an event id.
                // It commits when the test says so (a row in late_commit_release, polled: in READ
                // COMMITTED each statement of the loop sees the latest commits), not after a fixed
                // sleep that a loaded machine can outlast before the checks below.
                _ = try await TestPostgres.run("CREATE TABLE late_commit_release (go int)", on: url)
                let slow = try ChildProcess(
                    "/usr/bin/psql",
                    [
                        "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
                        """
                        BEGIN;
                        SELECT 1 FROM agents FOR UPDATE;
                        INSERT INTO events (agent_id, seq, batch_seq, type, time_ns, rule_id, json)
                            SELECT agent_id, 1000, batch_seq, type, time_ns, rule_id, replace(json, '"seq":1', '"seq":1000')
                            FROM events ORDER BY id LIMIT 1;
                        DO $$
                        BEGIN
                            FOR i IN 1..1200 LOOP
                                EXIT WHEN EXISTS (SELECT 1 FROM late_commit_release);
                                PERFORM pg_sleep(0.05);
                            END LOOP;
                        END $$;
                        COMMIT;
                        """,
                    ]
                )
                let heldId = await eventually(timeout: .seconds(10), every: .milliseconds(50)) {
                    ((try? await TestPostgres.run("SELECT last_value FROM events_id_seq", on: url)) ?? "") != "1"
                }
                #expect(heldId, "the slow transaction did not insert: \(slow.stderr)")
                // A later ingest of another agent commits first, with higher ids.
                var b = AgentStream()
                try await Self.enroll(collector, b.identity)
                _ = try await collector.receive(batch: try b.next(events: 2))
                try await Task.sleep(for: .seconds(1))
                #expect(Self.events(stream.stdout).isEmpty, "delivered past an open transaction: \(stream.stdout)")
                _ = try await TestPostgres.run("INSERT INTO late_commit_release VALUES (1)", on: url)
                #expect(await slow.wait(timeout: .seconds(20)) == 0, "\(slow.stderr)")
                #expect(await eventually { Self.events(stream.stdout).count >= 3 }, "\(stream.stdout)")
                let events = Self.events(stream.stdout)
                #expect(events.map(\.seq) == [1000, 1, 2], "\(stream.stdout)")
                #expect(events.map(\.id) == events.map(\.id).sorted())
                await stream.stop()
            }
        }
    }
}
