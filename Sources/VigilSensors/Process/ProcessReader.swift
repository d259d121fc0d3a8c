import Glibc
import Logging
import Synchronization
import SystemPackage
import VigilCore
import VigilLinux

/// The body of the process sensor's reader thread (see `ProcessSensor`). Everything here runs
/// on that one thread.
final class ProcessReader {
    /// The exec socket when `others` is set (Linux 6.6+ filters per socket), else the only one.
    private let connector: ProcConnector
    /// Every other kind of event (fork, exit, id changes...), read whenever the reader is awake
    /// anyway and polled at most every `othersInterval`: a spawn wakes the reader once, not three
    /// times.
    private let others: ProcConnector?
    private let fanotify: Fanotify?
    private let configuration: ProcessSensorConfiguration
    private let shared: ProcessSensorShared
    private let continuation: AsyncStream<Event>.Continuation
    private let logger: Logger

    private var stats = ProcessSensorStatistics()
    private let scratch = ProcessDirectory.Scratch()
    private let users = UserNames()
    private let ownPid = UInt32(getpid())
    private let ticksPerSecond = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
    /// Executables opened for exec (fanotify), by pid, since that pid's last exec or fork.
    private var openedForExec: [UInt32: [String]] = [:]
    /// The messages in hand, with what `/proc` showed for each exec.
    private var batch: [Pending] = []
    /// Messages of `others` later than what the exec socket is known to hold: they wait for it,
    /// so nothing of a process is handled before an exec that preceded it.
    private var waiting: [ProcConnectorMessage] = []
    private var nextOthersDrain = ContinuousClock.now
    private var overrunsUnreported: UInt64 = 0
    private var clocks = ClockOffsets()
    /// The last `/proc/PID/cgroup` read and the container id it named (`containerId(cgroup:)`).
    private var lastCgroup: (bytes: [UInt8], containerId: String?) = ([], nil)
    private var outbox: [Event] = []
    /// When the oldest event of `outbox` was queued.
    private var outboxSince = ContinuousClock.now
    private var nextFanotifyDrain = ContinuousClock.now
    /// Pids whose exec came before their fork (netlink messages from different CPUs can arrive
    /// out of order): when the fork comes, it must not replace the exec'd entry.
    private var awaitingFork: Set<UInt32> = []
    /// Execs reported without a parent, held until their late fork names it (at most
    /// `parentWait`), by pid.
    private var heldExecs: [UInt32: (event: Event, deadline: ContinuousClock.Instant)] = [:]
    static let parentWait = Duration.milliseconds(20)
    /// How often fanotify is read when no exec needed it: bounds the kernel queue (16,384
    /// records, two per exec) at any exec rate below ~80,000/s.
    static let fanotifyInterval = Duration.milliseconds(50)

    /// Messages handled per batch: small, so `/proc` is read within microseconds of the exec,
    /// and big enough to see a second exec of the same pid in the batch.
    static let batchSize = 32
    /// How long messages of `others` may wait when no exec wakes the reader: forks and exits
    /// reach the process table (and exits become events) at most this late.
    static let othersInterval = Duration.milliseconds(5)
    /// `others` messages read per round, and the most that may wait for the exec socket.
    static let othersBatchSize = 4096
    /// Events wait at most this long (or until `handOverCount` are queued) before the consumer
    /// is woken for them. Each hand-over wakes a worker of the concurrency pool (and it its
    /// peers): at 5 ms, the consumer's threads took about a sixth of the sensor's CPU under a
    /// burst of execs, half that at 25 ms. The agent writes its spool every 50 ms anyway.
    static let handOverInterval = Duration.milliseconds(25)
    static let handOverCount = 512

    /// A message in hand; an exec's `/proc` is read (`snapshot`) before anything else is done.
    struct Pending {
        var message: ProcConnectorMessage
        var snapshot: ExecSnapshot?
    }

