import Glibc
import Logging
import Synchronization
import SystemPackage
import VigilCore
import VigilLinux

/// Watches directory trees with inotify and reports file changes as events.
///
/// Two dedicated threads, outside Swift's cooperative pool, do the work:
/// - the **reader** (`vigil-fsensor-r`) blocks in `poll` on the inotify descriptor and an
///   `eventfd` that wakes it for shutdown, reads records in 64 KiB batches (after a busy read
///   it waits 10 ms so records accumulate: one wake-up per 10 ms under churn, not one per
///   event, at the cost of at most 10 ms of latency), keeps the watch tree
///   (new directories are watched and scanned as they appear, renamed ones re-pathed), pairs
///   renames, and takes `lstat` metadata at event time;
/// - the **hashing stage** (`vigil-fsensor-h`) hashes regular files (SHA-256) and hands the
///   events over to `events` in chunks, so content hashing never delays draining the kernel
///   queue and the consumer is woken once per chunk, not once per event.
///
/// Both queues between kernel and consumer are bounded by `queueCapacity`; nothing blocks on
/// a slow consumer. Loss is reported, never silent: kernel overflow (`inotify_overflow`),
/// watch limit (`watch_limit`) and queue drops (`queue_drop`) arrive as health events and
/// show in `statistics`.
///
/// Event order is the kernel's, with two exceptions: a move out of the watched trees is
/// reported as a delete about 25 ms after it happened (the time the sensor waits for the
/// other half of a rename), and the content of a new directory is reported (as creates) right
/// after the directory itself. A hash is of the content when hashed, shortly after the event.
///
/// With `attributeProcesses`, a third thread (`vigil-fsensor-a`) reads a fanotify group marked
/// on the watched filesystems (see `FileAttribution`), and each event names the process that
/// made the change (`image`, `processId`, `user`). Without fanotify the sensor says so once,
/// in the log and as a `file_attribution_unavailable` health event, and runs on inotify alone.
public final class FileSensor: Sendable {
    public let configuration: FileSensorConfiguration
    private let rules: PathRules
    private let logger: Logger
    private let shared: SensorShared
    private let stream: AsyncStream<[Event]>
    private let continuation: AsyncStream<[Event]>.Continuation
    private let lifecycle = Mutex(Lifecycle.idle)
    private let attribution: FileAttribution?
    /// Why attribution was asked for and is unavailable.
    private let attributionProblem: String?

    private enum Lifecycle {
        case idle
        case starting
        case running(reader: PosixThread, emitter: PosixThread, attributor: PosixThread?)
        case stopped
    }

    /// Validates the configuration; watches nothing until `start()`.
    ///
    /// - Throws: `FileSensorError` (`invalidConfiguration` for a relative path or a bound that
    ///   is not positive, `eventFDUnavailable`).
    public init(configuration: FileSensorConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.rules = try PathRules(configuration)
        var logger = logger
        logger[metadataKey: "sensor"] = "file"
        self.logger = logger
        do {
            self.shared = try SensorShared(queueCapacity: configuration.queueCapacity)
        } catch {
            throw FileSensorError(code: .eventFDUnavailable, message: "cannot create an eventfd", errno: error)
        }
        var attribution: FileAttribution?
        var attributionProblem: String?
        if configuration.attributeProcesses, !rules.roots.isEmpty {
            do {
                attribution = try FileAttribution(rules: rules, logger: logger)
            } catch {
                attributionProblem = "file events do not name their process: \(error.message); running on inotify alone"
            }
        }
        self.attribution = attribution
        self.attributionProblem = attributionProblem
        // Unbounded as a stream of chunks: the hashing stage bounds it in events (`StreamBacklog`).
        (stream, continuation) = AsyncStream.makeStream(of: [Event].self)
        continuation.onTermination = { [shared] _ in
            // The consumer is gone: let the threads end. `stop()` (or deinit) joins them.
            shared.requestStop()
        }
    }

    deinit {
        stop()
    }

    /// Events (payload `.file` or `.health`) with `time` set when observed; `seq` is left 0
    /// (the agent numbers them). One consumer only. Finishes after `stop()`.
    public var events: FileSensorEvents {
        FileSensorEvents(stream: stream, backlog: shared.backlog)
    }

