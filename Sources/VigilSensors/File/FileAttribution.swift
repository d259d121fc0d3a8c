import Glibc
import Logging
import Synchronization
import SystemPackage
import VigilCore
import VigilLinux

/// Who changed a file: a fanotify group in notification class (`FAN_CLASS_NOTIF`, never a
/// permission event, so no writer ever waits on the agent) whose records name the process
/// (pid) that made each change. The marks are on the watched directories themselves (inode
/// marks with `FAN_EVENT_ON_CHILD`, added by the reader as it adds its inotify watches), never
/// on whole filesystems: a write elsewhere on the same filesystem costs the agent nothing.
///
/// - With file identifiers (`FAN_REPORT_DFID_NAME`, Linux 5.9) the kernel reports creates,
///   deletes, moves, metadata changes and closes after writing, each with the directory's
///   handle and the entry's name: nothing is opened per event.
/// - Without them, the group falls back to descriptors and attributes closes after writing
///   only (the other events need identifiers).
///
/// Records outside the watched trees (a marked directory moved out of them keeps its mark
/// until it is deleted) are dropped at once, before anything is read about their process. For the others the process's executable
/// (`/proc/PID/exe`) and user (the owner of `/proc/PID`) are read right away, while the
/// process most likely still runs, by a thread of its own (`vigil-fsensor-a`) that wakes when
/// records arrive: at most every `readInterval` while they come from processes it had not
/// named yet, every `knownWritersInterval` while every record is from a process named within
/// `imageLifetime` (a busy writer: nothing new to read from `/proc`, and each wake-up costs).
/// A process that execs, writes and exits within such a wait keeps its program (from its exec
/// record) but not its user.
///
/// The file sensor's hashing stage calls `synchronize()` before it handles a batch of inotify
/// events (fsnotify queues a change's fanotify record together with its inotify record, so
/// every change of the batch is then in), and `actor(of:)` for each event: the process that
/// changed that path last, within `lifetime`. The table is bounded (`capacity`).
final class FileAttribution: Sendable {
    /// The process that changed a file.
    struct Actor: Hashable, Sendable {
        var pid: UInt32
        var image: String?
        var user: String?
    }

    static let capacity = 16_384
    static let lifetime = Duration.seconds(10)
    static let readInterval = Duration.milliseconds(2)
    /// The wait between reads while every record names a process already known.
    static let knownWritersInterval = Duration.milliseconds(10)
    /// What a process executable is remembered for, by pid (a writer usually writes many files).
    static let imageLifetime = Duration.milliseconds(500)

    /// Whether the kernel reports every kind of change (file identifiers), or closes after
    /// writing only (descriptors).
    let reportsAllChanges: Bool
    private let state: Mutex<State>
    private let stopRequested = Atomic<Bool>(false)
    private let control: EventFD
    private let descriptor: FileDescriptor
    /// What each watched directory's mark asks for.
    private let mask: FanotifyMask
    /// Directories that could not be marked because `fs.fanotify.max_user_marks` was reached.
    private let markLimitHits = Atomic<UInt64>(0)
    private let logger: Logger

    private struct State: ~Copyable {
        let group: Fanotify
        var resolver: ActorResolver
        var recent: [String: (actor: Actor, time: ContinuousClock.Instant)] = [:]
        var roots: [(configured: String, real: String)]
        var rules: PathRules
        var records: UInt64 = 0
        var execRecords: UInt64 = 0
        var overflows: UInt64 = 0
    }

