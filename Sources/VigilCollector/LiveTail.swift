import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VigilCore

/// What a store says, at one instant, about which event ids can still appear.
///
/// Marks are `(maxId, token)`: every event with an id up to `maxId` is *final* (stored, or never
/// to be stored) once a later probe reports `oldestActive >= token`.
public struct CommitProbe: Sendable, Hashable {
    /// The highest event id the probe could see.
    public var maxId: Int64
    /// See the type's description. SQLite: 0.
    public var token: UInt64
    /// See the type's description. SQLite: 0, so every probe is final at once.
    public var oldestActive: UInt64

    public init(maxId: Int64, token: UInt64, oldestActive: UInt64) {
        self.maxId = maxId
        self.token = token
        self.oldestActive = oldestActive
    }
}

/// A store whose event ids can be tailed without skipping a row that commits late (see `LiveTail`).
public protocol CommitOrderProbing: Sendable {
    /// One probe; see `CommitProbe`.
    func commitProbe() async throws -> CommitProbe
}

extension SQLiteEventStore: CommitOrderProbing {}
extension PostgresEventStore: CommitOrderProbing {}

/// The live tail (`GET /v1/events/stream`): follows the store's event ids from a cursor and
/// hands out every matching event once, in id order, including events other collectors on the
/// same PostgreSQL database store.
///
/// ## Why a horizon, not "the highest id seen"
///
/// A tail that moves its cursor to the highest id it has read can skip a row for good on
/// PostgreSQL: ids come from a sequence when a row is inserted, not when its transaction
/// commits, so ingest A can take id 10, ingest B id 11, B commit first, and a reader see 11,
/// move past it, and never look at 10 again. (SQLite has one writer at a time, so its ids become
/// visible in order.) The tail therefore only reads up to a *horizon*: the highest id below
/// which no row can appear any more.
///
/// The PostgreSQL store finds it with one statement per probe (`PostgresEventStore.commitProbe`):
/// the highest visible id `M`, the snapshot's oldest running transaction id (`xmin`) and, taken
/// after the snapshot, a fresh transaction id `N` (`pg_current_xact_id()`). Every row with an id
/// below `M` got that id before `M`'s row did (the sequence only grows), so before the snapshot;
/// its transaction already had its own xid then, because ingest locks the agent's row (`FOR
/// UPDATE`, which assigns the xid) before it inserts events; so that xid is below `N`. Once a
/// later probe's `xmin` is at or above `N`, every transaction below `N` has ended, committed or
/// not, and every id up to `M` is final. On a quiet database the probe that sees a row is
/// already final (nothing runs, `xmin == N`); under load it is the next probe, half a second
/// later at most. A transaction left open for long anywhere in the cluster (xids are
/// cluster-wide) holds the horizon back: the tail then waits for it, it never skips.
///
/// The same horizon makes resuming exact: the stream is in strictly increasing id order, so the
/// last id a client saw (`Last-Event-ID`) is a complete cursor: no duplicates, no losses.
public final class LiveTail: Sendable {
    private struct State {
        var streams = 0
        var generation: UInt64 = 0
        var wakeups: [UInt64: Wakeup] = [:]
        var nextWakeup: UInt64 = 0
        /// Marks not yet final, in increasing `maxId` order.
        var pending: [(maxId: Int64, token: UInt64)] = []
        var horizon: Int64 = -1
        var probedAt: ContinuousClock.Instant? = nil
        var probedGeneration: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// How many streams are open.
    public var openStreams: Int { state.withLock { $0.streams } }

    // MARK: stream slots

    /// An open stream's place in the bound; gives it back when released (or dropped).
    final class Slot: Sendable {
        private let tail: LiveTail
        private let released = Atomic<Bool>(false)
        init(_ tail: LiveTail) { self.tail = tail }
        func release() {
            guard !released.exchange(true, ordering: .relaxed) else { return }
            tail.state.withLock { $0.streams -= 1 }
        }
        deinit { release() }
    }

