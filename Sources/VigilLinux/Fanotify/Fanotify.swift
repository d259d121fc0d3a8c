import Glibc
import SystemPackage

/// Events asked of fanotify (`<linux/fanotify.h>`). Only notification events: Vigil never
/// asks for permission events (`FAN_OPEN_PERM`, `FAN_ACCESS_PERM`, `FAN_OPEN_EXEC_PERM`), so
/// no process ever waits on the agent.
public struct FanotifyMask: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let access = FanotifyMask(rawValue: 0x1)
    public static let modify = FanotifyMask(rawValue: 0x2)
    /// Metadata changed (`FAN_ATTRIB`); needs file identifiers (Linux 5.1), like the four
    /// directory-entry events below.
    public static let attrib = FanotifyMask(rawValue: 0x4)
    public static let closeWrite = FanotifyMask(rawValue: 0x8)
    public static let open = FanotifyMask(rawValue: 0x20)
    public static let movedFrom = FanotifyMask(rawValue: 0x40)
    public static let movedTo = FanotifyMask(rawValue: 0x80)
    public static let create = FanotifyMask(rawValue: 0x100)
    public static let delete = FanotifyMask(rawValue: 0x200)
    /// A file opened to be executed (`execve`, and the ELF interpreter it loads); Linux 5.0.
    public static let openExec = FanotifyMask(rawValue: 0x1000)
    /// The kernel queue overflowed (`FAN_Q_OVERFLOW`); events were lost.
    public static let queueOverflow = FanotifyMask(rawValue: 0x4000)
    /// On a directory's inode mark: also the events of the entries directly in it
    /// (`FAN_EVENT_ON_CHILD`).
    public static let eventOnChild = FanotifyMask(rawValue: 0x0800_0000)
    /// Also for directories (`FAN_ONDIR`).
    public static let onDirectory = FanotifyMask(rawValue: 0x4000_0000)
}

/// One fanotify event, its file already resolved to a path and its descriptor closed.
public struct FanotifyEvent: Hashable, Sendable {
    public var mask: FanotifyMask
    /// The process (thread group id) that caused the event.
    public var pid: Int32
    /// The file's path as `/proc/self/fd/N` names it (` (deleted)` appended for an unlinked
    /// file); nil for an overflow record or when the link could not be read.
    public var path: String?
}

/// An owned fanotify group in notification class (`FAN_CLASS_NOTIF`).
///
/// Two ways to learn the file of an event, both resolved to a path by `readEvents`:
/// - **directory identifier and name** (`FAN_REPORT_DFID_NAME`, Linux 5.9): the kernel reports
///   the handle of the directory and the name the file was opened by, and opens nothing. The
///   directory's path comes from a bounded cache of handles, filled on a miss with
///   `open_by_handle_at` (`CAP_DAC_READ_SEARCH`) on the marked filesystem; entries expire after
///   `handleCacheLifetime`, so a renamed directory is named afresh. (A directory has one path;
///   a file's own handle would not say which of its hard links was executed.)
/// - **descriptors** (the fallback): the kernel opens the file for every event; the path is
///   read from `/proc/self/fd/N` and the descriptor closed.
///
/// Needs `CAP_SYS_ADMIN`. The kernel queue keeps its default bound (16384 events,
/// `fs.fanotify.max_queued_events`): `FAN_UNLIMITED_QUEUE` is not used, overflow is reported.
/// Non-blocking and close-on-exec; one thread owns it.
public final class Fanotify {
    public static let readBufferSize = 64 * 1024

    /// The descriptor; valid for the object's lifetime. Do not close it.
    public let fileDescriptor: FileDescriptor
    /// Whether events carry a directory handle and name (`FAN_REPORT_DFID_NAME`) rather than
    /// descriptors.
    public let reportsFileIdentifiers: Bool
    private let buffer: UnsafeMutableRawBufferPointer
    /// Descriptors of the marked filesystems' roots, for `open_by_handle_at`, by `fsid`
    /// (the first 8 bytes of a handle record, as `statfs` reports it).
    private var mountFDs: [UInt64: Int32] = [:]
    /// `st_dev` of the filesystems in `mountFDs`: a directory on one of them needs no descriptor.
    private var knownDevices: Set<UInt64> = []
    private var handlePaths: [[UInt8]: (path: String, expires: ContinuousClock.Instant)] = [:]
    public static let handleCacheCapacity = 4096
    public static let handleCacheLifetime = Duration.seconds(5)
    private let pathBuffer: UnsafeMutablePointer<CChar>
    private static let pathBufferSize = 4096

