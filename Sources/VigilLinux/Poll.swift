import Glibc
import SystemPackage

/// `poll(2)` for readability on one or two descriptors.
public enum Poll {
    /// Which of the descriptors became readable (or hung up / errored, which a read will report).
    public struct Readiness: Hashable, Sendable {
        public var first: Bool
        public var second: Bool
        public var timedOut: Bool { !first && !second }
    }

    /// Waits until `first` or `second` is readable, or `timeoutMilliseconds` pass (-1: forever).
    ///
    /// The corresponding C function is `poll`. On `EINTR` it retries with the full timeout when
    /// `retryOnInterrupt` is true, so the wait may last longer than asked.
    public static func waitReadable(
        _ first: FileDescriptor,
        _ second: FileDescriptor? = nil,
        timeoutMilliseconds: Int32,
        retryOnInterrupt: Bool = true
    ) throws(Errno) -> Readiness {
        var fds = (
            pollfd(fd: first.rawValue, events: Int16(POLLIN), revents: 0),
            pollfd(fd: second?.rawValue ?? -1, events: Int16(POLLIN), revents: 0)
        )
        let count: nfds_t = second == nil ? 1 : 2
        _ = try withUnsafeMutableBytes(of: &fds) { raw in
            let pointer = raw.baseAddress!.assumingMemoryBound(to: pollfd.self)
            return valueOrErrno(retryOnInterrupt: retryOnInterrupt) {
                system_poll(pointer, count, timeoutMilliseconds)
            }
        }.get()
        let ready = Int16(POLLIN | POLLHUP | POLLERR | POLLNVAL)
        precondition(
            fds.0.revents & Int16(POLLNVAL) == 0 && fds.1.revents & Int16(POLLNVAL) == 0,
            "poll on a closed descriptor"
        )
        return Readiness(first: fds.0.revents & ready != 0, second: count == 2 && fds.1.revents & ready != 0)
    }

    /// The outcome of `wait(for:wakeup:timeoutMilliseconds:)`.
    public enum WaitResult: Hashable, Sendable {
        /// Records are ready to read.
        case readable
        /// The wake-up descriptor was signalled (checked first).
        case woken
        case timedOut
    }

    /// Blocks until `descriptor` has records to read, `wakeup` is signalled, or the timeout
    /// (-1: none) passes: the wait of a reader thread that another thread can wake for shutdown.
    public static func wait(
        for descriptor: FileDescriptor,
        wakeup: EventFD?,
        timeoutMilliseconds: Int32
    ) throws(Errno) -> WaitResult {
        let ready = try waitReadable(descriptor, wakeup?.fileDescriptor, timeoutMilliseconds: timeoutMilliseconds)
        if ready.second { return .woken }
        return ready.first ? .readable : .timedOut
    }

    /// Waits until any of `descriptors` is readable (or hung up / errored), or
    /// `timeoutMilliseconds` pass (-1: forever); returns, per descriptor, whether it is ready.
    ///
    /// The corresponding C function is `poll`; `EINTR` is retried as in the two-descriptor form.
    public static func waitReadable(
        _ descriptors: [FileDescriptor],
        timeoutMilliseconds: Int32,
        retryOnInterrupt: Bool = true
    ) throws(Errno) -> [Bool] {
        var fds = descriptors.map { pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0) }
        let count = nfds_t(fds.count)
        _ = try fds.withUnsafeMutableBufferPointer { buffer in
            valueOrErrno(retryOnInterrupt: retryOnInterrupt) {
                system_poll(buffer.baseAddress!, count, timeoutMilliseconds)
            }
        }.get()
        let ready = Int16(POLLIN | POLLHUP | POLLERR | POLLNVAL)
        precondition(fds.allSatisfy { $0.revents & Int16(POLLNVAL) == 0 }, "poll on a closed descriptor")
        return fds.map { $0.revents & ready != 0 }
    }
}
