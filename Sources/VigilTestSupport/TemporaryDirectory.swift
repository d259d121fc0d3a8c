import Glibc
import Synchronization
import SystemPackage

/// A fresh, uniquely named directory under `/tmp` for one test, removed with everything in
/// it when `remove()` is called or the object is released.
public final class TemporaryDirectory: Sendable {
    /// Absolute path of the directory (no trailing slash).
    public let path: String
    private let removed = Atomic<Bool>(false)

    /// Creates `/tmp/<prefix>.XXXXXX` (mode 0700) with `mkdtemp(3)`.
    public init(prefix: String = "vigil-test") throws(Errno) {
        var template = Array("/tmp/\(prefix).XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            mkdtemp(buffer.baseAddress!) != nil
        }
        guard created else { throw Errno(rawValue: errno) }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        remove()
    }

    /// The directory as a `FilePath`.
    public var filePath: FilePath { FilePath(path) }

    /// `path/relative`.
    public func appending(_ relative: String) -> String {
        relative.hasPrefix("/") ? path + relative : path + "/" + relative
    }

    /// Removes the directory and its content (symbolic links are removed, not followed).
    /// Idempotent; errors are ignored (the test is what matters).
    public func remove() {
        guard !removed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        Self.removeTree(path)
    }

    /// Removes `path` recursively without following symbolic links, like `rm -rf`.
    public static func removeTree(_ path: String) {
        var status = stat()
        guard lstat(path, &status) == 0 else { return }
        if status.st_mode & S_IFMT == S_IFDIR {
            // Make sure we can list and unlink inside even if a test chmod-ed it.
            _ = chmod(path, 0o700)
            if let dir = opendir(path) {
                var names: [String] = []
                while let entry = readdir(dir) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                        let used = raw.firstIndex(of: 0) ?? raw.count
                        return String(decoding: UnsafeRawBufferPointer(rebasing: raw[0..<used]), as: UTF8.self)
                    }
                    if name != "." && name != ".." { names.append(name) }
                }
                closedir(dir)
                for name in names { removeTree(path + "/" + name) }
            }
            _ = rmdir(path)
        } else {
            _ = unlink(path)
        }
    }
}
