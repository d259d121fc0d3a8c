import Glibc
import SystemPackage

/// Which process holds a socket: a map from socket inode to (pid, fd) built by sweeping the
/// `/proc/PID/fd` links (`socket:[INODE]`) of every process, with each holder's executable.
///
/// A sweep reads every process's descriptor table, so it costs about a `readlink` per open
/// descriptor on the host: callers sweep on a miss, and not more often than they can afford
/// (`FlowSensor` at most every `minimumSweepInterval`). A cached entry is checked with one
/// `readlink` before it is trusted (the descriptor may have been closed or reused since).
/// Reading other users' `/proc/PID/fd` needs `CAP_SYS_PTRACE` (or the same uid), and no
/// Landlock domain. Memory is bounded by `maxEntries`. Not thread-safe: one thread uses it.
public final class SocketInodeIndex {
    /// The process holding a socket.
    public struct Owner: Hashable, Sendable {
        public var pid: UInt32
        /// The descriptor number in that process.
        public var fd: Int32
        /// `/proc/PID/exe` as read during the sweep; nil if unreadable (a kernel thread, exited).
        public var image: String?
    }

    /// What one sweep found.
    public struct SweepSummary: Hashable, Sendable {
        public var processes = 0
        public var sockets = 0
        /// Sockets left out because `maxEntries` was reached.
        public var skipped = 0
    }

    public let procRoot: String
    public let maxEntries: Int
    private var owners: [UInt64: Owner] = [:]
    /// The processes the last full sweep listed.
    private var sweptPids: Set<UInt32> = []
    /// Processes whose sockets were asked for lately, most recent last.
    private var recentOwners: [UInt32] = []
    private static let recentOwnerCount = 32
    private let scratch = ProcessDirectory.Scratch(capacity: 8192)

    public init(procRoot: String = "/proc", maxEntries: Int = 262_144) {
        self.procRoot = procRoot
        self.maxEntries = max(1, maxEntries)
    }

    /// Sockets known since the last sweep.
    public var count: Int { owners.count }

    /// The holder of socket `inode` known from the last sweep, if its descriptor still refers
    /// to that socket. The corresponding C function is `readlink`.
    public func cachedOwner(inode: UInt64) -> Owner? {
        guard let owner = owners[inode] else { return nil }
        guard Self.socketInode(readLink("\(procRoot)/\(owner.pid)/fd/\(owner.fd)")) == inode else {
            owners[inode] = nil
            return nil
        }
        if recentOwners.last != owner.pid {
            recentOwners.removeAll { $0 == owner.pid }
            recentOwners.append(owner.pid)
            if recentOwners.count > Self.recentOwnerCount { recentOwners.removeFirst() }
        }
        return owner
    }

    /// Replaces the map with what `/proc` shows now. A socket several processes share (inherited
    /// over `fork`) is attributed to the lowest pid holding it. Processes that exit meanwhile
    /// are skipped. The corresponding C functions are `opendir`/`readdir` and `readlink`.
    @discardableResult
    public func sweep() -> SweepSummary {
        var summary = SweepSummary()
        var fresh: [UInt64: Owner] = [:]
        fresh.reserveCapacity(min(owners.count + 64, maxEntries))
        var pids = Set<UInt32>()
        for entry in (try? Directory.entries(of: procRoot)) ?? [] {
            guard let pid = UInt32(entry.name) else { continue }
            pids.insert(pid)
            scan(pid, into: &fresh, summary: &summary)
        }
        owners = fresh
        sweptPids = pids
        return summary
    }

    /// A cheap partial sweep for a socket created since the last full one: the descriptors of
    /// the processes that did not exist at the last full sweep (newest first, at most
    /// `newProcesses`) and of the processes that owned a socket lately. A short-lived client
    /// (a new process that connects and exits) is found here without reading every process.
    /// Adds to the map; the corresponding C functions are those of `sweep`.
    @discardableResult
    public func sweepNewAndRecent(newProcesses: Int = 64) -> SweepSummary {
        var summary = SweepSummary()
        var candidates: [UInt32] = []
        for entry in (try? Directory.entries(of: procRoot)) ?? [] {
            if let pid = UInt32(entry.name), !sweptPids.contains(pid) { candidates.append(pid) }
        }
        candidates.sort(by: >)
        if candidates.count > newProcesses { candidates.removeLast(candidates.count - newProcesses) }
        for pid in recentOwners.reversed() where !candidates.contains(pid) { candidates.append(pid) }
        for pid in candidates { scan(pid, into: &owners, summary: &summary) }
        return summary
    }

    /// Adds the sockets `pid` holds to `map`.
    private func scan(_ pid: UInt32, into map: inout [UInt64: Owner], summary: inout SweepSummary) {
        guard let descriptors = try? Directory.entries(of: "\(procRoot)/\(pid)/fd") else { return }
        summary.processes += 1
        var image: String? = nil
        var imageRead = false
        for descriptor in descriptors {
            guard let fd = Int32(descriptor.name),
                let inode = Self.socketInode(readLink("\(procRoot)/\(pid)/fd/\(fd)"))
            else { continue }
            if let existing = map[inode], existing.pid <= pid { continue }
            guard map.count < maxEntries || map[inode] != nil else {
                summary.skipped += 1
                continue
            }
            if !imageRead {
                image = Self.executable(pid: pid, procRoot: procRoot, scratch: scratch)
                imageRead = true
            }
            if map.updateValue(Owner(pid: pid, fd: fd, image: image), forKey: inode) == nil {
                summary.sockets += 1
            }
        }
    }

    /// `/proc/PID/exe` of `pid`, nil when unreadable.
    public static func executable(pid: UInt32, procRoot: String = "/proc", scratch: ProcessDirectory.Scratch) -> String?
    {
        guard let directory = try? ProcessDirectory(pid: pid, scratch: scratch, procRoot: procRoot) else { return nil }
        return directory.readLink("exe")
    }

    /// The inode in a `socket:[INODE]` link target, nil for anything else.
    public static func socketInode(_ target: String?) -> UInt64? {
        guard let target, target.hasPrefix("socket:["), target.hasSuffix("]") else { return nil }
        return UInt64(target.dropFirst(8).dropLast())
    }

    private func readLink(_ path: String) -> String? {
        let capacity = 256
        let pointer = scratch.bytes.baseAddress!.assumingMemoryBound(to: CChar.self)
        let result = path.withCString { p in
            valueOrErrno(retryOnInterrupt: true) { system_readlinkat(AT_FDCWD, p, pointer, capacity) }
        }
        guard case .success(let n) = result, n > 0, n < capacity else { return nil }
        return String(decoding: UnsafeRawBufferPointer(rebasing: scratch.bytes[0..<n]), as: UTF8.self)
    }
}

@available(*, unavailable)
extension SocketInodeIndex: Sendable {}
