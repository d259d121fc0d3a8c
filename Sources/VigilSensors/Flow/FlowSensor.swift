import Glibc
import Logging
import Synchronization
import VigilCore
import VigilLinux

/// Settings of the live flow sensor.
public struct FlowSensorConfiguration: Hashable, Sendable {
    /// Interface, snap length, ring size, BPF filter.
    public var capture: PcapCaptureOptions
    /// Flow bound and timeouts.
    public var table: FlowTableConfiguration
    /// Events buffered for a slow consumer; beyond it the newest are dropped and counted.
    public var queueCapacity: Int
    /// How often capture statistics (kernel drops) are reported as a health event.
    public var statisticsInterval: Duration
    /// Process attribution of flows with an end on this host (`Image`, `ProcessId`); nil: off.
    public var attribution: FlowAttributionConfiguration?

    public init(
        capture: PcapCaptureOptions = PcapCaptureOptions(),
        table: FlowTableConfiguration = FlowTableConfiguration(),
        queueCapacity: Int = 10_000,
        statisticsInterval: Duration = .seconds(60),
        attribution: FlowAttributionConfiguration? = nil
    ) {
        self.capture = capture
        self.table = table
        self.queueCapacity = queueCapacity
        self.statisticsInterval = statisticsInterval
        self.attribution = attribution
    }
}

/// Captures packet headers with libpcap and reports flows as events (`.flow` payloads), with
/// the same decoder and flow table as `vigilctl flows`.
///
/// A dedicated thread (`vigil-flow-r`) runs `pcap_dispatch` on the TPACKET_V3 ring, decodes,
/// updates the table, expires idle flows once a second (wall clock) and yields completed
/// flows into `events`. Every `statisticsInterval` (and at stop) a `pcap_stats` health event
/// reports kernel drops, decoder drop reasons and flow evictions. Nothing blocks on a slow
/// consumer: events beyond `queueCapacity` are dropped and counted (`queue_dropped`).
///
/// With `configuration.attribution`, a second thread (`vigil-flow-a`, see `FlowAttributor`)
/// finds the process owning the local socket of each new TCP/UDP flow with an end on this host,
/// and the flow's event carries its `image` and `processId`. A flow that ends while requests
/// are still being resolved (the host is busy, the next sweep is late) is held back for them,
/// up to `FlowAttributionConfiguration.maximumReportDelay`.
public final class FlowSensor: Sendable {
    public let configuration: FlowSensorConfiguration
    private let capture: PcapCapture
    private let logger: Logger
    private let stream: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let stopRequested = StopSignal()
    private let lifecycle = Mutex(Lifecycle.idle)
    private let attributor: FlowAttributor?

    private enum Lifecycle {
        case idle
        case running(PosixThread)
        case stopped
    }

    /// Opens the capture now (so a missing permission or a bad filter shows at once); captures
    /// nothing until `start()`.
    ///
    /// - Throws: `FlowSensorError` `.captureUnavailable` (needs `CAP_NET_RAW`; no such
    ///   interface), `.invalidFilter` (quoting the expression), `.unsupportedLinkType`,
    ///   `.invalidConfiguration`.
    public convenience init(configuration: FlowSensorConfiguration, logger: Logger) throws(FlowSensorError) {
        let capture: PcapCapture
        do {
            capture = try PcapCapture(options: configuration.capture)
        } catch {
            throw FlowSensorError(error)
        }
        try self.init(capture: capture, configuration: configuration, logger: logger)
    }

    /// Uses a capture opened by the caller (e.g. inside another network namespace);
    /// `configuration.capture` is then informational.
    public init(capture: PcapCapture, configuration: FlowSensorConfiguration, logger: Logger) throws(FlowSensorError) {
        guard configuration.queueCapacity > 0, configuration.table.maxFlows > 0 else {
            throw FlowSensorError(code: .invalidConfiguration, message: "queue capacity and max flows must be positive")
        }
        guard LinkType.isSupported(capture.linkType) else {
            throw FlowSensorError(
                code: .unsupportedLinkType,
                message: "link-layer type \(capture.linkType) is not supported",
                source: capture.options.interface
            )
        }
        self.configuration = configuration
        self.capture = capture
        var logger = logger
        logger[metadataKey: "sensor"] = "flow"
        self.logger = logger
        attributor = try configuration.attribution.map { (settings) throws(FlowSensorError) in
            try FlowAttributor(configuration: settings, logger: logger)
        }
        (stream, continuation) = AsyncStream.makeStream(
            of: Event.self,
            bufferingPolicy: .bufferingOldest(configuration.queueCapacity)
        )
        continuation.onTermination = { [stopRequested, capture] _ in
            stopRequested.request()
            capture.breakLoop()
        }
    }

    deinit {
        stop()
    }

    /// Flow and health events, `time` set when reported; `seq` is left 0 (the agent numbers
    /// them). One consumer only. Finishes after `stop()`, once the remaining flows are out.
    public var events: AsyncStream<Event> {
        stream
    }

