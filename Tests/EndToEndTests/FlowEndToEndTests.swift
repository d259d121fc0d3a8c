import Foundation
import Testing
import VigilTestSupport

/// Flow events from live packet capture reach the collector through the same spool and chain.
@Suite("Flows end to end", .serialized)
struct FlowEndToEndTests {
    @Test("UDP datagrams on loopback become one flow event at the collector")
    func loopbackFlow() async throws {
        guard TestEnvironment.isRoot else {
            if TestEnvironment.isCI { Issue.record("packet capture needs root (CAP_NET_RAW); CI runs as root") }
            return
        }
        let dir = NSTemporaryDirectory() + "vigil-flow-e2e-\(UUID().uuidString)"
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

        // Three datagrams from one socket: one flow, orig_pkts 3.
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(target).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        for _ in 0..<3 {
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
        #expect(flow?["proto"] as? String == "udp")
        #expect(flow?["orig_h"] as? String == "127.0.0.1")
        #expect(flow?["orig_pkts"] as? Int == 3)
        #expect(flow?["orig_ip_bytes"] as? Int == 3 * (20 + 8 + 5))
        #expect(flow?["orig_bytes"] as? Int == 15)
        #expect((flow?["community_id"] as? String)?.hasPrefix("1:") == true)
        let stopped = await deployment.stop()
        #expect(stopped.agent == 0, "\(agent.stderr)")
        #expect(stopped.collector == 0)
    }
}
