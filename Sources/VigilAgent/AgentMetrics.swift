import CoreMetrics
import Prometheus
import Synchronization
import VigilCore
import VigilSensors
import VigilSpool

/// The agent's metrics, served as Prometheus text on `metrics_listen` (`GET /metrics`).
///
/// Recorded through swift-metrics with an explicit factory over a `PrometheusCollectorRegistry`
/// of this agent's own (never `MetricsSystem.bootstrap`). Counts the pipeline keeps anyway
/// (sensor statistics, the spool, the self-watchdog) are read when scraped (`refresh`).
///
/// | metric | type | labels |
/// | --- | --- | --- |
/// | `vigil_agent_events_total` | counter | `type`: events read from the sensors (`file`, `process`, `flow`, `health`) |
/// | `vigil_agent_events_dropped_total` | counter | `type`: dropped at the agent's full buffer in front of the spool |
/// | `vigil_agent_sensor_queue_drops_total` | counter | `sensor`: dropped at a sensor's own full queue |
/// | `vigil_agent_kernel_drops_total` | counter | `sensor`: `file` inotify queue overflows, `process` proc connector overruns, `flow` packets the kernel dropped |
/// | `vigil_agent_events_shed_total` | counter | `type`: raw events shed by the self-watchdog |
/// | `vigil_agent_hashes_shed_total` | counter | files not hashed while hashing was shed |
/// | `vigil_agent_shed_steps_total` | counter | `direction`: `up`, `down` (shed ladder steps) |
/// | `vigil_agent_shed_level` | gauge | 0 `full` … 5 `alerts_only` |
/// | `vigil_agent_cpu_percent`, `vigil_agent_resident_bytes` | gauge | the self-watchdog's last sample |
/// | `vigil_agent_spool_bytes`, `vigil_agent_spool_max_bytes` | gauge | spooled event bytes and their bound |
/// | `vigil_agent_spool_events` | gauge | events spooled, not yet acknowledged |
/// | `vigil_agent_spool_dropped_total` | counter | events the full spool dropped (gap records) |
/// | `vigil_agent_batches_sent_total` | counter | `result`: `accepted`, `duplicate`, `refused`, `unknown_agent`, `failed`, `rate_limited` |
/// | `vigil_agent_events_shipped_total` | counter | events in batches the collector confirmed |
/// | `vigil_agent_batch_round_trip_seconds` | histogram | one batch request to its answer |
/// | `vigil_agent_file_watches` | gauge | directories watched |
public final class AgentMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let events: [EventType: CoreMetrics.Counter]
    private let dropped: [EventType: CoreMetrics.Counter]
    private let stepsUp: CoreMetrics.Counter
    private let stepsDown: CoreMetrics.Counter
    private let roundTrip: CoreMetrics.Timer
    private let shipped: CoreMetrics.Counter
    private let batches = Mutex<[String: CoreMetrics.Counter]>([:])
    /// Counters mirrored from cumulative totals: the last total seen for each.
    private let mirrored = Mutex<[String: (counter: CoreMetrics.Counter, last: UInt64)]>([:])
    private let gauges = Mutex<[String: CoreMetrics.Gauge]>([:])
    private let refresher = Mutex<(@Sendable (AgentMetrics) -> Void)?>(nil)

    static let roundTripName = "vigil_agent_batch_round_trip_seconds"

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[Self.roundTripName] = [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
            .seconds(10), .seconds(30),
        ]
        self.factory = factory
        var events: [EventType: CoreMetrics.Counter] = [:]
        var dropped: [EventType: CoreMetrics.Counter] = [:]
        for type in EventType.allCases {
            events[type] = CoreMetrics.Counter(
                label: "vigil_agent_events_total",
                dimensions: [("type", type.rawValue)],
                factory: factory
            )
            dropped[type] = CoreMetrics.Counter(
                label: "vigil_agent_events_dropped_total",
                dimensions: [("type", type.rawValue)],
                factory: factory
            )
        }
        self.events = events
        self.dropped = dropped
        stepsUp = CoreMetrics.Counter(
            label: "vigil_agent_shed_steps_total",
            dimensions: [("direction", "up")],
            factory: factory
        )
        stepsDown = CoreMetrics.Counter(
            label: "vigil_agent_shed_steps_total",
            dimensions: [("direction", "down")],
            factory: factory
        )
        roundTrip = CoreMetrics.Timer(label: Self.roundTripName, preferredDisplayUnit: .seconds, factory: factory)
        shipped = CoreMetrics.Counter(label: "vigil_agent_events_shipped_total", factory: factory)
        for result in ["accepted", "duplicate", "refused", "unknown_agent", "failed", "rate_limited"] {
            _ = batchCounter(result)
        }
    }

    /// The Prometheus text exposition (format 0.0.4), after `refresh`.
    public func exposition() -> [UInt8] {
        refresh()
        return registry.emitToBuffer()
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Reads the counts kept elsewhere (set by `Agent.run`); called before every exposition.
    func setRefresh(_ body: @escaping @Sendable (AgentMetrics) -> Void) {
        refresher.withLock { $0 = body }
    }

    func refresh() {
        if let body = refresher.withLock({ $0 }) { body(self) }
    }

    // MARK: recording

    /// One event read from a sensor; a flow sensor's `pcap_stats` also carries the kernel's drops.
    func eventRead(_ event: Event) {
        events[event.type]?.increment()
        if case .health(let health) = event.payload, health.kind == "pcap_stats",
            let kernel = health.counters["pcap_dropped"]
        {
            mirror("vigil_agent_kernel_drops_total", ("sensor", "flow"), total: kernel)
            if let queue = health.counters["queue_dropped"] {
                mirror("vigil_agent_sensor_queue_drops_total", ("sensor", "flow"), total: queue)
            }
        }
    }

    func eventDropped(_ type: EventType) { dropped[type]?.increment() }

    func shedStep(up: Bool) { (up ? stepsUp : stepsDown).increment() }

    func batchSent(_ delivery: CollectorClient.Delivery, events: Int, roundTrip duration: Duration) {
        let result: String
        switch delivery {
        case .stored(let duplicate, _):
            result = duplicate ? "duplicate" : "accepted"
            shipped.increment(by: events)
        case .unknownAgent: result = "unknown_agent"
        case .refused: result = "refused"
        case .retry: result = "failed"
        case .rateLimited: result = "rate_limited"
        }
        batchCounter(result).increment()
        let (seconds, attoseconds) = duration.components
        roundTrip.recordNanoseconds(seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000)
    }

    private func batchCounter(_ result: String) -> CoreMetrics.Counter {
        batches.withLock { counters in
            if let counter = counters[result] { return counter }
            let counter = CoreMetrics.Counter(
                label: "vigil_agent_batches_sent_total",
                dimensions: [("result", result)],
                factory: factory
            )
            counters[result] = counter
            return counter
        }
    }

    /// Sets the counter `label{dimension}` to a cumulative `total` kept elsewhere (a total that
    /// went down, as after a sensor restart, counts from zero again).
    func mirror(_ label: String, _ dimension: (String, String)? = nil, total: UInt64) {
        let key = label + "|" + (dimension.map { "\($0.0)=\($0.1)" } ?? "")
        mirrored.withLock { table in
            var entry =
                table[key]
                ?? (
                    CoreMetrics.Counter(label: label, dimensions: dimension.map { [$0] } ?? [], factory: factory),
                    0
                )
            let delta = total >= entry.last ? total - entry.last : total
            if delta > 0 { entry.counter.increment(by: Int64(clamping: delta)) }
            entry.last = total
            table[key] = entry
        }
    }

    /// Sets the gauge `label` to `value`.
    func gauge(_ label: String, _ value: Double) {
        let gauge = gauges.withLock { table in
            if let gauge = table[label] { return gauge }
            let gauge = CoreMetrics.Gauge(label: label, factory: factory)
            table[label] = gauge
            return gauge
        }
        gauge.record(value)
    }
}

