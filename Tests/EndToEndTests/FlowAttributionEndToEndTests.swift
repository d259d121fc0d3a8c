import Foundation
import Testing
import VigilTestSupport

/// A root agent attributes flows by default: the flow event of a local socket reaches the
/// collector with the owning process's `ProcessId` and `Image`, inside the agent's sandbox.
@Suite("Flow attribution end to end", .serialized)
struct FlowAttributionEndToEndTests {
    @Test("a UDP flow from this process carries its pid and executable at the collector")
    func attributedFlow() async throws {
        // The socket stays open until the flow is at the collector: the agent resolves it
        // right after the first datagram, however long shipping takes.
        try await LocalDeployment.withUDPFlow(datagrams: 2) { deployment, flow in
            let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
            #expect(flow?["ProcessId"] as? Int == Int(getpid()), "\(flow ?? [:])\n\(deployment.logs)")
            #expect(flow?["Image"] as? String == exe, "\(flow ?? [:])")
            let sandbox = try await deployment.health(kind: "sandbox").first?["message"] as? String
            #expect(sandbox?.contains("flow attribution") == true, "\(sandbox ?? "no sandbox event")")
            let stopped = await deployment.stop()
            #expect(stopped.agent == 0, "\(deployment.agent.stderr)")
            #expect(stopped.collector == 0)
        }
    }
}