    /// A slot, or nil when `maximum` streams are open.
    func acquire(maximum: Int) -> Slot? {
        let granted = state.withLock { s -> Bool in
            guard s.streams < maximum else { return false }
            s.streams += 1
            return true
        }
        return granted ? Slot(self) : nil
    }

    // MARK: wake-ups

    /// Local ingests call this: open streams look at the store now instead of at their next poll.
    func ingested() {
        let wakeups = state.withLock { s -> [Wakeup] in
            s.generation &+= 1
            return Array(s.wakeups.values)
        }
        for w in wakeups { w.wake() }
    }

    func register(_ wakeup: Wakeup) -> UInt64 {
        state.withLock { s in
            s.nextWakeup += 1
            s.wakeups[s.nextWakeup] = wakeup
            return s.nextWakeup
        }
    }

    func unregister(_ id: UInt64) {
        _ = state.withLock { $0.wakeups.removeValue(forKey: id) }
    }

    // MARK: horizon

    /// The highest id below which no event can appear any more. Probes the store unless a probe
    /// younger than `maxAge` saw every local ingest; probes from all streams share their marks.
    func horizon(of store: any CommitOrderProbing, maxAge: Duration = .milliseconds(100)) async throws -> Int64 {
        let now = ContinuousClock.now
        let (cached, generation) = state.withLock { s -> (Int64?, UInt64) in
            if let at = s.probedAt, s.probedGeneration == s.generation, now - at < maxAge, s.horizon >= 0 {
                return (s.horizon, s.generation)
            }
            return (nil, s.generation)
        }
        if let cached { return cached }
        return record(try await store.commitProbe(), at: now, generation: generation)
    }

    /// Where a stream without a cursor starts: the highest id visible now. Events whose ingest
    /// is still running (a lower id, not yet committed) count as stored before the stream opened.
    func latest(of store: any CommitOrderProbing) async throws -> Int64 {
        let now = ContinuousClock.now
        let generation = state.withLock { $0.generation }
        let probe = try await store.commitProbe()
        _ = record(probe, at: now, generation: generation)
        return probe.maxId
    }

    /// Adds a probe's mark, finalizes the marks its `oldestActive` allows; returns the horizon.
    private func record(_ probe: CommitProbe, at now: ContinuousClock.Instant, generation: UInt64) -> Int64 {
        state.withLock { s in
            if probe.maxId > max(s.horizon, s.pending.last?.maxId ?? -1) {
                s.pending.append((probe.maxId, probe.token))
            }
            var final = 0
            while final < s.pending.count, s.pending[final].token <= probe.oldestActive {
                s.horizon = max(s.horizon, s.pending[final].maxId)
                final += 1
            }
            s.pending.removeFirst(final)
            if s.horizon < 0 { s.horizon = 0 }
            s.probedAt = now
            s.probedGeneration = generation
            return s.horizon
        }
    }

    // MARK: one stream

    /// Settings of one stream.
    struct StreamSettings: Sendable {
        /// Filters; `after` is ignored (see `start`).
        var query: EventQuery
        /// The cursor to start after; nil: the horizon now (only new events).
        var start: Int64?
        /// End the stream after this long; nil: never (until the client leaves or the collector stops).
        var duration: Duration?
        var keepalive: Duration = .seconds(15)
        var pollInterval: Duration = .milliseconds(500)
        /// Events read from the store at a time: with the writer's back-pressure, what bounds a
        /// stream's memory.
        var pageSize = 500
    }

    /// What a stream writes.
    enum Chunk {
        /// An SSE comment plus, when the cursor moved past events that did not match, an `id:` line.
        case comment(String, cursor: Int64?)
        case event(StoredEvent)
    }

