/// The one reviewed list of system calls the agent may make once its sandbox is installed.
///
/// How it was derived: `strace -f -c` on a debug `vigild` through a realistic run
/// (start-up, enrollment and shipping to a collector over HTTP, file churn with hashing, setuid
/// change, renames and deletes, packet capture on `any`, SIGHUP reload, SIGTERM drain), plus
/// the calls the runtime makes on paths a short run may miss (Swift runtime and Foundation,
/// libdispatch workers, SwiftNIO event loops, GRDB/SQLite, async-http-client), plus what the
/// process sensor needs (netlink proc connector, fanotify, `open_by_handle_at`, `readlink`).
/// Everything that happens only at start-up, before the sandbox (creating the state directory
/// and key, opening the spool, opening the capture), is left out. The README's "Self-sandbox"
/// paragraph gives the procedure to re-derive it; with the sandbox on, `strace -f` of the same
/// run shows no `EPERM` (checked on 2026-11-28), and the flood test runs the agent with
/// `default_action: kill`.
///
/// Left out on purpose, so they fail with the default action: `execve`/`execveat`, `fork`
/// (a `clone` without `CLONE_THREAD`), `ptrace`, `process_vm_*`, `mount`/`umount2`/`pivot_root`/
/// `chroot`, `init_module`/`finit_module`/`delete_module`, `kexec_*`, `reboot`, `bpf`,
/// `perf_event_open`, `unshare`/`setns`, `set*id`, `capset`, `chmod`/`chown` families,
/// `mknod`, `link`/`symlink`, `mkdir`, `kill`, `keyctl`, `io_uring_*`, `userfaultfd`,
/// `personality`, `swapon`, `settimeofday`/`clock_settime`, `sethostname`, `acct`, `quotactl`.
public enum SyscallAllowlist {
    /// Allowed with any arguments.
    public static let unconditional: [String] = [
        // Memory (Swift runtime, malloc, thread stacks, the pcap ring already mapped).
        "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "msync", "membarrier",
        // Threads and synchronisation (pthreads, libdispatch, NIO, Swift concurrency).
        "futex", "futex_waitv", "set_robust_list", "get_robust_list", "rseq", "set_tid_address",
        "exit", "exit_group", "gettid", "getpid", "getppid", "sched_yield", "sched_getaffinity",
        "sched_getparam", "sched_getscheduler", "getpriority", "setpriority",  // libdispatch QoS
        "sched_setscheduler",  // the process reader leaves SCHED_BATCH for SCHED_OTHER (ThreadPriority)
        // Signals (ServiceLifecycle's SIGTERM/SIGHUP through libdispatch's signalfd, fatal errors).
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "sigaltstack", "restart_syscall", "signalfd", "signalfd4",
        // Time and randomness.
        "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time",
        "getrandom",
        // Process facts (Foundation's ProcessInfo, rlimits, hostname).
        "prctl", "arch_prctl", "prlimit64", "getrusage", "sysinfo", "uname", "capget",
        "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
        // Files: reading anywhere (watched trees, /proc, policies), writing only where Landlock
        // allows (the state directory: spool, WAL, shm).
        "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "lseek",
        "open", "openat", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "flock",
        "fstat", "newfstatat", "stat", "lstat", "statx", "fstatfs", "statfs",
        "access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents64", "getcwd",
        "fsync", "fdatasync", "ftruncate", "fallocate", "unlink", "unlinkat",
        "rename", "renameat", "renameat2",
        // Readiness and wake-ups (sensor threads' poll, NIO's epoll, eventfd, timerfd).
        "poll", "ppoll", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
        "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "timerfd_create", "timerfd_settime",
        "timerfd_gettime", "pipe", "pipe2",
        // File sensor.
        "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
        // Process sensor: fanotify (notification class), file handles, /proc links.
        "fanotify_init", "fanotify_mark", "open_by_handle_at", "name_to_handle_at",
        // Sockets already opened or opened by the rules below (HTTP to the collector, netlink,
        // the capture socket's filter updates).
        "connect", "bind", "getsockname", "getpeername", "getsockopt", "setsockopt",
        "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
        // The control socket (bound and listening before the sandbox).
        "accept", "accept4",
    ]

    /// Address families `socket(2)` may open: local, TCP/UDP to the collector, netlink (proc
    /// connector, sock_diag, and glibc's interface queries). Not `AF_PACKET`: capture sockets are
    /// opened before the sandbox.
    public static let socketFamilies: [Int32] = [
        1,  // AF_UNIX
        2,  // AF_INET
        10,  // AF_INET6
        16,  // AF_NETLINK
    ]

    /// `clone` is allowed for new threads only: `CLONE_THREAD` set and no namespace flags.
    public static let cloneFlagsMask: UInt64 =
        0x0001_0000  // CLONE_THREAD
        | 0x0002_0000  // CLONE_NEWNS
        | 0x0200_0000  // CLONE_NEWCGROUP
        | 0x0400_0000  // CLONE_NEWUTS
        | 0x0800_0000  // CLONE_NEWIPC
        | 0x1000_0000  // CLONE_NEWUSER
        | 0x2000_0000  // CLONE_NEWPID
        | 0x4000_0000  // CLONE_NEWNET
    public static let cloneFlagsRequired: UInt64 = 0x0001_0000

    /// `clone3` passes its flags in memory, which seccomp cannot read: it fails with `ENOSYS`,
    /// and glibc falls back to `clone`, whose flags the rule above checks.
    public static let enosys: [String] = ["clone3"]

    /// `ioctl` requests refused even though `ioctl` is allowed: `TIOCSTI` pushes input into a
    /// terminal.
    public static let deniedIoctls: [UInt64] = [0x5412]
}
