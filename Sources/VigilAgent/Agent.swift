import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import UnixSignals
import VigilCore
import VigilLinux
import VigilPolicy
import VigilSensors
import VigilSpool
import VigilWire

/// The agent: sensors → spool → shipper, as one swift-service-lifecycle `Service`.
///
/// Events from the sensors are numbered and written to the spool in small transactions (every
/// `flushInterval`); the shipper seals the oldest unsent events into signed, chained batches and
/// delivers them, resending until the collector confirms. On graceful shutdown the sensors stop,
/// what they produced is flushed to the spool, and the shipper gets a bounded time to deliver.
public final class Agent: Service {
    public let configuration: AgentConfiguration
    private let logger: Logger
    private let httpClient: HTTPClient
    private let notifier: SystemdNotifier
    /// When the flush loop last completed a pass (ContinuousClock nanoseconds since start): the
    /// systemd watchdog is fed only while the pipeline moves.
    private let heartbeat = Atomic<Int64>(0)
    let clockOrigin = ContinuousClock.now
    /// The rules events are evaluated against as they are read; swapped whole on SIGHUP.
    private let policy = Mutex<PolicySet?>(nil)
    /// Events read from sensors but not yet in the spool.
    let pending = Mutex<PendingEvents>(PendingEvents())
    let shutdownRequested = Atomic<Bool>(false)
    /// What `prepare` opened before the sandbox closed (vigild); nil: `run()` prepares.
    let prepared: Prepared?
    /// The self-watchdog, set by `run()` before the sensors' readers start.
    let governorBox = Mutex<BudgetGovernor?>(nil)
    /// Set once the flush loop made its last commit after shutdown was requested.
    private let finalFlushDone = Atomic<Bool>(false)
    /// How often sensor output is committed to the spool.
    let flushInterval: Duration = .milliseconds(50)
    /// The sleeps waited for in `untilShutdown`, by number: `onGracefulShutdown` cuts them short.
    private let shutdownSleeps = Mutex<(next: Int, tasks: [Int: Task<Void, Never>])>((0, [:]))
    /// The agent's loops go round until shutdown, or until they are cancelled (another loop
    /// failed): a cancelled `try? await Task.sleep` returns at once, so a loop that looked at
    /// the shutdown flag alone would spin instead of letting the agent exit with the error.
    var keepsRunning: Bool { !shutdownRequested.load(ordering: .sequentiallyConsistent) && !Task.isCancelled }
    /// The longest the flush loop sleeps while nothing is pending (the watchdog's heartbeat).
    let idleFlushWait: Duration = .seconds(1)
    /// Bound of the in-memory buffer in front of the spool (about 400 bytes an event in memory).
    let pendingCapacity = 32_768
    /// Room past `pendingCapacity` kept for events that raised an alert and for agent health:
    /// a full buffer sheds raw events, never alerts.
    let priorityReserve = 8_192
    /// How long shutdown waits for the collector to take what is spooled.
    let drainTimeout: Duration = .seconds(5)
    /// What the Prometheus endpoint (`metrics_listen`) serves: this agent's own counts.
    public let metrics = AgentMetrics()
    /// SHA-256 of the rules in force (`policyDigest`), reported in `started`, `policy_loaded`
    /// and `status`.
    let policyHash = Mutex<String>("")
    /// The flow sensor's latest totals of packets the kernel dropped and events its queue dropped.
    let flowDrops = Mutex<(kernel: UInt64, queue: UInt64)>((0, 0))
    /// Events dropped at the full buffer in front of the spool, since start.
    let bufferDrops = Atomic<UInt64>(0)
    /// Set while appends fail for a full disk (see `flush`): its error is logged once.
    let diskFull = Atomic<Bool>(false)

    struct PendingEvents {
        var events: [Event] = [] {
            didSet {
                // Something to flush: an idle flush loop waits no longer.
                if !events.isEmpty, let idleWait {
                    idleWait.cancel()
                    self.idleWait = nil
                }
            }
        }
        /// The flush loop's wait while nothing is pending (see `flushLoop`).
        var idleWait: Task<Void, Never>?
        /// Alerts raised by `events[i]`, evaluated when read (sparse: most events raise none).
        var alerts: [Int: [Alert]] = [:]
        var dropped: [String: UInt64] = [:]
        /// Events (by type) that could not be spooled because the disk was full even after the
        /// spool made room (`Agent.flush`); reported in a `disk_full` health event once an
        /// append succeeds again.
        var lostToFullDisk: [String: UInt64] = [:]
    }

    /// - Parameter notifier: systemd notifications (`Type=notify`, `WatchdogSec=`); by default
    ///   from this process's environment, doing nothing when not started by systemd.
    public init(
        configuration: AgentConfiguration,
        logger: Logger,
        httpClient: HTTPClient,
        notifier: SystemdNotifier = SystemdNotifier(environment: ProcessInfo.processInfo.environment),
        prepared: Prepared? = nil
    ) {
        self.prepared = prepared
        self.configuration = configuration
        self.logger = logger
        self.httpClient = httpClient
        self.notifier = notifier
    }

