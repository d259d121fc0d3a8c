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
    func curl(_ url: String, post body: [UInt8]? = nil, contentType: String = "application/x-vigil-batch") async throws -> (Int, String) {
        var args = ["-sS", "-o", "-", "-w", "\n%{http_code}", url]
        var bodyFile: String? = nil
        if let body {
            let path = NSTemporaryDirectory() + "vigil-body-\(UUID().uuidString)"
            try Data(body).write(to: URL(fileURLWithPath: path))
            bodyFile = path
            args += ["-H", "Content-Type: \(contentType)", "--data-binary", "@\(path)"]
        }
        defer { if let bodyFile { unlink(bodyFile) } }
        let result = try await runCommand("/usr/bin/curl", args)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? -1, lines.dropLast().joined(separator: "\n"))
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
        let batch = try BatchSealer(identity: identity).seal(events: events, batchSeq: 1, prevHeaderHash: genesisHeaderHash).serialized()

        // Not enrolled yet: 401 unknown_agent.
        var (status, body) = try await curl(base + "/v1/batches", post: batch)
        #expect(status == 401 && body.contains("\"unknown_agent\""), "\(status) \(body)")

        // Enrollment: wrong token 401, then right token.
        let enroll = { (token: String) in
            Array("{\"token\":\"\(token)\",\"agent_id\":\"\(identity.agentId)\",\"public_key\":\"\(identity.publicKeyBase64)\",\"hostname\":\"h\",\"machine_id\":\"m\"}".utf8)
        }
        (status, body) = try await curl(base + "/v1/enroll", post: enroll("nope"), contentType: "application/json")
        #expect(status == 401 && body.contains("\"bad_token\""), "\(status) \(body)")
        (status, body) = try await curl(base + "/v1/enroll", post: Array("{not json".utf8), contentType: "application/json")
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

        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }
}
