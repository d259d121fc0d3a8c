import Foundation
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

/// The Prometheus endpoints: the collector's `GET /metrics` (behind the read authorization) and
/// the agent's `metrics_listen`, scraped over HTTP from the real processes.
@Suite("Prometheus metrics", .serialized)
struct MetricsTests {
    /// GETs or POSTs with curl; returns (status, body, content type).
    func curl(
        _ url: String,
        post body: [UInt8]? = nil,
        contentType: String = "application/x-vigil-batch",
        token: String? = nil,
        method: String? = nil
    ) async throws -> (status: Int, body: String, contentType: String) {
        let answer = try await VigilTestSupport.curl(
            url,
            post: body,
            contentType: contentType,
            token: token,
            method: method
        )
        return (answer.status, answer.body, answer.contentType)
    }

    /// `series → value` of a Prometheus text exposition; a series is written as exposed,
    /// `name{label="value",...}`.
    static func samples(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    func makeDirectory(_ name: String) throws -> String {
        let dir = NSTemporaryDirectory() + "vigil-\(name)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("the collector counts batches received, accepted by chain verdict, duplicate and refused by reason")
    func collectorCounts() async throws {
        let dir = try makeDirectory("metrics-collector")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--enroll-token", "tok"]
        )
        let up = await eventually { (try? await curl(base + "/healthz"))?.status == 200 }
        #expect(up, "collector did not start: \(collector.stderr)")

        // Before anything arrived: every counter of a batch outcome is there, at 0.
        var scrape = try await curl(base + "/metrics")
        #expect(scrape.status == 200, "\(scrape)")
        #expect(scrape.contentType.hasPrefix("text/plain"), "\(scrape.contentType)")
        var m = Self.samples(scrape.body)
        #expect(m["vigil_collector_batches_received_total"] == 0, "\(scrape.body)")
        #expect(m["vigil_collector_batches_accepted_total{chain=\"ok\"}"] == 0, "\(scrape.body)")

        let identity = AgentIdentity.generate()
        let enroll = Array(
            "{\"token\":\"tok\",\"agent_id\":\"\(identity.agentId)\",\"public_key\":\"\(identity.publicKeyBase64)\",\"hostname\":\"h\",\"machine_id\":\"m\"}"
                .utf8
        )
        var answer = try await curl(base + "/v1/enroll", post: enroll, contentType: "application/json")
        #expect(answer.status == 200, "\(answer)")

        let sealer = BatchSealer(identity: identity)
        let first = try sealer.seal(
            events: [
                Event(seq: 1, payload: .file(FileEvent(action: .create, targetFilename: "/tmp/a"))),
                Event(seq: 2, payload: .file(FileEvent(action: .modify, targetFilename: "/tmp/a"))),
                Event(seq: 3, payload: .health(AgentHealth(kind: "started", message: "m"))),
            ],
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash
        )
        // Batch 3 after batch 1: accepted, with a gap in the chain.
        let third = try sealer.seal(
            events: [Event(seq: 10, payload: .file(FileEvent(action: .delete, targetFilename: "/tmp/a")))],
            batchSeq: 3,
            prevHeaderHash: genesisHeaderHash
        )
        let stranger = try BatchSealer(identity: AgentIdentity.generate()).seal(
            events: [Event(seq: 1, payload: .file(FileEvent(action: .create, targetFilename: "/tmp/b")))],
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash
        )

        answer = try await curl(base + "/v1/batches", post: first.serialized())
        #expect(answer.status == 200 && answer.body.contains("\"accepted\""), "\(answer)")
        answer = try await curl(base + "/v1/batches", post: first.serialized())
        #expect(answer.status == 200 && answer.body.contains("\"duplicate\""), "\(answer)")
        answer = try await curl(base + "/v1/batches", post: third.serialized())
        #expect(answer.status == 200 && answer.body.contains("\"gap\""), "\(answer)")
        answer = try await curl(base + "/v1/batches", post: Array("garbage".utf8))
        #expect(answer.status == 400 && answer.body.contains("\"malformed_batch\""), "\(answer)")
        answer = try await curl(base + "/v1/batches", post: stranger.serialized())
        #expect(answer.status == 401 && answer.body.contains("\"unknown_agent\""), "\(answer)")
        answer = try await curl(base + "/v1/batches", post: [UInt8](repeating: 0x41, count: (8 << 20) + 1))
        #expect(answer.status == 413, "\(answer.status)")
        _ = try await curl(base + "/v1/events?type=file")

        scrape = try await curl(base + "/metrics")
        #expect(scrape.status == 200, "\(scrape)")
        m = Self.samples(scrape.body)
        let expected: [String: Double] = [
            "vigil_collector_batches_received_total": 6,
            "vigil_collector_batches_accepted_total{chain=\"ok\"}": 1,
            "vigil_collector_batches_accepted_total{chain=\"gap\"}": 1,
            "vigil_collector_batches_accepted_total{chain=\"broken\"}": 0,
            "vigil_collector_batches_duplicate_total": 1,
            "vigil_collector_batches_refused_total{reason=\"malformed_batch\"}": 1,
            "vigil_collector_batches_refused_total{reason=\"unknown_agent\"}": 1,
            "vigil_collector_batches_refused_total{reason=\"too_large\"}": 1,
            "vigil_collector_events_stored_total{type=\"file\"}": 3,
            "vigil_collector_events_stored_total{type=\"health\"}": 1,
            "vigil_collector_events_stored_total{type=\"flow\"}": 0,
            // The first batch, its duplicate and the third reached the store.
            "vigil_collector_store_ingest_duration_seconds_count": 3,
            "vigil_collector_http_requests_total{route=\"/v1/batches\",method=\"POST\",status=\"200\"}": 3,
            "vigil_collector_http_requests_total{route=\"/v1/batches\",method=\"POST\",status=\"400\"}": 1,
            "vigil_collector_http_requests_total{route=\"/v1/events\",method=\"GET\",status=\"200\"}": 1,
            "vigil_collector_http_request_duration_seconds_count{route=\"/v1/events\",method=\"GET\"}": 1,
        ]
        for (series, value) in expected.sorted(by: { $0.key < $1.key }) {
            #expect(m[series] == value, "\(series): \(m[series].map { "\($0)" } ?? "absent")\n\(scrape.body)")
        }
        #expect(m["vigil_collector_store_ingest_duration_seconds_bucket{le=\"+Inf\"}"] == 3, "\(scrape.body)")

        // Only GET: 405 with Allow.
        let post = try await curl(base + "/metrics", post: [], contentType: "text/plain")
        #expect(post.status == 405, "\(post)")

        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }

    @Test("with an API token, /metrics needs it as a bearer token")
    func collectorAuthorization() async throws {
        let dir = try makeDirectory("metrics-auth")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        let token = "metrics-token-0123456789abcdef"
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--api-token", token]
        )
        let up = await eventually { (try? await curl(base + "/healthz"))?.status == 200 }
        #expect(up, "collector did not start: \(collector.stderr)")

        let none = try await curl(base + "/metrics")
        #expect(none.status == 401 && none.body.contains("\"unauthorized\""), "\(none)")
        #expect(!none.body.contains("vigil_collector_"), "\(none.body)")
        let wrong = try await curl(base + "/metrics", token: "not-the-token-at-all")
        #expect(wrong.status == 401, "\(wrong)")
        let right = try await curl(base + "/metrics", token: token)
        #expect(right.status == 200, "\(right)")
        let m = Self.samples(right.body)
        #expect(m["vigil_collector_batches_received_total"] == 0, "\(right.body)")
        // The two refused scrapes were counted as requests.
        #expect(
            m["vigil_collector_http_requests_total{route=\"/metrics\",method=\"GET\",status=\"401\"}"] == 2,
            "\(right.body)"
        )

        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }

    @Test(
        "vigild serves metrics_listen after its sandbox: file events, spool and shipping are counted",
        .timeLimit(.minutes(3))
    )
    func agentEndpoint() async throws {
        let dir = try makeDirectory("metrics-agent")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        let metricsPort = freeLoopbackPort()
        let metricsURL = "http://127.0.0.1:\(metricsPort)/metrics"
        let config = try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n",
            collectorURL: base,
            enrollToken: "t"
        )
        // Kill on any call off the allowlist: serving metrics must need none.
        let extra = "metrics_listen: 127.0.0.1:\(metricsPort)\nsandbox:\n  default_action: kill\n"
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: config))
        handle.seekToEndOfFile()
        handle.write(Data(extra.utf8))
        try handle.close()
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--enroll-token", "t"]
        )
        let agent = try ChildProcess(BuiltProducts.path("vigild"), ["--config", config])

        var scrape: (status: Int, body: String, contentType: String) = (0, "", "")
        let served = await eventually {
            scrape = (try? await curl(metricsURL)) ?? (0, "", "")
            return scrape.status == 200
        }
        #expect(served, "no metrics at \(metricsURL): \(scrape)\nagent:\n\(agent.stderr)")
        #expect(scrape.contentType.hasPrefix("text/plain"), "\(scrape.contentType)")
        let before = Self.samples(scrape.body)["vigil_agent_events_total{type=\"file\"}"] ?? -1
        #expect(before >= 0, "\(scrape.body)")

        for i in 0..<5 {
            try Data("x\(i)".utf8).write(to: URL(fileURLWithPath: "\(dir)/watched/f\(i).txt"))
        }
        var m: [String: Double] = [:]
        let counted = await eventually(timeout: .seconds(60)) {
            guard let s = try? await curl(metricsURL), s.status == 200 else { return false }
            scrape = s
            m = Self.samples(s.body)
            return (m["vigil_agent_events_total{type=\"file\"}"] ?? 0) >= before + 5
                && (m["vigil_agent_batches_sent_total{result=\"accepted\"}"] ?? 0) >= 1
                && (m["vigil_agent_events_shipped_total"] ?? 0) >= 5
        }
        #expect(counted, "file events or deliveries not counted:\n\(scrape.body)\nagent:\n\(agent.stderr)")
        #expect((m["vigil_agent_batch_round_trip_seconds_count"] ?? 0) >= 1, "\(scrape.body)")
        #expect(m["vigil_agent_spool_bytes"] != nil, "\(scrape.body)")
        #expect(m["vigil_agent_spool_events"] != nil, "\(scrape.body)")
        #expect(m["vigil_agent_spool_max_bytes"] == Double(256 << 20), "\(scrape.body)")
        #expect(m["vigil_agent_kernel_drops_total{sensor=\"file\"}"] == 0, "\(scrape.body)")
        #expect(m["vigil_agent_events_dropped_total{type=\"file\"}"] == 0, "\(scrape.body)")
        #expect(m["vigil_agent_shed_level"] == 0, "\(scrape.body)")
        #expect(m["vigil_agent_batches_sent_total{result=\"refused\"}"] == 0, "\(scrape.body)")

        // Other paths and methods.
        let other = try await curl("http://127.0.0.1:\(metricsPort)/")
        #expect(other.status == 404, "\(other)")
        let post = try await curl(metricsURL, post: [], contentType: "text/plain")
        #expect(post.status == 405, "\(post)")

        // The sandbox was installed, and the agent survived all of the above under default_action kill.
        if TestEnvironment.isRoot {
            #expect(agent.stderr.contains("sandbox installed"), "\(agent.stderr)")
        }
        #expect(agent.isRunning, "\(agent.stderr)")
        #expect(await agent.stop() == 0, "\(agent.stderr)")
        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }
}