    /// Opens the group and marks the directories of `rules.roots` (needs `CAP_SYS_ADMIN`, so
    /// before the agent drops it). Throws a message saying why attribution is unavailable.
    /// The directories below them are marked by `watch(directory:)`.
    init(rules: PathRules, logger: Logger) throws(FileSensorError) {
        var roots: [(configured: String, real: String)] = []
        for root in rules.roots {
            let real = root.withCString { realpath($0, nil) }
            defer { free(real) }
            roots.append((root, real.map { String(cString: $0) } ?? root))
        }
        guard !roots.isEmpty else {
            throw FileSensorError(code: .attributionUnavailable, message: "no watched path to mark")
        }
        let everything: FanotifyMask = [
            .create, .delete, .movedFrom, .movedTo, .attrib, .closeWrite, .onDirectory, .eventOnChild,
        ]
        let closes: FanotifyMask = [.closeWrite, .eventOnChild]
        // The executables each process opens for exec (`FAN_OPEN_EXEC`, Linux 5.0), on the root
        // filesystem and the watched ones: a writer that exits before `/proc` is read is still
        // named.
        let filesystems = Set(["/"] + roots.map(\.real))
        var group: Fanotify
        var reportsAll = true
        do {
            group = try Fanotify(reportFileIdentifiers: true)
            // Filesystem marks need CAP_SYS_ADMIN, as the pids in records do: since Linux 5.13
            // an unprivileged process may open a group with identifiers, but it is refused
            // these marks (EPERM) and its records carry no pid of other processes.
            for path in filesystems { try group.markFilesystem(of: path, mask: .openExec) }
            for root in roots { try group.markDirectory(root.real, mask: everything) }
        } catch let identifiersError {
            reportsAll = false
            do {
                group = try Fanotify()
                for root in roots { try group.markDirectory(root.real, mask: closes) }
            } catch {
                throw FileSensorError(
                    code: .attributionUnavailable,
                    message:
                        "fanotify unavailable (\(identifiersError) with file identifiers, \(error) with descriptors; needs CAP_SYS_ADMIN and Linux 5.9 for every kind of change)",
                    errno: error
                )
            }
            // Optional here: without it, a writer gone before /proc is read keeps its pid only.
            for path in filesystems { try? group.markFilesystem(of: path, mask: .openExec) }
        }
        do {
            control = try EventFD()
        } catch {
            throw FileSensorError(code: .eventFDUnavailable, message: "cannot create an eventfd", errno: error)
        }
        descriptor = group.fileDescriptor
        reportsAllChanges = reportsAll
        mask = reportsAll ? everything : closes
        self.logger = logger
        state = Mutex(State(group: group, resolver: ActorResolver(), roots: roots, rules: rules))
        logger.info(
            "file events name their process (fanotify)",
            metadata: ["changes": "\(reportsAll ? "all" : "close_write only")"]
        )
    }

    /// Records read from the kernel (and of them, exec opens), and queue overflows it reported.
    var counters: (records: UInt64, execRecords: UInt64, overflows: UInt64) {
        state.withLock { ($0.records, $0.execRecords, $0.overflows) }
    }

    /// Marks a directory the file sensor now watches (called by its reader as it adds each
    /// inotify watch). A directory gone meanwhile is no error; past the kernel's mark limit,
    /// changes in the directory are reported without their process (counted, logged once).
    func watch(directory path: String) {
        do {
            try state.withLock { state throws(Errno) in try state.group.markDirectory(path, mask: mask) }
        } catch .noSpace {
            if markLimitHits.add(1, ordering: .relaxed).oldValue == 0 {
                logger.notice(
                    "fanotify mark limit reached (fs.fanotify.max_user_marks): changes in further directories do not name their process",
                    metadata: ["path": "\(path)"]
                )
            }
        } catch {
            // Gone or replaced before the mark landed: its own events tell the rest.
        }
    }

    /// Directories left unmarked because the kernel's mark limit was reached.
    var markLimitHitCount: UInt64 { markLimitHits.load(ordering: .relaxed) }

    /// The reader thread's body: reads records as they come until `stop()`.
    func run() {
        while !stopRequested.load(ordering: .acquiring) {
            let ready = (try? Poll.waitReadable(descriptor, control.fileDescriptor, timeoutMilliseconds: 1000))
            if ready?.second == true { _ = try? control.drain() }
            if stopRequested.load(ordering: .acquiring) { break }
            if ready?.first == true {
                let lookups = state.withLock { $0.resolver.procLookups }
                synchronize()
                let sawNewProcess = state.withLock { $0.resolver.procLookups } != lookups
                // Let records gather: one wake-up per interval under churn, not one per write.
                let pause = (sawNewProcess ? Self.readInterval : Self.knownWritersInterval).components
                usleep(UInt32(pause.seconds * 1_000_000 + pause.attoseconds / 1_000_000_000_000))
            }
        }
    }

