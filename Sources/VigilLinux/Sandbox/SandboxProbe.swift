#if DEBUG
internal import CSeccomp
import Glibc

/// Test-only (debug builds): attempts, from inside the running agent, what its sandbox must
/// refuse, and reports the errno of each attempt (0: it succeeded).
///
/// Each attempt is chosen so that its result tells the sandbox apart from a plain failure:
/// `execve` of a path that does not exist gives `ENOENT` without seccomp, `EPERM` with it;
/// `ptrace(PTRACE_ATTACH)` of the test's own child succeeds as root without seccomp; the write
/// outside the state directory creates a file without Landlock. `mount` and `init_module` are
/// refused by seccomp and, without it, by the dropped capabilities.
package enum SandboxProbe {
    private static let ptraceAttach = 16  // PTRACE_ATTACH
    private static let ptraceDetach = 17  // PTRACE_DETACH
    private static let afPacket: Int32 = 17  // AF_PACKET

    package static func run(outsideDirectory: String, stateDirectory: String, ptraceTarget: Int32?) -> [String: UInt64]
    {
        var results: [String: UInt64] = [:]
        func record(_ name: String, _ rc: Int) {
            results[name] = rc >= 0 ? 0 : UInt64(errno)
        }
        // execve: never returns on success; the path does not exist.
        let missing = "/nonexistent/vigil-sandbox-probe"
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup(missing), nil]
        defer { free(argv[0]) }
        record("execve", Int(execve(missing, &argv, environ)))
        if let ptraceTarget {
            let rc = vigil_probe_syscall6(Int(SYS_ptrace), ptraceAttach, Int(ptraceTarget), 0, 0, 0, 0)
            results["ptrace"] = rc >= 0 ? 0 : UInt64(-rc)
            if rc >= 0 {
                _ = vigil_probe_syscall6(Int(SYS_ptrace), ptraceDetach, Int(ptraceTarget), 0, 0, 0, 0)
            }
        }
        record("mount", Int(mount("tmpfs", outsideDirectory, "tmpfs", 0, nil)))
        if results["mount"] == 0 { umount(outsideDirectory) }
        let initModule = vigil_probe_syscall6(
            Int(SYS_init_module),
            0,
            0,
            Int(bitPattern: UnsafeRawPointer(("" as StaticString).utf8Start)),
            0,
            0,
            0
        )
        results["init_module"] = initModule >= 0 ? 0 : UInt64(-initModule)
        let outside = open(outsideDirectory + "/written-by-agent", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        record("open_write_outside", Int(outside))
        if outside >= 0 { close(outside) }
        let inside = open(stateDirectory + "/sandbox-probe", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        record("open_write_state_dir", Int(inside))
        if inside >= 0 { close(inside) }
        let socketFD = socket(afPacket, Int32(SOCK_RAW.rawValue), 0)
        record("socket_packet", Int(socketFD))
        if socketFD >= 0 { close(socketFD) }
        return results
    }
}
#endif
