import CoreMetrics
import Hummingbird
import Prometheus
import Synchronization
import VigilCore

/// The collector's metrics, served as Prometheus text by `GET /metrics`.
///
/// Recorded through swift-metrics with an explicit factory over a `PrometheusCollectorRegistry`
/// of this collector's own, never through `MetricsSystem.bootstrap`: several collectors in one
/// process (tests, `vigild --demo`) keep separate counts.
///
/// | metric | type | labels |
/// | --- | --- | --- |
/// | `vigil_collector_batches_received_total` | counter | |
/// | `vigil_collector_batches_accepted_total` | counter | `chain`: `ok`, `gap`, `broken`, `reordered` |
/// | `vigil_collector_batches_duplicate_total` | counter | |
/// | `vigil_collector_batches_behind_in_flight_total` | counter | sent while their predecessor was in flight (`Vigil-Previous-Batch`) |
/// | `vigil_collector_predecessor_waits_total` | counter | of those, how many arrived first and waited for their predecessor |
/// | `vigil_collector_batches_refused_total` | counter | `reason`: the refusal's error code (`bad_signature`, `chain_fork`, …) |
/// | `vigil_collector_events_stored_total` | counter | `type`: `file`, `process`, `flow`, `alert`, `health`, `gap` |
/// | `vigil_collector_store_ingest_duration_seconds` | histogram | |
/// | `vigil_collector_http_requests_total` | counter | `route`, `method`, `status` |
/// | `vigil_collector_http_request_duration_seconds` | histogram | `route`, `method` |
public final class CollectorMetrics: Sendable {
    /// Everything this collector recorded; `exposition()` renders it.
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let received: CoreMetrics.Counter
    private let duplicates: CoreMetrics.Counter
    private let behindInFlight: CoreMetrics.Counter
    private let predecessorWaits: CoreMetrics.Counter
    private let storeLatency: CoreMetrics.Timer
    private let accepted: [ChainVerdict: CoreMetrics.Counter]
    private let stored: [EventType: CoreMetrics.Counter]
    private let refused = Mutex<[String: CoreMetrics.Counter]>([:])
    private let requests = Mutex<[RequestKey: CoreMetrics.Counter]>([:])
    private let requestDurations = Mutex<[RouteKey: CoreMetrics.Timer]>([:])