    init(
        connector: ProcConnector,
        others: ProcConnector?,
        fanotify: Fanotify?,
        configuration: ProcessSensorConfiguration,
        shared: ProcessSensorShared,
        continuation: AsyncStream<Event>.Continuation,
        logger: Logger
    ) {
        self.connector = connector
        self.others = others
        self.fanotify = fanotify
        self.configuration = configuration
        self.shared = shared
        self.continuation = continuation
        self.logger = logger
        batch.reserveCapacity(Self.batchSize)
    }

    func emitHealth(kind: String, message: String, counters: [String: UInt64] = [:]) {
        emit(Event(payload: .health(AgentHealth(kind: kind, message: message, counters: counters))))
    }

    /// Queues an event; `flush()` hands what is queued to the consumer back to back, so it
    /// wakes once rather than once per event.
    private func emit(_ event: Event) {
        if outbox.isEmpty { outboxSince = .now }
        outbox.append(event)
    }

    /// Hands the queued events over once the oldest has waited `handOverInterval`, or many are
    /// queued: under a burst of execs the consumer wakes every few milliseconds, not per exec.
    private func flushIfDue() {
        guard !outbox.isEmpty else { return }
        if outbox.count >= Self.handOverCount || ContinuousClock.now >= outboxSince + Self.handOverInterval {
            flush()
        }
    }

    private func flush() {
        for event in outbox {
            if case .dropped = continuation.yield(event) {
                stats.queueDropped += 1
            }
        }
        outbox.removeAll(keepingCapacity: true)
    }

    // MARK: Loop

    func run() {
        if let nice = configuration.readerNice {
            do {
                try ThreadPriority.setCurrentThread(nice: Int32(nice))
            } catch {
                let message =
                    "cannot run the process reader at nice \(nice) (\(error)): execs of short-lived processes may be reported without their command line; allow it with LimitNICE=\(nice) (systemd) or CAP_SYS_NICE"
                logger.notice("\(message)")
                emitHealth(kind: "process_reader_priority", message: message)
            }
        }
        defer {
            // What the kernel queued before the stop is still reported.
            drain()
            releaseHeldExecs(before: nil)
            publish()
            emitHealth(kind: "process_stats", message: "process sensor statistics", counters: stats.counters)
            flush()
            continuation.finish()
        }
        var descriptors: [FileDescriptor] = []
        let statisticsEvery = configuration.statisticsInterval
        var nextStatistics = ContinuousClock.now + statisticsEvery
        var nextOverrunReport = ContinuousClock.now
        while !shared.stopRequested.load(ordering: .acquiring) {
            if shared.suspendRequested.load(ordering: .acquiring) {
                shared.suspended.store(true, ordering: .releasing)
                _ = try? shared.control.wait(timeoutMilliseconds: 50)
                _ = try? shared.control.drain()
                continue
            }
            shared.suspended.store(false, ordering: .releasing)
            // fanotify is read with each batch holding an exec, and otherwise every
            // `fanotifyInterval` only, so its records (two per exec) do not wake this thread;
            // so are the other proc connector events with a socket of their own.
            let now = ContinuousClock.now
            var wakeAt = nextStatistics
            descriptors.removeAll(keepingCapacity: true)
            descriptors.append(connector.fileDescriptor)
            descriptors.append(shared.control.fileDescriptor)
            var fanotifyIndex: Int?
            if let fanotify {
                if now >= nextFanotifyDrain {
                    fanotifyIndex = descriptors.count
                    descriptors.append(fanotify.fileDescriptor)
                } else {
                    wakeAt = min(wakeAt, nextFanotifyDrain)
                }
            }
            if let others {
                if now >= nextOthersDrain {
                    descriptors.append(others.fileDescriptor)
                } else {
                    wakeAt = min(wakeAt, nextOthersDrain)
                }
            }
            if !outbox.isEmpty { wakeAt = min(wakeAt, outboxSince + Self.handOverInterval) }
            let wait = now.duration(to: wakeAt)
            let timeout = Int32(
                clamping: max(0, wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000)
                    + 1
            )
            let ready: [Bool]
            do {
                ready = try Poll.waitReadable(
                    descriptors,
                    timeoutMilliseconds: min(timeout, heldExecs.isEmpty ? 1000 : 5)
                )
            } catch {
                logger.info("process sensor poll failed", metadata: ["errno": "\(error)"])
                _ = try? shared.control.wait(timeoutMilliseconds: 100)
                continue
            }
            if ready[1] { _ = try? shared.control.drain() }
            if let fanotifyIndex, ready[fanotifyIndex] { drainFanotify() }
            drain()
            let after = ContinuousClock.now
            releaseHeldExecs(before: after)
            if overrunsUnreported > 0, after >= nextOverrunReport {
                emitHealth(
                    kind: "process_events_lost",
                    message: "the kernel dropped process events: the proc connector receive buffer was full",
                    counters: ["kernel_overruns": overrunsUnreported, "kernel_overruns_total": stats.kernelOverruns]
                )
                logger.warning("the kernel dropped process events", metadata: ["overruns": "\(overrunsUnreported)"])
                overrunsUnreported = 0
                nextOverrunReport = after + .seconds(1)
            }
            if after >= nextStatistics {
                publish()
                emitHealth(kind: "process_stats", message: "process sensor statistics", counters: stats.counters)
                nextStatistics = after + statisticsEvery
            }
            flushIfDue()
        }
    }

