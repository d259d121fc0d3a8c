import Glibc
import SystemPackage
import VigilCore

/// `stat(2)` family, reduced to the fields of `FileMetadata`.
public enum FileStatus {
    /// Metadata of the link itself when `path` is a symbolic link.
    /// The corresponding C function is `lstat`.
    public static func lstat(_ path: String, retryOnInterrupt: Bool = true) throws(Errno) -> FileMetadata {
        var buffer = Glibc.stat()
        try path.withCString { cPath in
            nothingOrErrno(retryOnInterrupt: retryOnInterrupt) { system_lstat(cPath, &buffer) }
        }.get()
        return FileMetadata(buffer)
    }

    /// Metadata of the file `path` resolves to. The corresponding C function is `stat`.
    public static func stat(_ path: String, retryOnInterrupt: Bool = true) throws(Errno) -> FileMetadata {
        var buffer = Glibc.stat()
        try path.withCString { cPath in
            nothingOrErrno(retryOnInterrupt: retryOnInterrupt) { system_stat(cPath, &buffer) }
        }.get()
        return FileMetadata(buffer)
    }

    /// Metadata of an open file. The corresponding C function is `fstat`.
    public static func fstat(_ fd: FileDescriptor, retryOnInterrupt: Bool = true) throws(Errno) -> FileMetadata {
        var buffer = Glibc.stat()
        try nothingOrErrno(retryOnInterrupt: retryOnInterrupt) { system_fstat(fd.rawValue, &buffer) }.get()
        return FileMetadata(buffer)
    }
}

extension FileMetadata {
    init(_ s: Glibc.stat) {
        self.init(
            mode: UInt32(s.st_mode),
            uid: UInt32(s.st_uid),
            gid: UInt32(s.st_gid),
            size: UInt64(max(0, s.st_size)),
            inode: UInt64(s.st_ino)
        )
    }

    /// `S_IFMT` bits of `mode`.
    public var fileTypeBits: UInt32 { mode & UInt32(S_IFMT) }
    public var isRegularFile: Bool { fileTypeBits == UInt32(S_IFREG) }
    public var isDirectory: Bool { fileTypeBits == UInt32(S_IFDIR) }
    public var isSymbolicLink: Bool { fileTypeBits == UInt32(S_IFLNK) }
}
