import Logging
import SystemPackage
import VigilCore
import VigilLinux

/// The first stage: owns the inotify instance and the watch tree, reads the kernel queue on
/// the sensor's reader thread, and turns records into file events for the hashing stage.
///
/// Everything here runs on one thread (the caller of `start()` for the first walk, then the
/// reader thread), so nothing is locked.
final class WatchReader {
    private let inotify: Inotify
    private let rules: PathRules
    private let hashMaxBytes: Int64
    private let shared: SensorShared
    /// Marks each watched directory for fanotify too, when file events name their process.
    private let attribution: FileAttribution?
    private let logger: Logger

    private var tree = WatchTree()
    /// `IN_MOVED_FROM` halves waiting for their `IN_MOVED_TO`, by cookie.
    private var pendingMoves: [UInt32: PendingMove] = [:]
    /// Entries reported by the scan of a new directory, with when: their `IN_CREATE` may still
    /// come (created after the watch landed, before the scan read the directory) and must not
    /// be reported twice. Such a record is queued by the creating syscall just after the entry
    /// became visible, so it arrives within moments; entries are forgotten once the kernel
    /// queue was found empty and they are older than `scanMemory` (or the set grows large). A
    /// delete or move away of the name forgets it at once, so a re-creation is never hidden.
    private var scanned: [EntryKey: ContinuousClock.Instant] = [:]
    private static let scanMemory = Duration.seconds(1)
    private static let scanMemoryLimit = 16_384
    private var outbox: [StageItem] = []
    private var watchLimitReported = false

    /// Events the sensor asks for on every directory.
    static let directoryMask: InotifyMask = [
        .create, .closeWrite, .attrib, .delete, .movedFrom, .movedTo, .deleteSelf, .moveSelf,
        .onlyDirectory, .dontFollow, .excludeUnlinked,
    ]
    /// Roots may be symbolic links to directories.
    static let rootMask: InotifyMask = directoryMask.subtracting(.dontFollow)
    /// How long an `IN_MOVED_FROM` waits for its pair before it is a move out of the trees.
    static let moveTimeout = Duration.milliseconds(25)
    /// After a read that found records, wait this long before the next one (see `run`). Each
    /// wake-up costs this thread, the hashing stage and the consumer a context switch: at 10,000
    /// events/s, 1 ms left vigild at 28-30% of a core, 10 ms at 19%, 25 ms at 17%
    /// (Benchmarks/overhead). Kept under `moveTimeout`, so a move's two halves still pair up
    /// across one wait.
    static let batchingDelayMilliseconds: Int32 = 10

    private struct PendingMove {
        var path: String
        var parent: Int32
        var name: String
        var isDirectory: Bool
        var time: Timestamp
        var deadline: ContinuousClock.Instant
    }

    private struct EntryKey: Hashable {
        var wd: Int32
        var name: String
    }

    init(
        inotify: Inotify,
        rules: PathRules,
        hashMaxBytes: Int64,
        shared: SensorShared,
        attribution: FileAttribution?,
        logger: Logger
    ) {
        self.inotify = inotify
        self.rules = rules
        self.hashMaxBytes = hashMaxBytes
        self.shared = shared
        self.attribution = attribution
        self.logger = logger
    }

    // MARK: Setup

    /// Watches every root recursively; existing content is not reported.
    func watchRoots() {
        for root in rules.roots where !rules.isExcluded(root) {
            watchTree(at: root, parent: -1, name: root, report: false)
        }
        publishWatchCount()
        flush()
        logger.debug("file sensor watching", metadata: ["roots": "\(rules.roots)", "watches": "\(tree.count)"])
    }

    // MARK: Reader loop

    /// Reads until a stop is requested, then finishes the stage queue.
    func run() {
        defer {
            expireMoves(all: true)
            flush()
            shared.queue.finish()
        }
        while !shared.stopRequested.load(ordering: .acquiring) {
            if shared.suspendRequested.load(ordering: .acquiring) {
                shared.suspended.store(true, ordering: .releasing)
                _ = try? shared.control.wait(timeoutMilliseconds: 50)
                _ = try? shared.control.drain()
                continue
            }
            shared.suspended.store(false, ordering: .releasing)
            let result: Inotify.WaitResult
            do {
                result = try inotify.wait(wakeup: shared.control, timeoutMilliseconds: pollTimeout())
            } catch {
                logger.info("file sensor poll failed", metadata: ["errno": "\(error)"])
                _ = try? shared.control.wait(timeoutMilliseconds: 100)
                continue
            }
            switch result {
            case .woken:
                _ = try? shared.control.drain()
            case .timedOut:
                break
            case .readable:
                if drainKernelQueue() > 0 {
                    expireMoves(all: false)
                    flush()
                    // Let records accumulate: under churn this makes one wake-up (of this
                    // thread, the hashing stage and the consumer) per 10 ms instead of one
                    // per event. A stop or suspension still ends the wait at once.
                    _ = try? shared.control.wait(timeoutMilliseconds: Self.batchingDelayMilliseconds)
                }
            }
            expireMoves(all: false)
            flush()
        }
    }

