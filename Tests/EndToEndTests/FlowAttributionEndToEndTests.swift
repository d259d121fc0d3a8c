import Foundation
import Testing
import VigilTestSupport

/// A root agent attributes flows by default: the flow event of a local socket reaches the
/// collector with the owning process's `ProcessId` and `Image`, inside the agent's sandbox.
@Suite("Flow attribution end to end", .serialized)
struct FlowAttributionEndToEndTests {
    @Test("a UDP flow from this process carries its pid and executable at the collector")
    func attributedFlow() async throws {
        guard TestEnvironment.isRoot else {
            if TestEnvironment.isCI { Issue.record("packet capture needs root (CAP_NET_RAW); CI runs as root") }
            return
        }
        let dir = NSTemporaryDirectory() + "vigil-attribution-e2e-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/policies", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = freeLoopbackPort()
        let deployment = try LocalDeployment(
            in: dir,
            collection:
                "files:\n  watch: []\nnetwork:\n  interface: lo\n  filter: \"udp port \(target)\"\n  idle_timeout_s: 1\n"
        )
        let agent = deployment.agent
        let up = await eventually { agent.stderr.contains("flow sensor started") }
        #expect(up, "flow sensor did not start:\n\(agent.stderr)")

        // The socket stays open until the flow is at the collector: the agent resolves it
        // right after the first datagram, however long shipping takes.
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(target).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        for _ in 0..<2 {
            let payload = Array("vigil".utf8)
            _ = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, payload, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        var flow: [String: Any]? = nil
        let seen = try await eventually(timeout: .seconds(60)) {
            flow = try await deployment.payloads(of: "flow").first { ($0["resp_p"] as? Int) == target }
            return flow != nil
        }
        #expect(seen, "no flow event; agent log:\n\(agent.stderr)")
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        #expect(flow?["ProcessId"] as? Int == Int(getpid()), "\(flow ?? [:])")
        #expect(flow?["Image"] as? String == exe, "\(flow ?? [:])")
        let sandbox = try await deployment.health(kind: "sandbox").first?["message"] as? String
        #expect(sandbox?.contains("flow attribution") == true, "\(sandbox ?? "no sandbox event")")
        let stopped = await deployment.stop()
        #expect(stopped.agent == 0, "\(agent.stderr)")
        #expect(stopped.collector == 0)
    }
}
