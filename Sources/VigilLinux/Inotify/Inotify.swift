import Glibc
import SystemPackage

/// An owned inotify instance (`inotify_init1(2)`), with its read buffer.
///
/// The descriptor is non-blocking and close-on-exec, and closed on `deinit`. Not thread-safe:
/// one thread owns it (watches may be added from the reading thread only).
public final class Inotify {
    /// Size of the read buffer: room for at least 256 records with maximal names.
    public static let readBufferSize = 64 * 1024

    /// The descriptor; valid for the object's lifetime. Do not close it.
    public let fileDescriptor: FileDescriptor
    private let buffer: UnsafeMutableRawBufferPointer

    /// Creates an instance. The corresponding C function is `inotify_init1` with
    /// `IN_NONBLOCK | IN_CLOEXEC`.
    ///
    /// `EMFILE` here means `fs.inotify.max_user_instances` is reached.
    public init() throws(Errno) {
        let fd = try valueOrErrno(retryOnInterrupt: true) {
            system_inotify_init1(Int32(IN_NONBLOCK) | Int32(IN_CLOEXEC))
        }.get()
        fileDescriptor = FileDescriptor(rawValue: fd)
        buffer = .allocate(byteCount: Self.readBufferSize, alignment: MemoryLayout<Int64>.alignment)
    }

    deinit {
        _ = system_close(fileDescriptor.rawValue)
        buffer.deallocate()
    }

    /// Watches `path`, or changes the mask of its existing watch; returns the watch descriptor.
    ///
    /// The corresponding C function is `inotify_add_watch`. The same inode always yields the
    /// same descriptor. `ENOSPC` means `fs.inotify.max_user_watches` is reached.
    public func addWatch(path: String, mask: InotifyMask, retryOnInterrupt: Bool = true) throws(Errno) -> Int32 {
        try path.withCString { cPath in
            valueOrErrno(retryOnInterrupt: retryOnInterrupt) {
                system_inotify_add_watch(fileDescriptor.rawValue, cPath, mask.rawValue)
            }
        }.get()
    }

    /// Removes a watch; the kernel then queues `IN_IGNORED` for it.
    ///
    /// The corresponding C function is `inotify_rm_watch`. `EINVAL` means the descriptor is not
    /// (or no longer) a watch of this instance.
    public func removeWatch(_ watchDescriptor: Int32, retryOnInterrupt: Bool = true) throws(Errno) {
        try nothingOrErrno(retryOnInterrupt: retryOnInterrupt) {
            system_inotify_rm_watch(fileDescriptor.rawValue, watchDescriptor)
        }.get()
    }

    public typealias WaitResult = Poll.WaitResult

    /// Blocks until events are ready, `wakeup` is signalled, or the timeout (-1: none) passes.
    public func wait(wakeup: EventFD?, timeoutMilliseconds: Int32) throws(Errno) -> WaitResult {
        try Poll.wait(for: fileDescriptor, wakeup: wakeup, timeoutMilliseconds: timeoutMilliseconds)
    }

    /// The outcome of one `read`.
    public enum ReadResult: Hashable, Sendable {
        /// The queue is empty (`EAGAIN`).
        case wouldBlock
        /// `events` records were handed to the body; `malformedBytes` were not whole records.
        case read(events: Int, malformedBytes: Int)
    }

    /// Reads once (up to 64 KiB) and calls `body` for each record, in kernel order.
    ///
    /// The corresponding C function is `read`. Records are parsed with bounds checks
    /// (`InotifyEventParser`), so a short or corrupt read never crashes.
    public func readEvents(
        retryOnInterrupt: Bool = true,
        _ body: (InotifyEvent) -> Void
    ) throws(Errno) -> ReadResult {
        let result = valueOrErrno(retryOnInterrupt: retryOnInterrupt) {
            system_read(fileDescriptor.rawValue, buffer.baseAddress, buffer.count)
        }
        switch result {
        case .failure(let err) where err == .resourceTemporarilyUnavailable:
            return .wouldBlock
        case .failure(let err):
            throw err
        case .success(let count):
            let valid = max(0, min(count, buffer.count))
            let summary = InotifyEventParser.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<valid]), body)
            return .read(events: summary.events, malformedBytes: summary.malformedBytes)
        }
    }
}

@available(*, unavailable)
extension Inotify: Sendable {}
