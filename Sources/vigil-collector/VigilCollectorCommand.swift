import ArgumentParser
import Foundation
import Logging
import NIOSSL
import ServiceLifecycle
import VigilCollector
import VigilCore
import VigilLinux
import VigilWire

@main
struct VigilCollectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigil-collector",
        abstract: "Receive, verify and store Vigil agents' signed event batches.",
        discussion: """
            Agents enroll with a token (POST /v1/enroll): one issued by `vigilctl tokens create`
            (one-time or reusable, optionally expiring; kept hashed in the store), or the one given
            here with --enroll-token (reusable, never expires, never stored). Then they send signed, hash-chained
            batches (POST /v1/batches). Every batch is checked against the agent's enrolled Ed25519 key
            and its place in the agent's chain before anything is stored; gaps, reorders and forks are
            recorded and shown by `vigilctl agents`. Query with `vigilctl events` or GET /v1/events.

            Example:
              vigil-collector --listen 0.0.0.0:8443 --store sqlite:/var/lib/vigil-collector/events.sqlite \\
                              --enroll-token "$(cat /etc/vigil-collector/enroll-token)" \\
                              --tls-cert /etc/vigil-collector/tls.crt --tls-key /etc/vigil-collector/tls.key

            Without --tls-cert the collector speaks plain HTTP: keep that to loopback or a lab. Batches
            are signed either way; TLS keeps events and tokens private on the network.
            """,
        version: VigilVersion.string
    )

    @Option(help: ArgumentHelp("Address and port to listen on.", valueName: "host:port"))
    var listen: String = "127.0.0.1:8443"

    @Option(
        help: ArgumentHelp(
            "Where to store events: sqlite:PATH, or postgres://USER:PASSWORD@HOST:PORT/DB for several collectors on one database.",
            valueName: "store"
        )
    )
    var store: String = "sqlite:vigil-collector.sqlite"

    @Option(
        help: ArgumentHelp(
            "A reusable token agents may present to enroll (or set VIGIL_ENROLL_TOKEN); compared as a digest, never stored. Without one, only tokens from `vigilctl tokens create` enroll.",
            valueName: "token"
        )
    )
    var enrollToken: String?

    @Option(
        help: ArgumentHelp(
            "Bearer token the read API (events, agents, batches) requires (or set VIGIL_API_TOKEN). Without one, only loopback clients may read.",
            valueName: "token"
        )
    )
    var apiToken: String?

    @Option(help: ArgumentHelp("Serve HTTPS with this PEM certificate chain (with --tls-key).", valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("PEM private key of --tls-cert.", valueName: "file"))
    var tlsKey: String?

    @Option(
        help: ArgumentHelp(
            "Mutual TLS: require every client to present a certificate issued by a CA in this PEM file.",
            valueName: "file"
        )
    )
    var tlsClientCa: String?

    @Option(
        help: ArgumentHelp(
            "Delete events older than this many days (by event time), checked every minute. Default: keep them.",
            valueName: "days"
        )
    )
    var retentionDays: String?

    @Option(
        help: ArgumentHelp(
            "Delete the oldest events while the store is larger than this, e.g. 500MiB or 10GiB. Default: no bound.",
            valueName: "size"
        )
    )
    var maxStoreSize: String?

    @Option(
        help: ArgumentHelp(
            "Live tails (GET /v1/events/stream, vigilctl tail) served at once; more are refused with 503.",
            valueName: "n"
        )
    )
    var maxTailStreams: Int = 64

    @Option(
        help: ArgumentHelp(
            "Batches per second each agent may send (a token bucket per agent, charged after the batch's signature verified); more are refused with 429 and Retry-After. 0: no limit.",
            valueName: "rate"
        )
    )
    var maxBatchRate: Double = BatchRateLimit.defaultPerSecond

    @Option(
        help: ArgumentHelp(
            "Batches an agent may send back to back, e.g. draining its spool after an outage (default: a minute's worth of --max-batch-rate).",
            valueName: "n"
        )
    )
    var maxBatchBurst: Double?

    @Option(
        help: ArgumentHelp(
            "Largest batch body taken, in bytes (compressed, as sent); a larger one is refused with 413 and its agent seals smaller batches.",
            valueName: "bytes"
        )
    )
    var maxBatchBytes: Int = BatchLimits().maxBatchBytes

    @Option(
        help: ArgumentHelp(
            "Most events taken in one batch; a batch with more is refused with 413 and its agent seals smaller batches.",
            valueName: "n"
        )
    )
    var maxBatchEvents: Int = BatchLimits().maxEvents

    @Option(help: ArgumentHelp("trace, debug, info, notice, warning or error.", valueName: "level"))
    var logLevel: String = "info"

    func validate() throws {
        _ = try parseListen()
        guard (tlsCert == nil) == (tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        guard tlsClientCa == nil || tlsCert != nil else {
            throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level: '\(logLevel)' is not a log level")
        }
        _ = try parseRetention()
        guard (1...10_000).contains(maxTailStreams) else {
            throw ValidationError("--max-tail-streams: must be from 1 to 10000")
        }
        guard maxBatchRate.isFinite, maxBatchRate >= 0 else {
            throw ValidationError("--max-batch-rate: must be a number of batches a second, 0 or more")
        }
        if let maxBatchBurst, !maxBatchBurst.isFinite || maxBatchBurst < 1 {
            throw ValidationError("--max-batch-burst: must be 1 or more")
        }
        guard maxBatchBytes >= 1024 else {
            throw ValidationError("--max-batch-bytes: must be 1024 or more")
        }
        guard maxBatchEvents >= 1 else {
            throw ValidationError("--max-batch-events: must be 1 or more")
        }
    }

    func parseRetention() throws -> RetentionPolicy {
        do {
            return RetentionPolicy(
                maxAgeDays: try retentionDays.map(RetentionPolicy.parseDays),
                maxStoreBytes: try maxStoreSize.map(RetentionPolicy.parseSize)
            )
        } catch {
            throw ValidationError(error.message)
        }
    }

    func parseListen() throws -> (String, Int) {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw ValidationError("--listen: '\(listen)' must be HOST:PORT, e.g. 127.0.0.1:8443")
        }
        var host = String(listen[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "vigil-collector")
        let (host, port) = try parseListen()
        let retention = try parseRetention()
        let location: StoreLocation
        do {
            location = try StoreLocation(parsing: store)
        } catch {
            throw ValidationError(error.message)
        }
        let token = enrollToken ?? ProcessInfo.processInfo.environment["VIGIL_ENROLL_TOKEN"]
        let readToken = apiToken ?? ProcessInfo.processInfo.environment["VIGIL_API_TOKEN"]
        if let readToken, readToken.utf8.count < 16 {
            throw ValidationError("--api-token: use at least 16 characters (e.g. openssl rand -hex 16)")
        }
        let tls: TLSConfiguration?
        do {
            tls = try tlsCert.flatMap { cert in
                try tlsKey.map { key throws(CollectorTLSFiles.LoadError) in
                    try CollectorTLSFiles(certificateChain: cert, privateKey: key, clientCA: tlsClientCa)
                        .makeServerConfiguration()
                }
            }
        } catch let error as CollectorTLSFiles.LoadError {
            throw ValidationError(error.message)
        }
        do {
            try await location.withStore(logger: logger) { eventStore in
                var configuration = CollectorConfiguration(host: host, port: port, store: location, enrollToken: token)
                configuration.apiToken = readToken
                configuration.tls = tls
                configuration.retention = retention
                configuration.maxTailStreams = maxTailStreams
                configuration.batchRate = BatchRateLimit(perSecond: maxBatchRate, burst: maxBatchBurst)
                configuration.batchLimits.maxBatchBytes = maxBatchBytes
                configuration.batchLimits.maxEvents = maxBatchEvents
                let collector = Collector(store: eventStore, configuration: configuration, logger: logger)
                let notifier = SystemdNotifier(environment: ProcessInfo.processInfo.environment)
                let app = try CollectorServer.makeApplication(collector: collector, logger: logger) { port in
                    logger.info(
                        "collector listening",
                        metadata: [
                            "address": "\(host):\(port)", "store": "\(location)",
                            "tls": "\(tls == nil ? "off" : tlsClientCa == nil ? "on" : "mutual")",
                            "enrollment": "\(token == nil ? "issued tokens" : "issued tokens and --enroll-token")",
                            "reads": "\(readToken == nil ? "loopback only" : "API token")",
                        ]
                    )
                    notifier.ready(status: "listening on \(host):\(port)")
                }
                var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: app)]
                if retention.isEnabled {
                    services.append(
                        .init(service: RetentionService(policy: retention, store: eventStore, logger: logger))
                    )
                }
                let group = ServiceGroup(
                    configuration: ServiceGroupConfiguration(
                        services: services,
                        gracefulShutdownSignals: [.sigterm, .sigint],
                        logger: logger
                    )
                )
                try await group.run()
            }
        } catch let error as CollectorError {
            // A store that cannot be opened: say why, without a stack of wrappers.
            logger.critical("cannot start", metadata: ["store": "\(location)", "error": "\(error.message)"])
            throw ExitCode(2)
        }
    }
}