extension Agent {
    /// The counts the pipeline keeps anyway, copied into `metrics` when it is scraped.
    static func readCounts(
        into metrics: AgentMetrics,
        fileSensor: FileSensor,
        processSensor: ProcessSensor?,
        spool: Spool,
        spoolMaxBytes: Int,
        governor: BudgetGovernor
    ) {
        let file = fileSensor.statistics
        metrics.mirror("vigil_agent_kernel_drops_total", ("sensor", "file"), total: file.overflows)
        metrics.mirror("vigil_agent_sensor_queue_drops_total", ("sensor", "file"), total: file.queueDrops)
        metrics.mirror("vigil_agent_hashes_shed_total", total: file.hashesShed)
        metrics.gauge("vigil_agent_file_watches", Double(file.watches))
        if let process = processSensor?.statistics {
            metrics.mirror("vigil_agent_kernel_drops_total", ("sensor", "process"), total: process.kernelOverruns)
            metrics.mirror("vigil_agent_sensor_queue_drops_total", ("sensor", "process"), total: process.queueDropped)
        }
        for (type, total) in governor.shedTotals {
            metrics.mirror("vigil_agent_events_shed_total", ("type", type), total: total)
        }
        metrics.gauge("vigil_agent_shed_level", Double(governor.level.rawValue))
        let (sample, _) = governor.lastSample
        if let sample {
            metrics.gauge("vigil_agent_cpu_percent", sample.cpuPercent)
            metrics.gauge("vigil_agent_resident_bytes", Double(sample.residentBytes))
        }
        metrics.gauge("vigil_agent_spool_max_bytes", Double(spoolMaxBytes))
        if let stats = try? spool.statistics() {
            metrics.gauge("vigil_agent_spool_bytes", Double(stats.bytes))
            metrics.gauge("vigil_agent_spool_events", Double(stats.pendingEvents))
            metrics.mirror("vigil_agent_spool_dropped_total", total: stats.droppedTotal)
        }
    }
}
