import VigilCore

/// Settings of the process sensor.
public struct ProcessSensorConfiguration: Hashable, Sendable {
    /// Live processes remembered for parent lookups and attribution (LRU beyond it).
    public var maxProcesses: Int
    /// Which process events become events. Exec is the one rules match on
    /// (`process_creation`); forks and exits mostly feed the process table.
    public var reportedActions: Set<ProcessEvent.Action>
    /// The proc connector socket's receive buffer: room for bursts while the reader is busy.
    public var receiveBufferBytes: Int
    /// Name the executable of processes gone before `/proc` could be read, from fanotify
    /// `FAN_OPEN_EXEC` (needs `CAP_SYS_ADMIN`; without it `Image` comes from `/proc` only).
    public var useFanotify: Bool
    /// Events buffered for a slow consumer; beyond it the newest are dropped and counted.
    public var queueCapacity: Int
    /// Bytes of `/proc/PID/cmdline` kept.
    public var maxCommandLineBytes: Int
    /// How often counters (kernel drops, evictions, incomplete execs) are reported as health.
    public var statisticsInterval: Duration
    /// Read execs from a proc connector socket of their own, where the kernel filters event
    /// types per socket (Linux 6.6 and later; ignored before): a spawn then wakes the reader
    /// once rather than for its fork, exec and exit, and its `/proc` is read sooner. Forks,
    /// exits and id changes are read with the next exec, or within 5 ms.
    public var separateExecSocket: Bool
    /// The reader thread's nice value (-20...19), nil to leave it as the process's. An exec is
    /// named right only if `/proc` is read before the process exits (under a millisecond for a
    /// short-lived one): a reader that waits for the CPU behind the workload loses command
    /// lines. Its work per exec is small and the agent's CPU quota still bounds it. A process
    /// started `SCHED_BATCH`/`SCHED_IDLE` (as systemd's unit does) has the reader switched to
    /// the normal policy. Needs `CAP_SYS_NICE` or `RLIMIT_NICE` (the sensor raises it at init
    /// while it can; the unit sets `LimitNICE=`).
    public var readerNice: Int?

    public init(
        maxProcesses: Int = 32_768,
        reportedActions: Set<ProcessEvent.Action> = ProcessSensorConfiguration.defaultActions,
        receiveBufferBytes: Int = 64 << 20,
        useFanotify: Bool = true,
        queueCapacity: Int = 50_000,
        maxCommandLineBytes: Int = 32 * 1024,
        statisticsInterval: Duration = .seconds(60),
        separateExecSocket: Bool = true,
        readerNice: Int? = -10
    ) {
        self.maxProcesses = maxProcesses
        self.reportedActions = reportedActions
        self.receiveBufferBytes = receiveBufferBytes
        self.useFanotify = useFanotify
        self.queueCapacity = queueCapacity
        self.maxCommandLineBytes = maxCommandLineBytes
        self.statisticsInterval = statisticsInterval
        self.separateExecSocket = separateExecSocket
        self.readerNice = readerNice
    }

    /// Execs and the changes that matter to security: credentials, sessions, tracing.
    public static let defaultActions: Set<ProcessEvent.Action> = [.exec, .uidChange, .gidChange, .sidChange, .ptrace]
}

/// Counters of the process sensor since it started.
public struct ProcessSensorStatistics: Hashable, Sendable, CustomStringConvertible {
    /// Proc connector messages read.
    public var messages: UInt64 = 0
    public var execs: UInt64 = 0
    /// Execs reported without full context (the process was gone or had exec'd again).
    public var incompleteExecs: UInt64 = 0
    /// Of those, how many still got `Image` from fanotify.
    public var execsNamedByFanotify: UInt64 = 0
    public var forks: UInt64 = 0
    public var exits: UInt64 = 0
    /// `ENOBUFS` on the proc connector socket: the kernel dropped messages (each count is at
    /// least one lost message).
    public var kernelOverruns: UInt64 = 0
    /// Messages that did not parse.
    public var malformed: UInt64 = 0
    public var tableEvictions: UInt64 = 0
    public var tableSize: UInt64 = 0
    public var fanotifyEvents: UInt64 = 0
    public var fanotifyOverflows: UInt64 = 0
    /// Events dropped because the consumer was too slow.
    public var queueDropped: UInt64 = 0
    /// Execs whose `/proc` read was not used because the process had exec'd again by then
    /// (fanotify saw the later exec's executable opened).
    public var execsSuperseded: UInt64 = 0
    /// Execs that arrived before the fork of their process (messages from different CPUs).
    public var execsBeforeFork: UInt64 = 0

    public init() {}

    public var counters: [String: UInt64] {
        [
            "messages": messages, "execs": execs, "incomplete_execs": incompleteExecs,
            "execs_named_by_fanotify": execsNamedByFanotify, "forks": forks, "exits": exits,
            "kernel_overruns": kernelOverruns, "malformed": malformed, "table_evictions": tableEvictions,
            "table_size": tableSize, "fanotify_events": fanotifyEvents, "fanotify_overflows": fanotifyOverflows,
            "queue_dropped": queueDropped, "execs_superseded": execsSuperseded, "execs_before_fork": execsBeforeFork,
        ]
    }

    public var description: String {
        counters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }
}
