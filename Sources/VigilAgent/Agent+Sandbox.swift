import Foundation
import Logging
import VigilCore
import VigilLinux

/// The agent's self-sandbox: what vigild installs between `Agent.prepare` and `Agent.run`.
public enum AgentSandbox {
    /// Installs the sandbox configured in `configuration.sandbox` and returns the health events
    /// that describe it (sent with the agent's first events). A sandbox that cannot be installed
    /// is reported, not fatal: the agent keeps watching (never disrupt the host), and says so.
    ///
    /// - Parameter processSensor: a process sensor or flow attribution is running
    ///   (`Agent.Prepared.readsOtherProcesses`). Writes are then not confined with Landlock: a
    ///   Landlock domain cannot read `/proc/PID/exe`, `cwd` and `fd` of processes outside it,
    ///   which is what the process sensor and flow attribution read.
    /// - Parameter listeningSockets: sockets already listening that an event loop adopts later
    ///   (`Agent.Prepared.listeningSockets`): `listen` stays allowed on them only.
    public static func apply(
        configuration: AgentConfiguration,
        processSensor: Bool = false,
        listeningSockets: [Int32] = [],
        logger: Logger
    ) -> [Event] {
        guard configuration.sandbox.enabled else {
            logger.notice("sandbox disabled in the configuration")
            return [
                Event(
                    payload: .health(
                        AgentHealth(
                            kind: "sandbox_disabled",
                            message: "sandbox disabled by configuration (sandbox.enabled: false)"
                        )
                    )
                )
            ]
        }
        var sandbox = Sandbox.Configuration(
            enabled: true,
            defaultAction: SeccompFilter.DefaultAction(rawValue: configuration.sandbox.defaultAction) ?? .eperm,
            writableDirectories: [configuration.stateDirectory]
        )
        sandbox.confineWrites = !processSensor
        sandbox.listeningSockets = listeningSockets
        do {
            let report = try Sandbox.apply(sandbox)
            logger.info(
                "sandbox installed",
                metadata: [
                    "capabilities": "\(report.capabilities.effective)",
                    "landlock_abi": "\(report.landlockABI.map(String.init) ?? "none")",
                    "syscalls": "\(report.seccomp.allowed)", "default_action": "\(report.defaultAction)",
                    "threads": "\(report.threads)",
                ]
            )
            var counters: [String: UInt64] = [
                "cap_effective": report.capabilities.effective.rawValue,
                "cap_bounding": report.bounding.rawValue,
                "syscalls_allowed": UInt64(report.seccomp.allowed),
                "threads_at_install": UInt64(report.threads),
                "landlock_abi": UInt64(report.landlockABI ?? 0),
            ]
            counters["kill_on_violation"] = report.defaultAction == .kill ? 1 : 0
            var message = "sandbox installed: capabilities \(report.capabilities.effective), no_new_privs, "
            if let abi = report.landlockABI {
                message += "writes confined to the state directory (Landlock ABI \(abi)), "
            } else if processSensor {
                message +=
                    "writes not confined (Landlock would hide other processes' /proc entries from the process sensor "
                    + "and flow attribution), "
            } else {
                message += "no Landlock in this kernel: writes not confined, "
            }
            message += "seccomp allowlist of \(report.seccomp.allowed) rules, default \(report.defaultAction)"
            if report.threads > 1 {
                message +=
                    "; \(report.threads) threads existed at install: only the installing thread's capabilities were reduced"
            }
            return [Event(payload: .health(AgentHealth(kind: "sandbox", message: message, counters: counters)))]
        } catch {
            logger.error("sandbox could not be installed; running without it", metadata: ["error": "\(error)"])
            return [Event(payload: .health(AgentHealth(kind: "sandbox_failed", message: "\(error)")))]
        }
    }
}

extension Agent.Prepared {
    /// Whether a sensor reads other processes' `/proc/PID/exe`, `cwd` or `fd` (the process
    /// sensor; flow attribution): the sandbox must then leave Landlock off.
    public var readsOtherProcesses: Bool {
        processSensor != nil || flowSensor?.configuration.attribution != nil
    }
}

#if DEBUG
extension Agent {
    /// Test hook (debug builds only): with `VIGIL_TEST_SANDBOX_PROBE=DIR` in the environment, the
    /// running agent attempts what its sandbox must refuse (see `SandboxProbe`) a moment after
    /// start-up and ships the errno of each attempt as a `sandbox_probe` health event.
    func sandboxProbeForTesting(prepared: Prepared, logger: Logger) async {
        let environment = ProcessInfo.processInfo.environment
        guard let outside = environment["VIGIL_TEST_SANDBOX_PROBE"] else { return }
        try? await Task.sleep(for: .seconds(1))
        let results = SandboxProbe.run(
            outsideDirectory: outside,
            stateDirectory: configuration.stateDirectory,
            ptraceTarget: environment["VIGIL_TEST_PTRACE_TARGET"].flatMap { Int32($0) }
        )
        logger.notice("sandbox probe", metadata: ["results": "\(results)"])
        pending.withLock {
            $0.events.append(
                Event(
                    payload: .health(
                        AgentHealth(kind: "sandbox_probe", message: "errno of each refused attempt", counters: results)
                    )
                )
            )
        }
    }
}
#endif