    /// Milliseconds until the oldest unpaired move expires, or -1.
    private func pollTimeout() -> Int32 {
        guard let deadline = pendingMoves.values.map(\.deadline).min() else { return -1 }
        let left = ContinuousClock.now.duration(to: deadline)
        let ms = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
        return Int32(clamping: max(0, ms + 1))
    }

    /// Reads until the kernel queue is empty (or 64 reads); returns how many records it read.
    @discardableResult
    private func drainKernelQueue() -> Int {
        var records = 0
        // Bounded, so a stop or suspension is noticed even under endless churn.
        for _ in 0..<64 {
            let time = Timestamp.now()
            let result: Inotify.ReadResult
            do {
                result = try inotify.readEvents { handle($0, at: time) }
            } catch {
                logger.info("file sensor read failed", metadata: ["errno": "\(error)"])
                return records
            }
            switch result {
            case .wouldBlock:
                forgetOldScans()
                return records
            case .read(let count, let malformed):
                records += count
                if malformed > 0 {
                    logger.debug("file sensor ignored a malformed inotify record", metadata: ["bytes": "\(malformed)"])
                }
                if scanned.count > Self.scanMemoryLimit { forgetOldScans() }
                flush()
            }
        }
        return records
    }

    private func forgetOldScans() {
        guard !scanned.isEmpty else { return }
        let cutoff = ContinuousClock.now - Self.scanMemory
        scanned = scanned.filter { $0.value > cutoff }
    }

    // MARK: Records

    private func handle(_ record: InotifyEvent, at time: Timestamp) {
        let mask = record.mask
        if mask.contains(.queueOverflow) {
            handleOverflow(at: time)
            return
        }
        if mask.contains(.ignored) {
            if tree.remove(record.watchDescriptor) != nil { publishWatchCount() }
            return
        }
        guard let directory = tree.path(of: record.watchDescriptor) else { return }
        guard let name = record.name else {
            handleSelfEvent(record, path: directory, at: time)
            return
        }
        // The kernel never sends these; never build a path out of them.
        guard name != ".", name != "..", !name.utf8.contains(UInt8(ascii: "/")) else { return }
        let path = PathRules.join(directory, name)
        if rules.isExcluded(path) { return }
        let isDirectory = mask.contains(.isDirectory)
        let key = EntryKey(wd: record.watchDescriptor, name: name)

        if mask.contains(.create) {
            if !scanned.isEmpty, scanned.removeValue(forKey: key) != nil { return }
            emit(.create, path: path, isDirectory: isDirectory, metadata: try? FileStatus.lstat(path), at: time)
            if isDirectory { watchTree(at: path, parent: record.watchDescriptor, name: name, report: true) }
        } else if mask.contains(.closeWrite) {
            emit(.modify, path: path, isDirectory: false, metadata: try? FileStatus.lstat(path), at: time)
        } else if mask.contains(.attrib) {
            emit(.attrib, path: path, isDirectory: isDirectory, metadata: try? FileStatus.lstat(path), at: time)
        } else if mask.contains(.delete) {
            if !scanned.isEmpty { scanned[key] = nil }
            emit(.delete, path: path, isDirectory: isDirectory, metadata: nil, at: time)
        } else if mask.contains(.movedFrom) {
            if !scanned.isEmpty { scanned[key] = nil }
            pendingMoves[record.cookie] = PendingMove(
                path: path,
                parent: record.watchDescriptor,
                name: name,
                isDirectory: isDirectory,
                time: time,
                deadline: ContinuousClock.now + Self.moveTimeout
            )
        } else if mask.contains(.movedTo) {
            if let source = pendingMoves.removeValue(forKey: record.cookie) {
                completeRename(
                    from: source,
                    toParent: record.watchDescriptor,
                    name: name,
                    path: path,
                    isDirectory: isDirectory,
                    at: time
                )
            } else {
                // Moved in from outside the watched trees.
                if !scanned.isEmpty, scanned.removeValue(forKey: key) != nil { return }
                emit(.create, path: path, isDirectory: isDirectory, metadata: try? FileStatus.lstat(path), at: time)
                if isDirectory { watchTree(at: path, parent: record.watchDescriptor, name: name, report: true) }
            }
        }
    }

