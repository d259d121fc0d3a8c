import Synchronization
import VigilCore
import VigilLinux
import VigilPolicy

/// The agent's self-watchdog: samples the process's own CPU and memory, moves the `ShedLadder`,
/// and answers, per raw event, whether it is kept. Everything shed is counted and reported as
/// agent health, so the collector knows what it did not see.
///
/// Thread-safe: sensors' readers, the flush loop and the sampling loop call it concurrently.
public final class BudgetGovernor: Sendable {
    public let budget: CollectionSettings.Budget
    /// 1 in `sampleEvery` raw events of each type is kept while sampling.
    public let sampleEvery: UInt64

    private struct State {
        var ladder: ShedLadder
        var sampler: ResourceSampler
        var lastSample: ShedLadder.Sample?
        var peakResidentBytes: UInt64 = 0
        var reportedShed: [String: UInt64] = [:]
    }

    private let state: Mutex<State>
    private let levelValue = Atomic<Int>(ShedLadder.Level.full.rawValue)
    private let sampled = Atomic<UInt64>(0)
    private let shedFile = Atomic<UInt64>(0)
    private let shedFlow = Atomic<UInt64>(0)
    private let shedProcess = Atomic<UInt64>(0)

    public init(budget: CollectionSettings.Budget, sampleEvery: UInt64 = 10) {
        self.budget = budget
        self.sampleEvery = max(1, sampleEvery)
        state = Mutex(
            State(
                ladder: ShedLadder(
                    cpuPercentBudget: Double(budget.cpuPercent),
                    residentBytesBudget: UInt64(budget.memoryMegabytes) << 20
                ),
                sampler: ResourceSampler(window: .seconds(budget.windowSeconds))
            )
        )
    }

    public var level: ShedLadder.Level {
        ShedLadder.Level(rawValue: levelValue.load(ordering: .relaxed)) ?? .full
    }

    /// Whether a raw event (file, process, flow) that raised no alert is kept at the current
    /// level; a shed one is counted. Alerts, the events they quote, health and gap records are
    /// always kept: callers ask only for raw events without alerts.
    public func keepRaw(_ event: Event) -> Bool {
        let level = self.level
        guard level.samplesRawEvents || level.dropsRawEvents else { return true }
        if level.samplesRawEvents, sampled.wrappingAdd(1, ordering: .relaxed).oldValue % sampleEvery == 0 {
            return true
        }
        switch event.payload {
        case .file: shedFile.add(1, ordering: .relaxed)
        case .flow: shedFlow.add(1, ordering: .relaxed)
        case .process: shedProcess.add(1, ordering: .relaxed)
        case .alert, .health, .gap: return true
        }
        return false
    }

    /// Raw events shed since start, by type.
    public var shedTotals: [String: UInt64] {
        [
            "file": shedFile.load(ordering: .relaxed),
            "flow": shedFlow.load(ordering: .relaxed),
            "process": shedProcess.load(ordering: .relaxed),
        ]
    }

    /// Feeds one reading (taken `at` a monotonic offset); returns the level change, if any.
    public func observe(_ usage: ProcessUsage, at: Duration) -> ShedLadder.Transition? {
        state.withLock { s in
            s.peakResidentBytes = max(s.peakResidentBytes, usage.residentBytes)
            guard let sample = s.sampler.record(usage, at: at) else { return nil }
            s.lastSample = sample
            let transition = s.ladder.observe(sample)
            if let transition { levelValue.store(transition.to.rawValue, ordering: .relaxed) }
            return transition
        }
    }

    /// The agent-health event describing a level change.
    public func transitionEvent(_ t: ShedLadder.Transition) -> Event {
        let (up, down, peak) = state.withLock { ($0.ladder.stepsUp, $0.ladder.stepsDown, $0.peakResidentBytes) }
        let verb = t.to > t.from ? "over budget (\(t.reason)): shedding" : "back under budget: restoring"
        return Event(
            payload: .health(
                AgentHealth(
                    kind: "budget_level",
                    message:
                        "\(verb) \(t.from) → \(t.to); cpu \(Self.format(t.sample.cpuPercent))% of a core (budget \(budget.cpuPercent)%), "
                        + "rss \(t.sample.residentBytes >> 20) MiB (cap \(budget.memoryMegabytes) MiB)",
                    counters: [
                        "level": UInt64(t.to.rawValue),
                        "previous_level": UInt64(t.from.rawValue),
                        "cpu_permille": UInt64(max(0, t.sample.cpuPercent * 10)),
                        "rss_bytes": t.sample.residentBytes,
                        "peak_rss_bytes": peak,
                        "cpu_budget_permille": UInt64(budget.cpuPercent * 10),
                        "rss_budget_bytes": UInt64(budget.memoryMegabytes) << 20,
                        "steps_up_total": up,
                        "steps_down_total": down,
                    ]
                )
            )
        )
    }

    /// A `shed` health event when raw events were shed since the last report (or nil): counts
    /// since the last report and totals, by type, plus hashes skipped.
    public func shedReport(hashesShedTotal: UInt64) -> Event? {
        let totals = shedTotals.merging(["hashes": hashesShedTotal]) { $1 }
        return state.withLock { s -> Event? in
            var counters: [String: UInt64] = [:]
            var newly: UInt64 = 0
            for (kind, total) in totals {
                let delta = total &- (s.reportedShed[kind] ?? 0)
                counters["\(kind)_shed"] = delta
                counters["\(kind)_shed_total"] = total
                if kind != "hashes" { newly &+= delta }
                if delta > 0 { counters["any"] = 1 }
            }
            guard counters["any"] != nil else { return nil }
            counters["any"] = nil
            counters["level"] = UInt64(s.ladder.level.rawValue)
            s.reportedShed = totals
            return Event(
                payload: .health(
                    AgentHealth(
                        kind: "shed",
                        message: "self-watchdog at \(s.ladder.level): \(newly) raw event(s) not sent, "
                            + "\(counters["hashes_shed"] ?? 0) file(s) not hashed since the last report",
                        counters: counters
                    )
                )
            )
        }
    }

    /// The latest sample and the peak resident size seen.
    public var lastSample: (sample: ShedLadder.Sample?, peakResidentBytes: UInt64) {
        state.withLock { ($0.lastSample, $0.peakResidentBytes) }
    }

    private static func format(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}
