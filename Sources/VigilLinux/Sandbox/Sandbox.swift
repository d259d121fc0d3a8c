import Glibc
import SystemPackage

/// The agent's self-sandbox, installed once start-up has opened every privileged handle.
///
/// In order: capabilities limited to `keepCapabilities` (effective, permitted, bounding;
/// inheritable and ambient emptied), `no_new_privs`, Landlock write confinement to
/// `writableDirectories` (when the kernel has Landlock and `confineWrites` is set), then the seccomp allowlist
/// (`SyscallAllowlist`) on every thread. Capabilities and Landlock bind the calling thread and
/// the threads it creates afterwards, so `apply` belongs where the process has one thread; the
/// seccomp filter is synchronised to all threads regardless.
public struct Sandbox: Sendable {
    public struct Configuration: Hashable, Sendable {
        public var enabled: Bool
        public var defaultAction: SeccompFilter.DefaultAction
        /// Kept after start-up: reading every user's files and /proc entries.
        public var keepCapabilities: CapabilitySet
        /// Where writes stay allowed (the state directory).
        public var writableDirectories: [String]
        /// Confine writes with Landlock. A Landlock domain also forbids ptrace-mode access to
        /// processes outside it, which includes reading other processes' `/proc/PID/exe`, `cwd`
        /// and `fd`: a process sensor needs this off.
        public var confineWrites: Bool = true
        /// Sockets bound and listening before the sandbox that an event loop adopts afterwards
        /// (the agent's metrics endpoint): `listen` is allowed on these descriptors only.
        public var listeningSockets: [Int32] = []

        public init(
            enabled: Bool = true,
            defaultAction: SeccompFilter.DefaultAction = .eperm,
            keepCapabilities: CapabilitySet = [.dacReadSearch, .sysPtrace],
            writableDirectories: [String] = []
        ) {
            self.enabled = enabled
            self.defaultAction = defaultAction
            self.keepCapabilities = keepCapabilities
            self.writableDirectories = writableDirectories
        }
    }

    /// What `apply` did.
    public struct Report: Hashable, Sendable {
        public var threads: Int
        public var capabilities: Capabilities.Sets
        public var bounding: CapabilitySet
        public var landlockABI: Int?
        public var seccomp: SeccompFilter.Report
        public var defaultAction: SeccompFilter.DefaultAction
    }

    /// Installs the sandbox. Throws if any step fails (the caller decides whether to run on).
    public static func apply(_ configuration: Configuration) throws(SandboxError) -> Report {
        let threads = threadCount
        let bounding = try Capabilities.limit(to: configuration.keepCapabilities)
        let sets = try Capabilities.current()
        try Capabilities.setNoNewPrivileges()
        var landlock: Int? = nil
        if configuration.confineWrites, Landlock.abiVersion != nil {
            landlock = try Landlock.restrictWrites(to: configuration.writableDirectories)
        }
        let seccomp = try SeccompFilter.install(
            defaultAction: configuration.defaultAction,
            listeningSockets: configuration.listeningSockets
        )
        return Report(
            threads: threads,
            capabilities: sets,
            bounding: bounding,
            landlockABI: landlock,
            seccomp: seccomp,
            defaultAction: configuration.defaultAction
        )
    }

    /// Threads in this process (entries of `/proc/self/task`), 0 if unreadable.
    public static var threadCount: Int {
        guard let dir = opendir("/proc/self/task") else { return 0 }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            if entry.pointee.d_name.0 != UInt8(ascii: ".") { count += 1 }
        }
        return count
    }
}
