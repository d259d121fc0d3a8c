import Logging
import NIOSSL
import VigilWire

/// Settings of a collector.
public struct CollectorConfiguration: Sendable {
    /// Address to listen on, e.g. `127.0.0.1` or `0.0.0.0`.
    public var host: String
    /// TCP port; 0 picks a free port (reported through `onServerRunning`).
    public var port: Int
    /// Where events are stored, e.g. `sqlite:/var/lib/vigil-collector/events.sqlite`.
    public var store: StoreLocation
    /// The enrollment token agents must present; nil disables enrollment.
    public var enrollToken: String?
    /// Size limits for incoming batches.
    public var batchLimits: BatchLimits
    /// Largest page a query may ask for.
    public var maxQueryLimit: Int
    /// The bearer token the read API (`/v1/events`, `/v1/agents`, ...) requires. Nil: reads are
    /// allowed from loopback clients only, so a lab collector needs no set-up and a collector on
    /// the network never serves its events to anyone who asks.
    public var apiToken: String?
    /// HTTPS instead of HTTP (see `CollectorTLSFiles.makeServerConfiguration()`); nil: plain HTTP.
    public var tls: TLSConfiguration?
    /// What to delete and when (`--retention-days`, `--max-store-size`); by default nothing.
    public var retention = RetentionPolicy()
    /// Live tails (`GET /v1/events/stream`) served at once (`--max-tail-streams`); one more is
    /// refused with 503. Each open stream polls the store about twice a second.
    public var maxTailStreams = 64
    /// Batches per agent (`--max-batch-rate`, `--max-batch-burst`); over it, `POST /v1/batches`
    /// answers 429 `rate_limited` with `Retry-After` (see `BatchRateLimiter`).
    public var batchRate = BatchRateLimit()
    /// How long a batch sent with `Vigil-Previous-Batch` (its predecessor is still on its way)
    /// waits for that predecessor to be stored before it is answered 503
    /// `predecessor_pending` (the agent then resends both, in order).
    public var predecessorWait: Duration = .seconds(5)

    public init(
        host: String = "127.0.0.1",
        port: Int = 8443,
        store: StoreLocation,
        enrollToken: String? = nil,
        batchLimits: BatchLimits = BatchLimits(),
        maxQueryLimit: Int = 10_000
    ) {
        self.host = host
        self.port = port
        self.store = store
        self.enrollToken = enrollToken
        self.batchLimits = batchLimits
        self.maxQueryLimit = maxQueryLimit
    }
}

/// A store named on the command line: `sqlite:PATH` (embedded, one collector) or
/// `postgres://USER:PASSWORD@HOST:PORT/DB` (any number of collectors on one database).
public enum StoreLocation: Sendable, Hashable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(PostgresLocation)

    /// Parses `sqlite:PATH`, `postgres://…` or `postgresql://…`. Throws a message that names the
    /// flag's expected forms.
    public init(parsing text: String) throws(CollectorError) {
        if text.hasPrefix("sqlite:") {
            let path = String(text.dropFirst("sqlite:".count))
            guard !path.isEmpty else {
                throw CollectorError(
                    .badRequest,
                    "--store sqlite: needs a path, e.g. sqlite:/var/lib/vigil-collector/events.sqlite"
                )
            }
            self = .sqlite(path: path)
        } else if text.hasPrefix("postgres:") || text.hasPrefix("postgresql:") {
            self = .postgres(try PostgresLocation(url: text))
        } else {
            throw CollectorError(
                .badRequest,
                "--store \(text): expected sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DB"
            )
        }
    }

    /// Safe to log: a PostgreSQL password is hidden.
    public var description: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .postgres(let location): location.description
        }
    }

    /// Opens the store (creating and migrating as needed), runs `body` with it, and closes it.
    public func withStore<Result>(
        logger: Logger,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (any EventStore) async throws -> Result
    ) async throws -> Result {
        switch self {
        case .sqlite(let path):
            let store = try SQLiteEventStore(path: path)
            do {
                let result = try await body(store)
                try await store.close()
                return result
            } catch {
                try? await store.close()
                throw error
            }
        case .postgres(let location):
            return try await PostgresEventStore.withStore(at: location, logger: logger) { store in try await body(store)
            }
        }
    }
}
