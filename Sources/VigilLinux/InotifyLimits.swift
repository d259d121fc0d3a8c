import Glibc
import SystemPackage

/// The kernel's inotify limits (`/proc/sys/fs/inotify/`), as documented in `inotify(7)`.
public enum InotifyLimits {
    /// `fs.inotify.max_user_watches`: watches per user, over all instances.
    public static var maxUserWatches: Int? { read("max_user_watches") }
    /// `fs.inotify.max_queued_events`: queue length of an instance, fixed when it is created.
    public static var maxQueuedEvents: Int? { read("max_queued_events") }
    /// `fs.inotify.max_user_instances`: instances per user.
    public static var maxUserInstances: Int? { read("max_user_instances") }

    private static func read(_ name: String) -> Int? {
        guard let text = try? ProcFile.read("/proc/sys/fs/inotify/" + name) else { return nil }
        return Int(text.trimmingWhitespace())
    }
}

/// Reading small text files under `/proc` and `/sys`.
public enum ProcFile {
    /// The whole content (at most `limit` bytes) of a small pseudo-file.
    public static func read(_ path: String, limit: Int = 1 << 20) throws(Errno) -> String {
        let fd = try path.withCString { cPath in
            valueOrErrno(retryOnInterrupt: true) { system_open(cPath, O_RDONLY | O_CLOEXEC) }
        }.get()
        defer { _ = system_close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let n = try chunk.withUnsafeMutableBytes { raw in
                valueOrErrno(retryOnInterrupt: true) { system_read(fd, raw.baseAddress, raw.count) }
            }.get()
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<min(n, chunk.count)])
        }
        return String(decoding: bytes.prefix(limit), as: UTF8.self)
    }
}

extension String {
    func trimmingWhitespace() -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = lastIndex(where: { !isSpace($0) })!
        return self[first...last]
    }
}
