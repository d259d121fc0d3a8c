import Glibc
import SystemPackage

/// An open `/proc/PID` directory: every read through it concerns that one process, even if it
/// exits and its pid is reused meanwhile (reads then fail instead of showing the newcomer).
///
/// Reads use one scratch buffer owned by the caller (`ProcessDirectory.Scratch`), so reading a
/// process's context allocates only the results. Not thread-safe.
public final class ProcessDirectory {
    /// A reusable read buffer; one per reading thread.
    public final class Scratch {
        let bytes: UnsafeMutableRawBufferPointer

        public init(capacity: Int = 128 * 1024) {
            bytes = .allocate(byteCount: max(4096, capacity), alignment: 8)
        }

        deinit { bytes.deallocate() }
    }

    static let pathOnly: Int32 = 0o10_000_000  // O_PATH (outside Glibc's module: needs _GNU_SOURCE)

    public let pid: UInt32
    private let fd: Int32
    private let scratch: Scratch

    /// Opens `/proc/PID` (`O_PATH | O_DIRECTORY`). The corresponding C function is `openat`.
    /// `ENOENT`: no such process (any more).
    public init(pid: UInt32, scratch: Scratch, procRoot: String = "/proc") throws(Errno) {
        let path = "\(procRoot)/\(pid)"
        fd = try path.withCString { p in
            valueOrErrno(retryOnInterrupt: true) { system_openat(AT_FDCWD, p, Self.pathOnly | O_DIRECTORY | O_CLOEXEC) }
        }.get()
        self.pid = pid
        self.scratch = scratch
    }

    deinit {
        _ = system_close(fd)
    }

    /// Reads the file `name` (e.g. `cmdline`, `stat`) whole, up to `maxBytes` (and the scratch
    /// size); nil when it cannot be opened or read. The corresponding C functions are `openat`,
    /// `read`, `close`.
    public func read(_ name: String, maxBytes: Int = .max) -> [UInt8]? {
        let file = name.withCString { n in
            valueOrErrno(retryOnInterrupt: true) { system_openat(fd, n, O_RDONLY | O_CLOEXEC) }
        }
        guard case .success(let fileFD) = file else { return nil }
        defer { _ = system_close(fileFD) }
        let limit = min(maxBytes, scratch.bytes.count)
        var total = 0
        while total < limit {
            let result = valueOrErrno(retryOnInterrupt: true) {
                system_read(fileFD, scratch.bytes.baseAddress! + total, limit - total)
            }
            guard case .success(let n) = result else { return total > 0 ? Array(scratch.bytes[0..<total]) : nil }
            if n == 0 { break }
            total += n
            // procfs hands a file over in one read when the buffer has room: a short read is
            // the end (saves the read that would return 0).
            if total < limit, name != "cmdline" || n < 4096 { break }
        }
        return Array(scratch.bytes[0..<total])
    }

    /// The owner of the directory: the process's effective uid (root for a process that is
    /// not dumpable); nil when it cannot be read. The corresponding C function is `fstat`.
    public var ownerUid: UInt32? {
        var status = stat()
        guard system_fstat(fd, &status) == 0 else { return nil }
        return status.st_uid
    }

    /// The target of the symbolic link `name` (`exe`, `cwd`, `fd/0`); nil when it cannot be
    /// read (the process is gone or a zombie). The corresponding C function is `readlinkat`.
    public func readLink(_ name: String) -> String? {
        let capacity = min(scratch.bytes.count, 4096)
        let pointer = scratch.bytes.baseAddress!.assumingMemoryBound(to: CChar.self)
        let result = name.withCString { n in
            valueOrErrno(retryOnInterrupt: true) { system_readlinkat(fd, n, pointer, capacity) }
        }
        guard case .success(let n) = result, n > 0, n < capacity else { return nil }
        return String(decoding: UnsafeRawBufferPointer(rebasing: scratch.bytes[0..<n]), as: UTF8.self)
    }
}

@available(*, unavailable)
extension ProcessDirectory: Sendable {}
