import Foundation
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

/// `vigilctl tail` as a real process against a real `vigil-collector`: it prints the events,
/// survives the collector going away (reconnecting with Last-Event-ID: nothing twice, nothing
/// lost) and exits cleanly on SIGINT.
@Suite("vigilctl tail", .serialized)
struct LiveTailEndToEndTests {
    /// POSTs a body with curl; returns (status, body).
    func post(_ url: String, _ body: [UInt8], contentType: String) async throws -> (Int, String) {
        let path = NSTemporaryDirectory() + "vigil-body-\(UUID().uuidString)"
        try Data(body).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let result = try await runCommand(
            "/usr/bin/curl",
            [
                "-sS", "-o", "-", "-w", "\n%{http_code}", url, "-H", "Content-Type: \(contentType)", "--data-binary",
                "@\(path)",
            ]
        )
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? -1, lines.dropLast().joined(separator: "\n"))
    }

    @Test("vigilctl tail --json prints new events, reconnects after a collector restart, exits on SIGINT")
    func tailJSON() async throws {
        let dir = NSTemporaryDirectory() + "vigil-tail-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        func startCollector() async throws -> ChildProcess {
            let collector = try ChildProcess(
                BuiltProducts.path("vigil-collector"),
                ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--enroll-token", "tok"]
            )
            let up = await eventually {
                (try? await runCommand("/usr/bin/curl", ["-sf", "-o", "/dev/null", base + "/healthz"]))?.status == 0
            }
            #expect(up, "collector did not start: \(collector.stderr)")
            return collector
        }
        var collector = try await startCollector()

        let identity = AgentIdentity.generate()
        let enroll =
            "{\"token\":\"tok\",\"agent_id\":\"\(identity.agentId)\",\"public_key\":\"\(identity.publicKeyBase64)\",\"hostname\":\"h\",\"machine_id\":\"m\"}"
        #expect(try await post(base + "/v1/enroll", Array(enroll.utf8), contentType: "application/json").0 == 200)
        var batchSeq: UInt64 = 0
        var prev = genesisHeaderHash
        var nextSeq: UInt64 = 1
        /// One batch: `count` file events and one health event (which the tail filters out).
        func send(_ count: Int) async throws {
            batchSeq += 1
            var events: [Event] = (0..<count).map { i in
                Event(
                    seq: nextSeq + UInt64(i),
                    payload: .file(FileEvent(action: .create, targetFilename: "/tmp/tail-\(nextSeq + UInt64(i))"))
                )
            }
            nextSeq += UInt64(count)
            events.append(Event(seq: nextSeq, payload: .health(AgentHealth(kind: "heartbeat", message: "tail test"))))
            nextSeq += 1
            let batch = try BatchSealer(identity: identity).seal(
                events: events,
                batchSeq: batchSeq,
                prevHeaderHash: prev
            )
            prev = batch.headerHash
            let (status, body) = try await post(
                base + "/v1/batches",
                batch.serialized(),
                contentType: "application/x-vigil-batch"
            )
            #expect(status == 200, "\(body)")
        }
        try await send(2)

        // --after 0: from the first event, so the test need not know when the tail connected.
        let tail = try ChildProcess(
            BuiltProducts.path("vigilctl"),
            ["tail", "--collector", base, "--type", "file", "--json", "--after", "0"]
        )
        func printed() -> [[String: Any]] {
            tail.stdout.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }
        func names() -> [String] {
            printed().compactMap {
                (($0["event"] as? [String: Any])?["file"] as? [String: Any])?["TargetFilename"] as? String
            }
        }
        try await send(3)
        #expect(await eventually { names().count >= 5 }, "tail printed:\n\(tail.stdout)\n\(tail.stderr)")

        // The collector goes away and comes back; events stored meanwhile and after arrive once.
        #expect(await collector.stop(signal: SIGKILL) != 0)
        collector = try await startCollector()
        try await send(2)
        try await send(1)
        #expect(await eventually(timeout: .seconds(40)) { names().count >= 8 }, "\(tail.stdout)\n\(tail.stderr)")
        try await Task.sleep(for: .seconds(1))
        #expect(names() == [1, 2, 4, 5, 6, 8, 9, 11].map { "/tmp/tail-\($0)" }, "\(tail.stdout)")
        #expect(tail.stderr.contains("reconnecting"), "\(tail.stderr)")
        let ids = printed().compactMap { $0["id"] as? Int }
        #expect(ids == ids.sorted() && Set(ids).count == ids.count, "\(ids)")

        #expect(await tail.stop(signal: SIGINT) == 0, "\(tail.stderr)")
        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }
}
