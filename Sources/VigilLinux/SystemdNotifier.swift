import Glibc

/// Talks to systemd's service manager through `$NOTIFY_SOCKET` (`Type=notify` units): READY,
/// STATUS, WATCHDOG keep-alives and STOPPING. Without `$NOTIFY_SOCKET` (not started by systemd)
/// every call does nothing, so callers need no special case.
///
/// The protocol is one datagram per message on an `AF_UNIX`/`SOCK_DGRAM` socket whose path is
/// in `$NOTIFY_SOCKET` (a leading `@` means the abstract namespace); see sd_notify(3).
public final class SystemdNotifier: Sendable {
    private let address: [UInt8]?
    /// The watchdog interval systemd expects keep-alives within (`$WATCHDOG_USEC`), if enabled
    /// for this process (`$WATCHDOG_PID` absent or equal to our pid).
    public let watchdogInterval: Duration?

    public init(environment: [String: String]) {
        if let path = environment["NOTIFY_SOCKET"], !path.isEmpty, path.utf8.count < 108 {
            var bytes = Array(path.utf8)
            if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
            address = bytes
        } else {
            address = nil
        }
        if let usec = environment["WATCHDOG_USEC"].flatMap({ UInt64($0) }), usec > 0,
            environment["WATCHDOG_PID"].flatMap({ Int32($0) }).map({ $0 == getpid() }) ?? true
        {
            watchdogInterval = .microseconds(Int64(min(usec, UInt64(Int64.max))))
        } else {
            watchdogInterval = nil
        }
    }

    /// Whether a service manager is listening.
    public var isEnabled: Bool { address != nil }

    /// Tells systemd start-up is complete.
    public func ready(status: String? = nil) { send("READY=1" + (status.map { "\nSTATUS=\($0)" } ?? "")) }

    /// A keep-alive for `WatchdogSec=`.
    public func watchdog() { send("WATCHDOG=1") }

    /// Shown by `systemctl status`.
    public func status(_ text: String) { send("STATUS=\(text)") }

    /// Tells systemd the service is shutting down.
    public func stopping() { send("STOPPING=1") }

    /// Sends one notification; returns whether it was delivered (false also when disabled).
    @discardableResult
    public func send(_ message: String) -> Bool {
        guard let address else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in address.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count)
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &addr) { ptr in
            ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { buf in
                    sendto(fd, buf.baseAddress, buf.count, Int32(MSG_NOSIGNAL), sa, length)
                }
            }
        }
        return sent == bytes.count
    }
}
