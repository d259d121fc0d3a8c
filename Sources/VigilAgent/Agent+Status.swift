import Crypto
import Foundation
import Synchronization
import VigilCore
import VigilPolicy
import VigilSensors
import VigilSpool

extension Agent {
    /// Attribute keys of the agent-health events that describe the agent (`started`,
    /// `policy_loaded`, `status`); the collector keeps the latest of each in its inventory.
    public static let versionAttribute = "version"
    public static let policyHashAttribute = "policy_sha256"

    /// The SHA-256 (lowercase hex) of a policy's rule files: for each file, ordered by its path
    /// relative to `directory`, that path, a NUL byte, the file's length (8 bytes, big-endian) and
    /// its bytes. Two agents with the same rules under the same names report the same hash,
    /// wherever their policies directory is. A file that cannot be read counts as empty.
    public static func policyDigest(files: [String], directory: String) -> String {
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        let named = files.map { file in
            (name: file.hasPrefix(prefix) ? String(file.dropFirst(prefix.count)) : file, path: file)
        }
        var hasher = SHA256()
        for (name, path) in named.sorted(by: { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }) {
            let bytes = FileManager.default.contents(atPath: path) ?? Data()
            hasher.update(data: Data(name.utf8) + [0])
            withUnsafeBytes(of: UInt64(bytes.count).bigEndian) { hasher.update(bufferPointer: $0) }
            hasher.update(data: bytes)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// The hash of the rules `set` was loaded from (see `policyDigest`).
    static func policyDigest(_ set: PolicySet, directory: String) -> String {
        policyDigest(files: set.report.files, directory: directory)
    }

    /// `version` and `policy_sha256` for the agent-health events that describe the agent.
    func identityAttributes() -> [String: String] {
        [Self.versionAttribute: VigilVersion.string, Self.policyHashAttribute: policyHash.withLock { $0 }]
    }

    /// Counts a sensor's own statistics report carries (the flow sensor's `pcap_stats`), kept for
    /// the status report.
    func noteSensorStatistics(_ health: AgentHealth) {
        guard health.kind == "pcap_stats" else { return }
        flowDrops.withLock {
            $0.kernel = health.counters["pcap_dropped"] ?? $0.kernel
            $0.queue = health.counters["queue_dropped"] ?? $0.queue
        }
    }

    /// The periodic `status` health event: the spool's backlog and the totals shed and dropped
    /// since start (the same counts the Prometheus endpoint serves), with the agent's version
    /// and policy hash, so the collector's inventory shows them without access to the host.
    func statusEvent(
        fileSensor: FileSensor,
        processSensor: ProcessSensor?,
        spool: Spool,
        governor: BudgetGovernor
    ) -> Event {
        let file = fileSensor.statistics
        let process = processSensor?.statistics
        let flow = flowDrops.withLock { $0 }
        let queueDrops =
            file.queueDrops + (process?.queueDropped ?? 0) + flow.queue + bufferDrops.load(ordering: .relaxed)
        let kernelDrops = file.overflows + (process?.kernelOverruns ?? 0) + flow.kernel
        var counters: [String: UInt64] = [
            "events_shed": governor.shedTotals.values.reduce(0, +),
            "hashes_shed": file.hashesShed,
            "queue_drops": queueDrops,
            "kernel_drops": kernelDrops,
            "shed_level": UInt64(governor.level.rawValue),
            "spool_max_bytes": UInt64(spool.limits.maxBytes),
            "uptime_s": UInt64(max((ContinuousClock.now - clockOrigin).components.seconds, 0)),
        ]
        var message = "spool unreadable"
        if let stats = try? spool.statistics() {
            counters["spool_events"] = UInt64(max(stats.pendingEvents, 0))
            counters["spool_bytes"] = UInt64(max(stats.bytes, 0))
            counters["spool_dropped"] = stats.droppedTotal
            message = "\(stats.pendingEvents) event(s) spooled"
        }
        return Event(
            payload: .health(
                AgentHealth(
                    kind: "status",
                    message: message,
                    counters: counters,
                    attributes: identityAttributes()
                )
            )
        )
    }

    /// Reports `statusEvent` every `status_interval_s` until shutdown.
    func statusLoop(fileSensor: FileSensor, processSensor: ProcessSensor?, spool: Spool, governor: BudgetGovernor) async
    {
        let interval = Duration.seconds(configuration.statusIntervalSeconds)
        var next = ContinuousClock.now + interval
        while keepsRunning {
            await sleepUnlessShuttingDown(for: max(next - ContinuousClock.now, .zero))
            guard ContinuousClock.now >= next, !shutdownRequested.load(ordering: .sequentiallyConsistent) else {
                continue
            }
            next = ContinuousClock.now + interval
            let event = statusEvent(
                fileSensor: fileSensor,
                processSensor: processSensor,
                spool: spool,
                governor: governor
            )
            pending.withLock { $0.events.append(event) }
        }
    }
}
