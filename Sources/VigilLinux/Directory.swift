import Glibc
import SystemPackage

/// Listing a directory with `opendir(3)`/`readdir(3)`.
public enum Directory {
    /// One entry of a directory (never `.` or `..`).
    public struct Entry: Hashable, Sendable {
        public enum Kind: Hashable, Sendable {
            case directory, regular, symbolicLink, other
            /// The file system did not say (`DT_UNKNOWN`); `lstat` the entry to know.
            case unknown
        }

        public var name: String
        public var kind: Kind

        public init(name: String, kind: Kind) {
            self.name = name
            self.kind = kind
        }
    }

    /// The entries of the directory at `path`, in the order the file system returns them.
    ///
    /// The corresponding C functions are `opendir` and `readdir`. Symbolic links are not
    /// followed except for `path` itself.
    public static func entries(of path: String) throws(Errno) -> [Entry] {
        let opened: Result<OpaquePointer, Errno> = path.withCString { cPath in
            while true {
                if let dir = system_opendir(cPath) { return .success(dir) }
                let err = Errno(rawValue: errno)
                if err == .interrupted { continue }
                return .failure(err)
            }
        }
        let dir = try opened.get()
        defer { closedir(dir) }
        var entries: [Entry] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                let err = errno
                if err != 0 { throw Errno(rawValue: err) }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                let used = raw.firstIndex(of: 0) ?? raw.count
                return String(decoding: UnsafeRawBufferPointer(rebasing: raw[0..<used]), as: UTF8.self)
            }
            if name.isEmpty || name == "." || name == ".." { continue }
            let kind: Entry.Kind =
                switch Int32(entry.pointee.d_type) {
                case Int32(DT_DIR): .directory
                case Int32(DT_REG): .regular
                case Int32(DT_LNK): .symbolicLink
                case Int32(DT_UNKNOWN): .unknown
                default: .other
                }
            entries.append(Entry(name: name, kind: kind))
        }
        return entries
    }
}
