import AsyncHTTPClient
import Foundation
import Synchronization
import VigilCollector
import VigilCore

/// What became of one drill.
public struct DrillResult: Sendable, Codable, Hashable {
    public enum Outcome: String, Sendable, Codable {
        /// The expected rule's alert, for this drill's own activity, reached the collector.
        case detected
        /// The drill ran; no such alert arrived in time.
        case missed
        /// The drill could not run (its error is in `error`).
        case failed
        /// Not run: it needs the drill profile, which an installed agent does not run.
        case skipped
    }

    public var drill: String
    public var technique: String
    public var name: String
    public var rule: String
    /// The fired rule's title, from the alert.
    public var ruleTitle: String?
    public var outcome: Outcome
    /// From the start of the drill to the alert's arrival at the collector (as seen by polling
    /// the query API every 100 ms).
    public var latencyMilliseconds: Int?
    /// From the start of the drill to the agent raising the alert (the alert's own timestamp).
    public var agentLatencyMilliseconds: Int?
    public var error: String?

    public var detected: Bool { outcome == .detected }
    /// Counts against the run: expected, and not detected.
    public var isFailure: Bool { outcome == .missed || outcome == .failed }

    enum CodingKeys: String, CodingKey {
        case drill, technique, name, rule
        case ruleTitle = "rule_title"
        case outcome, detected
        case latencyMilliseconds = "latency_ms"
        case agentLatencyMilliseconds = "agent_latency_ms"
        case error
    }

    public init(drill: Drill, outcome: Outcome, error: String? = nil) {
        self.drill = drill.id
        self.technique = drill.technique
        self.name = drill.name
        self.rule = drill.rule
        self.outcome = outcome
        self.error = error
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        drill = try c.decode(String.self, forKey: .drill)
        technique = try c.decode(String.self, forKey: .technique)
        name = try c.decode(String.self, forKey: .name)
        rule = try c.decode(String.self, forKey: .rule)
        ruleTitle = try c.decodeIfPresent(String.self, forKey: .ruleTitle)
        outcome = try c.decode(Outcome.self, forKey: .outcome)
        latencyMilliseconds = try c.decodeIfPresent(Int.self, forKey: .latencyMilliseconds)
        agentLatencyMilliseconds = try c.decodeIfPresent(Int.self, forKey: .agentLatencyMilliseconds)
        error = try c.decodeIfPresent(String.self, forKey: .error)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(technique, forKey: .technique)
        try c.encode(rule, forKey: .rule)
        try c.encode(detected, forKey: .detected)
        try c.encode(latencyMilliseconds, forKey: .latencyMilliseconds)
        try c.encode(agentLatencyMilliseconds, forKey: .agentLatencyMilliseconds)
        try c.encode(drill, forKey: .drill)
        try c.encode(name, forKey: .name)
        try c.encode(ruleTitle, forKey: .ruleTitle)
        try c.encode(outcome, forKey: .outcome)
        try c.encodeIfPresent(error, forKey: .error)
    }
}

/// Runs drills one after another and matches the alerts a collector stores to them; undoes
/// every drill that ran, in reverse order, whether it was detected, missed, failed or the run
/// was cancelled.
struct DrillRunner {
    let drills: [Drill]
    let scratch: ScratchArea
    let server: LoopbackServer
    let events: CollectorEvents
    /// How long after its start a drill's alert is waited for.
    let timeout: Duration
    let progress: @Sendable (String) -> Void

    private struct Started {
        var drill: Drill
        var evidence: String
        var wallStart: Int64
        var clockStart: ContinuousClock.Instant
    }

    private struct State {
        var started: [Started] = []
        var results: [String: DrillResult] = [:]
        var runPhaseOver = false
    }

    private final class Shared: Sendable {
        let state = Mutex(State())
    }

    func run() async throws -> [DrillResult] {
        let shared = Shared()
        var ran: [Drill] = []
        defer {
            // Undo also on error and cancellation; synchronous, so cancellation cannot cut it short.
            for drill in ran.reversed() {
                drill.undo(DrillContext(scratch: scratch, drillID: drill.id, serverPort: server.port))
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await poll(shared) }
            for drill in drills {
                try Task.checkCancellation()
                let ctx = DrillContext(scratch: scratch, drillID: drill.id, serverPort: server.port)
                let started = Started(
                    drill: drill,
                    evidence: drill.evidence(ctx),
                    wallStart: Timestamp.now().nanosecondsSinceEpoch,
                    clockStart: .now
                )
                shared.state.withLock { $0.started.append(started) }
                ran.append(drill)
                progress("running \(drill.id) (\(drill.technique))")
                do {
                    try await drill.run(ctx)
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    try Task.checkCancellation()
                    shared.state.withLock {
                        $0.results[drill.id] = DrillResult(drill: drill, outcome: .failed, error: "\(error)")
                    }
                }
            }
            shared.state.withLock { $0.runPhaseOver = true }
            try await group.waitForAll()
        }
        return shared.state.withLock { s in
            drills.map { s.results[$0.id] ?? DrillResult(drill: $0, outcome: .missed) }
        }
    }

    /// Polls the collector every 100 ms until every started drill is resolved (detected,
    /// failed, or past its timeout) once all have started.
    private func poll(_ shared: Shared) async throws {
        while true {
            let arrived = try await events.next()
            let now = ContinuousClock.now
            let done = shared.state.withLock { s -> Bool in
                for stored in arrived {
                    guard case .alert(let alert) = stored.event.payload, let matched = alert.event else { continue }
                    let texts = matched.drillTexts
                    for started in s.started where s.results[started.drill.id] == nil {
                        guard alert.ruleId == started.drill.rule,
                            texts.contains(where: { $0.contains(started.evidence) })
                        else { continue }
                        var result = DrillResult(drill: started.drill, outcome: .detected)
                        result.ruleTitle = alert.title
                        result.latencyMilliseconds = Int((now - started.clockStart) / .milliseconds(1))
                        result.agentLatencyMilliseconds = Int(
                            max(0, stored.event.time.nanosecondsSinceEpoch - started.wallStart) / 1_000_000
                        )
                        s.results[started.drill.id] = result
                    }
                }
                guard s.runPhaseOver else { return false }
                return s.started.allSatisfy { s.results[$0.drill.id] != nil || now - $0.clockStart > timeout }
            }
            if done { return }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