    /// Starts the capture thread.
    ///
    /// - Throws: `FlowSensorError` `.alreadyStarted`, `.stopped`, `.threadUnavailable`.
    public func start() throws(FlowSensorError) {
        try lifecycle.withLock { (state: inout Lifecycle) throws(FlowSensorError) in
            switch state {
            case .idle: break
            case .running: throw FlowSensorError(code: .alreadyStarted, message: "the flow sensor is already started")
            case .stopped: throw FlowSensorError(code: .stopped, message: "the flow sensor was stopped")
            }
            let reader = FlowCaptureLoop(
                capture: capture,
                configuration: configuration,
                continuation: continuation,
                stopRequested: stopRequested,
                logger: logger,
                attributor: attributor
            )
            try attributor?.start()
            do {
                state = .running(try PosixThread.spawn(name: "vigil-flow-r") { reader.run() })
            } catch {
                throw FlowSensorError(code: .threadUnavailable, message: "cannot start the capture thread (\(error))")
            }
        }
        logger.info(
            "flow sensor started",
            metadata: [
                "interface": "\(capture.options.interface)", "link_type": "\(capture.linkType)",
                "snaplen": "\(capture.options.snapshotLength)", "filter": "\(capture.options.filter ?? "")",
            ]
        )
    }

    /// How much the sensor captures; the agent's self-watchdog lowers it under load.
    public enum CaptureMode: Int, Sendable, Hashable {
        /// The configured filter and snap length.
        case full = 0
        /// Only TCP control packets (SYN, FIN, RST) and non-TCP packets, 96 bytes each: flows are
        /// still seen to start and end, their packet and byte counts are partial.
        case reduced = 1
        /// Nothing passes the kernel filter.
        case paused = 2
    }

    /// Changes what the kernel hands the sensor; applied by the capture thread before its next
    /// read (within the capture timeout). A change is reported as a `capture_mode` health event.
    public func setCaptureMode(_ mode: CaptureMode) {
        stopRequested.captureMode.store(mode.rawValue, ordering: .relaxed)
    }

    /// The kernel filter for a capture mode. `tcp[13]` is IPv4 only in BPF, so IPv6 TCP flags
    /// are read at `ip6[53]` when TCP directly follows the fixed header.
    public static func kernelFilter(
        for mode: CaptureMode,
        configured: String?
    ) -> (expression: String?, snapshotLength: Int?) {
        switch mode {
        case .full:
            return (configured, nil)
        case .reduced:
            let control = "(not tcp or (ip and tcp[13] & 7 != 0) or (ip6 and ip6[6] = 6 and ip6[53] & 7 != 0))"
            return (configured.map { "(\($0)) and \(control)" } ?? control, 96)
        case .paused:
            return ("less 1", 64)
        }
    }

    /// Packets kept longer than the snap length when flow metadata is on, so DNS answers and
    /// TLS server names are in the captured bytes: UDP port 53, and TCP segments whose payload
    /// starts with a TLS handshake record holding a ClientHello (IPv4; IPv6 when TCP follows
    /// the fixed header), up to 2048 bytes (a full-size Ethernet frame: a ClientHello with a
    /// post-quantum key share fills one). Everything else stays at the snap length. The TCP
    /// test first checks the IP length leaves at least 6 payload bytes, so its loads stay in
    /// the packet.
    public static let metadataSnapshot = PcapCaptureOptions.LargeSnapshot(
        filter: "udp port 53"
            + " or (ip and tcp and ip[2:2] > ((ip[0] & 0xf) << 2) + ((tcp[12] & 0xf0) >> 2) + 5"
            + " and tcp[(tcp[12] & 0xf0) >> 2] = 22 and tcp[((tcp[12] & 0xf0) >> 2) + 5] = 1)"
            + " or (ip6 and ip6[6] = 6 and ip6[4:2] > ((ip6[52] & 0xf0) >> 2) + 5"
            + " and ip6[40 + ((ip6[52] & 0xf0) >> 2)] = 22 and ip6[45 + ((ip6[52] & 0xf0) >> 2)] = 1)",
        length: 2048
    )

    /// Stops capturing, reports the flows still tracked and finishes `events`. Idempotent;
    /// blocks until the capture thread has ended.
    public func stop() {
        let thread = lifecycle.withLock { state -> PosixThread? in
            defer { state = .stopped }
            if case .running(let thread) = state { return thread }
            return nil
        }
        stopRequested.request()
        capture.breakLoop()
        if let thread {
            thread.join()
        } else {
            continuation.finish()
        }
        attributor?.stop()
    }

    /// Process attribution counters so far; nil when attribution is off.
    public var attributionStatistics: FlowAttributionStatistics? {
        attributor?.statistics
    }
}

/// The body of the capture thread.
private final class FlowCaptureLoop: Sendable {
    let capture: PcapCapture
    let configuration: FlowSensorConfiguration
    let continuation: AsyncStream<Event>.Continuation
    let stopRequested: StopSignal
    let logger: Logger
    private let queueDropped = Atomic<UInt64>(0)
    let attributor: FlowAttributor?

