import Logging
import VigilCore

/// The second stage, on its own thread: hashes what the reader asked for, then hands the
/// events over, in reader order and in chunks, to the bounded `events` stream.
///
/// Hashing lives here so that reading the inotify queue never waits on file content: under
/// churn the reader keeps draining the kernel queue while this stage catches up. When its
/// backlog passes half of the queue bound it stops hashing (`hashSkipped = "backlog"`) rather
/// than let the bound drop events. Drops at either queue are counted and reported as a
/// `queue_drop` health event at the next opportunity (at most once a second).
final class EventEmitter {
    private let queue: StageQueue
    private let continuation: AsyncStream<[Event]>.Continuation
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
    /// Events handed over and not yet taken that the stream holds at most (`queueCapacity`).
    private let capacity: Int
    private let backlog: StreamBacklog
    private var reportedDrops: UInt64 = 0
    private var nextDropReport = ContinuousClock.now
    private static let dropReportInterval = Duration.seconds(1)
    /// Held-back events (health, and file events a rule would alert on) at most.
    private static let maxPendingKept = 1024
    /// Events prepared before being handed over together.
    private static let chunk = 1024
    private static let chunkTime = Duration.milliseconds(10)

    init(
        queue: StageQueue,
        continuation: AsyncStream<[Event]>.Continuation,
        counters: SensorCounters,
        hashMaxBytes: Int64,
        shared: SensorShared,
        attribution: FileAttribution? = nil,
        logger: Logger
    ) {
        self.shared = shared
        self.capacity = queue.capacity
        self.backlog = shared.backlog
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
        while true {
            let finished = queue.take(into: &batch)
            if batch.isEmpty {
                if finished { break }
                deliver([], fileEvents: 0)
                _ = try? queue.wakeup.wait(timeoutMilliseconds: 1000)
                _ = try? queue.wakeup.drain()
                continue
            }
            // Every change of the batch has its fanotify record queued by now.
            attribution?.synchronize()
            // Prepare (hash) a chunk, then hand it over at once: the consumer is woken once per
            // chunk, not once per event. Hashing is what takes time, so a chunk also ends after
            // `chunkTime` of it. Items are moved out from the end (hence the reversal), not copied.
            batch.reverse()
            while !batch.isEmpty {
                var ready: [Event] = []
                ready.reserveCapacity(min(batch.count, Self.chunk))
                var fileEvents = 0
                let began = ContinuousClock.now
                while ready.count < Self.chunk, let item = batch.popLast() {
                    let (event, hashed) = prepare(item)
                    if case .file = event.payload { fileEvents += 1 }
                    ready.append(event)
                    if hashed, ContinuousClock.now - began > Self.chunkTime { break }
                }
                let taken = ready.count
                deliver(ready, fileEvents: fileEvents)
                queue.markDone(taken)
            }
        }
        deliver([], fileEvents: 0, forceDropReport: true)
        if !pendingHealth.isEmpty {
            logger.info(
                "file sensor finished with health events undelivered",
                metadata: ["count": "\(pendingHealth.count)"]
            )
        }
        continuation.finish()
    }

    /// Turns a stage item into its event, hashing the file if asked (then `hashed` is true).
    private func prepare(_ item: consuming StageItem) -> (event: Event, hashed: Bool) {
        switch consume item {
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

    /// Hands over, as one chunk: the events held back earlier, then `events` (`fileEvents` of
    /// them file events), then a `queue_drop` report if drops are unreported (at most once a
    /// second unless forced), as far as the stream's bound allows. What does not fit: health
    /// events and file events a rule would alert on are held back (up to `maxPendingKept`),
    /// other file events dropped and counted.
    private func deliver(_ events: consuming [Event], fileEvents: Int, forceDropReport: Bool = false) {
        var room = capacity - backlog.value
        if pendingHealth.isEmpty, events.count <= room {
            // Everything fits: the array itself is handed over.
            var chunk = events
            if chunk.count < room, let report = dropReport(force: forceDropReport) { chunk.append(report) }
            handOver(chunk, fileEvents: fileEvents)
            return
        }
        var chunk: [Event] = []
        chunk.reserveCapacity(min(max(room, 0), pendingHealth.count + events.count + 1))
        var delivered = 0
        if !pendingHealth.isEmpty {
            let fitting = min(max(room, 0), pendingHealth.count)
            for event in pendingHealth.prefix(fitting) {
                if case .file = event.payload { delivered += 1 }
                chunk.append(event)
            }
            pendingHealth.removeFirst(fitting)
            room -= fitting
        }
        for event in events {
            // Held-back events go first: nothing overtakes them.
            if room > 0, pendingHealth.isEmpty {
                if case .file = event.payload { delivered += 1 }
                chunk.append(event)
                room -= 1
            } else if case .file = event.payload {
                if pendingHealth.count < Self.maxPendingKept, let keep = shared.keepWhenFull.withLock({ $0 }),
                    keep(event)
                {
                    pendingHealth.append(event)
                } else {
                    counters.streamDrops.add(1, ordering: .relaxed)
                }
            } else {
                pendingHealth.append(event)
                if pendingHealth.count > Self.maxPendingKept { pendingHealth.removeFirst() }
            }
        }
        if room > 0, pendingHealth.isEmpty, let report = dropReport(force: forceDropReport) {
            chunk.append(report)
        }
        handOver(chunk, fileEvents: delivered)
    }

    private func handOver(_ chunk: consuming [Event], fileEvents: Int) {
        guard !chunk.isEmpty else { return }
        backlog.handedOver(chunk.count)
        counters.events.add(UInt64(fileEvents), ordering: .relaxed)
        _ = continuation.yield(chunk)
    }

    /// A `queue_drop` health event if drops are unreported and the last report is a second old
    /// (or `force`); counts them as reported.
    private func dropReport(force: Bool) -> Event? {
        let total = counters.queueDrops
        guard total > reportedDrops else { return nil }
        let now = ContinuousClock.now
        guard force || now >= nextDropReport else { return nil }
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
        logger.info(
            "file sensor dropped events",
            metadata: ["dropped": "\(total - reportedDrops)", "dropped_total": "\(total)"]
        )
        reportedDrops = total
        nextDropReport = now + Self.dropReportInterval
        return Event(payload: .health(health))
    }
}

@available(*, unavailable)
extension EventEmitter: Sendable {}