    /// Loads the agent's identity from the state directory, creating it (0600) on first run.
    public static func loadOrCreateIdentity(configuration: AgentConfiguration, logger: Logger) throws -> AgentIdentity {
        try FileManager.default.createDirectory(
            atPath: configuration.stateDirectory,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        if FileManager.default.fileExists(atPath: configuration.keyPath) {
            return try AgentIdentity.load(from: configuration.keyPath)
        }
        let identity = AgentIdentity.generate()
        try identity.save(to: configuration.keyPath)
        logger.info(
            "generated agent key",
            metadata: [
                "agent_id": "\(identity.agentId)", "key_id": "\(identity.keyId)", "path": "\(configuration.keyPath)",
            ]
        )
        return identity
    }

    /// Opens everything that needs privileges or writes outside the state directory: the key,
    /// the spool, the policy, the file sensor (not yet started) and the packet capture. vigild
    /// calls it while the process is still single-threaded, then installs the sandbox (see
    /// `AgentSandbox`), so every thread started afterwards inherits it. New privileged handles
    /// (netlink, fanotify) belong here too.
    public static func prepare(configuration: AgentConfiguration, logger: Logger) throws -> Prepared {
        let identity = try loadOrCreateIdentity(configuration: configuration, logger: logger)
        let spool = try Spool(
            path: configuration.spoolPath,
            limits: Spool.Limits(maxBytes: configuration.spoolMaxBytes)
        )
        let settings = try CollectionSettings.load(policiesDirectory: configuration.policiesDirectory)
        let (policySet, notApplicable) = try loadPolicy(configuration.policiesDirectory)
        let logger = {
            var logger = logger
            logger[metadataKey: "agent_id"] = "\(identity.agentId)"
            return logger
        }()
        let roots = (settings.files.watch + configuration.additionalWatchPaths).filter { path in
            if FileManager.default.fileExists(atPath: path) { return true }
            logger.notice("watched path does not exist; skipping it", metadata: ["path": "\(path)"])
            return false
        }
        let sensor = try FileSensor(
            configuration: FileSensorConfiguration(
                paths: roots,
                // The agent's own spool writes would otherwise feed back into the stream.
                exclude: settings.files.exclude + configuration.additionalExcludePaths + [configuration.stateDirectory],
                hashMaxBytes: settings.files.hashMaxBytes,
                queueCapacity: 16_384,
                // fanotify names the process of each change (opened here, before the sandbox
                // drops CAP_SYS_ADMIN); `processes: fanotify: false` turns it off too.
                attributeProcesses: settings.processes?.fanotify ?? true
            ),
            logger: logger
        )
        var startupHealth: [Event] = []
        var metricsListener: TCPListener? = nil
        if let endpoint = configuration.metricsListen {
            do {
                metricsListener = try TCPListener(host: endpoint.host, port: endpoint.port)
            } catch {
                logger.error(
                    "cannot listen for metrics; running without them",
                    metadata: ["metrics_listen": "\(endpoint)", "errno": "\(error)"]
                )
                startupHealth.append(
                    Event(payload: .health(AgentHealth(kind: "metrics_unavailable", message: "\(endpoint): \(error)")))
                )
            }
        }
        let flowSensor = settings.network.flatMap {
            openFlowSensor($0, configuration: configuration, logger: logger, health: &startupHealth)
        }
        let processSensor = settings.processes.flatMap { openProcessSensor($0, logger: logger, health: &startupHealth) }
        var prepared = Prepared(
            identity: identity,
            spool: spool,
            settings: settings,
            policySet: policySet,
            notApplicable: notApplicable.count,
            roots: roots,
            fileSensor: sensor,
            flowSensor: flowSensor,
            startupHealth: startupHealth,
            logger: logger
        )
        prepared.processSensor = processSensor
        prepared.metricsListener = metricsListener
        do {
            prepared.control = try ControlServer(stateDirectory: configuration.stateDirectory, logger: logger)
        } catch {
            logger.notice(
                "no control socket: selftest results cannot be reported to this agent",
                metadata: ["path": "\(configuration.stateDirectory)/\(AgentControl.socketName)", "errno": "\(error)"]
            )
        }
        return prepared
    }

    public func run() async throws {
        let prepared = try self.prepared ?? Self.prepare(configuration: configuration, logger: logger)
        let (identity, spool, settings, policySet, roots, logger) = (
            prepared.identity, prepared.spool, prepared.settings, prepared.policySet, prepared.roots, prepared.logger
        )
        policy.withLock { $0 = policySet }
        policyHash.withLock { $0 = Self.policyDigest(policySet, directory: configuration.policiesDirectory) }
        let governor = BudgetGovernor(budget: settings.budget)
        governorBox.withLock { $0 = governor }
        pending.withLock { $0.events.append(contentsOf: prepared.startupHealth) }
        let sensor = prepared.fileSensor
        // Alerts are shed last: a full file-sensor queue drops events no alerting rule matches
        // first (asked only of events about to be dropped; rate limits are not consulted).
        sensor.keepWhenFull { event in
            guard let policy = self.policy.withLock({ $0 }) else { return false }
            return policy.hasAlertingMatch(EventFields(event))
        }
        try sensor.start()
        let flowSensor = prepared.flowSensor
        if let flowSensor {
            do {
                try flowSensor.start()
            } catch {
                logger.error("packet capture unavailable; running without flow events", metadata: ["error": "\(error)"])
            }
        }
        let processSensor = Self.startProcessSensor(prepared.processSensor, logger: logger)
        let control = prepared.control
        defer { control?.stop() }
        do {
            try control?.start { event in self.pending.withLock { $0.events.append(event) } }
        } catch {
            logger.notice("control socket not served", metadata: ["errno": "\(error)"])
        }
        metrics.setRefresh { [spoolMaxBytes = configuration.spoolMaxBytes] metrics in
            Self.readCounts(
                into: metrics,
                fileSensor: sensor,
                processSensor: processSensor,
                spool: spool,
                spoolMaxBytes: spoolMaxBytes,
                governor: governor
            )
        }
        logger.info("agent started", metadata: ["watching": "\(roots)", "collector": "\(configuration.collectorURL)"])
        try spool.append(
            [
                Event(
                    payload: .health(
                        AgentHealth(
                            kind: "started",
                            message: "vigild \(VigilVersion.string) started; watching \(roots.count) path(s)",
                            counters: ["watched_roots": UInt64(roots.count)],
                            attributes: identityAttributes()
                        )
                    )
                ),
                Self.policyLoaded(
                    policySet,
                    notApplicable: prepared.notApplicable,
                    directory: configuration.policiesDirectory
                ),
            ] + prepared.sandboxHealth + Self.spoolRecovered(spool, logger: logger)
        )

        let client = CollectorClient(baseURLs: configuration.collectorURLs, client: httpClient)
        notifier.ready(status: "watching \(roots.count) path(s), shipping to \(configuration.collectorURL)")
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { await self.readSensor(sensor.events) }
                if let flowSensor {
                    group.addTask { await self.readSensor(flowSensor.events) }
                }
                if let processSensor {
                    group.addTask { await self.readSensor(processSensor.events) }
                }
                if let listener = prepared.metricsListener {
                    group.addTask {
                        await MetricsServer.serve(listener: listener, metrics: self.metrics, logger: logger)
                    }
                }
                group.addTask { try await self.flushLoop(spool: spool) }
                group.addTask {
                    await self.statusLoop(
                        fileSensor: sensor,
                        processSensor: processSensor,
                        spool: spool,
                        governor: governor
                    )
                }
                group.addTask {
                    await self.budgetLoop(
                        governor: governor,
                        fileSensor: sensor,
                        flowSensor: flowSensor,
                        logger: logger
                    )
                }
                #if DEBUG
                group.addTask { await self.sandboxProbeForTesting(prepared: prepared, logger: logger) }
                #endif
                group.addTask {
                    try await self.shipLoop(spool: spool, client: client, identity: identity, logger: logger)
                }
                group.addTask { await self.reloadOnHangup(logger: logger) }
                if let interval = notifier.watchdogInterval {
                    group.addTask { await self.feedWatchdog(interval: interval) }
                }
            }
        } onGracefulShutdown: {
            logger.info("shutting down: stopping sensors, flushing spool")
            self.notifier.stopping()
            self.shutdownRequested.store(true, ordering: .sequentiallyConsistent)
            self.shutdownSleeps.withLock { sleeps in
                for sleep in sleeps.tasks.values { sleep.cancel() }
            }
            sensor.stop()
            flowSensor?.stop()
            processSensor?.stop()
            control?.stop()
        }
        logger.info("agent stopped")
    }

    /// A damaged spool repaired on open: logged, and reported as agent health (the gap record,
    /// if seqs were lost, is already in the spool).
    static func spoolRecovered(_ spool: Spool, logger: Logger) -> [Event] {
        guard let recovery = spool.recovery else { return [] }
        logger.error("spool repaired on start", metadata: ["path": "\(spool.path)", "detail": "\(recovery.message)"])
        var counters: [String: UInt64] = [:]
        if let gap = recovery.gap {
            counters["lost_first_seq"] = gap.firstSeq
            counters["lost_last_seq"] = gap.lastSeq
        }
        return [
            Event(payload: .health(AgentHealth(kind: "spool_recovered", message: recovery.message, counters: counters)))
        ]
    }

    /// Sends systemd's watchdog keep-alive at half its interval, but only while the flush loop
    /// keeps completing passes: a wedged pipeline stops the pings and systemd restarts us.
    private func feedWatchdog(interval: Duration) async {
        let period = interval / 2
        while keepsRunning {
            let now = ContinuousClock.now - clockOrigin
            let last = Duration.nanoseconds(heartbeat.load(ordering: .relaxed))
            if now - last < interval { notifier.watchdog() }
            try? await Task.sleep(for: min(period, .seconds(1)))
        }
    }

    /// Loads the rules of the policies directory; a broken policy is refused as a whole with
    /// every error located (`file:line:column: message`).
    static func loadPolicy(_ directory: String) throws -> (PolicySet, [RuleStatus]) {
        do {
            return try PolicySet.load(directory: directory)
        } catch {
            throw AgentError("policy in \(directory) refused:\n\(error.description)")
        }
    }

    static func policyLoaded(_ set: PolicySet, notApplicable: Int, directory: String) -> Event {
        let rules = UInt64(set.report.applicable.count)
        return Event(
            payload: .health(
                AgentHealth(
                    kind: "policy_loaded",
                    message: "\(rules) rule(s) active from \(directory)"
                        + (notApplicable > 0 ? ", \(notApplicable) not applicable" : ""),
                    counters: ["rules": rules, "not_applicable": UInt64(notApplicable)],
                    attributes: [policyHashAttribute: policyDigest(set, directory: directory)]
                )
            )
        )
    }

    /// SIGHUP: load and validate the policy again and swap it in whole between two events, so
    /// every event is evaluated exactly once, by the old rules or the new. A broken policy is
    /// refused, the old one stays, and the refusal travels as agent health.
    private func reloadOnHangup(logger: Logger) async {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        for await _ in hangups.cancelOnGracefulShutdown() {
            let event: Event
            do {
                let (set, notApplicable) = try Self.loadPolicy(configuration.policiesDirectory)
                policy.withLock { $0 = set }
                event = Self.policyLoaded(
                    set,
                    notApplicable: notApplicable.count,
                    directory: configuration.policiesDirectory
                )
                if case .health(let health) = event.payload, let hash = health.attributes[Self.policyHashAttribute] {
                    policyHash.withLock { $0 = hash }
                }
                logger.info("policy reloaded", metadata: ["rules": "\(set.report.applicable.count)"])
            } catch {
                logger.error("policy reload refused; keeping the previous policy", metadata: ["error": "\(error)"])
                event = Event(payload: .health(AgentHealth(kind: "policy_refused", message: "\(error)")))
            }
            pending.withLock { $0.events.append(event) }
        }
    }

    /// Opens the packet capture; a capture that cannot be opened (no CAP_NET_RAW, no such
    /// interface, a bad filter) is reported in the log and as agent health, and the agent runs
    /// on without it. The agent's own traffic to the collector is filtered out in the kernel.
    private static func openFlowSensor(
        _ network: CollectionSettings.Network,
        configuration: AgentConfiguration,
        logger: Logger,
        health: inout [Event]
    ) -> FlowSensor? {
        var filter = network.filter
        if let own = Self.collectorFilter(configuration.collectorURLs) {
            filter = filter.map { "(\($0)) and \(own)" } ?? own
        }
        // Process attribution reads other users' /proc/PID/fd: as root by default.
        let attributes = network.attributeProcesses ?? (geteuid() == 0)
        let config = FlowSensorConfiguration(
            capture: PcapCaptureOptions(
                interface: network.interface,
                snapshotLength: network.snapLength,
                // Attribution looks for a flow's socket once its first packet is read: a short
                // ring timeout lets it find the sockets of short-lived clients.
                timeoutMilliseconds: attributes ? 50 : 250,
                filter: filter,
                largeSnapshot: network.metadata ? FlowSensor.metadataSnapshot : nil
            ),
            table: FlowTableConfiguration(
                maxFlows: network.maxFlows,
                idleTimeout: .seconds(network.idleTimeoutSeconds),
                metadata: network.metadata
            ),
            attribution: attributes ? FlowAttributionConfiguration() : nil
        )
        do {
            return try FlowSensor(configuration: config, logger: logger)
        } catch {
            logger.error("packet capture unavailable; running without flow events", metadata: ["error": "\(error)"])
            health.append(
                Event(payload: .health(AgentHealth(kind: "sensor_unavailable", message: "flow sensor: \(error)")))
            )
            return nil
        }
    }

    /// `not (host H and tcp port P) and ...` for every collector URL (the fallbacks too), so
    /// shipping to any of them creates no flow events.
    package static func collectorFilter(_ urls: [String]) -> String? {
        var clauses: [String] = []
        for url in urls {
            guard let components = URLComponents(string: url), var host = components.host, !host.isEmpty else {
                continue
            }
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }  // IPv6
            let port = components.port ?? (components.scheme == "https" ? 443 : 80)
            // A name: BPF would resolve it at compile time; keep to the port.
            let clause =
                host.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == ":" })
                ? "not (host \(host) and tcp port \(port))" : "not tcp port \(port)"
            if !clauses.contains(clause) { clauses.append(clause) }
        }
        return clauses.isEmpty ? nil : clauses.joined(separator: " and ")
    }

    /// Buffers a sensor's events for the spool. Each raw event is evaluated against the policy
    /// here, as it is read, so that a full buffer (or the self-watchdog) sheds only raw events
    /// that raised no alert: alerts, the events they quote and health records get in.
    private func readSensor(_ events: some AsyncSequence<Event, Never>) async {
        for await event in events {
            metrics.eventRead(event)
            if case .health(let health) = event.payload { noteSensorStatistics(health) }
            var alerts: [Alert] = []
            if !event.isHighPriority, let rules = policy.withLock({ $0 }) {
                alerts = rules.evaluate(event)
            }
            let priority = event.isHighPriority || !alerts.isEmpty
            pending.withLock { p in
                if p.events.count < pendingCapacity || (priority && p.events.count < pendingCapacity + priorityReserve)
                {
                    if !alerts.isEmpty { p.alerts[p.events.count] = alerts }
                    p.events.append(event)
                } else {
                    p.dropped[event.type.rawValue, default: 0] += 1
                    bufferDrops.add(1, ordering: .relaxed)
                    metrics.eventDropped(event.type)
                }
            }
        }
    }

    /// Commits buffered sensor events to the spool until shutdown, then once more.
    ///
    /// Events are gathered for `flushInterval` and committed together. While nothing is
    /// pending the loop sleeps until something is (the first event cancels its wait), or for
    /// `idleFlushWait` at most, so the heartbeat still beats: an idle agent does not wake
    /// every `flushInterval` for nothing.
    private func flushLoop(spool: Spool) async throws {
        // Stopped or cancelled, what is pending is still flushed once more below.
        while keepsRunning {
            let idleWait: Task<Void, Never>? = pending.withLock { p in
                guard p.events.isEmpty else { return nil }
                let wait = Task { [idleFlushWait] in _ = try? await Task.sleep(for: idleFlushWait) }
                p.idleWait = wait
                return wait
            }
            if let idleWait { await untilShutdown(idleWait) }
            try? await Task.sleep(for: flushInterval)
            try flush(spool: spool)
            let elapsed = ContinuousClock.now - clockOrigin
            heartbeat.store(
                elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000,
                ordering: .relaxed
            )
        }
        // Let the sensor's last events reach the buffer.
        try? await Task.sleep(for: flushInterval)
        try flush(spool: spool)
        finalFlushDone.store(true, ordering: .sequentiallyConsistent)
    }

    private func flush(spool: Spool) throws {
        let (events, alerts, dropped, lostBefore) = pending.withLock { p in
            defer {
                p.events.removeAll(keepingCapacity: true)
                p.alerts.removeAll(keepingCapacity: true)
                p.dropped.removeAll()
                p.lostToFullDisk.removeAll()
            }
            return (p.events, p.alerts, p.dropped, p.lostToFullDisk)
        }
        // The self-watchdog's sampling: raw events without alerts may be shed (and counted).
        let governor = governorBox.withLock { $0 }
        var batch: [Event] = []
        var batchAlerts: [[Alert]] = []
        batch.reserveCapacity(events.count + 1)
        for (i, event) in events.enumerated() {
            let raised = alerts[i] ?? []
            if raised.isEmpty, !event.isHighPriority, let governor, !governor.keepRaw(event) { continue }
            batch.append(event)
            batchAlerts.append(raised)
        }
        if let report = Self.dropReport(kind: "queue_drop", cause: "spool buffer full", counts: dropped) {
            batch.append(report)
        }
        if let report = Self.dropReport(
            kind: "disk_full",
            cause: "the disk under the spool was full",
            counts: lostBefore
        ) {
            batch.append(report)
        }
        // Alerts were raised when the events were read; each now quotes its event with its seq.
        func append(_ range: Range<Int>) throws {
            var index = range.lowerBound
            try spool.append(Array(batch[range])) { stored in
                defer { index += 1 }
                guard index < batchAlerts.count else { return [] }
                return batchAlerts[index].map { alert in
                    var alert = alert
                    alert.event = stored
                    return Event(payload: .alert(alert))
                }
            }
        }
        // In transactions of at most `flushChunk` events: on a full disk each must fit in the
        // room the spool can make, and one that cannot loses only itself.
        var lost: [String: UInt64] = [:]
        var failure: (any Error)? = nil
        for start in stride(from: 0, to: batch.count, by: Self.flushChunk) {
            let range = start..<min(start + Self.flushChunk, batch.count)
            do {
                try withRoom(in: spool) { try append(range) }
            } catch  where Spool.isDiskFull(error) {
                // Not even the oldest raw events made room: these are lost, counted, and
                // reported once the spool takes events again. The agent keeps watching.
                failure = error
                for i in range {
                    if i < batchAlerts.count { lost["alert", default: 0] += UInt64(batchAlerts[i].count) }
                    if case .health(let health) = batch[i].payload, health.kind == "disk_full" {
                        lost.merge(lostBefore, uniquingKeysWith: +)
                    } else {
                        lost[batch[i].type.rawValue, default: 0] += 1
                    }
                }
            }
        }
        if let failure {
            pending.withLock { $0.lostToFullDisk.merge(lost, uniquingKeysWith: +) }
            if !diskFull.exchange(true, ordering: .relaxed) {
                logger.error(
                    "the disk under the spool is full and nothing more could be freed in it: events are dropped (and counted) until there is room",
                    metadata: ["spool": "\(spool.path)", "error": "\(failure)"]
                )
            }
        } else if diskFull.exchange(false, ordering: .relaxed) {
            logger.notice("the spool takes events again after the disk under it was full")
        }
        for gap in spool.takeShedReports() {
            logger.warning(
                "\(Self.shedMessage(reason: gap.reason))",
                metadata: [
                    "first_seq": "\(gap.firstSeq)", "last_seq": "\(gap.lastSeq)", "dropped": "\(gap.droppedByType)",
                    "reason": "\(gap.reason)", "max_bytes": "\(spool.limits.maxBytes)",
                ]
            )
        }
    }

    /// What the log says of a gap record the spool wrote, by its reason's prefix.
    static func shedMessage(reason: String) -> String {
        let prefix = reason.prefix { $0 != ":" }
        switch prefix {
        case "spool_full": return "spool full: dropped the oldest events and wrote a gap record"
        case "disk_full": return "the disk under the spool is full: dropped the oldest events and wrote a gap record"
        case "too_large": return "spool: dropped an event the collector refuses as too large and wrote a gap record"
        default: return "spool: dropped events damaged on disk and wrote a gap record"
        }
    }

    /// The most events one flush writes in a transaction.
    static let flushChunk = 2_000

    /// The health event stating events dropped before the spool, by type; nil when none were.
    static func dropReport(kind: String, cause: String, counts: [String: UInt64]) -> Event? {
        guard !counts.isEmpty else { return nil }
        let total = counts.values.reduce(0, +)
        return Event(
            payload: .health(
                AgentHealth(kind: kind, message: "\(total) event(s) dropped: \(cause)", counters: counts)
            )
        )
    }

    /// Runs `write` (an append, a seal, an acknowledgement) through `Spool.makingRoom`: when
    /// the disk under the spool is full, room is made (the reserve given back, the oldest
    /// unsent raw events dropped under a gap record) and it is tried again; logged once per
    /// write. Throws the disk-full error when nothing more could be freed.
    private func withRoom<T>(in spool: Spool, _ write: () throws -> T) throws -> T {
        try spool.makingRoom(write) { error in
            logger.warning(
                "the disk under the spool is full; making room",
                metadata: ["spool": "\(spool.path)", "error": "\(error)"]
            )
        }
    }

    private func shipLoop(spool: Spool, client: CollectorClient, identity: AgentIdentity, logger: Logger) async throws {
        // The key batches are signed with; a key rotation (`KeyRotator`) switches it between two batches.
        var identity = identity
        var sealer = BatchSealer(identity: identity)
        var rotator = KeyRotator(keyPath: configuration.keyPath)
        let shipping = configuration.shipping
        var enrolled = false
        var backoff = Backoff()
        var refusals = RefusalLog()
        let hostname = HostFacts.hostname
        let machineId = HostFacts.machineId
        var drainDeadline: ContinuousClock.Instant? = nil
        var window = DeliveryWindow(capacity: shipping.batchesInFlight)
        defer { window.cancelAll() }
        // Events per batch: `batch_max_events`, halved by each batch refused as too large.
        var batchMaxEvents = shipping.batchMaxEvents

        while true {
            if shutdownRequested.load(ordering: .sequentiallyConsistent) {
                let deadline = drainDeadline ?? ContinuousClock.now + drainTimeout
                drainDeadline = deadline
                if ContinuousClock.now >= deadline {
                    let stats = try spool.statistics()
                    logger.notice(
                        "stopping with events still spooled; they are sent on the next start",
                        metadata: ["pending": "\(stats.pendingEvents)"]
                    )
                    return
                }
            }
            if drainDeadline != nil, rotator.inDoubt {
                logger.notice("stopping while a key rotation is in doubt; it is presented again on the next start")
                return
            }
            if drainDeadline == nil, window.isEmpty {
                switch await rotator.step(signing: identity, spool: spool, client: client, logger: logger) {
                case .none: break
                case .hold:
                    try await pause(.milliseconds(200))
                    continue
                case .enroll: enrolled = false
                case .switched(let next, let retiredKeyId):
                    identity = next
                    sealer = BatchSealer(identity: next)
                    pending.withLock {
                        $0.events.append(
                            Event(
                                payload: .health(
                                    AgentHealth(
                                        kind: "key_rotated",
                                        message: "signing key rotated from \(retiredKeyId) to \(next.keyId)",
                                        attributes: ["key_id": next.keyId, "retired_key_id": retiredKeyId]
                                    )
                                )
                            )
                        )
                    }
                }
            }
            if !enrolled, window.isEmpty {
                if drainDeadline != nil {
                    logger.notice("stopping before enrollment succeeded; spooled events are sent on the next start")
                    return
                }
                guard let token = configuration.enrollToken else {
                    // Without a token, assume the key was enrolled out of band (vigilctl enroll).
                    enrolled = true
                    continue
                }
                do {
                    try await client.enroll(identity: identity, token: token, hostname: hostname, machineId: machineId)
                    enrolled = true
                    backoff.reset()
                    logger.info(
                        "enrolled with collector",
                        metadata: ["collector": "\(client.baseURL)", "key_id": "\(identity.keyId)"]
                    )
                } catch {
                    // A collector whose certificate is refused (CA, name, pin) is an error, not weather.
                    logger.log(
                        level: error.message.contains("TLS") ? .error : .warning,
                        "enrollment failed; will retry",
                        metadata: ["error": "\(error.message)"]
                    )
                    try await pause(backoff.next())
                    continue
                }
            }
            // While draining, no request may outlive the drain deadline.
            var timeout: TimeAmount? = nil
            if let drainDeadline {
                let left = drainDeadline - ContinuousClock.now
                timeout = .milliseconds(
                    max(100, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
                )
            }
            // Batches go ahead of an answer only under a backlog, and not while draining or
            // while a key rotation waits (it needs nothing in flight).
            let sending: Bool
            do {
                sending = try window.fill(ahead: drainDeadline == nil && !rotator.waiting(), timeout: timeout) {
                    after in
                    try withRoom(in: spool) {
                        try spool.nextBatch(
                            after: after,
                            maxEvents: batchMaxEvents,
                            maxBytes: shipping.batchMaxBytes,
                            sealer: sealer
                        )
                    }
                } send: { bytes, previous, timeout in
                    await client.send(batch: bytes, previousInFlight: previous, timeout: timeout)
                }
            } catch  where Spool.isDiskFull(error) {
                // Nothing could be freed in the spool: wait for room (the flush loop counts what
                // it cannot spool meanwhile).
                logger.warning("cannot seal a batch: the disk under the spool is full", metadata: ["error": "\(error)"])
                try await pause(backoff.next())
                continue
            }
            guard sending else {
                if finalFlushDone.load(ordering: .sequentiallyConsistent) { return }  // everything delivered
                try await pause(.milliseconds(Int64(shipping.batchMaxAgeMilliseconds)))
                continue
            }
            let (batch, outcome, roundTrip) = await window.answer()
            metrics.batchSent(outcome, events: batch.eventCount, roundTrip: roundTrip)
            switch outcome {
            case .stored(let duplicate, let chain):
                do {
                    try withRoom(in: spool) { try spool.acknowledge(batch) }
                } catch  where Spool.isDiskFull(error) {
                    // The batch stays in the outbox: it is sent again and answered as a duplicate.
                    logger.warning(
                        "cannot forget a delivered batch: the disk under the spool is full",
                        metadata: ["error": "\(error)"]
                    )
                    try await pause(backoff.next())
                    continue
                }
                backoff.reset()
                refusals.reset()
                logger.debug(
                    "batch delivered",
                    metadata: [
                        "batch_seq": "\(batch.batchSeq)", "events": "\(batch.eventCount)", "duplicate": "\(duplicate)",
                        "chain": "\(chain ?? "")",
                    ]
                )
            case .unknownAgent:
                logger.warning("collector does not know this agent; enrolling again")
                enrolled = false
                refusals.reset()
            case .refused(let status, let error, let message):
                // The same refusal again is logged at debug only (`RefusalLog`); metrics count each.
                let isNew = refusals.isNew(status: status, error: error)
                let metadata: Logger.Metadata = [
                    "batch_seq": "\(batch.batchSeq)", "status": "\(status)", "error": "\(error)",
                    "message": "\(message)",
                ]
                if status == 403, error == "revoked_agent" {
                    // Nothing this agent sends will be taken: keep spooling (the spool is bounded
                    // and says what it drops) and ask again only rarely.
                    let at = RefusalLog.revocationTime(in: message).map { " at \($0)" } ?? ""
                    logger.log(
                        level: isNew ? .error : .debug,
                        isNew
                            ? "this agent was revoked by the collector\(at); events stay in the spool (bounded); re-key and re-enroll under a new id to resume"
                            : "collector still refuses this revoked agent",
                        metadata: metadata.merging(["retry_in_s": "\(shipping.revokedRetrySeconds)"]) { _, new in new }
                    )
                    try await pause(.seconds(shipping.revokedRetrySeconds))
                } else if outcome.isTooLarge, !window.storedBehindRefusal {
                    batchMaxEvents = try resealSmaller(batch, limit: batchMaxEvents, spool: spool, logger: logger)
                    // One event too large is given up (or, a gap record itself, kept and retried).
                    if batch.eventCount == 1 { try await pause(backoff.next()) }
                } else {
                    logger.log(
                        level: isNew ? .error : .debug,
                        isNew ? "collector refused batch; will retry" : "collector refused batch again; will retry",
                        metadata: metadata
                    )
                    try await pause(backoff.next())
                }
            case .rateLimited(let retryAfter):
                logger.debug(
                    "collector asks this agent to slow down; resending after Retry-After",
                    metadata: ["batch_seq": "\(batch.batchSeq)", "retry_after": "\(retryAfter)"]
                )
                try await pause(retryAfter)
            case .retry(let reason):
                logger.log(
                    level: reason.hasPrefix("TLS") ? .error : .warning,
                    "cannot deliver batch; will retry",
                    metadata: ["batch_seq": "\(batch.batchSeq)", "reason": "\(reason)"]
                )
                try await pause(backoff.next())
            }
        }
    }

    /// The collector (or a proxy before it) refused `batch` as too large (413): its events and
    /// those of the batches sealed after it are sealed again, under the same batch numbers, in
    /// batches of half as many events as it held (`Spool.unseal`), kept for the agent's life.
    /// A batch of one event still too large can never be delivered: that event becomes a gap
    /// record saying why. Returns the new events-per-batch limit.
    private func resealSmaller(
        _ batch: Spool.PendingBatch,
        limit: Int,
        spool: Spool,
        logger: Logger
    ) throws -> Int {
        let metadata: Logger.Metadata = [
            "batch_seq": "\(batch.batchSeq)", "events": "\(batch.eventCount)", "bytes": "\(batch.bytes.count)",
        ]
        guard batch.eventCount > 1 else {
            let reason =
                "too_large: the collector refused the event with seq \(batch.lastSeq) as too large (a batch of \(batch.bytes.count) bytes)"
            _ = try withRoom(in: spool) {
                try spool.unseal(from: batch.batchSeq, replacingEvent: batch.lastSeq, reason: reason)
            }
            logger.error(
                "collector refuses a single event as too large; it is replaced by a gap record (a gap record itself is kept and sent again)",
                metadata: metadata.merging(["seq": "\(batch.lastSeq)"]) { _, new in new }
            )
            return limit
        }
        let smaller = min(limit, max(1, batch.eventCount / 2))
        _ = try withRoom(in: spool) { try spool.unseal(from: batch.batchSeq) }
        logger.warning(
            "collector refuses batches this large; sealing them again smaller",
            metadata: metadata.merging(["batch_max_events": "\(smaller)"]) { _, new in new }
        )
        pending.withLock {
            $0.events.append(
                Event(
                    payload: .health(
                        AgentHealth(
                            kind: "batch_too_large",
                            message:
                                "the collector refused a batch of \(batch.eventCount) events (\(batch.bytes.count) bytes) as too large; batches now hold at most \(smaller) events",
                            counters: ["refused_events": UInt64(batch.eventCount), "batch_max_events": UInt64(smaller)]
                        )
                    )
                )
            )
        }
        return smaller
    }

    /// Sleeps for `duration`; once shutdown is requested it returns within `flushInterval`, so
    /// draining starts at once and retries keep going until the drain deadline.
    private func pause(_ duration: Duration) async throws {
        await sleepUnlessShuttingDown(for: duration)
        try Task.checkCancellation()
        if shutdownRequested.load(ordering: .sequentiallyConsistent) {
            try await Task.sleep(for: flushInterval)
        }
    }

    /// Sleeps for `duration`, or until shutdown is requested (`onGracefulShutdown` cancels
    /// every such sleep) or the calling task is cancelled. One sleep, not short steps: an idle
    /// loop does not wake just to look at the shutdown flag.
    func sleepUnlessShuttingDown(for duration: Duration) async {
        await untilShutdown(Task { _ = try? await Task.sleep(for: duration) })
    }

    /// Waits for `sleep` to end, cancelling it when shutdown is requested (`onGracefulShutdown`
    /// cancels every sleep waited for here) or the calling task is cancelled.
    private func untilShutdown(_ sleep: Task<Void, Never>) async {
        let number = shutdownSleeps.withLock { sleeps in
            sleeps.next += 1
            sleeps.tasks[sleeps.next] = sleep
            return sleeps.next
        }
        // Checked after the sleep is registered, for a shutdown that came just before.
        if shutdownRequested.load(ordering: .sequentiallyConsistent) { sleep.cancel() }
        await withTaskCancellationHandler {
            await sleep.value
        } onCancel: {
            sleep.cancel()
        }
        shutdownSleeps.withLock { _ = $0.tasks.removeValue(forKey: number) }
    }
}

/// The agent cannot start, with a message that says why.
public struct AgentError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Facts about this host sent at enrollment.
public enum HostFacts {
    public static var hostname: String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count) == 0 else { return "unknown" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static var machineId: String {
        for path in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
            if let s = try? String(contentsOfFile: path, encoding: .utf8) {
                let id = s.trimmingCharacters(in: .whitespacesAndNewlines)
                if !id.isEmpty { return id }
            }
        }
        return ""
    }
}