    init(
        capture: PcapCapture,
        configuration: FlowSensorConfiguration,
        continuation: AsyncStream<Event>.Continuation,
        stopRequested: StopSignal,
        logger: Logger,
        attributor: FlowAttributor? = nil
    ) {
        self.attributor = attributor
        self.capture = capture
        self.configuration = configuration
        self.continuation = continuation
        self.stopRequested = stopRequested
        self.logger = logger
    }

    private static func wallClock() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    private func yield(_ payload: Event.Payload) {
        if case .dropped = continuation.yield(Event(payload: payload)) {
            queueDropped.add(1, ordering: .relaxed)
        }
    }

    func run() {
        var decoder = PacketDecoder()
        var table = FlowTable(configuration: configuration.table)
        var packet = DecodedPacket()
        let statisticsEvery = configuration.statisticsInterval.nanoseconds
        var lastExpiry = Self.wallClock()
        var lastStatistics = lastExpiry
        var appliedMode = FlowSensor.CaptureMode.full
        var attributions = FlowAttributions(
            capacity: configuration.table.maxFlows,
            maximumDelay: configuration.attribution?.maximumReportDelay ?? .zero
        )
        while !stopRequested.isRequested {
            let wanted = FlowSensor.CaptureMode(rawValue: stopRequested.captureMode.load(ordering: .relaxed)) ?? .full
            if wanted != appliedMode {
                apply(wanted)
                appliedMode = wanted
            }
            let result: PcapCapture.DispatchResult
            do {
                result = try capture.dispatch { captured in
                    if decoder.decode(captured.bytes, linkType: captured.linkType, into: &packet) {
                        let created = table.statistics.flowsCreated
                        table.add(packet, at: captured.timestampNanoseconds, frame: captured.bytes)
                        // Attribution hook: the first packet of a new flow.
                        if let attributor, table.statistics.flowsCreated != created { attributor.flowStarted(packet) }
                    }
                }
            } catch {
                logger.error("capture failed", metadata: ["error": "\(error)"])
                yield(.health(AgentHealth(kind: "capture_failed", message: error.description)))
                break
            }
            let now = Self.wallClock()
            if now &- lastExpiry >= 1_000_000_000 {
                table.expire(now: now)
                lastExpiry = now
            }
            attributions.report(table.takeCompleted(), attributor: attributor, now: now) { yield(.flow($0)) }
            if now &- lastStatistics >= statisticsEvery {
                reportStatistics(decoder: decoder, table: table)
                lastStatistics = now
            }
            if case .interrupted = result { break }
        }
        table.flush()
        attributor?.waitIdle(timeout: .seconds(2))
        attributions.report(table.takeCompleted(), attributor: attributor, now: Self.wallClock(), final: true) {
            yield(.flow($0))
        }
        reportStatistics(decoder: decoder, table: table)
        continuation.finish()
    }

    private func apply(_ mode: FlowSensor.CaptureMode) {
        let (expression, snap) = FlowSensor.kernelFilter(for: mode, configured: configuration.capture.filter)
        do {
            // Reduced and paused captures keep no payload: the large snap is for full only.
            try capture.setFilter(
                expression,
                snapshotLength: snap,
                largeSnapshot: mode == .full ? capture.options.largeSnapshot : nil
            )
            logger.info("capture mode changed", metadata: ["mode": "\(mode)", "filter": "\(expression ?? "")"])
            yield(
                .health(
                    AgentHealth(
                        kind: "capture_mode",
                        message: "flow sensor capture \(mode)"
                            + (mode == .full ? "" : " by the self-watchdog: flows are partial"),
                        counters: ["mode": UInt64(mode.rawValue)]
                    )
                )
            )
        } catch {
            logger.error("cannot change the capture filter", metadata: ["mode": "\(mode)", "error": "\(error)"])
            yield(.health(AgentHealth(kind: "capture_mode_failed", message: "\(mode): \(error)")))
        }
    }

    private func reportStatistics(decoder: PacketDecoder, table: FlowTable) {
        var counters = decoder.statistics.droppedByReason
        counters["packets"] = decoder.statistics.packets
        counters["fragments"] = decoder.statistics.fragments
        counters["flow_evictions"] = table.statistics.evictions
        counters["live_flows"] = UInt64(table.statistics.liveFlows)
        counters["queue_dropped"] = queueDropped.load(ordering: .relaxed)
        if let attribution = attributor?.statistics { counters.merge(attribution.counters) { $1 } }
        var message = "capture statistics"
        if let stats = try? capture.statistics() {
            counters["pcap_received"] = stats.received
            counters["pcap_dropped"] = stats.dropped
            counters["pcap_interface_dropped"] = stats.interfaceDropped
            if stats.dropped > 0 || stats.interfaceDropped > 0 {
                message = "capture statistics: the kernel dropped packets"
            }
        }
        yield(.health(AgentHealth(kind: "pcap_stats", message: message, counters: counters)))
    }
}

/// A stop request (and the wanted capture mode) shared by the sensor and its capture thread.
private final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    let captureMode = Atomic<Int>(FlowSensor.CaptureMode.full.rawValue)

    func request() {
        flag.store(true, ordering: .releasing)
    }

    var isRequested: Bool {
        flag.load(ordering: .acquiring)
    }
}