    /// Counters since creation.
    public var statistics: FileSensorStatistics {
        var statistics = shared.counters.snapshot
        if let attribution {
            let counters = attribution.counters
            statistics.attributionRecords = counters.records
            statistics.attributionExecRecords = counters.execRecords
            statistics.attributionOverflows = counters.overflows
            statistics.attributionMarkLimitHits = attribution.markLimitHitCount
        }
        return statistics
    }

    /// Whether file events name the process that made the change (fanotify opened and marked):
    /// every kind of change with file identifiers (Linux 5.9), closes after writing only
    /// without them.
    public var attributesProcesses: Bool {
        attribution != nil
    }

    /// Starts the dedicated reader thread; adds the watches recursively before returning,
    /// so a change made after start() returns is seen.
    ///
    /// A root that cannot be watched (missing, not a directory) is reported as a
    /// `watch_failed` health event, not thrown: the sensor watches the others.
    ///
    /// - Throws: `FileSensorError` (`alreadyStarted`, `stopped`, `inotifyUnavailable`,
    ///   `threadUnavailable`).
    public func start() throws {
        try lifecycle.withLock { (state: inout Lifecycle) throws(FileSensorError) in
            switch state {
            case .idle: state = .starting
            case .starting, .running:
                throw FileSensorError(code: .alreadyStarted, message: "the file sensor is already started")
            case .stopped: throw FileSensorError(code: .stopped, message: "the file sensor was stopped")
            }
        }
        let threads: (reader: PosixThread, emitter: PosixThread, attributor: PosixThread?)
        do {
            threads = try launch()
        } catch {
            lifecycle.withLock { state in
                if case .starting = state { state = .idle }
            }
            throw error
        }
        let stoppedMeanwhile = lifecycle.withLock { state -> Bool in
            guard case .starting = state else { return true }
            state = .running(reader: threads.reader, emitter: threads.emitter, attributor: threads.attributor)
            return false
        }
        if stoppedMeanwhile {
            shared.requestStop()
            attribution?.stop()
            threads.reader.join()
            threads.emitter.join()
            threads.attributor?.join()
        }
        logger.info(
            "file sensor started",
            metadata: [
                "roots": "\(rules.roots)", "watches": "\(shared.counters.watches.load(ordering: .relaxed))",
            ]
        )
    }

    private func launch() throws(FileSensorError) -> (
        reader: PosixThread, emitter: PosixThread, attributor: PosixThread?
    ) {
        let inotify: Inotify
        do {
            inotify = try Inotify()
        } catch {
            throw FileSensorError(
                code: .inotifyUnavailable,
                message: "inotify_init1 failed (fs.inotify.max_user_instances?)",
                errno: error
            )
        }
        let reader = WatchReader(
            inotify: inotify,
            rules: rules,
            hashMaxBytes: configuration.hashMaxBytes,
            shared: shared,
            attribution: attribution,
            logger: logger
        )
        reader.watchRoots()
        if let attributionProblem {
            logger.notice("\(attributionProblem)")
            var health: [StageItem] = [
                .health(
                    AgentHealth(kind: "file_attribution_unavailable", message: attributionProblem),
                    Timestamp.now()
                )
            ]
            _ = shared.queue.push(&health)
        }
        let emitter = EventEmitter(
            queue: shared.queue,
            continuation: continuation,
            counters: shared.counters,
            hashMaxBytes: configuration.hashMaxBytes,
            shared: shared,
            attribution: attribution,
            logger: logger
        )
        let emitterThread: PosixThread
        do {
            emitterThread = try PosixThread.spawn(name: "vigil-fsensor-h") { emitter.run() }
        } catch {
            throw FileSensorError(code: .threadUnavailable, message: "cannot start the hashing thread", errno: error)
        }
        var attributorThread: PosixThread?
        if let attribution {
            do {
                attributorThread = try PosixThread.spawn(name: "vigil-fsensor-a") { attribution.run() }
            } catch {
                // The hashing stage still reads the records, only later.
                logger.notice("file attribution reads records with the hashing stage", metadata: ["errno": "\(error)"])
            }
        }
        do {
            let readerThread = try PosixThread.spawn(name: "vigil-fsensor-r") { reader.run() }
            return (readerThread, emitterThread, attributorThread)
        } catch {
            attribution?.stop()
            attributorThread?.join()
            shared.queue.finish()
            emitterThread.join()
            throw FileSensorError(
                code: .threadUnavailable,
                message: "cannot start the inotify reader thread",
                errno: error
            )
        }
    }