    /// Records about a watched directory itself. Those of inner directories are reported by
    /// their parent's watch; only roots have no watched parent.
    private func handleSelfEvent(_ record: InotifyEvent, path: String, at time: Timestamp) {
        let wd = record.watchDescriptor
        guard tree.isRoot(wd) else { return }
        if record.mask.contains(.attrib) {
            emit(.attrib, path: path, isDirectory: true, metadata: try? FileStatus.lstat(path), at: time)
        } else if record.mask.contains(.deleteSelf) {
            emit(.delete, path: path, isDirectory: true, metadata: nil, at: time)
            logger.info("file sensor root deleted", metadata: ["path": "\(path)"])
        } else if record.mask.contains(.moveSelf) {
            // The root now lives somewhere unknown: its paths would be wrong, stop watching it.
            for w in tree.removeSubtree(wd) { try? inotify.removeWatch(w) }
            publishWatchCount()
            logger.info("file sensor root moved away; no longer watched", metadata: ["path": "\(path)"])
            health(
                "watch_root_moved",
                "watched root \(path) was moved away and is no longer watched",
                ["watches": UInt64(tree.count)],
                at: time
            )
        }
    }

    private func completeRename(
        from source: PendingMove,
        toParent parent: Int32,
        name: String,
        path: String,
        isDirectory: Bool,
        at time: Timestamp
    ) {
        emit(
            .rename,
            path: path,
            source: source.path,
            isDirectory: isDirectory,
            metadata: try? FileStatus.lstat(path),
            at: time
        )
        guard isDirectory else { return }
        if let wd = tree.child(of: source.parent, named: source.name) {
            tree.move(wd, toParent: parent, name: name, path: path)
        } else {
            // It was not watched (watch limit, or it was created during an overflow).
            watchTree(at: path, parent: parent, name: name, report: false)
        }
    }

    /// Unpaired `IN_MOVED_FROM`s past their deadline (or all) become deletes: moved out of
    /// the watched trees, so whatever was watched below them is dropped.
    private func expireMoves(all: Bool) {
        guard !pendingMoves.isEmpty else { return }
        let now = ContinuousClock.now
        let expired = pendingMoves.filter { all || $0.value.deadline <= now }
        for (cookie, move) in expired.sorted(by: { $0.value.time < $1.value.time }) {
            pendingMoves[cookie] = nil
            emit(.delete, path: move.path, isDirectory: move.isDirectory, metadata: nil, at: move.time)
            if move.isDirectory, let wd = tree.child(of: move.parent, named: move.name) {
                for w in tree.removeSubtree(wd) { try? inotify.removeWatch(w) }
                publishWatchCount()
            }
        }
    }

    // MARK: Overflow

    private func handleOverflow(at time: Timestamp) {
        let total = shared.counters.overflows.add(1, ordering: .relaxed).newValue
        let discardedMoves = pendingMoves.count
        pendingMoves.removeAll()
        scanned.removeAll()
        rescan()
        let limit = InotifyLimits.maxQueuedEvents ?? 0
        logger.info(
            "inotify queue overflowed; events lost; watches rescanned",
            metadata: [
                "max_queued_events": "\(limit)", "watches": "\(tree.count)", "overflows": "\(total)",
            ]
        )
        health(
            "inotify_overflow",
            "the inotify event queue overflowed (fs.inotify.max_queued_events=\(limit)): file events were lost; "
                + "the watched trees were rescanned and watches re-added",
            [
                "overflows": total, "watches": UInt64(tree.count), "max_queued_events": UInt64(limit),
                "unpaired_moves_discarded": UInt64(discardedMoves),
            ],
            at: time
        )
    }

    /// Walks the trees afresh: directories created while events were lost get watches, paths
    /// changed by lost renames are corrected, watches of directories gone from the trees go.
    private func rescan() {
        let old = tree
        tree = WatchTree()
        for root in rules.roots where !rules.isExcluded(root) {
            watchTree(at: root, parent: -1, name: root, report: false)
        }
        for wd in old.nodes.keys where tree.path(of: wd) == nil {
            try? inotify.removeWatch(wd)
        }
        publishWatchCount()
    }

    // MARK: Watching

