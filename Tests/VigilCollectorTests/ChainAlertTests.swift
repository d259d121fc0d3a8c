import Crypto
import Foundation
import Testing
import VigilCollector
import VigilCore
import VigilWire

/// Chain anomalies become collector alerts (`ChainAlert`) stored with the anomaly, and those
/// alerts disturb neither seq accounting, nor re-verification, nor retention.
@Suite("Chain anomaly alerts")
struct ChainAlertTests {
    /// The collector's own alerts for `agentId`, oldest first.
    func collectorAlerts(_ f: CollectorFixture, _ agentId: String) async throws -> [StoredAlert] {
        try await f.store.alerts(EventQuery(agentId: agentId, limit: 1000)).filter { $0.origin == "collector" }
    }

    /// Re-verifies the agent's stored batches as `vigilctl verify` does.
    func verify(_ f: CollectorFixture, _ identity: AgentIdentity) async throws -> ChainVerifier {
        var verifier = ChainVerifier(agentId: identity.agentId, publicKey: identity.privateKey.publicKey)
        for stored in try await f.store.batches(agentId: identity.agentId, afterBatchSeq: 0, limit: 1000) {
            verifier.check(stored)
        }
        return verifier
    }

    @Test("gap, reorder, broken link and fork each store an alert with its rule and level", arguments: Backend.allCases)
    func alertsPerAnomaly(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            let agentId = agent.identity.agentId
            try await f.enroll(agent.identity)
            let b1 = try agent.next()
            let b2 = try agent.next()
            let b3 = try agent.next()
            _ = try await f.collector.receive(batch: b1)
            #expect(try await f.collector.receive(batch: b3).chain == "gap")
            #expect(try await f.collector.receive(batch: b2).chain == "reordered")

            var alerts = try await collectorAlerts(f, agentId)
            #expect(alerts.map(\.ruleId) == ["vigil-chain-gap", "vigil-chain-reordered"])
            #expect(alerts.map(\.level) == ["medium", "low"])
            #expect(alerts.map(\.batchSeq) == [3, 2])
            #expect(alerts.allSatisfy { $0.seq == 0 && $0.author == "vigil-collector" && $0.event == nil })
            #expect(alerts.first?.detail == "batch 3: batch 2 is missing")
            #expect(alerts.first?.tags.contains("vigil.chain") == true)
            #expect(alerts.first?.techniques == ["T1562.006"])

            // They are alerts like any other: by type, by rule, by level.
            let byRule = try await f.store.events(EventQuery(types: [.alert], ruleId: "vigil-chain-gap"))
            #expect(byRule.count == 1 && byRule.first?.event.seq == 0)

            // Seq accounting saw 9 agent events and nothing missing; the stored chain re-verifies whole.
            let summary = try await f.store.agents()[0]
            #expect(summary.events == 9)
            #expect(summary.anomalies.map(\.kind) == ["gap", "reordered"])
            let b4 = try agent.next()
            #expect(try await f.collector.receive(batch: b4).chain == "ok")
            #expect(try await f.store.agents()[0].anomalies.count == 2, "a collector alert disturbed seq accounting")
            #expect(try await f.store.agents()[0].events == 12)
            let verified = try await verify(f, agent.identity)
            #expect(verified.isWhole, "\(verified.breaks)")
            #expect(verified.events == 12)

            // A broken link: high.
            var broken = agent
            broken.prev = [UInt8](repeating: 7, count: 32)
            #expect(try await f.collector.receive(batch: try broken.next()).chain == "broken")
            // A fork (a different batch 1): critical, stored although the batch is refused.
            var forked = agent
            forked.batchSeq = 0
            forked.prev = genesisHeaderHash
            forked.nextSeq = 100
            await #expect { try await f.collector.receive(batch: try forked.next()) } throws: {
                refusal($0) == "chain_fork"
            }
            alerts = try await collectorAlerts(f, agentId)
            #expect(alerts.suffix(2).map(\.ruleId) == ["vigil-chain-broken", "vigil-chain-fork"])
            #expect(alerts.suffix(2).map(\.level) == ["high", "critical"])
            #expect(alerts.last?.batchSeq == 1)
            let levels = try await f.store.events(EventQuery(types: [.alert], levels: [.critical]))
            #expect(levels.map(\.agentId) == [agentId])
        }
    }

    @Test("a whole chain raises no collector alert", arguments: Backend.allCases)
    func wholeChainNoAlert(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            for _ in 0..<3 { _ = try await f.collector.receive(batch: try agent.next()) }
            let resent = try agent.next()
            _ = try await f.collector.receive(batch: resent)
            #expect(try await f.collector.receive(batch: resent).status == "duplicate")
            #expect(try await collectorAlerts(f, agent.identity.agentId).isEmpty)
        }
    }

    @Test(
        "retention deletes collector alerts without pruning the batch they name",
        arguments: Backend.allCases
    )
    func retention(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            let agentId = agent.identity.agentId
            try await f.enroll(agent.identity)
            _ = try await f.collector.receive(batch: try agent.next(events: 2))
            _ = try agent.next(events: 0)  // batch 2 never arrives
            // Batch 3 holds no events: only its gap alert names it.
            #expect(try await f.collector.receive(batch: try agent.next(events: 0)).chain == "gap")
            _ = try await f.collector.receive(batch: try agent.next(events: 2))
            #expect(try await collectorAlerts(f, agentId).map(\.batchSeq) == [3])

            var deleted = 0
            while true {
                let n = try await f.store.deleteOldestEvents(before: nil, limit: 1)
                if n == 0 { break }
                deleted += n
            }
            #expect(deleted == 5)  // 4 agent events and the alert
            let batches = try await f.store.batches(agentId: agentId, afterBatchSeq: 0, limit: 10)
            #expect(batches.map(\.batchSeq) == [1, 3, 4])
            #expect(batches.map(\.pruned) == [true, false, true], "the empty batch 3 was pruned for its alert")
            let summary = try await f.store.agents()[0]
            #expect(summary.events == 4 && summary.lastBatchSeq == 4)
        }
    }
}