    /// Reads and handles what is queued, in bounded rounds so a stop is noticed under any load.
    ///
    /// Each round reads up to `batchSize` messages of the exec socket (or the only socket) and
    /// reads `/proc` for their execs at once. With a socket for the other events, that one is
    /// read next, and its messages are handled, merged in kernel time order, only up to the
    /// time the exec socket was last seen empty: an exec is queued before anything its process
    /// does afterwards, so nothing of a process is handled ahead of its exec. Later ones wait
    /// for the next round.
    private func drain() {
        for _ in 0..<256 {
            batch.removeAll(keepingCapacity: true)
            let emptyAt = receive(from: connector, limit: Self.batchSize) { batch.append(Pending(message: $0)) }
            readExecs()
            var othersEmptied = true
            if let others {
                let waitingBefore = waiting.count
                othersEmptied = receive(from: others, limit: Self.othersBatchSize) { waiting.append($0) } != nil
                // It held messages: left out of the polls for `othersInterval`, so a burst of
                // forks and exits wakes the reader once per interval. Found empty: polled again
                // at once, for it wakes the reader only when something comes. (Leaving it out
                // after every round made an idle reader wake every `othersInterval`.)
                nextOthersDrain =
                    waiting.count > waitingBefore ? ContinuousClock.now + Self.othersInterval : ContinuousClock.now
                // All execs queued before `emptyAt` are in hand; if the exec socket was not
                // emptied, those up to the last one read.
                let caughtUp = emptyAt ?? batch.last?.message.timestampNanoseconds ?? 0
                let overfull = waiting.count > Self.othersBatchSize
                var kept = 0
                for message in waiting {
                    if overfull || message.timestampNanoseconds <= caughtUp {
                        batch.append(Pending(message: message))
                    } else {
                        waiting[kept] = message
                        kept += 1
                    }
                }
                waiting.removeLast(waiting.count - kept)
                if batch.count > 1 {
                    // Kernel time order; equal times keep their order.
                    batch = batch.enumerated().sorted {
                        ($0.element.message.timestampNanoseconds, $0.offset)
                            < ($1.element.message.timestampNanoseconds, $1.offset)
                    }.map(\.element)
                }
            }
            if batch.isEmpty { return }
            handleBatch()
            releaseHeldExecs(before: ContinuousClock.now)
            flushIfDue()
            publish()
            // Both sockets were read empty: what came since wakes the next poll at once, without
            // two more reads that mostly find nothing (one spawn is one wake-up).
            if emptyAt != nil && othersEmptied { return }
        }
    }

