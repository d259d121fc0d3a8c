/// The agent's load-shedding ladder: a pure state machine fed with resource samples.
///
/// Each rung sheds more than the one below it, in the order that loses the least first:
///
/// | level | what is shed |
/// | --- | --- |
/// | `full` | nothing |
/// | `sampleRaw` | raw file and flow events are sampled (1 in `sampleEvery` kept); every event is still evaluated, so alerts and the events they quote are kept |
/// | `pauseHashing` | + file content hashing paused (`hashSkipped = "shed"`) |
/// | `reduceCapture` | + packet capture tightened in the kernel: only TCP control packets (SYN/FIN/RST) and non-TCP, 96-byte snap length |
/// | `pauseLowPrioritySensor` | + the lowest-priority sensor (packet capture) paused |
/// | `alertsOnly` | + raw events dropped; alerts and agent health only |
///
/// Alerts are never shed. The ladder climbs one rung per sample over the budget (after
/// `stepUpAfter` consecutive over-budget samples) and steps back down one rung after
/// `stepDownAfter` consecutive samples comfortably under it (below `recoveryFraction` of the CPU
/// budget and `memoryRecoveryFraction` of the memory cap): the hysteresis keeps it from flapping
/// around the limit.
public struct ShedLadder: Sendable, Hashable {
    public enum Level: Int, Sendable, Hashable, CaseIterable, Comparable, CustomStringConvertible {
        case full = 0
        case sampleRaw
        case pauseHashing
        case reduceCapture
        case pauseLowPrioritySensor
        case alertsOnly

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }

        public var description: String {
            switch self {
            case .full: "full"
            case .sampleRaw: "sample_raw"
            case .pauseHashing: "pause_hashing"
            case .reduceCapture: "reduce_capture"
            case .pauseLowPrioritySensor: "pause_low_priority_sensor"
            case .alertsOnly: "alerts_only"
            }
        }

        /// Raw (file, process, flow) events are sampled rather than all kept.
        public var samplesRawEvents: Bool { self >= .sampleRaw && self < .alertsOnly }
        public var dropsRawEvents: Bool { self >= .alertsOnly }
        public var pausesHashing: Bool { self >= .pauseHashing }
        public var reducesCapture: Bool { self >= .reduceCapture }
        public var pausesLowPrioritySensor: Bool { self >= .pauseLowPrioritySensor }
    }

    /// One reading of the agent's own usage.
    public struct Sample: Sendable, Hashable {
        /// CPU share of one core over the budget window, in percent (100 = one full core).
        public var cpuPercent: Double
        public var residentBytes: UInt64

        public init(cpuPercent: Double, residentBytes: UInt64) {
            self.cpuPercent = cpuPercent
            self.residentBytes = residentBytes
        }
    }

    /// A change of rung, with the sample that caused it.
    public struct Transition: Sendable, Hashable {
        public var from: Level
        public var to: Level
        public var sample: Sample
        /// Which budget was exceeded (`cpu`, `memory`, both), or `recovered` for a step down.
        public var reason: String
    }

    public let cpuPercentBudget: Double
    public let residentBytesBudget: UInt64
    public var stepUpAfter: Int = 1
    public var stepDownAfter: Int = 5
    /// Below this fraction of the CPU budget a sample counts towards stepping down.
    public var recoveryFraction: Double = 0.7
    /// Below this fraction of the memory cap a sample counts towards stepping down. Closer to 1
    /// than the CPU fraction: freed memory returns to the kernel only partly, so resident size
    /// falls slowly after a flood.
    public var memoryRecoveryFraction: Double = 0.9

    public private(set) var level: Level = .full
    private var overStreak = 0
    private var underStreak = 0
    /// Steps taken up and down since creation.
    public private(set) var stepsUp: UInt64 = 0
    public private(set) var stepsDown: UInt64 = 0

    public init(cpuPercentBudget: Double, residentBytesBudget: UInt64) {
        self.cpuPercentBudget = cpuPercentBudget
        self.residentBytesBudget = residentBytesBudget
    }

    /// Feeds one sample; returns the transition if the level changed.
    public mutating func observe(_ sample: Sample) -> Transition? {
        let cpuOver = sample.cpuPercent > cpuPercentBudget
        let memoryOver = sample.residentBytes > residentBytesBudget
        if cpuOver || memoryOver {
            underStreak = 0
            overStreak += 1
            guard overStreak >= stepUpAfter, let next = Level(rawValue: level.rawValue + 1) else { return nil }
            overStreak = 0
            let from = level
            level = next
            stepsUp += 1
            return Transition(
                from: from,
                to: next,
                sample: sample,
                reason: cpuOver && memoryOver ? "cpu,memory" : cpuOver ? "cpu" : "memory"
            )
        }
        overStreak = 0
        let comfortable =
            sample.cpuPercent <= cpuPercentBudget * recoveryFraction
            && Double(sample.residentBytes) <= Double(residentBytesBudget) * memoryRecoveryFraction
        guard comfortable else {
            underStreak = 0
            return nil
        }
        underStreak += 1
        guard underStreak >= stepDownAfter, let previous = Level(rawValue: level.rawValue - 1) else { return nil }
        underStreak = 0
        let from = level
        level = previous
        stepsDown += 1
        return Transition(from: from, to: previous, sample: sample, reason: "recovered")
    }
}
