import Glibc
import Synchronization
import SystemPackage

/// A TCP socket bound to an IP address and port and listening, opened before the sandbox and
/// handed to an event loop afterwards (`take()`): the sandbox's seccomp filter allows `listen`
/// only on descriptors named in `Sandbox.Configuration.listeningSockets`.
///
/// Close-on-exec, `SO_REUSEADDR`. Closed when released unless taken.
public final class TCPListener: Sendable {
    private let descriptor: Atomic<Int32>
    /// The port bound (useful with port 0).
    public let port: Int

    /// Binds `host` (an IPv4 or IPv6 literal: `127.0.0.1`, `::1`, `0.0.0.0`) and `port`, and
    /// listens. The corresponding C functions are `socket`, `setsockopt`, `bind`, `listen` and
    /// `getsockname`: `EADDRINUSE` when the port is taken, `EINVAL` for a host that is not an
    /// address literal.
    public init(host: String, port: Int, backlog: Int32 = 16) throws(Errno) {
        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        let family: Int32
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            family = AF_INET
        } else if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
            family = AF_INET6
        } else {
            throw Errno.invalidArgument
        }
        guard (0...65535).contains(port) else { throw Errno.invalidArgument }
        let fd = try valueOrErrno(retryOnInterrupt: true) {
            Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }.get()
        do {
            var one: Int32 = 1
            _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if family == AF_INET {
                v4.sin_family = sa_family_t(AF_INET)
                v4.sin_port = in_port_t(UInt16(port).bigEndian)
                try nothingOrErrno(retryOnInterrupt: true) {
                    withUnsafePointer(to: &v4) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                        }
                    }
                }.get()
            } else {
                v6.sin6_family = sa_family_t(AF_INET6)
                v6.sin6_port = in_port_t(UInt16(port).bigEndian)
                try nothingOrErrno(retryOnInterrupt: true) {
                    withUnsafePointer(to: &v6) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                        }
                    }
                }.get()
            }
            try nothingOrErrno(retryOnInterrupt: true) { Glibc.listen(fd, backlog) }.get()
            var bound = sockaddr_in6()
            var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            _ = withUnsafeMutablePointer(to: &bound) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            // sin_port and sin6_port sit at the same offset.
            self.port = Int(UInt16(bigEndian: bound.sin6_port))
        } catch {
            _ = system_close(fd)
            throw error
        }
        descriptor = Atomic(fd)
    }

    /// The listening descriptor, while not taken; -1 after `take()`.
    public var fileDescriptor: Int32 { descriptor.load(ordering: .acquiring) }

    /// Hands the descriptor over (to an event loop, which closes it); nil if already taken.
    public func take() -> Int32? {
        let fd = descriptor.exchange(-1, ordering: .acquiringAndReleasing)
        return fd >= 0 ? fd : nil
    }

    deinit {
        let fd = descriptor.load(ordering: .acquiring)
        if fd >= 0 { _ = system_close(fd) }
    }
}