    static let classNotification: UInt32 = 0x0  // FAN_CLASS_NOTIF
    static let closeOnExec: UInt32 = 0x1  // FAN_CLOEXEC
    static let nonBlocking: UInt32 = 0x2  // FAN_NONBLOCK
    static let markAdd: UInt32 = 0x1  // FAN_MARK_ADD
    static let markMount: UInt32 = 0x10  // FAN_MARK_MOUNT
    static let markFilesystem: UInt32 = 0x100  // FAN_MARK_FILESYSTEM
    static let markOnlyDirectory: UInt32 = 0x8  // FAN_MARK_ONLYDIR
    static let metadataVersion: UInt8 = 3  // FANOTIFY_METADATA_VERSION
    // O_LARGEFILE on x86-64 and arm64 (0 in their uapi for 64-bit; the kernel forces it)
    static let largeFile: Int32 = 0o100_000
    static let metadataSize = 24  // struct fanotify_event_metadata
    static let reportDirectoryFIDName: UInt32 = 0x400 | 0x800  // FAN_REPORT_DIR_FID | FAN_REPORT_NAME
    static let infoTypeDirectoryFIDName: UInt8 = 2  // FAN_EVENT_INFO_TYPE_DFID_NAME
    static let pathOnly: Int32 = 0o10_000_000  // O_PATH

    /// Creates the group. The corresponding C function is `fanotify_init` with
    /// `FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK` (and `FAN_REPORT_FID` when asked), event
    /// files opened `O_RDONLY | O_LARGEFILE | O_CLOEXEC` in descriptor mode.
    ///
    /// `EPERM`: no `CAP_SYS_ADMIN`; `ENOSYS`: a kernel without fanotify; `EINVAL` with
    /// `reportFileIdentifiers` (`FAN_REPORT_DFID_NAME`): a kernel before 5.9.
    public init(reportFileIdentifiers: Bool = false) throws(Errno) {
        let flags =
            Self.classNotification | Self.closeOnExec | Self.nonBlocking
            | (reportFileIdentifiers ? Self.reportDirectoryFIDName : 0)
        let fd = try valueOrErrno(retryOnInterrupt: true) {
            system_fanotify_init(flags, UInt32(O_RDONLY | Self.largeFile | O_CLOEXEC))
        }.get()
        fileDescriptor = FileDescriptor(rawValue: fd)
        reportsFileIdentifiers = reportFileIdentifiers
        buffer = .allocate(byteCount: Self.readBufferSize, alignment: MemoryLayout<UInt64>.alignment)
        pathBuffer = .allocate(capacity: Self.pathBufferSize)
    }

    deinit {
        _ = system_close(fileDescriptor.rawValue)
        for fd in mountFDs.values { _ = system_close(fd) }
        buffer.deallocate()
        pathBuffer.deallocate()
    }

    /// Marks the whole filesystem holding `path` (`FAN_MARK_FILESYSTEM`, Linux 4.20).
    ///
    /// The corresponding C function is `fanotify_mark`. `EINVAL` for a mask the kernel does not
    /// know (`FAN_OPEN_EXEC` needs 5.0); `EXDEV`/`ENODEV` for filesystems that cannot be marked.
    ///
    /// With file identifiers, a descriptor of `path` (a directory) is kept to resolve the
    /// handles of its filesystem; the corresponding C functions are also `openat` and `fstatfs`.
    public func markFilesystem(of path: String, mask: FanotifyMask, retryOnInterrupt: Bool = true) throws(Errno) {
        try mark(path, flags: Self.markAdd | Self.markFilesystem, mask: mask, retryOnInterrupt: retryOnInterrupt)
        if reportsFileIdentifiers { try rememberFilesystem(of: path) }
    }

