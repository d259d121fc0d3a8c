import Foundation
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

/// The collector's HTTP surface, against the real `vigil-collector` process: every refusal has
/// its status and a JSON reason, and nothing refused is stored.
@Suite("Collector over HTTP", .serialized)
struct CollectorHTTPTests {
    /// POSTs or GETs with curl; returns (status, body).
    func curl(
        _ url: String,
        post body: [UInt8]? = nil,
        contentType: String = "application/x-vigil-batch"
    ) async throws -> (Int, String) {
        let answer = try await VigilTestSupport.curl(url, post: body, contentType: contentType)
        return (answer.status, answer.body)
    }

    @Test("refusals carry a status and a reason; accepted batches are stored once")
    func refusals() async throws {
        let dir = NSTemporaryDirectory() + "vigil-http-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--enroll-token", "tok"]
        )
        let up = await eventually { (try? await curl(base + "/healthz"))?.0 == 200 }
        #expect(up, "collector did not start: \(collector.stderr)")

        let identity = AgentIdentity.generate()
        let events = [Event(seq: 1, payload: .file(FileEvent(action: .create, targetFilename: "/tmp/a")))]
        let sealed = try BatchSealer(identity: identity).seal(
            events: events,
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash
        )
        let batch = sealed.serialized()

        // Not enrolled yet: 401 unknown_agent.
        var (status, body) = try await curl(base + "/v1/batches", post: batch)
        #expect(status == 401 && body.contains("\"unknown_agent\""), "\(status) \(body)")

        // Enrollment: wrong token 401, then right token.
        let enroll = { (token: String) in
            Array(
                "{\"token\":\"\(token)\",\"agent_id\":\"\(identity.agentId)\",\"public_key\":\"\(identity.publicKeyBase64)\",\"hostname\":\"h\",\"machine_id\":\"m\"}"
                    .utf8
            )
        }
        (status, body) = try await curl(base + "/v1/enroll", post: enroll("nope"), contentType: "application/json")
        #expect(status == 401 && body.contains("\"bad_token\""), "\(status) \(body)")
        (status, body) = try await curl(
            base + "/v1/enroll",
            post: Array("{not json".utf8),
            contentType: "application/json"
        )
        #expect(status == 400, "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/enroll", post: enroll("tok"), contentType: "application/json")
        #expect(status == 200 && body.contains("\"enrolled\""), "\(status) \(body)")

        // Garbage, a flipped signature bit, an oversized body.
        (status, body) = try await curl(base + "/v1/batches", post: Array("garbage".utf8))
        #expect(status == 400 && body.contains("\"malformed_batch\""), "\(status) \(body)")
        var tampered = batch
        tampered[tampered.count / 2] ^= 0x01
        (status, body) = try await curl(base + "/v1/batches", post: tampered)
        #expect((400...401).contains(status) && body.contains("\"error\""), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/batches", post: [UInt8](repeating: 0x41, count: (8 << 20) + 1))
        #expect(status == 413, "\(status) \(body)")

        // Nothing so far was stored.
        (status, body) = try await curl(base + "/v1/events")
        #expect(status == 200 && body.contains("\"events\":[]"), "\(status) \(body)")

        // The real batch: accepted, then answered as a duplicate, stored once.
        (status, body) = try await curl(base + "/v1/batches", post: batch)
        #expect(status == 200 && body.contains("\"accepted\""), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/batches", post: batch)
        #expect(status == 200 && body.contains("\"duplicate\""), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/events?type=file")
        #expect(status == 200 && body.components(separatedBy: "\"/tmp/a\"").count == 2, "\(status) \(body)")

        // Bad query parameters are named.
        (status, body) = try await curl(base + "/v1/events?type=bogus")
        #expect(status == 400 && body.contains("type"), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/events?limit=999999999")
        #expect(status == 400 && body.contains("limit"), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/events?agent=x%27%20OR%201=1")
        #expect(status == 400 && body.contains("agent"), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/events?colour=red")
        #expect(status == 400 && body.contains("colour"), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/events?field=process.colour:red")
        #expect(status == 400 && body.contains("process.colour") && body.contains("process.Image"), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/events?level=severe")
        #expect(status == 400 && body.contains("level"), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/alerts?type=file")
        #expect(status == 400 && body.contains("type"), "\(status) \(body)")
        // Each order pages with its own cursor; the other one is refused, by name.
        (status, body) = try await curl(base + "/v1/events?order=sideways")
        #expect(status == 400 && body.contains("order:"), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/events?order=desc&after=1")
        #expect(status == 400 && body.contains("after:"), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/alerts?before=5")
        #expect(status == 400 && body.contains("before:"), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/events/stream?order=desc")
        #expect(status == 400 && body.contains("order:"), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/events?order=desc&limit=1")
        #expect(status == 200 && body.contains("\"next_cursor\""), "\(status) \(body)")

        // Field and level filters, and the alerts route (no alerts stored).
        (status, body) = try await curl(base + "/v1/events?field=file.TargetFilename:/tmp/a&field=file.action:create")
        #expect(status == 200 && body.contains("\"/tmp/a\""), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/events?field=file.TargetFilename:/tmp/a&field=file.action:delete")
        #expect(status == 200 && body.contains("\"events\":[]"), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/alerts?min_level=high&field=process.Image:%27%20OR%201=1--")
        #expect(status == 200 && body.contains("\"alerts\":[]"), "\(status) \(body)")

        // vigilctl events --latest N: the newest N (paged newest first), printed oldest first.
        let later = (2...6).map {
            Event(seq: $0, payload: .file(FileEvent(action: .create, targetFilename: "/tmp/l\($0)")))
        }
        let batch2 = try BatchSealer(identity: identity).seal(
            events: later,
            batchSeq: 2,
            prevHeaderHash: sealed.headerHash
        )
        // Sent behind batch 1 "in flight": the header must be a batch number.
        let behind = try await VigilTestSupport.curl(
            base + "/v1/batches",
            post: batch2.serialized(),
            extra: ["-H", "Vigil-Previous-Batch: one"]
        )
        #expect(
            behind.status == 400 && behind.body.contains("Vigil-Previous-Batch") && behind.body.contains("'one'"),
            "\(behind)"
        )
        let inOrder = try await VigilTestSupport.curl(
            base + "/v1/batches",
            post: batch2.serialized(),
            extra: ["-H", "Vigil-Previous-Batch: 1"]
        )
        #expect(inOrder.status == 200 && inOrder.body.contains("\"accepted\""), "\(inOrder)")
        (status, body) = try await curl(base + "/v1/batches", post: batch2.serialized())
        #expect(status == 200 && body.contains("\"duplicate\""), "\(status) \(body)")
        let vigilctl = BuiltProducts.path("vigilctl")
        var result = try await runCommand(vigilctl, ["events", "--collector", base, "--type", "file", "--latest", "3"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(
            result.stdout.split(separator: "\n").map {
                $0.contains("/tmp/l4") ? 4 : $0.contains("/tmp/l5") ? 5 : $0.contains("/tmp/l6") ? 6 : 0
            }
                == [4, 5, 6],
            "\(result.stdout)"
        )
        result = try await runCommand(vigilctl, ["events", "--collector", base, "--latest", "2", "--limit", "2"])
        #expect(result.status != 0 && result.stderr.contains("--latest"), "\(result.stderr)")

        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }
}

