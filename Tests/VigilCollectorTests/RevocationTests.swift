import Foundation
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilCollector

/// `POST /v1/agents/ID/revoke` as the collector carries it out, on both stores: the agent's
/// batches and its re-enrollment are refused from then on, what it sent before stays.
@Suite("Revocation")
struct RevocationTests {
    @Test("a revoked agent's batches and re-enrollment are refused; its events stay", arguments: Backend.allCases)
    func revoke(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            var other = AgentStream()
            try await f.enroll(agent.identity)
            try await f.enroll(other.identity)
            #expect(try await f.collector.receive(batch: try agent.next()).status == "accepted")

            let first = try await f.collector.revoke(agentId: agent.identity.agentId)
            #expect(first.agentId == agent.identity.agentId)
            // Revoking again keeps the first time.
            #expect(try await f.collector.revoke(agentId: agent.identity.agentId).revokedAt == first.revokedAt)

            let next = try agent.next()
            #expect(await refusal { _ = try await f.collector.receive(batch: next) } == .revokedAgent)
            #expect(await refusal { try await f.enroll(agent.identity) } == .revokedAgent)
            #expect(try await f.count(agent.identity.agentId) == 3, "what it sent before stays")

            let summaries = try await f.store.agents()
            #expect(summaries.first { $0.agentId == agent.identity.agentId }?.revoked == true)
            #expect(summaries.first { $0.agentId == other.identity.agentId }?.revoked == false)
            // Others are untouched.
            #expect(try await f.collector.receive(batch: try other.next()).status == "accepted")

            #expect(await refusal { _ = try await f.collector.revoke(agentId: "no-such-agent") } == .unknownAgent)
            #expect(await refusal { _ = try await f.collector.revoke(agentId: "../../etc") } == .unknownAgent)
        }
    }
}
