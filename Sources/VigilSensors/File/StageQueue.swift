import Synchronization
import SystemPackage
import VigilCore
import VigilLinux

/// What the reader hands the hashing stage.
enum StageItem: Sendable {
    /// A file event and, when its content should be hashed, what to hash.
    case file(FileEvent, Timestamp, HashRequest?)
    case health(AgentHealth, Timestamp)
}

/// A regular file to hash, as it was seen by `lstat` when the event was read.
struct HashRequest: Sendable {
    var path: String
    var inode: UInt64
}

/// The bounded queue between the reader thread and the hashing thread.
///
/// The reader never blocks on it: file items past `capacity` (counting those taken but not
/// yet processed) are dropped and the count returned, except those a rule would alert on
/// (see `push`); health items always get in, as they are few and are what reports the loss.
final class StageQueue: Sendable {
    private struct State {
        var items: [StageItem] = []
        var pending = 0
        var finished = false
    }

    let capacity: Int
    /// Signalled when items arrive in an empty queue or the queue finishes.
    let wakeup: EventFD
    private let state = Mutex(State())

    init(capacity: Int) throws(Errno) {
        self.capacity = capacity
        self.wakeup = try EventFD()
    }

    /// Moves `batch` into the queue (leaving it empty); returns how many file items were dropped.
    ///
    /// Past `capacity`, a file item for which `keep` says yes (one a rule would alert on) still
    /// gets in, up to an eighth more: a full queue sheds what no rule wants first. `keep` runs
    /// outside the lock, only for items that would otherwise be dropped. One producer only
    /// (the reader): the consumer can only shrink `pending` meanwhile.
    func push(_ batch: inout [StageItem], keep: ((StageItem) -> Bool)? = nil) -> Int {
        guard !batch.isEmpty else { return 0 }
        var count = state.withLock { $0.pending }
        let reserve = capacity + capacity / 8
        var dropped = 0
        batch.removeAll { item in
            guard case .file = item else {
                count += 1
                return false
            }
            if count < capacity || (count < reserve && keep?(item) == true) {
                count += 1
                return false
            }
            dropped += 1
            return true
        }
        let wasEmpty = state.withLock { state -> Bool in
            let wasEmpty = state.items.isEmpty
            state.pending += batch.count
            // Moved, not copied, when the consumer took everything before.
            if wasEmpty { swap(&state.items, &batch) } else { state.items += batch }
            return wasEmpty
        }
        batch.removeAll(keepingCapacity: true)
        if wasEmpty { try? wakeup.signal() }
        return dropped
    }

    /// Swaps the queued items into `items` (which must be empty); returns whether the queue
    /// is finished (no more items will come once these are processed).
    func take(into items: inout [StageItem]) -> Bool {
        state.withLock { state in
            swap(&state.items, &items)
            return state.finished
        }
    }

    /// The consumer processed `count` taken items.
    func markDone(_ count: Int) {
        guard count > 0 else { return }
        state.withLock { $0.pending = max(0, $0.pending - count) }
    }

    /// Items queued or taken and not yet processed.
    var backlog: Int {
        state.withLock { $0.pending }
    }

    /// No more items will be pushed.
    func finish() {
        state.withLock { $0.finished = true }
        try? wakeup.signal()
    }
}