/// Who may read a collector's events: with `--api-token`, bearer-token holders only; without,
/// loopback clients only. Remote clients come from a second, non-loopback address (root).
@Suite("Collector read API authorization", .serialized)
struct CollectorReadAuthorizationTests {
    static let address = "198.18.47.1"

    func curl(_ url: String, from source: String? = nil, token: String? = nil) async throws -> (Int, String) {
        let answer = try await VigilTestSupport.curl(
            url,
            token: token,
            extra: source.map { ["--interface", $0] } ?? []
        )
        return (answer.status, answer.body)
    }

    @Test("read routes need the API token when set, and a loopback client when not")
    func readAuthorization() async throws {
        guard TestEnvironment.isRoot else {
            if TestEnvironment.isCI {
                Issue.record("a non-loopback client address needs CAP_NET_ADMIN (root); CI runs as root")
            }
            return
        }
        // A second, non-loopback address on lo (containers often lack the dummy link type).
        let added = try await runCommand("/usr/sbin/ip", ["addr", "add", Self.address + "/32", "dev", "lo"])
        #expect(added.status == 0 || added.stderr.contains("exists"), "ip addr add: \(added.stderr)")
        defer {
            let remove = Process()
            remove.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            remove.arguments = ["addr", "del", Self.address + "/32", "dev", "lo"]
            try? remove.run()
            remove.waitUntilExit()
        }

        let dir = NSTemporaryDirectory() + "vigil-auth-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let routes = [
            "/v1/events", "/v1/agents", "/v1/agents/\(String(repeating: "a", count: 32))/batches", "/metrics",
        ]

