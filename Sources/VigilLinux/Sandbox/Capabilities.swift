internal import CSeccomp
import Glibc
import SystemPackage

/// A set of Linux capabilities (`capabilities(7)`), as the kernel's 64-bit masks.
public struct CapabilitySet: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(number: Int) { self.rawValue = number < 64 ? 1 << UInt64(number) : 0 }

    public static let chown = CapabilitySet(number: 0)
    public static let dacOverride = CapabilitySet(number: 1)
    /// Read any file and search any directory: watching and hashing files of every user.
    public static let dacReadSearch = CapabilitySet(number: 2)
    public static let fowner = CapabilitySet(number: 3)
    public static let kill = CapabilitySet(number: 5)
    public static let setuid = CapabilitySet(number: 7)
    public static let setpcap = CapabilitySet(number: 8)
    public static let netAdmin = CapabilitySet(number: 12)
    public static let netRaw = CapabilitySet(number: 13)
    public static let sysModule = CapabilitySet(number: 16)
    /// Read `/proc/PID/exe`, `cwd`, `environ`… of processes of other users.
    public static let sysPtrace = CapabilitySet(number: 19)
    public static let sysAdmin = CapabilitySet(number: 21)

    static let names: [Int: String] = [
        0: "chown", 1: "dac_override", 2: "dac_read_search", 3: "fowner", 4: "fsetid", 5: "kill", 6: "setgid",
        7: "setuid", 8: "setpcap", 9: "linux_immutable", 10: "net_bind_service", 11: "net_broadcast",
        12: "net_admin", 13: "net_raw", 14: "ipc_lock", 15: "ipc_owner", 16: "sys_module", 17: "sys_rawio",
        18: "sys_chroot", 19: "sys_ptrace", 20: "sys_pacct", 21: "sys_admin", 22: "sys_boot", 23: "sys_nice",
        24: "sys_resource", 25: "sys_time", 26: "sys_tty_config", 27: "mknod", 28: "lease", 29: "audit_write",
        30: "audit_control", 31: "setfcap", 32: "mac_override", 33: "mac_admin", 34: "syslog",
        35: "wake_alarm", 36: "block_suspend", 37: "audit_read", 38: "perfmon", 39: "bpf",
        40: "checkpoint_restore",
    ]

    /// Names as in `capabilities(7)` without `CAP_`, lower case.
    public var description: String {
        let names = (0..<64).filter { rawValue & (1 << UInt64($0)) != 0 }.map { Self.names[$0] ?? "cap_\($0)" }
        return "[" + names.joined(separator: ",") + "]"
    }
}

/// The calling thread's capability sets, and dropping them.
///
/// Capabilities are per thread: threads created afterwards inherit the caller's sets, threads
/// that already exist keep theirs. Drop them while the process has one thread.
public enum Capabilities {
    public struct Sets: Hashable, Sendable {
        public var effective: CapabilitySet
        public var permitted: CapabilitySet
        public var inheritable: CapabilitySet
    }

    /// The corresponding C function is `capget` (version 3).
    public static func current() throws(SandboxError) -> Sets {
        var e: UInt64 = 0
        var p: UInt64 = 0
        var i: UInt64 = 0
        guard vigil_capget(&e, &p, &i) == 0 else {
            throw SandboxError(code: .capabilities, message: "capget failed", errno: Errno(rawValue: errno))
        }
        return Sets(
            effective: CapabilitySet(rawValue: e),
            permitted: CapabilitySet(rawValue: p),
            inheritable: CapabilitySet(rawValue: i)
        )
    }

    /// The highest capability number the kernel knows (`/proc/sys/kernel/cap_last_cap`).
    public static var lastCapability: Int {
        var last = 0
        // PR_CAPBSET_READ (23) fails with EINVAL past the last one.
        while last < 63, vigil_prctl(23, UInt(last + 1), 0, 0, 0) >= 0 { last += 1 }
        return last
    }

    /// Keeps only `keep` (intersected with what the thread has): clears the ambient set, drops
    /// the rest from the bounding set (when `CAP_SETPCAP` allows), then sets effective and
    /// permitted to the kept ones and inheritable to none. Returns the bounding set left.
    ///
    /// The corresponding C functions are `prctl(PR_CAP_AMBIENT)`, `prctl(PR_CAPBSET_DROP)` and
    /// `capset`.
    @discardableResult
    public static func limit(to keep: CapabilitySet) throws(SandboxError) -> CapabilitySet {
        let before = try current()
        // PR_CAP_AMBIENT (47), PR_CAP_AMBIENT_CLEAR_ALL (4); EINVAL on kernels without ambient sets.
        if vigil_prctl(47, 4, 0, 0, 0) != 0, errno != EINVAL {
            throw SandboxError(
                code: .capabilities,
                message: "cannot clear the ambient set",
                errno: Errno(rawValue: errno)
            )
        }
        var bounding = CapabilitySet()
        let canDrop = before.effective.contains(.setpcap)
        for number in 0...lastCapability {
            let cap = CapabilitySet(number: number)
            if keep.contains(cap) || !canDrop {
                if vigil_prctl(23, UInt(number), 0, 0, 0) == 1 { bounding.insert(cap) }
                continue
            }
            // PR_CAPBSET_DROP (24)
            if vigil_prctl(24, UInt(number), 0, 0, 0) != 0 {
                throw SandboxError(
                    code: .capabilities,
                    message: "cannot drop capability \(number) from the bounding set",
                    errno: Errno(rawValue: errno)
                )
            }
        }
        let kept = before.permitted.intersection(keep)
        guard vigil_capset(kept.rawValue, kept.rawValue, 0) == 0 else {
            throw SandboxError(code: .capabilities, message: "capset \(kept) failed", errno: Errno(rawValue: errno))
        }
        return bounding
    }

    /// Sets `no_new_privs`: no execve can grant privileges again (setuid bits, file
    /// capabilities). Inherited by threads and children; cannot be unset.
    ///
    /// The corresponding C function is `prctl(PR_SET_NO_NEW_PRIVS)`.
    public static func setNoNewPrivileges() throws(SandboxError) {
        // PR_SET_NO_NEW_PRIVS (38)
        guard vigil_prctl(38, 1, 0, 0, 0) == 0 else {
            throw SandboxError(
                code: .noNewPrivileges,
                message: "prctl(PR_SET_NO_NEW_PRIVS) failed",
                errno: Errno(rawValue: errno)
            )
        }
    }
}
