import Foundation
import Testing
import VigilTestSupport

/// Flow events from live packet capture reach the collector through the same spool and chain.
@Suite("Flows end to end", .serialized)
struct FlowEndToEndTests {
    @Test("UDP datagrams on loopback become one flow event at the collector")
    func loopbackFlow() async throws {
        // Three datagrams from one socket: one flow, orig_pkts 3.
        try await LocalDeployment.withUDPFlow(datagrams: 3) { deployment, flow in
            #expect(flow?["proto"] as? String == "udp")
            #expect(flow?["orig_h"] as? String == "127.0.0.1")
            #expect(flow?["orig_pkts"] as? Int == 3)
            #expect(flow?["orig_ip_bytes"] as? Int == 3 * (20 + 8 + 5))
            #expect(flow?["orig_bytes"] as? Int == 15)
            #expect((flow?["community_id"] as? String)?.hasPrefix("1:") == true)
            let stopped = await deployment.stop()
            #expect(stopped.agent == 0, "\(deployment.agent.stderr)")
            #expect(stopped.collector == 0)
        }
    }
}
