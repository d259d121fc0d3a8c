import Glibc
import SystemPackage

/// The scheduling priority of threads: for a reader that must run the moment its descriptor
/// wakes it, in a process that otherwise runs politely (systemd's `Nice=10`,
/// `CPUSchedulingPolicy=batch`).
public enum ThreadPriority {
    static let resourceNice: Int32 = 13  // RLIMIT_NICE
    static let policyOther: Int32 = 0  // SCHED_OTHER
    static let policyBatch: Int32 = 3  // SCHED_BATCH
    static let policyIdle: Int32 = 5  // SCHED_IDLE

    /// Lets this process's threads lower their nice value down to `nice` later without
    /// `CAP_SYS_NICE`, by raising `RLIMIT_NICE` (to `20 - nice`). Call it while the process still
    /// has `CAP_SYS_RESOURCE` (raising the hard limit needs it); a limit that already allows
    /// `nice` is left as is.
    ///
    /// The corresponding C functions are `getrlimit` and `setrlimit`.
    public static func allow(nice: Int32) throws(Errno) {
        let wanted = rlim_t(max(1, min(40, 20 - nice)))
        var limit = rlimit()
        try nothingOrErrno(retryOnInterrupt: false) {
            getrlimit(__rlimit_resource_t(resourceNice), &limit)
        }.get()
        guard limit.rlim_cur < wanted else { return }
        limit.rlim_cur = wanted
        limit.rlim_max = max(limit.rlim_max, wanted)
        try nothingOrErrno(retryOnInterrupt: false) {
            setrlimit(__rlimit_resource_t(resourceNice), &limit)
        }.get()
    }

    /// Runs the calling thread at `nice` under the normal policy. A thread of a process started
    /// with `SCHED_BATCH` or `SCHED_IDLE` is switched to `SCHED_OTHER` first: a batch thread does
    /// not preempt the running task when it wakes, however high its priority.
    ///
    /// The corresponding C functions are `sched_getscheduler`, `sched_setscheduler` and
    /// `setpriority`, on the calling thread only (on Linux, `who` 0 is the calling thread, not
    /// the whole process). A nice value below the current one needs
    /// `CAP_SYS_NICE` or a high enough `RLIMIT_NICE` (`allow(nice:)`); `EACCES`/`EPERM` otherwise.
    public static func setCurrentThread(nice: Int32) throws(Errno) {
        let policy = sched_getscheduler(0)
        if policy == policyBatch || policy == policyIdle {
            var parameters = sched_param()
            try nothingOrErrno(retryOnInterrupt: false) {
                sched_setscheduler(0, policyOther, &parameters)
            }.get()
        }
        try nothingOrErrno(retryOnInterrupt: false) {
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice)
        }.get()
    }
}
