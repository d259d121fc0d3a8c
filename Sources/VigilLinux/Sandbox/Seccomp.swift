internal import CSeccomp
import Glibc
import SystemPackage

/// A seccomp allowlist built with libseccomp and loaded into the kernel.
public enum SeccompFilter {
    /// What happens on a system call that is not allowed.
    public enum DefaultAction: String, Hashable, Sendable, CaseIterable {
        /// The call fails with `EPERM`; the agent handles the error and runs on.
        case eperm
        /// The whole process is killed (`SIGSYS`): for debugging the allowlist.
        case kill
    }

    /// What was loaded.
    public struct Report: Hashable, Sendable {
        /// Allowed names resolved on this architecture.
        public var allowed: Int
        /// Names that do not exist here (e.g. `open` on arm64), skipped.
        public var unknown: [String]
    }

    /// Installs `SyscallAllowlist` on every thread of the process (`SECCOMP_FILTER_FLAG_TSYNC`),
    /// which also sets `no_new_privs` on them. Filters only ever narrow: nothing can lift it.
    /// `listen` is allowed on `listeningSockets` only (sockets already listening, which an event
    /// loop adopts and listens on again).
    ///
    /// The corresponding C functions are `seccomp_init`, `seccomp_rule_add_array`,
    /// `seccomp_attr_set(SCMP_FLTATR_CTL_TSYNC)` and `seccomp_load`.
    public static func install(
        defaultAction: DefaultAction,
        listeningSockets: [Int32] = []
    ) throws(SandboxError) -> Report {
        let action: UInt32 =
            defaultAction == .kill ? vigil_scmp_act_kill_process() : vigil_scmp_act_errno(UInt16(EPERM))
        guard let ctx = seccomp_init(action) else {
            throw SandboxError(code: .seccomp, message: "seccomp_init failed")
        }
        defer { seccomp_release(ctx) }
        func check(_ rc: Int32, _ what: String) throws(SandboxError) {
            guard rc == 0 else { throw SandboxError(code: .seccomp, message: what, errno: Errno(rawValue: -rc)) }
        }
        try check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1), "cannot ask for thread synchronisation")
        var report = Report(allowed: 0, unknown: [])
        func number(_ name: String) -> Int32? {
            let nr = seccomp_syscall_resolve_name(name)
            if nr == __NR_SCMP_ERROR {
                report.unknown.append(name)
                return nil
            }
            return nr
        }
        let allow = vigil_scmp_act_allow()
        for name in SyscallAllowlist.unconditional {
            guard let nr = number(name) else { continue }
            try check(seccomp_rule_add_array(ctx, allow, nr, 0, nil), "cannot allow \(name)")
            report.allowed += 1
        }
        func rule(_ name: String, _ action: UInt32, _ comparison: scmp_arg_cmp) throws(SandboxError) {
            guard let nr = number(name) else { return }
            var cmp = comparison
            try check(seccomp_rule_add_array(ctx, action, nr, 1, &cmp), "cannot add the rule for \(name)")
            report.allowed += 1
        }
        for family in SyscallAllowlist.socketFamilies {
            try rule("socket", allow, scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: UInt64(family), datum_b: 0))
        }
        for fd in listeningSockets where fd >= 0 {
            try rule("listen", allow, scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: UInt64(fd), datum_b: 0))
        }
        try rule("socketpair", allow, scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: 1, datum_b: 0))
        try rule(
            "clone",
            allow,
            scmp_arg_cmp(
                arg: 0,
                op: SCMP_CMP_MASKED_EQ,
                datum_a: SyscallAllowlist.cloneFlagsMask,
                datum_b: SyscallAllowlist.cloneFlagsRequired
            )
        )
        for denied in SyscallAllowlist.deniedIoctls {
            try rule("ioctl", allow, scmp_arg_cmp(arg: 1, op: SCMP_CMP_NE, datum_a: denied, datum_b: 0))
        }
        // Signals to this process's own threads only (abort, pthread_kill); `kill` is not allowed.
        try rule("tgkill", allow, scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: UInt64(getpid()), datum_b: 0))
        for name in SyscallAllowlist.enosys {
            guard let nr = number(name) else { continue }
            try check(
                seccomp_rule_add_array(ctx, vigil_scmp_act_errno(UInt16(ENOSYS)), nr, 0, nil),
                "cannot add the rule for \(name)"
            )
        }
        try check(seccomp_load(ctx), "seccomp_load failed")
        return report
    }
}
