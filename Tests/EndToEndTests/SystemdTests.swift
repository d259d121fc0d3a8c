import Foundation
import Testing
import VigilTestSupport

/// A datagram socket standing in for systemd's notify socket.
final class NotifySocket {
    let path: String
    let fd: Int32

    init() throws {
        path = NSTemporaryDirectory() + "vigil-notify-\(UUID().uuidString.prefix(8))"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard fd >= 0, rc == 0 else { throw POSIXError(.EADDRINUSE) }
    }

    /// The next datagram, or nil after `timeout`.
    func receive(timeout: Duration) -> String? {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&pfd, 1, ms) == 1 else { return nil }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 ? String(decoding: buf[..<n], as: UTF8.self) : nil
    }

    /// Datagrams until one contains `needle` (returned) or `timeout` passes (nil).
    func waitFor(_ needle: String, timeout: Duration) -> String? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let m = receive(timeout: .milliseconds(200)), m.contains(needle) { return m }
        }
        return nil
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

@Suite("systemd integration", .serialized)
struct SystemdTests {
    var repoRoot: String { #filePath.components(separatedBy: "/Tests/")[0] }

    @Test("both units pass systemd-analyze verify")
    func unitsVerify() async throws {
        let dir = NSTemporaryDirectory() + "vigil-units-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var units: [String] = []
        for name in ["vigild", "vigil-collector"] {
            // verify checks that ExecStart's binary exists: point it at the build.
            let text = try String(contentsOfFile: repoRoot + "/systemd/\(name).service", encoding: .utf8)
                .replacingOccurrences(of: "/usr/bin/\(name) ", with: BuiltProducts.path(name) + " ")
            try text.write(toFile: dir + "/\(name).service", atomically: true, encoding: .utf8)
            units.append(dir + "/\(name).service")
        }
        let result = try await runCommand("/usr/bin/systemd-analyze", ["verify"] + units)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.isEmpty, "\(result.stderr)")
    }

    @Test("vigild says READY, feeds the watchdog while running, and says STOPPING on SIGTERM")
    func notify() async throws {
        let dir = NSTemporaryDirectory() + "vigil-notify-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/policies", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // No collector is listening: the agent still starts, spools, and retries delivery.
        try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/policies]\n",
            collectorURL: "http://127.0.0.1:\(freeLoopbackPort())",
            batchMaxAgeMilliseconds: nil
        )
        let socket = try NotifySocket()
        let agent = try ChildProcess(
            BuiltProducts.path("vigild"),
            ["--config", dir + "/vigild.yaml", "--log-level", "warning"],
            environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "1000000"]
        )
        let ready = socket.waitFor("READY=1", timeout: .seconds(30))
        #expect(ready != nil, "no READY=1; agent log:\n\(agent.stderr)")
        #expect(ready?.contains("STATUS=watching 1 path(s)") == true, "\(ready ?? "")")
        #expect(socket.waitFor("WATCHDOG=1", timeout: .seconds(5)) != nil, "no watchdog keep-alive")
        #expect(socket.waitFor("WATCHDOG=1", timeout: .seconds(5)) != nil, "watchdog keep-alives stopped")
        kill(agent.process.processIdentifier, SIGTERM)
        #expect(socket.waitFor("STOPPING=1", timeout: .seconds(10)) != nil, "no STOPPING=1")
        #expect(await agent.wait(timeout: .seconds(20)) == 0, "\(agent.stderr)")
    }
}
