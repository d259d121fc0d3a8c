import Foundation
import Logging
import VigilCore
import VigilLinux
import VigilPolicy
import VigilSensors
import VigilSpool
import VigilWire

extension Agent {
    /// What `Agent.prepare` opened: handed from vigild's single-threaded start-up to `run()`.
    public struct Prepared: Sendable {
        public let identity: AgentIdentity
        public let spool: Spool
        public let settings: CollectionSettings
        public let policySet: PolicySet
        public let notApplicable: Int
        public let roots: [String]
        public let fileSensor: FileSensor
        public let flowSensor: FlowSensor?
        /// The process sensor (proc connector and fanotify opened, reader not started).
        public var processSensor: ProcessSensor? = nil
        /// Health events from start-up (a capture that could not be opened, say).
        public let startupHealth: [Event]
        /// Health events describing the sandbox, set by whoever installed it.
        public var sandboxHealth: [Event] = []
        /// The local control socket (bound, not yet served); nil when it could not be bound.
        var control: ControlServer? = nil
        /// The Prometheus endpoint's socket (`metrics_listen`; bound and listening, not yet served).
        var metricsListener: TCPListener? = nil
        /// Descriptors the sandbox must let an event loop `listen` on again (the metrics socket).
        public var listeningSockets: [Int32] { [metricsListener?.fileDescriptor].compactMap { $0 }.filter { $0 >= 0 } }
        public let logger: Logger
    }

    /// How long after start-up, and after the ladder is back at full, the agent hands back the
    /// pages it no longer uses (`ResidentMemory.release`).
    static let memoryReleaseDelay = Duration.seconds(10)

    /// The self-watchdog: samples `/proc/self` every `sample_interval_ms`, moves the shed ladder,
    /// applies its level to the sensors, and reports every level change and what was shed.
    /// Once start-up is over, and again once a flood is (back at full collection), the pages
    /// that only they needed go back to the kernel.
    func budgetLoop(governor: BudgetGovernor, fileSensor: FileSensor, flowSensor: FlowSensor?, logger: Logger) async {
        let interval = Duration.milliseconds(governor.budget.sampleIntervalMilliseconds)
        var lastShedReport = ContinuousClock.now
        var releaseAt: ContinuousClock.Instant? = clockOrigin + Self.memoryReleaseDelay
        while keepsRunning {
            try? await Task.sleep(for: interval)
            let now = ContinuousClock.now
            var report: [Event] = []
            if let due = releaseAt, now >= due {
                releaseAt = nil
                releaseMemory(logger: logger)
            }
            if let usage = ProcessUsage.current(), let transition = governor.observe(usage, at: now - clockOrigin) {
                let level = transition.to
                if level == .full { releaseAt = now + Self.memoryReleaseDelay }
                fileSensor.setHashingPaused(level.pausesHashing)
                flowSensor?.setCaptureMode(
                    level.pausesLowPrioritySensor ? .paused : level.reducesCapture ? .reduced : .full
                )
                metrics.shedStep(up: transition.to > transition.from)
                let event = governor.transitionEvent(transition)
                if case .health(let health) = event.payload {
                    logger.notice(
                        "self-watchdog level changed",
                        metadata: ["from": "\(transition.from)", "to": "\(level)", "detail": "\(health.message)"]
                    )
                }
                report.append(event)
            }
            // What was shed, at most every 2 s and at every level change.
            if !report.isEmpty || now - lastShedReport >= .seconds(2) {
                if let shed = governor.shedReport(hashesShedTotal: fileSensor.statistics.hashesShed) {
                    report.insert(shed, at: 0)
                }
                lastShedReport = now
            }
            if !report.isEmpty {
                pending.withLock { $0.events.append(contentsOf: report) }
            }
        }
        if let shed = governor.shedReport(hashesShedTotal: fileSensor.statistics.hashesShed) {
            pending.withLock { $0.events.append(shed) }
        }
    }

    /// `ResidentMemory.release()`, logged with the resident size before and after.
    func releaseMemory(logger: Logger) {
        let before = ProcessUsage.current()?.residentBytes ?? 0
        let release = ResidentMemory.release()
        let after = ProcessUsage.current()?.residentBytes ?? 0
        var metadata: Logger.Metadata = [
            "rss_before_kib": "\(before / 1024)", "rss_after_kib": "\(after / 1024)",
            "mappings": "\(release.mappings)",
        ]
        if release.refusedErrno != 0 { metadata["madvise_errno"] = "\(release.refusedErrno)" }
        logger.info("released pages no longer in use", metadata: metadata)
    }
}
