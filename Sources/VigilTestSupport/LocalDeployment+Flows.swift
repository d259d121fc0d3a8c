import Foundation
import Testing

extension LocalDeployment {
    /// Runs `body` with a `LocalDeployment` whose agent captures on `lo` the UDP flows to a free
    /// port (no file watches, flows closed after 1 s idle) and the flow event of `datagrams`
    /// datagrams ("vigil") this process sent there from one socket, as the collector stored it
    /// (nil, with an issue recorded, when none arrived within 60 s).
    ///
    /// The socket is close-on-exec and stays open until `body` returns, so the agent can
    /// attribute the flow to this process however long shipping takes. The test directory is
    /// removed afterwards; stopping the deployment is up to `body`.
    ///
    /// Packet capture needs root (`CAP_NET_RAW`): without it `body` is not run, and an issue is
    /// recorded when `CI=true`. Issues are recorded at `sourceLocation`, the caller's.
    ///
    /// ```swift
    /// try await LocalDeployment.withUDPFlow(datagrams: 3) { deployment, flow in
    ///     #expect(flow?["orig_pkts"] as? Int == 3)
    ///     #expect(await deployment.stop().agent == 0)
    /// }
    /// ```
    public static func withUDPFlow(
        datagrams: Int,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: (LocalDeployment, _ flow: [String: Any]?) async throws -> Void
    ) async throws {
        guard TestEnvironment.isRoot else {
            if TestEnvironment.isCI {
                Issue.record("packet capture needs root (CAP_NET_RAW); CI runs as root", sourceLocation: sourceLocation)
            }
            return
        }
        let dir = NSTemporaryDirectory() + "vigil-flow-e2e-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = freeLoopbackPort()
        let deployment = try LocalDeployment(
            in: dir,
            collection:
                "files:\n  watch: []\nnetwork:\n  interface: lo\n  filter: \"udp port \(target)\"\n  idle_timeout_s: 1\n"
        )
        let agent = deployment.agent
        let up = await eventually { agent.stderr.contains("flow sensor started") }
        #expect(up, "flow sensor did not start:\n\(agent.stderr)", sourceLocation: sourceLocation)

        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(target).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let payload = Array("vigil".utf8)
        for _ in 0..<datagrams {
            _ = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, payload, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        let flow = try await deployment.firstPayload(of: "flow", timeout: .seconds(60)) {
            ($0["resp_p"] as? Int) == target
        }
        #expect(flow != nil, "no flow event; agent log:\n\(agent.stderr)", sourceLocation: sourceLocation)
        try await body(deployment, flow)
    }
}
