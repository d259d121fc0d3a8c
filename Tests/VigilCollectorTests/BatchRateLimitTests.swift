import Foundation
import Logging
import Testing
import VigilCollector
import VigilCore
import VigilWire

/// `--max-batch-rate`: a token bucket per agent, charged only for batches whose signature verified.
@Suite("Batch rate limit")
struct BatchRateLimitTests {
    @Test("a bucket allows its burst, then refuses with a Retry-After until it refills")
    func bucket() {
        let limiter = BatchRateLimiter(limit: BatchRateLimit(perSecond: 0.5, burst: 2))
        let start = ContinuousClock.now
        #expect(limiter.admit("a", now: start) == nil)
        #expect(limiter.admit("a", now: start) == nil)
        #expect(limiter.admit("a", now: start) == 2)  // one token takes 2 s at 0.5 a second
        #expect(limiter.admit("b", now: start) == nil, "agents share a bucket")
        #expect(limiter.admit("a", now: start + .seconds(1)) == 1)
        #expect(limiter.admit("a", now: start + .seconds(2)) == nil)
        #expect(limiter.admit("a", now: start + .seconds(2)) == 2)
        // Refilling stops at the burst.
        #expect(limiter.admit("a", now: start + .seconds(3600)) == nil)
        #expect(limiter.admit("a", now: start + .seconds(3600)) == nil)
        #expect(limiter.admit("a", now: start + .seconds(3600)) != nil)
        // Off: never refuses.
        let off = BatchRateLimiter(limit: .unlimited)
        #expect((0..<10_000).allSatisfy { _ in off.admit("a", now: start) == nil })
    }

    @Test("the default never throttles an agent draining a backlog of a minute at full speed")
    func defaults() {
        let limiter = BatchRateLimiter(limit: BatchRateLimit())
        let start = ContinuousClock.now
        // 1,200 batches back to back (a minute's worth), then nearly 20 a second for a minute more.
        #expect((0..<1200).allSatisfy { _ in limiter.admit("a", now: start) == nil })
        #expect(
            (1...1200).allSatisfy { i in limiter.admit("a", now: start + .milliseconds(Int64(i) * 51)) == nil }
        )
    }

    @Test(
        "over the rate: rate_limited with Retry-After, nothing stored; forged batches spend no tokens",
        arguments: Backend.allCases
    )
    func collector(backend: Backend) async throws {
        try await withCollector(backend) { f in
            var configuration = CollectorConfiguration(store: f.location, enrollToken: f.token)
            // One token per 1,000 s: however slow the machine, the bucket cannot refill between
            // the batches below (the refill itself is tested with an injected clock above).
            configuration.batchRate = BatchRateLimit(perSecond: 0.001, burst: 2)
            let collector = Collector(store: f.store, configuration: configuration, logger: Logger(label: "test"))
            var agent = AgentStream()
            try await f.enroll(agent.identity)

            // Batches with the agent's id and key id but a bad signature (a spoofed sender):
            // refused as forged, and they take none of the agent's tokens.
            for _ in 0..<5 {
                let genuine = try BatchOpener.parse(try agent.next(), limits: BatchLimits())
                agent.batchSeq -= 1
                agent.nextSeq -= 3
                agent.prev = genuine.header.prevHeaderHash
                var signature = genuine.signature
                signature[0] ^= 0xFF
                let forged = SealedBatch.envelope(
                    headerBytes: genuine.headerBytes,
                    signature: signature,
                    body: genuine.body
                )
                await #expect { try await collector.receive(batch: forged) } throws: { refusal($0) == "bad_signature" }
            }
            #expect(try await collector.receive(batch: try agent.next()).status == "accepted")
            let second = try agent.next()
            #expect(try await collector.receive(batch: second).status == "accepted")
            let third = try agent.next()
            do {
                _ = try await collector.receive(batch: third)
                Issue.record("a third batch right after the burst was accepted")
            } catch let error as CollectorError {
                #expect(error.code.rawValue == "rate_limited")
                #expect(error.status.code == 429)
                #expect((900...1000).contains(error.retryAfterSeconds ?? 0))
            }
            #expect(try await f.count(agent.identity.agentId) == 6)
            // Another agent is not held back.
            var other = AgentStream()
            try await f.enroll(other.identity)
            #expect(try await collector.receive(batch: try other.next()).status == "accepted")
            #expect(try await f.store.agents().allSatisfy { $0.chainStatus == "whole" })
        }
    }
}
