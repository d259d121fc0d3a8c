import ArgumentParser
import Foundation
import Logging
import VigilDrills

struct SelftestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Run safe simulated attacks and report, technique by technique, what was detected.",
        discussion: """
            Each drill imitates one MITRE ATT&CK technique (SSH key persistence, cron and systemd
            persistence, setuid, execution from /tmp and /dev/shm, reverse shells, download and
            execute, shadow file reads, history and log deletion, permission changes, hidden files,
            account creation, a port scan, ...), names the rule of Policies/rules/ that must fire,
            and waits for that alert at the collector. Drills are safe by construction: they write
            only in a scratch area they create and remove (/tmp/vigil-drill.TOKEN,
            /dev/shm/vigil-drill.TOKEN, a private mount namespace, a network namespace with a veth
            pair), use copies of files rather than the files, talk only to a loopback server, and
            undo themselves after the alert arrives or the wait ends, also on Ctrl-C or SIGTERM.
            Needs root.

            Without --collector, selftest starts its own agent and collector on loopback (as
            vigild --demo does) with the drill profile: the rules of POLICIES/rules, where the few
            that match fixed system paths (/etc/cron.d/, /etc/sudoers.d/, ...) are replaced by
            their copies in POLICIES/drills/ pointed at the scratch area (see its README.md).

            With --collector URL, it drills the agent installed on this host and waits for the
            alerts at that collector (VIGIL_API_TOKEN authorizes the queries); the drills that need
            the drill profile are reported as skipped.

            Either way the results are then reported to the agent through its control socket
            (--agent-socket, /var/lib/vigil/control.sock by default), which sends them on as a
            `selftest` health event in its signed stream: `vigilctl agents` shows when each agent
            last ran and last passed its drills. A report that cannot be delivered is a warning.

            Exit status: 0 when every drill run was detected, 1 when one was missed or failed.

            Examples:
              vigilctl selftest
              vigilctl selftest --drill T1098.004 --drill port-scan-netns --json
              VIGIL_API_TOKEN=... vigilctl selftest --collector https://collector.example:8443
            """
    )

    @Option(help: ArgumentHelp("Drill the installed agent; wait for alerts at this collector.", valueName: "url"))
    var collector: String?

    @Option(
        help: ArgumentHelp(
            "With --collector: the installed agent's control socket, where the results go (as a selftest health event).",
            valueName: "path"
        )
    )
    var agentSocket = "/var/lib/vigil/control.sock"

    @Option(
        help: ArgumentHelp(
            "Without --collector: the policies directory (with rules/ and drills/; default ./Policies, then /etc/vigil/policies).",
            valueName: "dir"
        )
    )
    var policies: String?

    @Option(
        name: .customLong("drill"),
        help: ArgumentHelp("Run only this drill or technique (repeatable; see --list).", valueName: "id")
    )
    var drills: [String] = []

    @Option(help: ArgumentHelp("Seconds to wait for each drill's alert.", valueName: "seconds"))
    var timeout: Int = 15

    @Flag(help: "Print one JSON object per drill (technique, rule, detected, latency_ms, ...) instead of a table.")
    var json = false

    @Flag(help: "List the drills and exit.")
    var list = false

    @Flag(help: "Print progress and the agent's warnings on standard error.")
    var verbose = false

    func validate() throws {
        if let collector { _ = try collectorBase(collector) }
        if collector != nil, policies != nil {
            throw ValidationError("--policies goes without --collector (the installed agent runs its own policies)")
        }
        guard (1...600).contains(timeout) else { throw ValidationError("--timeout must be 1 to 600 seconds") }
        do {
            _ = try Selftest.drills(matching: drills)
        } catch {
            throw ValidationError("--drill: \(error)")
        }
    }

    func run() async throws {
        if list {
            print(SelftestReport.catalog(try Selftest.drills(matching: drills)), terminator: "")
            return
        }
        let verbose = self.verbose
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = verbose ? .warning : .critical
            return handler
        }
        var options = Selftest.Options(logger: Logger(label: "vigilctl.selftest")) { line in
            if verbose { FileHandle.standardError.write(Data(("selftest: " + line + "\n").utf8)) }
        }
        options.warning = { line in FileHandle.standardError.write(Data(("selftest: warning: " + line + "\n").utf8)) }
        options.agentSocket = agentSocket
        options.collector = try collector.map(collectorBase)
        options.apiToken = ProcessInfo.processInfo.environment["VIGIL_API_TOKEN"]
        options.policies = policies.map {
            $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0
        }
        options.only = drills
        options.timeout = .seconds(timeout)
        let results: [DrillResult]
        do {
            results = try await Selftest.run(options)
        } catch let interrupted as SelftestInterrupted {
            FileHandle.standardError.write(Data("vigilctl: \(interrupted)\n".utf8))
            throw ExitCode(130)
        } catch {
            throw CommandFailure("\(error)")
        }
        print(json ? SelftestReport.jsonLines(results) : SelftestReport.table(results), terminator: "")
        if results.contains(where: \.isFailure) { throw ExitCode(1) }
    }
}