    /// Reads up to `limit` messages of `socket`. Returns the monotonic time (as the kernel's
    /// timestamps) taken just before the read that found the socket empty; nil when the limit
    /// was reached first or a read failed.
    private func receive(
        from socket: ProcConnector,
        limit: Int,
        _ body: (ProcConnectorMessage) -> Void
    ) -> UInt64? {
        var count = 0
        while count < limit {
            let before = UInt64(ClockOffsets.nanoseconds(CLOCK_MONOTONIC))
            do {
                switch try socket.receive({
                    count += 1
                    body($0)
                }) {
                case .wouldBlock:
                    return before
                case .overrun:
                    stats.kernelOverruns += 1
                    overrunsUnreported += 1
                case .received(let messages, let malformed):
                    stats.messages += UInt64(messages)
                    stats.malformed += UInt64(malformed)
                }
            } catch {
                logger.info("proc connector read failed", metadata: ["errno": "\(error)"])
                return nil
            }
        }
        return nil
    }

    /// Reads `/proc` for each exec in hand, as early as possible (but for one the same pid
    /// repeats later in the batch: its /proc would show the later program; or whose exit is
    /// already in: a zombie shows no argv).
    private func readExecs() {
        guard !batch.isEmpty else { return }
        clocks = ClockOffsets.now()
        for index in batch.indices {
            guard case .exec(_, let tgid) = batch[index].message.event else { continue }
            let superseded = batch[(index + 1)...].contains {
                switch $0.message.event {
                case .exec(_, let t): t == tgid
                case .exit(let pid, let t, _, _, _, _): pid == tgid && t == tgid
                default: false
                }
            }
            if !superseded {
                batch[index].snapshot = readExec(tgid, timestamp: batch[index].message.timestampNanoseconds)
            }
        }
    }

    /// Reads the fanotify queue into `openedForExec`. An exec's `FAN_OPEN_EXEC` is queued
    /// before its exec message, so after this every exec already received has its records.
    private func drainFanotify() {
        guard let fanotify else { return }
        nextFanotifyDrain = ContinuousClock.now + Self.fanotifyInterval
        for _ in 0..<64 {
            let result: Fanotify.ReadResult
            do {
                result = try fanotify.readEvents { event in
                    stats.fanotifyEvents += 1
                    if event.mask.contains(.queueOverflow) {
                        stats.fanotifyOverflows += 1
                        return
                    }
                    guard event.mask.contains(.openExec), event.pid > 0, let path = event.path else { return }
                    let pid = UInt32(event.pid)
                    guard pid != ownPid else { return }
                    openedForExec[pid, default: []].append(path)
                }
            } catch {
                return
            }
            // A read that did not fill the buffer emptied the queue.
            guard case .read(let events, _) = result, events > 0, events * 24 > Fanotify.readBufferSize / 2 else {
                break
            }
        }
        // Bound: entries whose exec message never came (failed execve, lost messages).
        if openedForExec.count > configuration.maxProcesses * 2 + 1024 {
            openedForExec.removeAll(keepingCapacity: true)
        }
    }

    private func publish() {
        stats.tableSize = UInt64(shared.table.withLock { $0.count })
        let snapshot = stats
        shared.statistics.withLock { $0 = snapshot }
    }

    // MARK: Messages

    private func handleBatch() {
        clocks = ClockOffsets.now()
        // fanotify after /proc: each exec's FAN_OPEN_EXEC is queued before its exec message, so
        // every exec of the batch has its records in hand; and a later exec that /proc may
        // already have shown has opened its executable before /proc was read, so its records
        // are in too.
        let execs = batch.contains {
            if case .exec = $0.message.event { true } else { false }
        }
        if execs { drainFanotify() }
        shared.table.withLock { table in
            for index in batch.indices {
                handle(index, table: &table)
            }
            stats.tableEvictions = table.evictions
        }
    }

    private func time(_ message: ProcConnectorMessage) -> Timestamp {
        Timestamp(
            nanosecondsSinceEpoch: Int64(truncatingIfNeeded: message.timestampNanoseconds)
                &+ clocks.realtimeMinusMonotonic
        )
    }

