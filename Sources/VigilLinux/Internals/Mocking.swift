#if DEBUG
import SystemPackage
import Synchronization

/// Debug-only test hook: scripted failures for the raw calls of this module.
///
/// A script is bound to the current task with `SyscallMocking.$script.withValue(...)`, so it
/// affects only calls made synchronously from that task; threads started by sensors never see
/// it. Release builds compile none of this.
package final class SyscallFailureScript: Sendable {
    private let failures: Mutex<[String: [Errno]]>

    /// - Parameter failures: for each raw call name (`"inotify_add_watch"`, `"read"`, ...), the
    ///   errors to return, in order, before the real call runs again.
    package init(_ failures: [String: [Errno]]) {
        self.failures = Mutex(failures)
    }

    /// The next scripted error for `name`, consuming it.
    func next(_ name: String) -> Errno? {
        failures.withLock { table in
            guard var list = table[name], !list.isEmpty else { return nil }
            let first = list.removeFirst()
            table[name] = list
            return first
        }
    }

    /// How many scripted errors are left for `name`.
    package func remaining(_ name: String) -> Int {
        failures.withLock { $0[name]?.count ?? 0 }
    }
}

package enum SyscallMocking {
    @TaskLocal package static var script: SyscallFailureScript?
}

/// Sets `errno` and returns true when the current task's script fails this call.
@inline(__always)
func injectedFailure(_ name: String) -> Bool {
    guard let script = SyscallMocking.script, let err = script.next(name) else { return false }
    setErrno(err.rawValue)
    return true
}
#endif