    /// Stops the reader thread (wakes it with the eventfd), finishes the stream. Idempotent.
    ///
    /// Events already read are still delivered before the stream finishes. Blocks until both
    /// threads have ended (at most one file hash).
    public func stop() {
        let previous = lifecycle.withLock { state -> Lifecycle in
            let previous = state
            state = .stopped
            return previous
        }
        shared.requestStop()
        switch previous {
        case .idle:
            continuation.finish()
        case .running(let reader, let emitter, let attributor):
            reader.join()
            emitter.join()
            attribution?.stop()
            attributor?.join()
            logger.info("file sensor stopped", metadata: ["statistics": "\(statistics)"])
        case .starting, .stopped:
            break  // start() joins what it launched, or it was done before
        }
    }

    /// Tells the sensor which file events to keep when a queue is full: `predicate` (a rule
    /// would alert on the event, say) is asked only for events that would otherwise be dropped,
    /// and those it keeps get in past the bound (an eighth more at the stage queue; up to 1,024
    /// held back and retried at the `events` stream). Nil: drop by arrival only.
    public func keepWhenFull(_ predicate: (@Sendable (Event) -> Bool)?) {
        shared.keepWhenFull.withLock { $0 = predicate }
    }

    /// Pauses or resumes content hashing (the agent's self-watchdog sheds it under load):
    /// while paused, events that would be hashed carry `hashSkipped = "shed"`.
    public func setHashingPaused(_ paused: Bool) {
        shared.hashingPaused.store(paused, ordering: .relaxed)
    }

    // MARK: Test hooks

    /// Test hook: the reader stops reading (the kernel queue fills, as under a stalled
    /// reader) until `resumeReadingForTesting()`. Returns once the reader is parked.
    package func suspendReadingForTesting() {
        shared.suspendRequested.store(true, ordering: .releasing)
        try? shared.control.signal()
        let deadline = ContinuousClock.now + .seconds(10)
        while !shared.suspended.load(ordering: .acquiring), ContinuousClock.now < deadline {
            guard case .running = lifecycle.withLock({ $0 }) else { return }
            usleep(1000)
        }
    }

    /// Test hook: undoes `suspendReadingForTesting()`.
    package func resumeReadingForTesting() {
        shared.suspendRequested.store(false, ordering: .releasing)
        try? shared.control.signal()
    }

    #if DEBUG
    /// Test hook (debug builds): called on the reader thread with the path of a directory that
    /// appeared after start, once its watch is added and before its content is scanned: the
    /// window in which an entry can be both scanned and reported by `IN_CREATE`.
    package func setNewDirectoryHookForTesting(_ hook: @escaping @Sendable (String) -> Void) {
        shared.newDirectoryHook.withLock { $0 = hook }
    }
    #endif
}

/// State shared by the sensor object and its two threads.
final class SensorShared: Sendable {
    let counters = SensorCounters()
    /// Wakes the reader from `poll`: stop or suspension requested.
    let control: EventFD
    let queue: StageQueue
    /// Events in the `events` stream, not yet taken by the consumer.
    let backlog = StreamBacklog()
    let stopRequested = Atomic<Bool>(false)
    let suspendRequested = Atomic<Bool>(false)
    let suspended = Atomic<Bool>(false)
    let hashingPaused = Atomic<Bool>(false)
    /// Says which file events must not be dropped at a full queue (`FileSensor.keepWhenFull`).
    let keepWhenFull = Mutex<(@Sendable (Event) -> Bool)?>(nil)
    #if DEBUG
    let newDirectoryHook = Mutex<(@Sendable (String) -> Void)?>(nil)
    #endif

    init(queueCapacity: Int) throws(Errno) {
        control = try EventFD()
        queue = try StageQueue(capacity: queueCapacity)
    }

    /// Asks the reader to end; it then finishes the stage queue, which ends the hashing stage.
    func requestStop() {
        stopRequested.store(true, ordering: .releasing)
        try? control.signal()
    }
}
