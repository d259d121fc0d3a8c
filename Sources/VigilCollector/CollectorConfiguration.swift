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

/// A store named on the command line: `sqlite:PATH` (PostgreSQL comes with the fleet work).
public enum StoreLocation: Sendable, Hashable, CustomStringConvertible {
    case sqlite(path: String)

    /// Parses `sqlite:PATH`. Throws a message that names the flag's expected forms.
    public init(parsing text: String) throws(CollectorError) {
        if text.hasPrefix("sqlite:") {
            let path = String(text.dropFirst("sqlite:".count))
            guard !path.isEmpty else { throw CollectorError(.badRequest, "--store sqlite: needs a path, e.g. sqlite:/var/lib/vigil-collector/events.sqlite") }
            self = .sqlite(path: path)
        } else if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            throw CollectorError(.badRequest, "--store \(text): the PostgreSQL store is not available in this build; use sqlite:PATH")
        } else {
            throw CollectorError(.badRequest, "--store \(text): expected sqlite:PATH")
        }
    }

    public var description: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        }
    }

    /// Opens (creating and migrating as needed) the store.
    public func open() throws -> any EventStore {
        switch self {
        case .sqlite(let path): try SQLiteEventStore(path: path)
        }
    }
}
