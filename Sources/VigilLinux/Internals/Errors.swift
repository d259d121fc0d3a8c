import Glibc
import SystemPackage

/// Runs a raw call that returns -1 and sets `errno` on failure, retrying on `EINTR` when asked.
///
/// `EBADF` and `EFAULT` mean a bug in this process (a closed or wrong descriptor, a bad
/// pointer), never a condition to handle, so they trap.
@inline(__always)
func valueOrErrno<I: FixedWidthInteger>(
    retryOnInterrupt: Bool,
    _ call: () -> I
) -> Result<I, Errno> {
    while true {
        let result = call()
        guard result == -1 else { return .success(result) }
        let err = Errno(rawValue: errno)
        if retryOnInterrupt && err == .interrupted { continue }
        precondition(!err.isUnacceptable, "\(err) from a system call: a descriptor or pointer bug")
        return .failure(err)
    }
}

@inline(__always)
func nothingOrErrno<I: FixedWidthInteger>(
    retryOnInterrupt: Bool,
    _ call: () -> I
) -> Result<Void, Errno> {
    valueOrErrno(retryOnInterrupt: retryOnInterrupt, call).map { _ in () }
}

extension Errno {
    /// Errors that can only come from a programming error (swift-nio's `isUnacceptableErrno`).
    var isUnacceptable: Bool {
        self == .badFileDescriptor || self == .badAddress
    }
}