    /// Marks the directory `path` itself (an inode mark): with `.eventOnChild` in `mask`, the
    /// events of the entries directly in it too. Unlike a filesystem mark, a change elsewhere
    /// costs this group nothing. Needs no capability once the group exists (the kernel asks
    /// `CAP_SYS_ADMIN` only for mount and filesystem marks), so it works in the sandbox. The
    /// mark goes when the directory is deleted.
    ///
    /// The corresponding C function is `fanotify_mark` with `FAN_MARK_ONLYDIR` (`ENOTDIR` for
    /// anything else); `ENOSPC` when `fs.fanotify.max_user_marks` is reached. With file
    /// identifiers, also `stat`, and for a filesystem not seen before `openat` and `fstatfs`.
    public func markDirectory(_ path: String, mask: FanotifyMask, retryOnInterrupt: Bool = true) throws(Errno) {
        try mark(path, flags: Self.markAdd | Self.markOnlyDirectory, mask: mask, retryOnInterrupt: retryOnInterrupt)
        guard reportsFileIdentifiers else { return }
        var status = Glibc.stat()
        let known = path.withCString { system_stat($0, &status) } == 0 && knownDevices.contains(UInt64(status.st_dev))
        if !known { try rememberFilesystem(of: path) }
    }

    /// Keeps a descriptor of the directory `path` for `open_by_handle_at` on its filesystem
    /// (one per filesystem, by `fsid`).
    private func rememberFilesystem(of path: String) throws(Errno) {
        let fd = try path.withCString { p in
            // Not O_PATH: open_by_handle_at refuses an O_PATH mount descriptor (EBADF).
            valueOrErrno(retryOnInterrupt: true) { system_openat(AT_FDCWD, p, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        }.get()
        // struct statfs of the 64-bit targets (x86-64, arm64): 120 bytes, f_fsid at offset 56.
        let status = UnsafeMutableRawBufferPointer.allocate(byteCount: 128, alignment: 8)
        defer { status.deallocate() }
        guard system_fstatfs(fd, status.baseAddress!) == 0 else {
            let error = Errno(rawValue: errno)
            _ = system_close(fd)
            throw error
        }
        var device = Glibc.stat()
        if system_fstat(fd, &device) == 0 { knownDevices.insert(UInt64(device.st_dev)) }
        let fsid = status.loadUnaligned(fromByteOffset: 56, as: UInt64.self)
        if mountFDs[fsid] == nil {
            mountFDs[fsid] = fd
        } else {
            _ = system_close(fd)
        }
    }

    /// Marks the mount holding `path` (`FAN_MARK_MOUNT`).
    public func markMount(of path: String, mask: FanotifyMask, retryOnInterrupt: Bool = true) throws(Errno) {
        try mark(path, flags: Self.markAdd | Self.markMount, mask: mask, retryOnInterrupt: retryOnInterrupt)
    }

    private func mark(_ path: String, flags: UInt32, mask: FanotifyMask, retryOnInterrupt: Bool) throws(Errno) {
        try path.withCString { cPath in
            nothingOrErrno(retryOnInterrupt: retryOnInterrupt) {
                system_fanotify_mark(fileDescriptor.rawValue, flags, mask.rawValue, AT_FDCWD, cPath)
            }
        }.get()
    }

    /// The outcome of one `readEvents`.
    public enum ReadResult: Hashable, Sendable {
        case wouldBlock
        case read(events: Int, malformedBytes: Int)
    }

    /// Reads once (up to 64 KiB of records) and calls `body` for each event, in kernel order.
    /// Every descriptor the kernel handed over is closed before this returns.
    ///
    /// The corresponding C functions are `read`, `readlink` and `close`. Records are parsed
    /// with bounds checks; a record of another metadata version is skipped (its descriptor
    /// still closed when its layout is known).
    public func readEvents(retryOnInterrupt: Bool = true, _ body: (FanotifyEvent) -> Void) throws(Errno) -> ReadResult {
        let result = valueOrErrno(retryOnInterrupt: retryOnInterrupt) {
            system_read(fileDescriptor.rawValue, buffer.baseAddress, buffer.count)
        }
        let count: Int
        switch result {
        case .failure(let err) where err == .resourceTemporarilyUnavailable: return .wouldBlock
        case .failure(let err): throw err
        case .success(let n): count = max(0, min(n, buffer.count))
        }
        var offset = 0
        var events = 0
        while count - offset >= Self.metadataSize {
            let length = Int(buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            let version = buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt8.self)
            guard length >= Self.metadataSize, length <= count - offset else { break }
            let mask = buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
            let fd = buffer.loadUnaligned(fromByteOffset: offset + 16, as: Int32.self)
            let pid = buffer.loadUnaligned(fromByteOffset: offset + 20, as: Int32.self)
            offset += length
            var path: String?
            if fd >= 0 {
                path = resolve(fd)
                _ = system_close(fd)
            } else if reportsFileIdentifiers, length > Self.metadataSize {
                let record = UnsafeRawBufferPointer(rebasing: buffer[(offset - length + Self.metadataSize)..<offset])
                path = resolveHandle(record)
            }
            guard version == Self.metadataVersion else { continue }
            events += 1
            body(FanotifyEvent(mask: FanotifyMask(rawValue: mask), pid: pid, path: path))
        }
        return .read(events: events, malformedBytes: count - offset)
    }

    /// The path of the file in the first `FAN_EVENT_INFO_TYPE_DFID_NAME` record of `info` (the
    /// bytes after the event metadata): header (4 bytes), `fsid` (8), `struct file_handle` of
    /// the directory (`handle_bytes` u32, `handle_type` i32, `f_handle`), then the
    /// NUL-terminated name.
    private func resolveHandle(_ info: UnsafeRawBufferPointer) -> String? {
        var offset = 0
        while info.count - offset >= 4 {
            let type = info[offset]
            let length = Int(info.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self))
            guard length >= 4, length <= info.count - offset else { return nil }
            defer { offset += length }
            guard type == Self.infoTypeDirectoryFIDName, length >= 4 + 8 + 8 else { continue }
            let handleBytes = Int(info.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            guard handleBytes < length - 20 else { return nil }
            let nameBytes = info[(offset + 20 + handleBytes)..<(offset + length)].prefix { $0 != 0 }
            guard !nameBytes.isEmpty else { return nil }
            let name = String(decoding: nameBytes, as: UTF8.self)
            let key = Array(info[(offset + 4)..<(offset + 20 + handleBytes)])
            let now = ContinuousClock.now
            let directory: String
            if let cached = handlePaths[key], cached.expires > now {
                directory = cached.path
            } else {
                guard let path = openHandle(key) else { return nil }
                if handlePaths.count >= Self.handleCacheCapacity { handlePaths.removeAll(keepingCapacity: true) }
                handlePaths[key] = (path, now + Self.handleCacheLifetime)
                directory = path
            }
            return directory == "/" ? "/" + name : directory + "/" + name
        }
        return nil
    }

    /// `open_by_handle_at` on the marked filesystem, then the descriptor's path.
    private func openHandle(_ key: [UInt8]) -> String? {
        let fsid = key.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        guard let mountFD = mountFDs[fsid] ?? (mountFDs.count == 1 ? mountFDs.first?.value : nil) else { return nil }
        // struct file_handle, 8-aligned: skip the 8-byte fsid of the key.
        let handle = UnsafeMutableRawBufferPointer.allocate(byteCount: key.count - 8, alignment: 8)
        defer { handle.deallocate() }
        key[8...].withUnsafeBytes { handle.copyMemory(from: $0) }
        // Any failure (ESTALE: the file is gone) leaves the event unnamed; a handle from the
        // kernel is input, never a reason to trap.
        var fd: Int32 = -1
        repeat {
            fd = system_open_by_handle_at(mountFD, handle.baseAddress!, Self.pathOnly | O_CLOEXEC)
        } while fd < 0 && errno == EINTR
        guard fd >= 0 else { return nil }
        defer { _ = system_close(fd) }
        return resolve(fd)
    }

    /// `readlink("/proc/self/fd/N")`.
    private func resolve(_ fd: Int32) -> String? {
        let link = "/proc/self/fd/\(fd)"
        let n = link.withCString { system_readlinkat(AT_FDCWD, $0, pathBuffer, Self.pathBufferSize) }
        guard n > 0, n < Self.pathBufferSize else { return nil }
        return UnsafeRawBufferPointer(start: pathBuffer, count: n).withMemoryRebound(to: UInt8.self) {
            String(decoding: $0, as: UTF8.self)
        }
    }
}

@available(*, unavailable)
extension Fanotify: Sendable {}
