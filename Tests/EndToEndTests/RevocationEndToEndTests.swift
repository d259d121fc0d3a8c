import Foundation
import Testing
import VigilTestSupport

/// `vigilctl agents revoke` against a real collector with a real agent shipping to it: the
/// agent's later batches are refused and it says why; the inventory shows it revoked.
@Suite("Revocation end to end")
struct RevocationEndToEndTests {
    let dir = NSTemporaryDirectory() + "vigil-revoke-e2e-\(UUID().uuidString)"

    @Test("a revoked agent's next batch is refused and the inventory says REVOKED", .timeLimit(.minutes(3)))
    func revokeAgent() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        let deployment = try LocalDeployment(in: dir, collection: "files:\n  watch: [\(dir)/watched]\n")
        #expect(try await deployment.waitForStart(), "agent log:\n\(deployment.agent.stderr)")
        let vigilctl = BuiltProducts.path("vigilctl")

        let listed = try await runCommand(vigilctl, ["agents", "--collector", deployment.base, "--json"])
        let agents =
            (try? JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any])?["agents"]
            as? [[String: Any]] ?? []
        let agentId = try #require(agents.first?["agent_id"] as? String, "\(listed.stdout)\(listed.stderr)")

        let revoked = try await runCommand(vigilctl, ["agents", "revoke", agentId, "--collector", deployment.base])
        #expect(revoked.status == 0 && revoked.stdout.contains("agent \(agentId) revoked at"), "\(revoked)")

        // Its next batch (a file event) is refused, and its log says why.
        try Data("after revocation\n".utf8).write(to: URL(fileURLWithPath: dir + "/watched/late.txt"))
        let refused = await eventually(timeout: .seconds(60)) { deployment.agent.stderr.contains("revoked") }
        #expect(refused, "agent log:\n\(deployment.agent.stderr)")
        let late = try await deployment.payloads(of: "file").filter {
            ($0["TargetFilename"] as? String)?.hasSuffix("/late.txt") == true
        }
        #expect(late.isEmpty, "a revoked agent's event was stored: \(late)")
        let table = try await runCommand(vigilctl, ["agents", "--collector", deployment.base])
        #expect(table.stdout.contains("REVOKED"), "\(table.stdout)")

        // An unknown agent is refused with a reason.
        let unknown = try await runCommand(
            vigilctl,
            ["agents", "revoke", "no-such-agent", "--collector", deployment.base]
        )
        #expect(unknown.status != 0 && unknown.stderr.contains("not enrolled"), "\(unknown)")
        _ = await deployment.stop()
    }
}