    /// Runs one stream: calls `write` for every chunk (awaiting it is the back-pressure) until the
    /// duration is over, `stop` is woken by graceful shutdown, or `write` throws (client gone).
    func run(
        store: any EventStore & CommitOrderProbing,
        settings: StreamSettings,
        logger: Logger,
        write: (Chunk) async throws -> Void
    ) async throws {
        let wakeup = Wakeup()
        let id = register(wakeup)
        defer { unregister(id) }
        try await withGracefulShutdownWakeup(wakeup) {
            let started = ContinuousClock.now
            let deadline = settings.duration.map { started + $0 }
            var cursor: Int64
            if let start = settings.start { cursor = start } else { cursor = try await latest(of: store) }
            var announced = cursor
            try await write(.comment("vigil live tail after \(cursor)", cursor: cursor))
            var lastWrite = ContinuousClock.now
            while !wakeup.isStopped, !Task.isCancelled {
                let through = try await horizon(of: store)
                var more = false
                if through > cursor {
                    var page = settings.query
                    page.after = cursor
                    page.limit = settings.pageSize
                    let events = try await store.events(page)
                    for stored in events where stored.id <= through {
                        try await write(.event(stored))
                        cursor = stored.id
                        announced = cursor
                        lastWrite = ContinuousClock.now
                    }
                    if events.count == settings.pageSize, let last = events.last, last.id <= through {
                        more = true  // a full page below the horizon: read on at once
                    } else {
                        cursor = max(cursor, through)
                    }
                }
                let now = ContinuousClock.now
                if let deadline, now >= deadline { break }
                if more { continue }
                if now - lastWrite >= settings.keepalive {
                    try await write(.comment("keepalive", cursor: announced == cursor ? nil : cursor))
                    announced = cursor
                    lastWrite = now
                }
                var wait = min(settings.pollInterval, settings.keepalive - (now - lastWrite))
                if let deadline { wait = min(wait, deadline - now) }
                await wakeup.wait(upTo: max(wait, .milliseconds(10)))
                // At most ~10 looks a second however busy ingest is.
                let pause = .milliseconds(100) - (ContinuousClock.now - now)
                if pause > .zero { try? await Task.sleep(for: pause) }
            }
            if announced != cursor { try await write(.comment("end", cursor: cursor)) }
        }
    }

    private func withGracefulShutdownWakeup(_ wakeup: Wakeup, _ body: () async throws -> Void) async throws {
        try await withGracefulShutdownHandler {
            try await body()
        } onGracefulShutdown: {
            wakeup.stop()
        }
    }

    /// The SSE encoding of one chunk.
    static func encode(_ chunk: Chunk, encoder: JSONEncoder) throws -> Data {
        switch chunk {
        case .comment(let text, let cursor):
            var s = ": \(text)\n"
            if let cursor { s += "id: \(cursor)\n" }
            return Data((s + "\n").utf8)
        case .event(let stored):
            var data = Data("id: \(stored.id)\ndata: ".utf8)
            data.append(try encoder.encode(stored))
            data.append(contentsOf: Array("\n\n".utf8))
            return data
        }
    }
}

/// Wakes one stream: on local ingest, on graceful shutdown (`stop`), or when its wait times out.
final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var stopped = false
        var waiter: CheckedContinuation<Void, Never>? = nil
    }
    private let state = Mutex(State())

    var isStopped: Bool { state.withLock { $0.stopped } }

    func wake() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.pending = true
            return nil
        }
        waiter?.resume()
    }

    func stop() {
        state.withLock { $0.stopped = true }
        wake()
    }

    /// Returns at the next `wake`, after `timeout`, or on cancellation.
    func wait(upTo timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await Task.sleep(for: timeout)
                    self.wake()
                } catch {}
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let now = state.withLock { s -> Bool in
                        if s.pending || s.stopped {
                            s.pending = false
                            return true
                        }
                        s.waiter = c
                        return false
                    }
                    if now { c.resume() }
                }
            } onCancel: {
                self.wake()
            }
            group.cancelAll()
        }
    }
}
