import Glibc
import SystemPackage

/// A listening Unix stream socket bound to a path (`AF_UNIX`, `SOCK_STREAM`), for local
/// control requests. The socket file is created with `mode` (the directory around it should
/// keep others out too); a stale file at the path is replaced.
///
/// Non-blocking and close-on-exec: `accept()` returns nil when nobody is waiting, so a thread
/// polls `fileDescriptor` and accepts when it is readable. The descriptor is closed when the
/// object is released; the socket file is removed by `remove()`.
public final class UnixListener: Sendable {
    /// The descriptor; valid for the object's lifetime. Do not close it.
    public let fileDescriptor: FileDescriptor
    public let path: String

    /// Binds and listens. The corresponding C functions are `socket`, `unlink`, `bind`, `chmod`
    /// and `listen`. `ENAMETOOLONG` for a path of 108 bytes or more (`sun_path`).
    public init(path: String, mode: mode_t = 0o600, backlog: Int32 = 8) throws(Errno) {
        let fd = try UnixAddress.socket()
        do {
            let address = try UnixAddress(path)
            _ = path.withCString { unlink($0) }
            try nothingOrErrno(retryOnInterrupt: true) { address.withSockaddr { Glibc.bind(fd, $0, $1) } }.get()
            _ = path.withCString { chmod($0, mode) }
            try nothingOrErrno(retryOnInterrupt: true) { Glibc.listen(fd, backlog) }.get()
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        } catch {
            _ = system_close(fd)
            throw error
        }
        fileDescriptor = FileDescriptor(rawValue: fd)
        self.path = path
    }

    deinit {
        _ = system_close(fileDescriptor.rawValue)
    }

    /// The next waiting connection, blocking, with `timeout` on each of its reads and writes;
    /// nil when none waits. The corresponding C functions are `accept`, `fcntl` and
    /// `setsockopt`. (Nothing is exec'd while the descriptor lacks close-on-exec: the agent
    /// spawns no programs.)
    public func accept(timeout: Duration = .seconds(2)) throws(Errno) -> UnixConnection? {
        let result = valueOrErrno(retryOnInterrupt: true) {
            Glibc.accept(fileDescriptor.rawValue, nil, nil)
        }
        switch result {
        case .success(let fd):
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            // The listener is non-blocking; the connection is not (its reads have a timeout).
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            let connection = UnixConnection(fd: fd)
            connection.setTimeout(timeout)
            return connection
        case .failure(let error) where error == .resourceTemporarilyUnavailable: return nil
        case .failure(let error): throw error
        }
    }

    /// Removes the socket file (if it is still ours to remove: a file at the path).
    public func remove() {
        _ = path.withCString { unlink($0) }
    }
}

/// One connected Unix stream socket, blocking with timeouts. Closed when released.
public final class UnixConnection {
    private let fd: Int32

    init(fd: Int32) {
        self.fd = fd
    }

    deinit {
        _ = system_close(fd)
    }

    /// Connects to the socket at `path`. The corresponding C functions are `socket` and
    /// `connect`: `ENOENT` when there is no socket there, `ECONNREFUSED` when nobody listens,
    /// `EACCES` when its mode keeps the caller out.
    public static func connect(path: String, timeout: Duration = .seconds(5)) throws(Errno) -> UnixConnection {
        let fd = try UnixAddress.socket()
        let connection = UnixConnection(fd: fd)
        connection.setTimeout(timeout)
        let address = try UnixAddress(path)
        try nothingOrErrno(retryOnInterrupt: true) { address.withSockaddr { Glibc.connect(fd, $0, $1) } }.get()
        return connection
    }

    /// The peer's user and process (`SO_PEERCRED`: as they were at `connect`).
    public var peer: (pid: Int32, uid: UInt32, gid: UInt32)? {
        var credentials = (Int32(0), UInt32(0), UInt32(0))  // struct ucred
        var length = socklen_t(MemoryLayout.size(ofValue: credentials))
        let soPeerCredentials: Int32 = 17  // SO_PEERCRED
        guard getsockopt(fd, SOL_SOCKET, soPeerCredentials, &credentials, &length) == 0,
            length == MemoryLayout.size(ofValue: credentials)
        else { return nil }
        return (credentials.0, credentials.1, credentials.2)
    }

    /// Reads up to the first newline (not included), or to the end of the stream. `EMSGSIZE`
    /// past `maxBytes`; `EAGAIN` when the timeout passed first.
    public func readLine(maxBytes: Int = 64 * 1024) throws(Errno) -> [UInt8] {
        var line: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try chunk.withUnsafeMutableBytes { raw in
                valueOrErrno(retryOnInterrupt: true) { system_read(fd, raw.baseAddress, raw.count) }
            }.get()
            if n == 0 { return line }
            if let newline = chunk[..<n].firstIndex(of: UInt8(ascii: "\n")) {
                line += chunk[..<newline]
                guard line.count <= maxBytes else { throw Errno.messageTooLong }
                return line
            }
            line += chunk[..<n]
            guard line.count <= maxBytes else { throw Errno.messageTooLong }
        }
    }

    /// Writes all of `bytes`. The corresponding C function is `write`.
    public func write(_ bytes: [UInt8]) throws(Errno) {
        var offset = 0
        while offset < bytes.count {
            let n = try bytes.withUnsafeBytes { raw in
                valueOrErrno(retryOnInterrupt: true) { system_write(fd, raw.baseAddress! + offset, raw.count - offset) }
            }.get()
            offset += n
        }
    }

    func setTimeout(_ timeout: Duration) {
        let (seconds, attoseconds) = timeout.components
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        let length = socklen_t(MemoryLayout<timeval>.size)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, length)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, length)
    }
}

@available(*, unavailable)
extension UnixConnection: Sendable {}

/// A `struct sockaddr_un` for a path.
private struct UnixAddress {
    var storage = sockaddr_un()
    var length: socklen_t

    init(_ path: String) throws(Errno) {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: storage.sun_path) else {
            throw Errno.fileNameTooLong
        }
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
    }

    func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        withUnsafePointer(to: storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    /// A close-on-exec Unix stream socket.
    static func socket() throws(Errno) -> Int32 {
        try valueOrErrno(retryOnInterrupt: true) {
            Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }.get()
    }
}