    private func handle(_ index: Int, table: inout ProcessTable) {
        let message = batch[index].message
        let report = configuration.reportedActions
        switch message.event {
        case .fork(_, let parentTgid, let childPid, let childTgid):
            guard childPid == childTgid else { return }  // a new thread
            stats.forks += 1
            // openedForExec[childTgid] is kept: the child's FAN_OPEN_EXEC may already be in.
            let parent = parentRecord(parentTgid, table: &table)
            var child: ProcessRecord
            if awaitingFork.remove(childTgid) != nil, var execd = table.peek(pid: childTgid) {
                // The child's exec came first: keep what it exec'd, learn its parent.
                stats.execsBeforeFork += 1
                if execd.parentPid == nil { execd.parentPid = parentTgid }
                table.upsert(execd)
                child = execd
                if let held = heldExecs.removeValue(forKey: childTgid), case .process(var exec) = held.event.payload {
                    exec.parentProcessId = parentTgid
                    exec.parentImage = parent?.image
                    exec.parentCommandLine = parent?.commandLine
                    emit(Event(time: held.event.time, payload: .process(exec)))
                }
            } else {
                child = parent ?? ProcessRecord(pid: parentTgid)
                child.pid = childTgid
                child.parentPid = parentTgid
                child.startTimeTicks = nil
                table.upsert(child)
            }
            if report.contains(.fork) {
                emit(
                    Event(
                        time: time(message),
                        payload: .process(
                            ProcessEvent(
                                action: .fork,
                                processId: childTgid,
                                parentProcessId: parentTgid,
                                image: child.image,
                                commandLine: child.commandLine,
                                user: child.user,
                                uid: child.uid,
                                euid: child.euid,
                                gid: child.gid,
                                parentImage: parent?.image,
                                parentCommandLine: parent?.commandLine,
                                containerId: child.containerId
                            )
                        )
                    )
                )
            }
        case .exec(_, let tgid):
            stats.execs += 1
            let event = inspectExec(tgid, snapshot: batch[index].snapshot, table: &table)
            if report.contains(.exec) {
                releaseHeldExec(pid: tgid)
                if event.parentProcessId == nil, awaitingFork.contains(tgid) {
                    // Its fork is late: hold it briefly, so the fork can name the parent.
                    heldExecs[tgid] = (Event(time: time(message), payload: .process(event)), .now + Self.parentWait)
                } else {
                    emit(Event(time: time(message), payload: .process(event)))
                }
            }
        case .exit(let pid, let tgid, let status, _, _, _):
            guard pid == tgid else { return }  // a thread
            stats.exits += 1
            openedForExec[tgid] = nil
            awaitingFork.remove(tgid)
            releaseHeldExec(pid: tgid)
            let record = table.remove(pid: tgid)
            if report.contains(.exit) {
                var event = ProcessEvent(action: .exit, processId: tgid, exitCode: Self.exitCode(status))
                if let record { fill(&event, from: record) }
                emit(Event(time: time(message), payload: .process(event)))
            }
        case .uidChange(let pid, let tgid, let ruid, let euid):
            guard pid == tgid else { return }
            let user = users.name(of: euid)
            table.update(pid: tgid) {
                $0.uid = ruid
                $0.euid = euid
                $0.user = user
            }
            if report.contains(.uidChange) {
                var event = ProcessEvent(action: .uidChange, processId: tgid)
                if let record = table.peek(pid: tgid) { fill(&event, from: record) }
                event.uid = ruid
                event.euid = euid
                event.user = user
                emit(Event(time: time(message), payload: .process(event)))
            }
        case .gidChange(let pid, let tgid, let rgid, _):
            guard pid == tgid else { return }
            table.update(pid: tgid) { $0.gid = rgid }
            if report.contains(.gidChange) {
                var event = ProcessEvent(action: .gidChange, processId: tgid)
                if let record = table.peek(pid: tgid) { fill(&event, from: record) }
                event.gid = rgid
                emit(Event(time: time(message), payload: .process(event)))
            }
        case .sidChange(let pid, let tgid):
            guard pid == tgid, report.contains(.sidChange) else { return }
            var event = ProcessEvent(action: .sidChange, processId: tgid)
            if let record = table.peek(pid: tgid) { fill(&event, from: record) }
            emit(Event(time: time(message), payload: .process(event)))
        case .ptrace(_, let tgid, _, let tracerTgid):
            guard report.contains(.ptrace), tracerTgid != 0 else { return }
            var event = ProcessEvent(action: .ptrace, processId: tgid, parentProcessId: tracerTgid)
            if let record = table.peek(pid: tgid) { fill(&event, from: record) }
            // For ptrace, the "parent" fields name the tracer.
            event.parentProcessId = tracerTgid
            let tracer = table.peek(pid: tracerTgid)
            event.parentImage = tracer?.image
            event.parentCommandLine = tracer?.commandLine
            emit(Event(time: time(message), payload: .process(event)))
        case .commChange(let pid, let tgid, let comm):
            guard pid == tgid, report.contains(.commChange) else { return }
            var event = ProcessEvent(action: .commChange, processId: tgid)
            if let record = table.peek(pid: tgid) { fill(&event, from: record) }
            event.comm = comm
            emit(Event(time: time(message), payload: .process(event)))
        case .acknowledgement, .coredump, .unknown:
            return
        }
    }