    func stop() {
        stopRequested.store(true, ordering: .releasing)
        try? control.signal()
    }

    /// Reads every record queued now.
    ///
    /// Records come in the kernel's order, the exec opens (`FAN_OPEN_EXEC`) among the changes,
    /// so a change is named by the program its process ran at that point of the queue, not by
    /// whatever `/proc` shows when the record is read: a shell that writes a file and then
    /// execs another program (`sh -c 'echo > f; exec rm f'`) is named for the write, the program
    /// for what it does after. `/proc/PID/exe` is read only for processes with no later exec
    /// in the queue, and records queued meanwhile are read right after it: an exec among them
    /// (its open is queued before `/proc` can show the new program) means `/proc` may already
    /// show the later program, and the one exec'd before is used instead (none, when the
    /// process has not exec'd since the group started: then only its pid is known).
    func synchronize() {
        state.withLock { state in
            let now = ContinuousClock.now
            var batch = Self.drain(&state)
            var rounds = 0
            while !batch.isEmpty {
                rounds += 1
                let pending = Self.attribute(batch, state: &state, now: now)
                // Bounded under endless churn: the last batch goes without the check below.
                batch = rounds < 16 ? Self.drain(&state) : []
                var execdSince: Set<UInt32> = []
                for record in batch where record.mask.contains(.openExec) { execdSince.insert(record.pid) }
                for change in pending {
                    var actor = change.actor
                    if execdSince.contains(actor.pid) { actor.image = change.imageBefore }
                    Self.remember(change.path, actor, state: &state, now: now)
                }
            }
        }
    }

    /// One fanotify record, as read.
    private struct Record {
        var mask: FanotifyMask
        var pid: UInt32
        var path: String
    }

    /// A change named from `/proc`, with the program its process exec'd last before it (from
    /// the queue), should `/proc` turn out to be newer than the change.
    private struct PendingChange {
        var path: String
        var actor: Actor
        var imageBefore: String?
    }

    /// The records queued now (at most 64 reads).
    private static func drain(_ state: inout State) -> [Record] {
        var records: [Record] = []
        for _ in 0..<64 {
            let result: Fanotify.ReadResult
            let group = state.group
            var read: UInt64 = 0
            var execs: UInt64 = 0
            var overflows: UInt64 = 0
            do {
                result = try group.readEvents { event in
                    read += 1
                    if event.mask.contains(.queueOverflow) {
                        overflows += 1
                        return
                    }
                    if event.mask.contains(.openExec) { execs += 1 }
                    guard event.pid > 0, let path = event.path else { return }
                    records.append(Record(mask: event.mask, pid: UInt32(event.pid), path: path))
                }
            } catch {
                break
            }
            state.records += read
            state.execRecords += execs
            state.overflows += overflows
            guard case .read(let events, _) = result, events > 0 else { break }
        }
        return records
    }

    /// Handles `batch` in order: exec opens update what each pid runs; a change whose process
    /// execs later in the batch is named at once by the program before; the others are named
    /// from `/proc` and returned, to be checked against the records queued meanwhile.
    private static func attribute(
        _ batch: [Record],
        state: inout State,
        now: ContinuousClock.Instant
    ) -> [PendingChange] {
        var lastExec: [UInt32: Int] = [:]
        for (index, record) in batch.enumerated() where record.mask.contains(.openExec) {
            lastExec[record.pid] = index
        }
        var pending: [PendingChange] = []
        for (index, record) in batch.enumerated() {
            if record.mask.contains(.openExec) {
                state.resolver.opened(forExec: record.path, pid: record.pid)
                guard record.mask.subtracting(.openExec) != [] else { continue }
            }
            guard isWatched(record.path, state: state) else { continue }
            let before = state.resolver.executed(by: record.pid)
            if let exec = lastExec[record.pid], exec > index {
                var actor = state.resolver.actor(pid: record.pid, now: now, readExecutable: false)
                actor.image = before
                remember(record.path, actor, state: &state, now: now)
            } else {
                let actor = state.resolver.actor(pid: record.pid, now: now)
                pending.append(PendingChange(path: record.path, actor: actor, imageBefore: before))
            }
        }
        return pending
    }

