import Foundation
import Logging
import Testing
import VigilCollector
import VigilCore
import VigilTestSupport
import VigilWire

/// Batches an agent sends while the batch before is still in flight (`Vigil-Previous-Batch`):
/// stored after their predecessor, never judged a gap because they overtook it.
@Suite("Batches sent behind one in flight")
struct PipelinedDeliveryTests {
    /// A second collector object on the fixture's store, with its own configuration.
    func collector(_ f: CollectorFixture, predecessorWait: Duration) -> Collector {
        var configuration = CollectorConfiguration(store: f.location, enrollToken: f.token)
        configuration.predecessorWait = predecessorWait
        return Collector(store: f.store, configuration: configuration, logger: Logger(label: "test-pipelined"))
    }

    func storedBatchSeqs(_ f: CollectorFixture, _ agentId: String) async throws -> [UInt64] {
        try await f.store.batches(agentId: agentId, afterBatchSeq: 0, limit: 100).map(\.batchSeq)
    }

    @Test(
        "a batch that overtakes its predecessor waits for it and is stored after it; the chain stays whole",
        arguments: Backend.allCases
    )
    func overtakingBatchWaits(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            let collector = collector(f, predecessorWait: .seconds(60))
            let b1 = try agent.next()
            let b2 = try agent.next()
            let b3 = try agent.next()
            #expect(try await collector.receive(batch: b1).status == "accepted")
            // Batch 3 arrives before batch 2, which its agent sent just before it.
            let third = Task { try await collector.receive(batch: b3, previousInFlight: 2) }
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await storedBatchSeqs(f, agent.identity.agentId) == [1], "batch 3 must wait for batch 2")
            let second = try await collector.receive(batch: b2, previousInFlight: 1)
            #expect(second.status == "accepted" && second.chain == "ok")
            let answer = try await third.value
            #expect(answer.status == "accepted" && answer.chain == "ok")
            #expect(try await storedBatchSeqs(f, agent.identity.agentId) == [1, 2, 3])
            let summary = try #require(try await f.store.agents().first { $0.agentId == agent.identity.agentId })
            #expect(summary.chainStatus == "whole", "\(summary.anomalies)")
            #expect(summary.events == 9)
            let metrics = String(decoding: collector.metrics.exposition(), as: UTF8.self)
            #expect(metrics.contains("vigil_collector_batches_behind_in_flight_total 2"), "\(metrics)")
            #expect(metrics.contains("vigil_collector_predecessor_waits_total 1"), "\(metrics)")
        }
    }

    @Test(
        "a batch whose predecessor never comes is refused 503 predecessor_pending with nothing stored or recorded; resent in order, both are stored",
        arguments: Backend.allCases
    )
    func predecessorNeverComes(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            let collector = collector(f, predecessorWait: .milliseconds(300))
            let b1 = try agent.next()
            let b2 = try agent.next()
            var refused: CollectorError? = nil
            do {
                _ = try await collector.receive(batch: b2, previousInFlight: 1)
            } catch let error as CollectorError {
                refused = error
            }
            #expect(refused?.code == .predecessorPending)
            #expect(refused?.status == .serviceUnavailable)
            #expect(refused?.retryAfterSeconds == 1)
            #expect(
                refused?.message.contains("batch 1 of agent \(agent.identity.agentId)") == true,
                "\(String(describing: refused))"
            )
            #expect(try await storedBatchSeqs(f, agent.identity.agentId).isEmpty)
            var summary = try #require(try await f.store.agents().first { $0.agentId == agent.identity.agentId })
            #expect(summary.chainStatus == "whole" && summary.anomalies.isEmpty, "\(summary.anomalies)")

            #expect(try await collector.receive(batch: b1).chain == "ok")
            #expect(try await collector.receive(batch: b2, previousInFlight: 1).chain == "ok")
            // Sent again (an answer lost on the way): a duplicate, as without the header.
            #expect(try await collector.receive(batch: b2, previousInFlight: 1).status == "duplicate")
            summary = try #require(try await f.store.agents().first { $0.agentId == agent.identity.agentId })
            #expect(summary.chainStatus == "whole", "\(summary.anomalies)")
            #expect(summary.lastBatchSeq == 2 && summary.events == 6)
            let metrics = String(decoding: collector.metrics.exposition(), as: UTF8.self)
            #expect(
                metrics.contains(#"vigil_collector_batches_refused_total{reason="predecessor_pending"} 1"#),
                "\(metrics)"
            )
        }
    }

    @Test("without the header a batch that skips one is stored and judged a gap, as before")
    func withoutHeaderGap() async throws {
        try await withCollector(.sqlite) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            _ = try agent.next()
            let b2 = try agent.next()
            let answer = try await f.collector.receive(batch: b2)
            #expect(answer.status == "accepted" && answer.chain == "gap")
        }
    }

    @Test(
        "a Vigil-Previous-Batch that does not name the batch just before is a bad request",
        arguments: [
            (batch: 2, previous: 5), (batch: 2, previous: 2), (batch: 1, previous: 0),
        ]
    )
    func wrongPrevious(batch: Int, previous: Int) async throws {
        try await withCollector(.sqlite) { f in
            var agent = AgentStream()
            try await f.enroll(agent.identity)
            var bytes: [UInt8] = []
            for _ in 0..<batch { bytes = try agent.next() }
            let code = await refusal {
                _ = try await f.collector.receive(batch: bytes, previousInFlight: UInt64(previous))
            }
            #expect(code == .badRequest)
            #expect(try await storedBatchSeqs(f, agent.identity.agentId).isEmpty)
        }
    }
}