        // Without a token: loopback reads, a remote client is refused, /healthz stays open.
        var port = freeLoopbackPort()
        var collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "0.0.0.0:\(port)", "--store", "sqlite:\(dir)/c.sqlite"]
        )
        var up = await eventually { (try? await curl("http://127.0.0.1:\(port)/healthz"))?.0 == 200 }
        #expect(up, "collector did not start: \(collector.stderr)")
        #expect(try await curl("http://127.0.0.1:\(port)/v1/events").0 == 200)
        #expect(try await curl("http://\(Self.address):\(port)/healthz", from: Self.address).0 == 200)
        for route in routes {
            let (status, body) = try await curl("http://\(Self.address):\(port)\(route)", from: Self.address)
            #expect(status == 401 && body.contains("--api-token"), "\(route): \(status) \(body)")
        }
        #expect(await collector.stop() == 0)

        // With a token: everyone needs it, loopback included; the right one is let through.
        let token = "t0ken-" + UUID().uuidString
        port = freeLoopbackPort()
        collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "0.0.0.0:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--api-token", token]
        )
        up = await eventually { (try? await curl("http://127.0.0.1:\(port)/healthz"))?.0 == 200 }
        #expect(up, "collector did not start: \(collector.stderr)")
        for route in routes {
            for (source, presented) in [
                (nil, nil), (Self.address, nil), (Self.address, token + "x"), (nil, String(token.dropLast())),
            ] as [(String?, String?)] {
                let host = source ?? "127.0.0.1"
                let (status, body) = try await curl("http://\(host):\(port)\(route)", from: source, token: presented)
                #expect(
                    status == 401 && body.contains("\"unauthorized\""),
                    "\(route) from \(host) with \(presented ?? "no token"): \(status) \(body)"
                )
            }
        }
        #expect(try await curl("http://\(Self.address):\(port)/v1/events", from: Self.address, token: token).0 == 200)
        #expect(try await curl("http://127.0.0.1:\(port)/v1/agents", token: token).0 == 200)
        // Unknown agent, but authorized: the route's own answer, not an auth refusal.
        let (status, body) = try await curl("http://127.0.0.1:\(port)\(routes[2])", token: token)
        #expect(status == 401 && body.contains("\"unknown_agent\""), "\(status) \(body)")
        #expect(await collector.stop() == 0)

        // A token too short to be one is refused at start.
        let refused = try await runCommand(
            BuiltProducts.path("vigil-collector"),
            ["--store", "sqlite:\(dir)/c.sqlite", "--api-token", "short"]
        )
        #expect(refused.status != 0 && refused.stderr.contains("at least 16 characters"), "\(refused)")
    }
}