    /// The process's own context from its table entry.
    private func fill(_ event: inout ProcessEvent, from record: ProcessRecord) {
        event.parentProcessId = event.parentProcessId ?? record.parentPid
        event.image = record.image
        event.commandLine = record.commandLine
        event.uid = record.uid
        event.euid = record.euid
        event.gid = record.gid
        event.user = record.user
        event.startTimeTicks = record.startTimeTicks
        event.containerId = record.containerId
    }

    /// A wait status as a shell shows it: the exit code, or 128 + the signal that ended it.
    static func exitCode(_ status: UInt32) -> Int32 {
        let signal = Int32(status & 0x7f)
        return signal == 0 ? Int32((status >> 8) & 0xff) : 128 + signal
    }

    // MARK: /proc

    /// What `/proc/PID` shows at an exec, read through one open directory.
    struct ExecSnapshot {
        var exe: String?
        var argv: [String]
        var cwd: String?
        var stat: ProcParsing.Stat
        var credentials: ProcParsing.Credentials?
        var loginUid: UInt32?
        var sessionId: UInt32?
        var containerId: String?
    }

    /// Reads the context of an exec; nil when the process is gone, or when the pid was reused
    /// (its start time is after the exec).
    private func readExec(_ pid: UInt32, timestamp: UInt64) -> ExecSnapshot? {
        guard let directory = try? ProcessDirectory(pid: pid, scratch: scratch) else { return nil }
        // What vanishes first at exit (the memory map: argv and exe) is read first.
        let cmdline = directory.read("cmdline", maxBytes: configuration.maxCommandLineBytes)
        let exe = directory.readLink("exe")
        // Neither: the process has exited (a zombie) and nothing else read now is worth it.
        guard exe != nil || !(cmdline?.isEmpty ?? true) else { return nil }
        let cwd = directory.readLink("cwd")
        guard let stat = directory.read("stat").flatMap(ProcParsing.stat),
            clocks.startedBefore(ticks: stat.startTimeTicks, ticksPerSecond: ticksPerSecond, monotonic: timestamp)
        else { return nil }
        return ExecSnapshot(
            exe: exe,
            argv: cmdline.map(ProcParsing.argv) ?? [],
            cwd: cwd,
            stat: stat,
            credentials: directory.read("status").flatMap(ProcParsing.credentials),
            loginUid: directory.read("loginuid").flatMap(ProcParsing.auditNumber),
            sessionId: directory.read("sessionid").flatMap(ProcParsing.auditNumber),
            containerId: containerId(cgroup: directory.read("cgroup"))
        )
    }

    /// The container `cgroup` names, remembered for the next process: the processes of a burst
    /// mostly share their cgroup, and parsing its paths was most of reading it.
    private func containerId(cgroup: [UInt8]?) -> String? {
        guard let cgroup else { return nil }
        if cgroup == lastCgroup.bytes { return lastCgroup.containerId }
        let id = ProcParsing.containerId(cgroup: cgroup)
        lastCgroup = (cgroup, id)
        return id
    }

