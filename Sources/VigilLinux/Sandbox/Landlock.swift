internal import CSeccomp
import Glibc
import SystemPackage

/// Filesystem write confinement with Landlock (Linux 5.13+): once applied, the calling thread
/// (and threads it creates afterwards) may create, write, truncate, rename or remove files only
/// beneath the given directories, and execute nothing. Reading stays allowed everywhere. It
/// binds even a root process that owns the files, which capabilities alone cannot do.
public enum Landlock {
    // LANDLOCK_ACCESS_FS_* bits.
    static let execute: UInt64 = 1 << 0
    static let writeFile: UInt64 = 1 << 1
    static let removeDir: UInt64 = 1 << 4
    static let removeFile: UInt64 = 1 << 5
    static let makeChar: UInt64 = 1 << 6
    static let makeDir: UInt64 = 1 << 7
    static let makeReg: UInt64 = 1 << 8
    static let makeSock: UInt64 = 1 << 9
    static let makeFifo: UInt64 = 1 << 10
    static let makeBlock: UInt64 = 1 << 11
    static let makeSym: UInt64 = 1 << 12
    static let refer: UInt64 = 1 << 13  // ABI 2
    static let truncate: UInt64 = 1 << 14  // ABI 3

    /// The Landlock ABI version, or nil when the kernel lacks or disables it.
    public static var abiVersion: Int? {
        let v = vigil_landlock_abi()
        return v > 0 ? Int(v) : nil
    }

    /// Restricts writes to `directories` (each must exist). Returns the ABI version used.
    ///
    /// The corresponding C functions are `landlock_create_ruleset`, `landlock_add_rule` and
    /// `landlock_restrict_self` (which needs `no_new_privs` or `CAP_SYS_ADMIN`).
    @discardableResult
    public static func restrictWrites(to directories: [String]) throws(SandboxError) -> Int {
        guard let abi = abiVersion else {
            throw SandboxError(
                code: .landlock,
                message: "Landlock is not available in this kernel",
                errno: Errno(rawValue: errno)
            )
        }
        var handled =
            execute | writeFile | removeDir | removeFile | makeChar | makeDir | makeReg | makeSock | makeFifo
            | makeBlock | makeSym
        if abi >= 2 { handled |= refer }
        if abi >= 3 { handled |= truncate }
        let ruleset = vigil_landlock_create_ruleset(handled)
        guard ruleset >= 0 else {
            throw SandboxError(
                code: .landlock,
                message: "landlock_create_ruleset failed",
                errno: Errno(rawValue: errno)
            )
        }
        defer { close(ruleset) }
        let allowed = handled & ~execute
        let oPath: Int32 = 0o10_000_000  // O_PATH
        for directory in directories {
            let fd = open(directory, oPath | O_CLOEXEC | O_DIRECTORY)
            guard fd >= 0 else {
                throw SandboxError(code: .landlock, message: "cannot open \(directory)", errno: Errno(rawValue: errno))
            }
            defer { close(fd) }
            guard vigil_landlock_add_path_rule(ruleset, fd, allowed) == 0 else {
                throw SandboxError(
                    code: .landlock,
                    message: "cannot allow writes beneath \(directory)",
                    errno: Errno(rawValue: errno)
                )
            }
        }
        guard vigil_landlock_restrict_self(ruleset) == 0 else {
            throw SandboxError(code: .landlock, message: "landlock_restrict_self failed", errno: Errno(rawValue: errno))
        }
        return abi
    }
}
