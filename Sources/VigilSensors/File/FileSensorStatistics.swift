import Synchronization

/// Counters of a file sensor since it was created.
public struct FileSensorStatistics: Hashable, Sendable {
    /// File events delivered into the `events` stream.
    public var events: UInt64
    /// `IN_Q_OVERFLOW` seen: the kernel queue overflowed and events were lost.
    public var overflows: UInt64
    /// Watches refused because `fs.inotify.max_user_watches` was reached.
    public var watchLimitHits: UInt64
    /// Events dropped at a full queue (hashing stage input or `events` stream).
    public var queueDrops: UInt64
    /// Directories watched now.
    public var watches: Int
    /// Files not hashed because hashing was paused by the agent's self-watchdog.
    public var hashesShed: UInt64 = 0
    /// fanotify records read for attribution (the watched directories, and execs).
    public var attributionRecords: UInt64 = 0
    /// Of `attributionRecords`, the execs (`FAN_OPEN_EXEC`, marked on whole filesystems: every
    /// exec on them, wherever it writes).
    public var attributionExecRecords: UInt64 = 0
    /// fanotify queue overflows: some changes lost their attribution.
    public var attributionOverflows: UInt64 = 0
    /// Directories not marked for attribution because `fs.fanotify.max_user_marks` was reached.
    public var attributionMarkLimitHits: UInt64 = 0

    public init(
        events: UInt64 = 0,
        overflows: UInt64 = 0,
        watchLimitHits: UInt64 = 0,
        queueDrops: UInt64 = 0,
        watches: Int = 0
    ) {
        self.events = events
        self.overflows = overflows
        self.watchLimitHits = watchLimitHits
        self.queueDrops = queueDrops
        self.watches = watches
    }
}

/// The live counters, written by the sensor's threads and read by anyone.
final class SensorCounters: Sendable {
    let events = Atomic<UInt64>(0)
    let overflows = Atomic<UInt64>(0)
    let watchLimitHits = Atomic<UInt64>(0)
    /// Dropped at the full input of the hashing stage.
    let stageDrops = Atomic<UInt64>(0)
    /// Dropped at the full `events` stream.
    let streamDrops = Atomic<UInt64>(0)
    let watches = Atomic<Int>(0)
    let hashesShed = Atomic<UInt64>(0)

    var queueDrops: UInt64 {
        stageDrops.load(ordering: .relaxed) &+ streamDrops.load(ordering: .relaxed)
    }

    var snapshot: FileSensorStatistics {
        var s = FileSensorStatistics(
            events: events.load(ordering: .relaxed),
            overflows: overflows.load(ordering: .relaxed),
            watchLimitHits: watchLimitHits.load(ordering: .relaxed),
            queueDrops: queueDrops,
            watches: watches.load(ordering: .relaxed)
        )
        s.hashesShed = hashesShed.load(ordering: .relaxed)
        return s
    }
}
