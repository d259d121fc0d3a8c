import Crypto
import Glibc
import SystemPackage
import VigilCore
import VigilLinux

/// SHA-256 of regular files, read without following links, without blocking on odd files,
/// and without touching the access time when the kernel allows it.
final class FileHasher {
    enum Outcome: Equatable {
        case digest(String)
        /// A `FileEvent.hashSkipped` reason.
        case skipped(String)
    }

    // O_NOATIME is not exported by Swift's Glibc module; 01000000 on x86_64 and arm64.
    private static let noAccessTime = FileDescriptor.OpenOptions(rawValue: 0o1_000_000)

    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)

    deinit {
        buffer.deallocate()
    }

    /// Hashes `path` if it is still the regular file `inode` and at most `maxBytes` long.
    func hash(path: String, inode: UInt64, maxBytes: Int64) -> Outcome {
        let fd: FileDescriptor
        switch open(path) {
        case .success(let opened): fd = opened
        case .failure(let err): return .skipped(Self.reason(forOpenError: err))
        }
        defer { try? fd.close() }
        guard let metadata = try? FileStatus.fstat(fd) else { return .skipped("unreadable") }
        guard metadata.isRegularFile else { return .skipped("not_regular") }
        guard metadata.inode == inode else { return .skipped("gone") }
        guard metadata.size <= UInt64(maxBytes) else { return .skipped("too_large") }
        var hasher = SHA256()
        var total: Int64 = 0
        while true {
            let count: Int
            do {
                count = try fd.read(into: buffer)
            } catch {
                return .skipped("unreadable")
            }
            if count <= 0 { break }
            total += Int64(count)
            // The file grew past the limit while being read.
            if total > maxBytes { return .skipped("too_large") }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        return .digest(Hex.encode(hasher.finalize()))
    }

    private func open(_ path: String) -> Result<FileDescriptor, Errno> {
        let options: FileDescriptor.OpenOptions = [.noFollow, .nonBlocking, .closeOnExec]
        switch Self.open(path, options: options.union(Self.noAccessTime)) {
        case .failure(let err) where err == .notPermitted:
            // O_NOATIME needs ownership of the file or CAP_FOWNER.
            return Self.open(path, options: options)
        case let other:
            return other
        }
    }

    private static func open(_ path: String, options: FileDescriptor.OpenOptions) -> Result<FileDescriptor, Errno> {
        do {
            return .success(try FileDescriptor.open(FilePath(path), .readOnly, options: options))
        } catch {
            return .failure((error as? Errno) ?? .ioError)
        }
    }

    private static func reason(forOpenError err: Errno) -> String {
        switch err {
        case .noSuchFileOrDirectory, .notDirectory: "gone"
        case .tooManySymbolicLinkLevels: "not_regular"  // replaced by a symbolic link
        default: "unreadable"
        }
    }
}

@available(*, unavailable)
extension FileHasher: Sendable {}