    private static func remember(_ path: String, _ actor: Actor, state: inout State, now: ContinuousClock.Instant) {
        if state.recent.count >= capacity {
            state.recent = state.recent.filter { now - $0.value.time < lifetime }
            if state.recent.count >= capacity { state.recent.removeAll(keepingCapacity: true) }
        }
        state.recent[path] = (actor, now)
    }

    /// The process that last changed `path` (as the file sensor names it), if known.
    func actor(of path: String) -> Actor? {
        state.withLock { state in
            var real = path
            for root in state.roots where root.configured != root.real {
                if path == root.configured || path.hasPrefix(root.configured + "/") {
                    real = root.real + path.dropFirst(root.configured.count)
                    break
                }
            }
            guard let entry = state.recent[real], ContinuousClock.now - entry.time < Self.lifetime else { return nil }
            return entry.actor
        }
    }

    private static func isWatched(_ path: String, state: borrowing State) -> Bool {
        for root in state.roots {
            let real = root.real
            if real == "/" || path == real
                || (path.utf8.count > real.utf8.count && path.hasPrefix(real)
                    && path.utf8[path.utf8.index(path.utf8.startIndex, offsetBy: real.utf8.count)] == UInt8(ascii: "/"))
            {
                // Exclusions are by configured path.
                let configured =
                    root.configured == real ? path : root.configured + path.dropFirst(real.count)
                return !state.rules.isExcluded(configured)
            }
        }
        return false
    }
}

/// pid → executable and user, read from `/proc` and remembered briefly; for a process gone
/// before `/proc` was read, the executable it last opened for exec (fanotify).
struct ActorResolver {
    private let scratch = ProcessDirectory.Scratch(capacity: 4096)
    private var cache: [UInt32: (actor: FileAttribution.Actor, expires: ContinuousClock.Instant)] = [:]
    /// The program each pid last exec'd, as `/proc/PID/exe` would name it.
    private var executed: [UInt32: String] = [:]
    private let users = UserNames()
    static let executedCapacity = 65_536
    /// Times `/proc` was read for a process not (or no longer) remembered.
    private(set) var procLookups: UInt64 = 0

    /// A `FAN_OPEN_EXEC` record: the program, or for a dynamic one its ELF interpreter next
    /// (which `/proc/PID/exe` does not name), or for a `#!` script its interpreter next.
    mutating func opened(forExec path: String, pid: UInt32) {
        guard !ProcessReader.isInterpreter(path) else { return }
        if executed.count >= Self.executedCapacity { executed.removeAll(keepingCapacity: true) }
        executed[pid] = path
        cache[pid] = nil
    }

    /// The program `pid` was last seen to exec (fanotify), if any since the group started.
    func executed(by pid: UInt32) -> String? { executed[pid] }

    /// `pid`'s executable and user from `/proc` (remembered for `imageLifetime`); with
    /// `readExecutable` false, its user only (the caller knows the executable better).
    mutating func actor(pid: UInt32, now: ContinuousClock.Instant, readExecutable: Bool = true) -> FileAttribution.Actor
    {
        if readExecutable, let cached = cache[pid], cached.expires > now { return cached.actor }
        procLookups &+= 1
        var actor = FileAttribution.Actor(pid: pid)
        if let directory = try? ProcessDirectory(pid: pid, scratch: scratch) {
            if readExecutable { actor.image = directory.readLink("exe") }
            if let owner = directory.ownerUid { actor.user = users.name(of: owner) }
        }
        guard readExecutable else { return actor }
        // Gone (or a zombie) already: what it exec'd. /proc, when readable, is authoritative.
        if actor.image == nil { actor.image = executed[pid] }
        if cache.count >= 1024 { cache.removeAll(keepingCapacity: true) }
        cache[pid] = (actor, now + FileAttribution.imageLifetime)
        return actor
    }
}