    static let storeLatencyName = "vigil_collector_store_ingest_duration_seconds"
    static let requestDurationName = "vigil_collector_http_request_duration_seconds"

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // An embedded SQLite store commits a batch in well under 5 ms: finer buckets than the default.
        factory.durationHistogramBuckets[Self.storeLatencyName] = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(5),
        ]
        factory.durationHistogramBuckets[Self.requestDurationName] = [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5),
            .seconds(10),
        ]
        self.factory = factory
        received = CoreMetrics.Counter(label: "vigil_collector_batches_received_total", factory: factory)
        duplicates = CoreMetrics.Counter(label: "vigil_collector_batches_duplicate_total", factory: factory)
        behindInFlight = CoreMetrics.Counter(label: "vigil_collector_batches_behind_in_flight_total", factory: factory)
        predecessorWaits = CoreMetrics.Counter(label: "vigil_collector_predecessor_waits_total", factory: factory)
        storeLatency = CoreMetrics.Timer(label: Self.storeLatencyName, preferredDisplayUnit: .seconds, factory: factory)
        var accepted: [ChainVerdict: CoreMetrics.Counter] = [:]
        for verdict in [ChainVerdict.ok, .gap, .broken, .reordered] {
            accepted[verdict] = CoreMetrics.Counter(
                label: "vigil_collector_batches_accepted_total",
                dimensions: [("chain", verdict.rawValue)],
                factory: factory
            )
        }
        self.accepted = accepted
        var stored: [EventType: CoreMetrics.Counter] = [:]
        for type in EventType.allCases {
            stored[type] = CoreMetrics.Counter(
                label: "vigil_collector_events_stored_total",
                dimensions: [("type", type.rawValue)],
                factory: factory
            )
        }
        self.stored = stored
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    public func exposition() -> [UInt8] { registry.emitToBuffer() }

    /// The content type of `exposition()`.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    // MARK: recording

    func batchReceived() { received.increment() }

    func batchAccepted(_ verdict: ChainVerdict, events: [Event]) {
        accepted[verdict]?.increment()
        var counts: [EventType: Int] = [:]
        for event in events { counts[event.type, default: 0] += 1 }
        for (type, count) in counts { stored[type]?.increment(by: count) }
    }

    func batchDuplicate() { duplicates.increment() }

    func batchBehindInFlight() { behindInFlight.increment() }

    func predecessorWaited() { predecessorWaits.increment() }

    func batchRefused(_ code: CollectorError.Code) {
        let counter = refused.withLock { counters in
            if let counter = counters[code.rawValue] { return counter }
            let counter = CoreMetrics.Counter(
                label: "vigil_collector_batches_refused_total",
                dimensions: [("reason", code.rawValue)],
                factory: factory
            )
            counters[code.rawValue] = counter
            return counter
        }
        counter.increment()
    }

    /// Times one `EventStore.ingest`, whatever its outcome.
    func timeStoreIngest<T>(_ body: () async throws -> T) async rethrows -> T {
        let start = ContinuousClock.now
        defer { storeLatency.recordInterval(since: start) }
        return try await body()
    }

    private struct RouteKey: Hashable {
        var route: String
        var method: String
    }

    private struct RequestKey: Hashable {
        var route: RouteKey
        var status: Int
    }

    func request(route: String, method: HTTPRequest.Method, status: HTTPResponse.Status, duration: Duration) {
        let routeKey = RouteKey(route: route, method: method.rawValue)
        let counter = requests.withLock { counters in
            let key = RequestKey(route: routeKey, status: status.code)
            if let counter = counters[key] { return counter }
            let counter = CoreMetrics.Counter(
                label: "vigil_collector_http_requests_total",
                dimensions: [("route", route), ("method", method.rawValue), ("status", String(status.code))],
                factory: factory
            )
            counters[key] = counter
            return counter
        }
        counter.increment()
        let timer = requestDurations.withLock { timers in
            if let timer = timers[routeKey] { return timer }
            let timer = CoreMetrics.Timer(
                label: Self.requestDurationName,
                dimensions: [("route", route), ("method", method.rawValue)],
                preferredDisplayUnit: .seconds,
                factory: factory
            )
            timers[routeKey] = timer
            return timer
        }
        timer.record(duration: duration)
    }

    /// Counts every request and times it by route (the route's pattern, `/v1/agents/{id}/batches`,
    /// so ids do not become labels; every unknown path is `NotFound`).
    struct Middleware<Context: RequestContext>: RouterMiddleware {
        let metrics: CollectorMetrics

        func handle(
            _ request: Request,
            context: Context,
            next: (Request, Context) async throws -> Response
        ) async throws -> Response {
            let start = ContinuousClock.now
            do {
                let response = try await next(request, context)
                record(request, context, response.status, since: start)
                return response
            } catch {
                let status = (error as? any HTTPResponseError)?.status ?? .internalServerError
                record(request, context, status, since: start)
                throw error
            }
        }

        private func record(
            _ request: Request,
            _ context: Context,
            _ status: HTTPResponse.Status,
            since: ContinuousClock.Instant
        ) {
            metrics.request(
                route: context.endpointPath ?? "unmatched",
                method: request.method,
                status: status,
                duration: ContinuousClock.now - since
            )
        }
    }
}

extension CoreMetrics.Timer {
    func record(duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let (nanos, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        recordNanoseconds(overflow ? Int64.max : nanos &+ attoseconds / 1_000_000_000)
    }

    fileprivate func recordInterval(since start: ContinuousClock.Instant) {
        record(duration: ContinuousClock.now - start)
    }
}