    private func inspectExec(_ pid: UInt32, snapshot: ExecSnapshot?, table: inout ProcessTable) -> ProcessEvent {
        var event = ProcessEvent(action: .exec, processId: pid)
        var complete = false
        // This exec's own FAN_OPEN_EXEC records; any left for the pid are of a later exec.
        let opened = takeExecutable(pid: pid)
        let execedAgain = fanotify != nil && !(openedForExec[pid]?.isEmpty ?? true)
        if let snapshot {
            // The same process (start time checked), whatever it runs now: these stay true.
            event.parentProcessId = snapshot.stat.parentPid
            event.startTimeTicks = snapshot.stat.startTimeTicks
            event.tty = ProcParsing.ttyName(snapshot.stat.ttyNumber)
            event.loginUid = snapshot.loginUid
            event.sessionId = snapshot.sessionId
            event.containerId = snapshot.containerId
            if execedAgain {
                // The process exec'd again before /proc was read: its image, arguments,
                // directory and credentials may be the later program's. Never lend them.
                stats.execsSuperseded += 1
            } else {
                event.image = snapshot.exe
                event.argv = snapshot.argv
                event.commandLine = snapshot.argv.isEmpty ? nil : ProcParsing.commandLine(snapshot.argv)
                event.currentDirectory = snapshot.cwd
                if let credentials = snapshot.credentials {
                    event.uid = credentials.uid
                    event.euid = credentials.euid
                    event.gid = credentials.gid
                    event.user = users.name(of: credentials.uid)
                }
                complete =
                    snapshot.exe != nil && !snapshot.argv.isEmpty && snapshot.cwd != nil && snapshot.credentials != nil
            }
        }
        if event.image == nil, let opened {
            event.image = opened
            stats.execsNamedByFanotify += 1
        }
        let previous = table.peek(pid: pid)
        if previous == nil {
            // No fork seen for this pid (yet): a late fork must not replace this entry.
            if awaitingFork.count >= configuration.maxProcesses { awaitingFork.removeAll(keepingCapacity: true) }
            awaitingFork.insert(pid)
        }
        if event.parentProcessId == nil {
            // Known from the fork; never the parent's image or command line.
            event.parentProcessId = previous?.parentPid
        }
        if let ppid = event.parentProcessId, let parent = parentRecord(ppid, table: &table) {
            event.parentImage = parent.image
            event.parentCommandLine = parent.commandLine
        }
        event.incomplete = !complete
        if !complete { stats.incompleteExecs += 1 }
        table.upsert(
            ProcessRecord(
                pid: pid,
                parentPid: event.parentProcessId,
                startTimeTicks: event.startTimeTicks ?? previous?.startTimeTicks,
                image: event.image,
                commandLine: event.commandLine,
                uid: event.uid,
                euid: event.euid,
                gid: event.gid,
                user: event.user,
                containerId: event.containerId
            )
        )
        return event
    }

    /// Emits the held exec of `pid`, if any (before anything else of that process).
    private func releaseHeldExec(pid: UInt32) {
        guard !heldExecs.isEmpty, let held = heldExecs.removeValue(forKey: pid) else { return }
        emit(held.event)
    }

    /// Emits held execs whose fork did not come in time (all of them with nil), oldest first.
    private func releaseHeldExecs(before now: ContinuousClock.Instant?) {
        guard !heldExecs.isEmpty else { return }
        let due = now.map { now in heldExecs.filter { $0.value.deadline <= now } } ?? heldExecs
        for (pid, held) in due.sorted(by: { $0.value.deadline < $1.value.deadline }) {
            heldExecs[pid] = nil
            emit(held.event)
        }
    }

