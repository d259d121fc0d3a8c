import Glibc
import Logging
import Synchronization
import SystemPackage
import VigilCore
import VigilLinux

/// Reports process activity from the kernel's proc connector, each exec with its full context
/// read from `/proc/PID` the moment the message arrives.
///
/// A dedicated thread (`vigil-proc-r`) blocks in `poll` on the netlink socket, the fanotify
/// group (when available) and an `eventfd` for shutdown. It reads messages in small batches,
/// reads `/proc` for each exec of the batch, then fanotify's `FAN_OPEN_EXEC` records (which
/// the kernel queues before the exec message, so they are in hand; so are those of a later exec
/// of the same process that `/proc` may already show), then handles the batch:
/// - **exec**: `Image`, `CommandLine` (and raw argv), `CurrentDirectory`, uid/euid/gid and
///   `User`, `ParentProcessId`, start time, tty, login uid, audit session and container id are
///   read through one open `/proc/PID` directory, so every value belongs to that one process;
///   the start time must predate the exec, or the pid was reused and nothing read is used.
///   A process already gone, or that exec'd again before `/proc` was read (a later exec in
///   the batch, or fanotify records of a later exec), is still reported, marked `incomplete`,
///   with the `Image` fanotify saw it open for exec and the parent known from the fork; neither
///   the parent's nor the later program's command line is ever given to it. An exec that
///   arrives before its fork (messages from different CPUs) and has no parent from `/proc` is
///   held up to 20 ms for the fork to name the parent, and the late fork never replaces the
///   exec'd entry of the table.
///   `ParentImage`/`ParentCommandLine` come from the process table (or the parent's `/proc`).
/// - **fork**: the child enters the table as a copy of its parent (it runs the parent's image
///   until it execs); threads are ignored.
/// - **exit**: the entry leaves the table.
/// - uid/gid/sid changes, ptrace attach and comm changes update the table and are reported with
///   the process's own image and command line.
///
/// The table is bounded (`maxProcesses`, LRU) and its evictions counted. Nothing blocks on a
/// slow consumer: events beyond `queueCapacity` are dropped and counted. Kernel drops
/// (`ENOBUFS`) are reported as a `process_events_lost` health event within a second, and all
/// counters as `process_stats` every `statisticsInterval` and at stop.
public final class ProcessSensor: Sendable {
    public let configuration: ProcessSensorConfiguration
    private let logger: Logger
    private let shared: ProcessSensorShared
    private let stream: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let lifecycle = Mutex(Lifecycle.idle)
    /// Handed to the reader thread on start.
    private let handles: Mutex<Handles?>
    /// Why fanotify is not used, when configured but unavailable.
    private let fanotifyProblem: String?
    /// Whether execs come on a socket of their own (`ProcessSensorConfiguration.separateExecSocket`
    /// on a kernel that filters event types).
    public let separateExecSocket: Bool

    /// The descriptors opened at init, moved to the reader thread by `start()`.
    private struct Handles {
        /// The exec socket when `others` is set, else the only one.
        var connector: ProcConnector
        var others: ProcConnector?
        var fanotify: Fanotify?
    }

    private enum Lifecycle {
        case idle
        case running(PosixThread)
        case stopped
    }

