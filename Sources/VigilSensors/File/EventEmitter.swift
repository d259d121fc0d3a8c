import Logging
import VigilCore

/// The second stage, on its own thread: hashes what the reader asked for, then yields the
/// events, in reader order, into the bounded `events` stream.
///
/// Hashing lives here so that reading the inotify queue never waits on file content: under
/// churn the reader keeps draining the kernel queue while this stage catches up. When its
/// backlog passes half of the queue bound it stops hashing (`hashSkipped = "backlog"`) rather
/// than let the bound drop events. Drops at either queue are counted and reported as a
/// `queue_drop` health event at the next opportunity (at most once a second).
final class EventEmitter {
    private let queue: StageQueue
    private let continuation: AsyncStream<Event>.Continuation
    private let counters: SensorCounters
    private let hashMaxBytes: Int64
    private let logger: Logger
    private let hasher = FileHasher()
    /// Holds `hashingPaused`, set by the agent's self-watchdog: hashing is shed (`hashSkipped = "shed"`).
    private let shared: SensorShared
    /// Names the process of each change, when fanotify is available.
    private let attribution: FileAttribution?

    /// Health events the stream refused (full), and file events a rule would alert on
    /// (`keepWhenFull`); retried before anything else.
    private var pendingHealth: [Event] = []
    private var reportedDrops: UInt64 = 0
    private var nextDropReport = ContinuousClock.now
    private static let dropReportInterval = Duration.seconds(1)
    /// Held-back events (health, and file events a rule would alert on) at most.
    private static let maxPendingKept = 1024
    /// Events prepared before being yielded together.
    private static let chunk = 1024
    private static let chunkTime = Duration.milliseconds(10)

    init(
        queue: StageQueue,
        continuation: AsyncStream<Event>.Continuation,
        counters: SensorCounters,
        hashMaxBytes: Int64,
        shared: SensorShared,
        attribution: FileAttribution? = nil,
        logger: Logger
    ) {
        self.shared = shared
        self.attribution = attribution
        self.queue = queue
        self.continuation = continuation
        self.counters = counters
        self.hashMaxBytes = hashMaxBytes
        self.logger = logger
    }

    /// Runs until the queue is finished and drained, then finishes the stream.
    func run() {
        var batch: [StageItem] = []
        var ready: [Event] = []
        while true {
            let finished = queue.take(into: &batch)
            if batch.isEmpty {
                if finished { break }
                flushHealthAndDrops()
                _ = try? queue.wakeup.wait(timeoutMilliseconds: 1000)
                _ = try? queue.wakeup.drain()
                continue
            }
            // Every change of the batch has its fanotify record queued by now.
            attribution?.synchronize()
            // Prepare (hash) a chunk, then yield it in a tight loop: a consumer that drains faster
            // than events are prepared would otherwise suspend and be woken once per event.
            // Hashing is what takes time, so a chunk also ends after `chunkTime` of it.
            var start = 0
            while start < batch.count {
                let limit = min(batch.count, start + Self.chunk)
                let began = ContinuousClock.now
                var end = start
                while end < limit {
                    let (event, hashed) = prepare(batch[end])
                    ready.append(event)
                    end += 1
                    if hashed, ContinuousClock.now - began > Self.chunkTime { break }
                }
                for event in ready { deliver(event) }
                ready.removeAll(keepingCapacity: true)
                queue.markDone(end - start)
                start = end
            }
            batch.removeAll(keepingCapacity: true)
        }
        flushHealthAndDrops(force: true)
        if !pendingHealth.isEmpty {
            logger.info(
                "file sensor finished with health events undelivered",
                metadata: ["count": "\(pendingHealth.count)"]
            )
        }
        continuation.finish()
    }

    /// Turns a stage item into its event, hashing the file if asked (then `hashed` is true).
    private func prepare(_ item: StageItem) -> (event: Event, hashed: Bool) {
        switch item {
        case .health(let health, let time):
            return (Event(time: time, payload: .health(health)), false)
        case .file(var event, let time, let request):
            if event.processId == nil, let actor = attribution?.actor(of: event.targetFilename) {
                event.processId = actor.pid
                event.image = actor.image
                event.user = actor.user
            }
            if let request {
                if shared.hashingPaused.load(ordering: .relaxed) {
                    event.hashSkipped = "shed"
                    counters.hashesShed.add(1, ordering: .relaxed)
                } else if queue.backlog > queue.capacity / 2 {
                    event.hashSkipped = "backlog"
                } else {
                    switch hasher.hash(path: request.path, inode: request.inode, maxBytes: hashMaxBytes) {
                    case .digest(let hex): event.sha256 = hex
                    case .skipped(let reason): event.hashSkipped = reason
                    }
                    return (Event(time: time, payload: .file(event)), true)
                }
            }
            return (Event(time: time, payload: .file(event)), false)
        }
    }

    private func deliver(_ event: Event) {
        guard case .file = event.payload else {
            yieldHealth(event)
            return
        }
        if !pendingHealth.isEmpty || counters.queueDrops > reportedDrops { flushHealthAndDrops() }
        switch continuation.yield(event) {
        case .enqueued:
            counters.events.add(1, ordering: .relaxed)
        case .dropped:
            // A rule would alert on it: held back with the health events and retried first.
            if pendingHealth.count < Self.maxPendingKept, let keep = shared.keepWhenFull.withLock({ $0 }), keep(event) {
                pendingHealth.append(event)
            } else {
                counters.streamDrops.add(1, ordering: .relaxed)
            }
        case .terminated:
            break
        @unknown default:
            break
        }
    }

    private func yieldHealth(_ event: Event) {
        if pendingHealth.isEmpty, case .enqueued = continuation.yield(event) { return }
        pendingHealth.append(event)
        if pendingHealth.count > Self.maxPendingKept { pendingHealth.removeFirst() }
        flushHealthAndDrops()
    }

    /// Delivers refused health events, then a `queue_drop` report if drops are unreported.
    private func flushHealthAndDrops(force: Bool = false) {
        while let first = pendingHealth.first {
            guard case .enqueued = continuation.yield(first) else { return }
            pendingHealth.removeFirst()
            if case .file = first.payload { counters.events.add(1, ordering: .relaxed) }
        }
        let total = counters.queueDrops
        guard total > reportedDrops else { return }
        let now = ContinuousClock.now
        guard force || now >= nextDropReport else { return }
        let stage = counters.stageDrops.load(ordering: .relaxed)
        let stream = counters.streamDrops.load(ordering: .relaxed)
        let health = AgentHealth(
            kind: "queue_drop",
            message: "file sensor dropped \(total - reportedDrops) events at a full queue (consumer too slow)",
            counters: [
                "dropped": total - reportedDrops,
                "dropped_total": total,
                "stage_dropped_total": stage,
                "stream_dropped_total": stream,
            ]
        )
        guard case .enqueued = continuation.yield(Event(payload: .health(health))) else { return }
        logger.info(
            "file sensor dropped events",
            metadata: ["dropped": "\(total - reportedDrops)", "dropped_total": "\(total)"]
        )
        reportedDrops = total
        nextDropReport = now + Self.dropReportInterval
    }
}

@available(*, unavailable)
extension EventEmitter: Sendable {}