    /// Consumes the files opened for this pid's exec, and only those: the entries up to the
    /// first ELF interpreter. Records of a later exec of the same pid may already be in (read
    /// with this batch) and stay for that exec.
    private func takeExecutable(pid: UInt32) -> String? {
        guard let opened = openedForExec.removeValue(forKey: pid), !opened.isEmpty else { return nil }
        let end = opened.firstIndex(where: Self.isInterpreter).map { $0 + 1 } ?? 1
        if end < opened.count { openedForExec[pid] = Array(opened[end...]) }
        return Self.executable(opened: Array(opened[..<end]))
    }

    static func isInterpreter(_ path: String) -> Bool {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return name.hasPrefix("ld-linux") || name.hasPrefix("ld-musl") || name.hasPrefix("ld.so")
            || name.hasPrefix("ld64.so")
    }

    /// The executable among the files opened for one exec: the last one that is not the ELF
    /// interpreter (for a `#!` script the kernel opens the script, then its interpreter; for
    /// a dynamic binary, the binary, then `ld.so`), as `/proc/PID/exe` would name it.
    static func executable(opened: [String]?) -> String? {
        guard let opened, !opened.isEmpty else { return nil }
        let programs = opened.filter { !isInterpreter($0) }
        return programs.last ?? opened.first
    }

    /// The entry of `pid` as a parent: from the table, else read from `/proc` and remembered.
    private func parentRecord(_ pid: UInt32, table: inout ProcessTable) -> ProcessRecord? {
        if let record = table.lookup(pid: pid), record.image != nil || record.commandLine != nil {
            return record
        }
        guard pid > 0, let directory = try? ProcessDirectory(pid: pid, scratch: scratch) else {
            return table.peek(pid: pid)
        }
        let argv = directory.read("cmdline", maxBytes: configuration.maxCommandLineBytes).map(ProcParsing.argv) ?? []
        let exe = directory.readLink("exe")
        guard let stat = directory.read("stat").flatMap(ProcParsing.stat) else { return table.peek(pid: pid) }
        let credentials = directory.read("status").flatMap(ProcParsing.credentials)
        let record = ProcessRecord(
            pid: pid,
            parentPid: stat.parentPid,
            startTimeTicks: stat.startTimeTicks,
            image: exe,
            commandLine: argv.isEmpty ? nil : ProcParsing.commandLine(argv),
            uid: credentials?.uid,
            euid: credentials?.euid,
            gid: credentials?.gid,
            user: credentials.flatMap { users.name(of: $0.uid) },
            containerId: containerId(cgroup: directory.read("cgroup"))
        )
        table.upsert(record)
        return record
    }
}

@available(*, unavailable)
extension ProcessReader: Sendable {}

/// Offsets between the kernel's clocks, taken once per batch: proc connector timestamps are
/// CLOCK_MONOTONIC, `/proc` start times are CLOCK_BOOTTIME ticks, events carry CLOCK_REALTIME.
struct ClockOffsets {
    var realtimeMinusMonotonic: Int64 = 0
    var boottimeMinusMonotonic: Int64 = 0

    /// `clock` in nanoseconds (CLOCK_MONOTONIC is the proc connector's timestamps' clock).
    static func nanoseconds(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    static func now() -> ClockOffsets {
        let monotonic = nanoseconds(CLOCK_MONOTONIC)
        let realtime = nanoseconds(CLOCK_REALTIME)
        let boottime = nanoseconds(clockid_t(7))  // CLOCK_BOOTTIME
        return ClockOffsets(realtimeMinusMonotonic: realtime - monotonic, boottimeMinusMonotonic: boottime - monotonic)
    }

    /// Whether a process that started at `ticks` (after boot) can be the one that exec'd at
    /// `monotonic`: a later start means the pid was reused. One tick of slack for rounding.
    func startedBefore(ticks: UInt64, ticksPerSecond: UInt64, monotonic: UInt64) -> Bool {
        let (started, overflow) = ticks.multipliedReportingOverflow(by: 1_000_000_000 / ticksPerSecond)
        guard !overflow else { return false }
        let execBoot = Int64(truncatingIfNeeded: monotonic) &+ boottimeMinusMonotonic
        return Int64(truncatingIfNeeded: started) <= execBoot &+ Int64(1_000_000_000 / ticksPerSecond) &+ 1_000_000
    }
}
