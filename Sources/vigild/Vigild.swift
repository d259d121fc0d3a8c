import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import VigilAgent
import VigilCore

@main
struct Vigild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigild",
        abstract: "The Vigil agent: watches files, signs and ships event batches to a collector.",
        discussion: """
            Run as a service with --config (see systemd/vigild.service). The configuration names the
            collector, the enrollment token, the state directory (agent key, spool) and the policies
            directory (collection.yaml). SIGTERM drains: sensors stop, the spool is flushed, and
            delivery gets a few seconds before exit.

            Try it without any set-up:
              vigild --demo
            starts an agent and a collector on loopback with the default policies and prints events
            live as the collector stores them.

            Example configuration (YAML):
              collector:
                url: http://127.0.0.1:8443
                enroll_token: change-me
              state_dir: /var/lib/vigil
              policies_dir: /etc/vigil/policies
            """,
        version: VigilVersion.string
    )

    @Option(help: ArgumentHelp("The agent's YAML configuration file.", valueName: "file"))
    var config: String?

    @Flag(help: "Run an agent and an in-process collector on loopback with the default policies and print events live.")
    var demo = false

    @Option(
        help: ArgumentHelp(
            "With --demo: the policies directory (default: ./Policies, then /etc/vigil/policies).",
            valueName: "dir"
        )
    )
    var policies: String?

    @Option(
        help: ArgumentHelp(
            "With --demo: stop after this many seconds (default: run until Ctrl-C).",
            valueName: "seconds"
        )
    )
    var duration: Int?

    @Option(
        help: ArgumentHelp(
            "Override the configured log level: trace, debug, info, notice, warning, error.",
            valueName: "level"
        )
    )
    var logLevel: String?

    @Flag(
        help: "With --config: check the configuration file, print a summary or the error, and exit (78 when invalid)."
    )
    var checkConfig = false

    /// EX_CONFIG from sysexits.h: the configuration file is missing, unreadable or invalid.
    static let configurationErrorExitCode: Int32 = 78

    func validate() throws {
        if demo == (config != nil) {
            throw ValidationError("give either --config FILE or --demo")
        }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level: '\(logLevel)' is not a log level")
        }
        if policies != nil || duration != nil, !demo {
            throw ValidationError("--policies and --duration go with --demo")
        }
        if checkConfig, config == nil {
            throw ValidationError("--check-config goes with --config FILE")
        }
    }

    /// Parses the command line and, for the agent, does the start-up that must happen while the
    /// process has a single thread: open the sensors' privileged handles (`Agent.prepare`), then
    /// install the sandbox, so that every thread created afterwards (NIO, libdispatch, sensor
    /// threads) inherits the reduced capabilities and the Landlock and seccomp confinement.
    static func main() async {
        do {
            let command = try parseAsRoot()
            if let vigild = command as? Vigild, vigild.checkConfig {
                let configuration = try vigild.loadConfiguration()
                let metrics: String = configuration.metricsListen.map { "metrics_listen \($0)" } ?? "metrics off"
                print(
                    "\(vigild.config!): OK: collector \(configuration.collectorURLs.joined(separator: ", ")), "
                        + "enroll token \(configuration.enrollToken == nil ? "not set" : "set"), "
                        + "state \(configuration.stateDirectory), policies \(configuration.policiesDirectory), "
                        + "\(metrics), status every \(configuration.statusIntervalSeconds) s"
                )
            } else if let vigild = command as? Vigild, !vigild.demo {
                let started = try vigild.startAgent()
                try await vigild.runAgent(started)
            } else if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                var command = command
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    /// The configuration file, or exit 78 (EX_CONFIG) with the error (file:line: message) on stderr.
    func loadConfiguration() throws -> AgentConfiguration {
        do {
            return try AgentConfiguration.load(path: config!)
        } catch {
            // Exit with EX_CONFIG (78): the unit's RestartPreventExitStatus=78 makes systemd stop
            // here with this message in the journal instead of restarting into the same error.
            FileHandle.standardError.write(Data("vigild: \(error)\n".utf8))
            throw ExitCode(Self.configurationErrorExitCode)
        }
    }

    /// Configuration, logging, `Agent.prepare`, sandbox: synchronous, on the main thread.
    func startAgent() throws -> (AgentConfiguration, Agent.Prepared) {
        let configuration = try loadConfiguration()
        bootstrapLogging(level: Logger.Level(rawValue: logLevel ?? configuration.logLevel) ?? .info)
        let logger = Logger(label: "vigild")
        var prepared = try Agent.prepare(configuration: configuration, logger: logger)
        prepared.sandboxHealth = AgentSandbox.apply(
            configuration: configuration,
            processSensor: prepared.readsOtherProcesses,
            listeningSockets: prepared.listeningSockets,
            logger: logger
        )
        return (configuration, prepared)
    }

    func run() async throws {
        if demo {
            bootstrapLogging(level: Logger.Level(rawValue: logLevel ?? "notice") ?? .notice)
            try await Demo(policiesDirectory: policies, duration: duration).run()
            return
        }
        try await runAgent(startAgent())
    }

    func runAgent(_ started: (AgentConfiguration, Agent.Prepared)) async throws {
        let (configuration, prepared) = started
        let logger = Logger(label: "vigild")
        let httpClient = try CollectorClient.makeHTTPClient(tls: configuration.collectorTLS)
        let agent = Agent(configuration: configuration, logger: logger, httpClient: httpClient, prepared: prepared)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: agent)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await group.run()
        } catch {
            try? await httpClient.shutdown()
            throw error
        }
        try await httpClient.shutdown()
    }
}

func bootstrapLogging(level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}
