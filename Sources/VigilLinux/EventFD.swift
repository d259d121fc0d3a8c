import Glibc
import SystemPackage

/// An owned `eventfd(2)` counter, used to wake a thread blocked in `poll`.
///
/// Non-blocking and close-on-exec. Safe to signal from any thread; the descriptor is closed
/// when the object is released.
public final class EventFD: Sendable {
    /// The descriptor; valid for the object's lifetime. Do not close it.
    public let fileDescriptor: FileDescriptor

    /// Creates the counter. The corresponding C function is `eventfd`.
    public init(initialValue: UInt32 = 0) throws(Errno) {
        let fd = try valueOrErrno(retryOnInterrupt: true) {
            // EFD_NONBLOCK and EFD_CLOEXEC are defined as O_NONBLOCK and O_CLOEXEC.
            system_eventfd(initialValue, O_NONBLOCK | O_CLOEXEC)
        }.get()
        fileDescriptor = FileDescriptor(rawValue: fd)
    }

    deinit {
        _ = system_close(fileDescriptor.rawValue)
    }

    /// Adds `count` to the counter, making the descriptor readable.
    ///
    /// A counter already at its maximum (`EAGAIN`) is still readable, so that is not an error.
    public func signal(_ count: UInt64 = 1, retryOnInterrupt: Bool = true) throws(Errno) {
        var value = count
        let result = withUnsafeBytes(of: &value) { raw in
            valueOrErrno(retryOnInterrupt: retryOnInterrupt) {
                system_write(fileDescriptor.rawValue, raw.baseAddress, 8)
            }
        }
        switch result {
        case .success: return
        case .failure(let err) where err == .resourceTemporarilyUnavailable: return
        case .failure(let err): throw err
        }
    }

    /// Reads and resets the counter; 0 if it was not signalled.
    @discardableResult
    public func drain(retryOnInterrupt: Bool = true) throws(Errno) -> UInt64 {
        var value: UInt64 = 0
        let result = withUnsafeMutableBytes(of: &value) { raw in
            valueOrErrno(retryOnInterrupt: retryOnInterrupt) {
                system_read(fileDescriptor.rawValue, raw.baseAddress, 8)
            }
        }
        switch result {
        case .success: return value
        case .failure(let err) where err == .resourceTemporarilyUnavailable: return 0
        case .failure(let err): throw err
        }
    }

    /// Waits until signalled or `timeoutMilliseconds` pass (-1: forever); does not reset.
    /// Returns whether the counter is signalled.
    public func wait(timeoutMilliseconds: Int32) throws(Errno) -> Bool {
        try Poll.waitReadable(fileDescriptor, timeoutMilliseconds: timeoutMilliseconds).first
    }
}