    /// Subscribes to the proc connector and opens the fanotify group now (messages queue until
    /// `start()`), so a missing privilege shows at once and the agent can drop privileges and
    /// install its sandbox before starting the reader.
    ///
    /// fanotify (`FAN_OPEN_EXEC` on the root filesystem) is optional: without it (no
    /// `CAP_SYS_ADMIN`, a kernel before 5.0) `start()` says so once in the log and as a
    /// `fanotify_unavailable` health event, and executables are named from `/proc` only.
    ///
    /// - Throws: `ProcessSensorError` `.connectorUnavailable` (needs `CAP_NET_ADMIN` in the
    ///   initial namespaces), `.invalidConfiguration`.
    public init(configuration: ProcessSensorConfiguration, logger: Logger) throws(ProcessSensorError) {
        guard configuration.maxProcesses > 0, configuration.queueCapacity > 0, configuration.maxCommandLineBytes > 0
        else {
            throw ProcessSensorError(
                code: .invalidConfiguration,
                message: "max processes, queue capacity and command line size must be positive"
            )
        }
        if let nice = configuration.readerNice {
            guard (-20...19).contains(nice) else {
                throw ProcessSensorError(
                    code: .invalidConfiguration,
                    message: "the reader's nice value must be within -20...19, not \(nice)"
                )
            }
            // While the process may still raise its limits (before a sandbox drops capabilities):
            // the reader thread, started later, lowers its own nice value. If this fails (no
            // CAP_SYS_RESOURCE), the thread says so when it tries.
            try? ThreadPriority.allow(nice: Int32(nice))
        }
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "sensor"] = "process"
        self.logger = logger
        let connector: ProcConnector
        var others: ProcConnector?
        do {
            if configuration.separateExecSocket, ProcConnector.kernelFiltersEventTypes {
                connector = try ProcConnector(receiveBufferBytes: configuration.receiveBufferBytes, eventTypes: .exec)
                others = try ProcConnector(
                    receiveBufferBytes: configuration.receiveBufferBytes,
                    eventTypes: ProcConnector.EventTypes.all.subtracting(.exec)
                )
            } else {
                connector = try ProcConnector(receiveBufferBytes: configuration.receiveBufferBytes)
            }
        } catch {
            throw ProcessSensorError(
                code: .connectorUnavailable,
                message: "cannot subscribe to the proc connector (needs CAP_NET_ADMIN in the initial namespaces)",
                errno: error
            )
        }
        do {
            shared = try ProcessSensorShared(maxProcesses: configuration.maxProcesses)
        } catch {
            throw ProcessSensorError(code: .threadUnavailable, message: "cannot create an eventfd", errno: error)
        }
        var fanotify: Fanotify?
        var fanotifyProblem: String?
        if configuration.useFanotify {
            do {
                // File identifiers when the kernel has them (5.1): no file opened per exec.
                let group: Fanotify
                if let withIdentifiers = try? Fanotify(reportFileIdentifiers: true),
                    (try? withIdentifiers.markFilesystem(of: "/", mask: .openExec)) != nil
                {
                    group = withIdentifiers
                } else {
                    group = try Fanotify()
                    try group.markFilesystem(of: "/", mask: .openExec)
                }
                fanotify = group
            } catch {
                fanotifyProblem =
                    "fanotify FAN_OPEN_EXEC unavailable (\(error)); executables of processes gone before /proc was read stay unnamed"
            }
        }
        self.fanotifyProblem = fanotifyProblem
        shared.hasFanotify.store(fanotify != nil, ordering: .releasing)
        separateExecSocket = others != nil
        handles = Mutex(Handles(connector: connector, others: others, fanotify: fanotify))
        (stream, continuation) = AsyncStream.makeStream(
            of: Event.self,
            bufferingPolicy: .bufferingOldest(configuration.queueCapacity)
        )
        continuation.onTermination = { [shared] _ in shared.requestStop() }
    }

    deinit {
        stop()
    }

    /// Process and health events, `time` from the kernel's timestamp; `seq` is left 0 (the
    /// agent numbers them). One consumer only. Finishes after `stop()`.
    public var events: AsyncStream<Event> { stream }

    /// Counters, as of the last batch the reader handled.
    public var statistics: ProcessSensorStatistics {
        shared.statistics.withLock { $0 }
    }

    /// Whether fanotify `FAN_OPEN_EXEC` names executables.
    public var hasFanotify: Bool {
        shared.hasFanotify.load(ordering: .acquiring)
    }

    /// The process table's entry for `pid` (for attribution), without touching its recency.
    public func process(pid: UInt32) -> ProcessRecord? {
        shared.table.withLock { $0.peek(pid: pid) }
    }

    /// Starts the reader thread.
    ///
    /// - Throws: `ProcessSensorError` `.alreadyStarted`, `.stopped`, `.threadUnavailable`.
    public func start() throws(ProcessSensorError) {
        try lifecycle.withLock { (state: inout Lifecycle) throws(ProcessSensorError) in
            switch state {
            case .idle: break
            case .running:
                throw ProcessSensorError(code: .alreadyStarted, message: "the process sensor is already started")
            case .stopped: throw ProcessSensorError(code: .stopped, message: "the process sensor was stopped")
            }
            guard let handles = handles.withLock({ $0.take() }) else {
                throw ProcessSensorError(code: .stopped, message: "the process sensor was stopped")
            }
            let reader = ProcessReader(
                connector: handles.connector,
                others: handles.others,
                fanotify: handles.fanotify,
                configuration: configuration,
                shared: shared,
                continuation: continuation,
                logger: logger
            )
            if let fanotifyProblem {
                logger.notice("\(fanotifyProblem)")
                reader.emitHealth(kind: "fanotify_unavailable", message: fanotifyProblem)
            }
            do {
                state = .running(try PosixThread.spawn(name: "vigil-proc-r") { reader.run() })
            } catch {
                throw ProcessSensorError(
                    code: .threadUnavailable,
                    message: "cannot start the process reader thread",
                    errno: error as? Errno
                )
            }
        }
        logger.info(
            "process sensor started",
            metadata: [
                "max_processes": "\(configuration.maxProcesses)", "fanotify": "\(hasFanotify)",
                "exec_socket": "\(separateExecSocket ? "own" : "shared")",
            ]
        )
    }

    /// Stops the reader, reports the counters and finishes `events`. Idempotent; blocks until
    /// the reader thread has ended.
    public func stop() {
        let previous = lifecycle.withLock { state -> Lifecycle in
            defer { state = .stopped }
            return state
        }
        shared.requestStop()
        switch previous {
        case .idle:
            _ = handles.withLock { $0.take() }
            continuation.finish()
        case .running(let thread):
            thread.join()
            logger.info("process sensor stopped", metadata: ["statistics": "\(statistics)"])
        case .stopped:
            break
        }
    }
}

extension ProcessSensor {
    /// Test hook: the reader stops reading (messages wait in the socket, as behind a busy
    /// reader) until `resumeReadingForTesting()`. Returns once the reader is parked.
    package func suspendReadingForTesting() {
        shared.suspendRequested.store(true, ordering: .releasing)
        try? shared.control.signal()
        let deadline = ContinuousClock.now + .seconds(10)
        while !shared.suspended.load(ordering: .acquiring), ContinuousClock.now < deadline {
            usleep(1000)
        }
    }

    /// Test hook: undoes `suspendReadingForTesting()`.
    package func resumeReadingForTesting() {
        shared.suspendRequested.store(false, ordering: .releasing)
        try? shared.control.signal()
    }
}

/// State shared by the sensor object and its reader thread.
final class ProcessSensorShared: Sendable {
    let control: EventFD
    let stopRequested = Atomic<Bool>(false)
    let suspendRequested = Atomic<Bool>(false)
    let suspended = Atomic<Bool>(false)
    let hasFanotify = Atomic<Bool>(false)
    let statistics = Mutex(ProcessSensorStatistics())
    /// Owned by the reader, which holds the lock while it handles a batch.
    let table: Mutex<ProcessTable>

    init(maxProcesses: Int) throws(Errno) {
        control = try EventFD()
        table = Mutex(ProcessTable(capacity: maxProcesses))
    }

    func requestStop() {
        stopRequested.store(true, ordering: .releasing)
        try? control.signal()
    }
}