    /// Watches `path` and the directories below it (iteratively, depth first). With `report`,
    /// everything found below `path` is reported as created (a new directory's content may
    /// predate its watch).
    private func watchTree(at path: String, parent: Int32, name: String, report: Bool) {
        var stack: [(path: String, parent: Int32, name: String)] = [(path, parent, name)]
        while let next = stack.popLast() {
            if rules.isExcluded(next.path) { continue }
            let wd: Int32
            do {
                wd = try inotify.addWatch(path: next.path, mask: next.parent < 0 ? Self.rootMask : Self.directoryMask)
            } catch {
                watchFailed(next.path, error, isRoot: next.parent < 0)
                continue
            }
            // Already watched: the same inode through another path, or reported twice.
            guard tree.insert(wd: wd, parent: next.parent, name: next.name, path: next.path) == .added else { continue }
            attribution?.watch(directory: next.path)
            #if DEBUG
            if report, let hook = shared.newDirectoryHook.withLock({ $0 }) { hook(next.path) }
            #endif
            guard let entries = try? Directory.entries(of: next.path) else { continue }
            for entry in entries {
                let child = PathRules.join(next.path, entry.name)
                if rules.isExcluded(child) { continue }
                var isDirectory = entry.kind == .directory
                if report || entry.kind == .unknown {
                    let metadata = try? FileStatus.lstat(child)
                    if entry.kind == .unknown { isDirectory = metadata?.isDirectory ?? false }
                    if report {
                        scanned[EntryKey(wd: wd, name: entry.name)] = ContinuousClock.now
                        emit(.create, path: child, isDirectory: isDirectory, metadata: metadata, at: .now())
                    }
                }
                if isDirectory { stack.append((child, wd, entry.name)) }
            }
            if outbox.count >= 1024 { flush() }
        }
        publishWatchCount()
    }

    private func watchFailed(_ path: String, _ error: Errno, isRoot: Bool) {
        switch error {
        case .noSpace:
            shared.counters.watchLimitHits.add(1, ordering: .relaxed)
            guard !watchLimitReported else { return }
            watchLimitReported = true
            let limit = InotifyLimits.maxUserWatches ?? 0
            logger.info(
                "inotify watch limit reached; continuing with the watches in place",
                metadata: [
                    "path": "\(path)", "max_user_watches": "\(limit)", "watches": "\(tree.count)",
                ]
            )
            health(
                "watch_limit",
                "cannot watch \(path): the inotify watch limit is reached (fs.inotify.max_user_watches=\(limit)); "
                    + "the file sensor continues with the \(tree.count) watches it has",
                ["max_user_watches": UInt64(limit), "watches": UInt64(tree.count)],
                at: .now()
            )
        case .noSuchFileOrDirectory where !isRoot, .notDirectory where !isRoot:
            break  // gone or replaced before the watch landed; its own events tell the rest
        default:
            if isRoot {
                logger.info("file sensor cannot watch a root", metadata: ["path": "\(path)", "errno": "\(error)"])
                health("watch_failed", "cannot watch \(path): \(error)", ["errno": UInt64(error.rawValue)], at: .now())
            } else {
                logger.debug(
                    "file sensor cannot watch a directory",
                    metadata: ["path": "\(path)", "errno": "\(error)"]
                )
            }
        }
    }

    // MARK: Output

    private func emit(
        _ action: FileEvent.Action,
        path: String,
        source: String? = nil,
        isDirectory: Bool,
        metadata: FileMetadata?,
        at time: Timestamp
    ) {
        var event = FileEvent(
            action: action,
            targetFilename: path,
            sourceFilename: source,
            isDirectory: isDirectory,
            metadata: metadata
        )
        var request: HashRequest?
        if action == .create || action == .modify {
            if hashMaxBytes <= 0 {
                event.hashSkipped = "disabled"
            } else if isDirectory {
                event.hashSkipped = "not_regular"
            } else if let metadata {
                if !metadata.isRegularFile {
                    event.hashSkipped = "not_regular"
                } else if metadata.size > UInt64(hashMaxBytes) {
                    event.hashSkipped = "too_large"
                } else {
                    request = HashRequest(path: path, inode: metadata.inode)
                }
            } else {
                event.hashSkipped = "gone"
            }
        }
        outbox.append(.file(event, time, request))
    }

    /// `keep` over stage items (before hashing and attribution: the event's own fields).
    private static func stageKeep(_ keep: @escaping @Sendable (Event) -> Bool) -> (StageItem) -> Bool {
        { item in
            guard case .file(let event, let time, _) = item else { return true }
            return keep(Event(time: time, payload: .file(event)))
        }
    }

    private func health(_ kind: String, _ message: String, _ counters: [String: UInt64], at time: Timestamp) {
        outbox.append(.health(AgentHealth(kind: kind, message: message, counters: counters), time))
    }

    private func flush() {
        let keep = shared.keepWhenFull.withLock { $0 }
        let dropped = shared.queue.push(&outbox, keep: keep.map { keep in Self.stageKeep(keep) })
        if dropped > 0 { shared.counters.stageDrops.add(UInt64(dropped), ordering: .relaxed) }
    }

    private func publishWatchCount() {
        shared.counters.watches.store(tree.count, ordering: .relaxed)
    }
}

@available(*, unavailable)
extension WatchReader: Sendable {}
