import Synchronization
import VigilCore

/// The file sensor's events, in order.
///
/// The hashing stage yields what it prepared in one pass as one chunk, so the hand-off between
/// its thread and the consumer (a lock, and a resumption when the consumer waits) happens once
/// per chunk instead of once per event; iterating the events of a chunk is an array index. The
/// bound is still counted in events: the stage yields only while fewer than the sensor's
/// `queueCapacity` events are handed over and not yet taken by the consumer.
///
/// One consumer only, as with any single stream.
public struct FileSensorEvents: AsyncSequence, Sendable {
    public typealias Element = Event
    public typealias Failure = Never

    let stream: AsyncStream<[Event]>
    let backlog: StreamBacklog

    public func makeAsyncIterator() -> Iterator {
        Iterator(chunks: stream.makeAsyncIterator(), backlog: backlog)
    }

    public struct Iterator: AsyncIteratorProtocol {
        public typealias Element = Event
        public typealias Failure = Never

        private var chunks: AsyncStream<[Event]>.Iterator
        private let backlog: StreamBacklog
        private var current: [Event] = []
        private var index = 0

        init(chunks: AsyncStream<[Event]>.Iterator, backlog: StreamBacklog) {
            self.chunks = chunks
            self.backlog = backlog
        }

        public mutating func next(isolation actor: isolated (any Actor)? = #isolation) async -> Event? {
            while index == current.count {
                guard let chunk = await chunks.next(isolation: actor) else { return nil }
                backlog.taken(chunk.count)
                current = chunk
                index = 0
            }
            defer { index += 1 }
            return current[index]
        }

        public mutating func next() async -> Event? {
            await next(isolation: nil)
        }
    }
}

/// Events handed over to the consumer and not yet taken: what bounds the `events` stream.
final class StreamBacklog: Sendable {
    private let count = Atomic<Int>(0)

    /// Events in the stream now.
    var value: Int {
        count.load(ordering: .relaxed)
    }

    func handedOver(_ n: Int) {
        count.add(n, ordering: .relaxed)
    }

    func taken(_ n: Int) {
        count.subtract(n, ordering: .relaxed)
    }
}
