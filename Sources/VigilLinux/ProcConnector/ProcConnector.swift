import Glibc
import SystemPackage

/// An owned subscription to the kernel's process events: a netlink socket
/// (`NETLINK_CONNECTOR`) bound to the `CN_IDX_PROC` group and switched on with
/// `PROC_CN_MCAST_LISTEN`.
///
/// Needs `CAP_NET_ADMIN` in the initial user and network namespace (root on the host).
/// The socket is non-blocking and close-on-exec. Not thread-safe: one thread reads it.
///
/// The kernel drops messages when the receive buffer is full and says so once with `ENOBUFS`
/// on the next read: `receive` reports that as `.overrun` so the caller counts it.
///
/// Since Linux 6.6 a subscription can name the kinds of event the socket wants
/// (`struct proc_input`); the kernel then does not queue, nor wake the reader for, the others.
public final class ProcConnector {
    /// Kinds of process event, as the bits of the kernel's `enum proc_cn_event`.
    public struct EventTypes: OptionSet, Hashable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        public static let fork = EventTypes(rawValue: 0x1)
        public static let exec = EventTypes(rawValue: 0x2)
        public static let uid = EventTypes(rawValue: 0x4)
        public static let gid = EventTypes(rawValue: 0x40)
        public static let sid = EventTypes(rawValue: 0x80)
        public static let ptrace = EventTypes(rawValue: 0x100)
        public static let comm = EventTypes(rawValue: 0x200)
        public static let coredump = EventTypes(rawValue: 0x4000_0000)
        public static let exit = EventTypes(rawValue: 0x8000_0000)
        /// Every kind: what a subscription without a filter gets, on any kernel.
        public static let all: EventTypes = [.fork, .exec, .uid, .gid, .sid, .ptrace, .comm, .coredump, .exit]

        /// The kind of `event`; nil for an acknowledgement or a kind this parser does not know.
        init?(_ event: ProcConnectorEvent) {
            switch event {
            case .fork: self = .fork
            case .exec: self = .exec
            case .uidChange: self = .uid
            case .gidChange: self = .gid
            case .sidChange: self = .sid
            case .ptrace: self = .ptrace
            case .commChange: self = .comm
            case .coredump: self = .coredump
            case .exit: self = .exit
            case .acknowledgement, .unknown: return nil
            }
        }
    }

    /// Whether the running kernel filters event types per socket (Linux 6.6 and later). An
    /// older kernel ignores a subscription that names event types: that socket would stay silent.
    public static let kernelFiltersEventTypes: Bool = {
        var name = utsname()
        guard uname(&name) == 0 else { return false }
        let release = withUnsafeBytes(of: &name.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return filtersEventTypes(kernelRelease: release)
    }()

    /// Whether a kernel of this release (`uname -r`, e.g. `6.6.0-1-amd64`) filters event types.
    public static func filtersEventTypes(kernelRelease: String) -> Bool {
        let numbers = kernelRelease.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard numbers.count == 2, kernelRelease.first?.isNumber == true else { return false }
        return (numbers[0], numbers[1]) >= (6, 6)
    }

    /// The event types this socket receives.
    public let eventTypes: EventTypes
    /// Bytes read at once; a proc connector datagram is under 100 bytes.
    public static let readBufferSize = 64 * 1024

    /// The descriptor; valid for the object's lifetime. Do not close it.
    public let fileDescriptor: FileDescriptor
    /// The receive buffer the kernel granted (`SO_RCVBUF` as read back; the kernel doubles
    /// the requested value for its bookkeeping).
    public let receiveBufferBytes: Int
    private let buffer: UnsafeMutableRawBufferPointer

    // Linux ABI constants (<sys/socket.h>, <linux/netlink.h>, <linux/connector.h>, <linux/cn_proc.h>).
    static let addressFamilyNetlink: Int32 = 16  // AF_NETLINK
    static let socketDatagram: Int32 = 2  // SOCK_DGRAM
    static let socketNonBlock: Int32 = 0o4000  // SOCK_NONBLOCK
    static let socketCloseOnExec: Int32 = 0o2_000_000  // SOCK_CLOEXEC
    static let netlinkConnector: Int32 = 11  // NETLINK_CONNECTOR
    static let socketLevel: Int32 = 1  // SOL_SOCKET
    static let optionReceiveBuffer: Int32 = 8  // SO_RCVBUF
    static let optionReceiveBufferForce: Int32 = 33  // SO_RCVBUFFORCE
    static let multicastListen: UInt32 = 1  // PROC_CN_MCAST_LISTEN
    static let multicastIgnore: UInt32 = 2  // PROC_CN_MCAST_IGNORE

    /// Opens the socket, sizes its receive buffer, binds to the proc group and subscribes.
    ///
    /// The corresponding C functions are `socket`, `setsockopt` (`SO_RCVBUFFORCE`, which lifts
    /// `net.core.rmem_max` for a process with `CAP_NET_ADMIN`, else `SO_RCVBUF`), `bind` and
    /// `send`. `EPERM` from `bind`/`send` means no `CAP_NET_ADMIN`; `EPROTONOSUPPORT` a kernel
    /// without `CONFIG_PROC_EVENTS`.
    ///
    /// - Parameters:
    ///   - receiveBufferBytes: the socket's receive buffer: room for bursts while the reader is
    ///     busy. Memory is only used while messages wait.
    ///   - eventTypes: what the socket receives. Anything but `.all` needs
    ///     `kernelFiltersEventTypes` (else `EOPNOTSUPP`: an older kernel would send nothing).
    public init(receiveBufferBytes: Int = 64 << 20, eventTypes: EventTypes = .all) throws(Errno) {
        guard !eventTypes.isEmpty, eventTypes == .all || Self.kernelFiltersEventTypes else {
            throw Errno.notSupported
        }
        let fd = try valueOrErrno(retryOnInterrupt: true) {
            system_socket(
                Self.addressFamilyNetlink,
                Self.socketDatagram | Self.socketNonBlock | Self.socketCloseOnExec,
                Self.netlinkConnector
            )
        }.get()
        var ok = false
        defer { if !ok { _ = system_close(fd) } }

        var size = Int32(clamping: receiveBufferBytes)
        let forced = withUnsafeBytes(of: &size) { raw in
            nothingOrErrno(retryOnInterrupt: true) {
                system_setsockopt(
                    fd,
                    Self.socketLevel,
                    Self.optionReceiveBufferForce,
                    raw.baseAddress,
                    socklen_t(raw.count)
                )
            }
        }
        if case .failure = forced {
            // Without CAP_NET_ADMIN: capped by net.core.rmem_max.
            _ = withUnsafeBytes(of: &size) { raw in
                nothingOrErrno(retryOnInterrupt: true) {
                    system_setsockopt(
                        fd,
                        Self.socketLevel,
                        Self.optionReceiveBuffer,
                        raw.baseAddress,
                        socklen_t(raw.count)
                    )
                }
            }
        }
        var granted: Int32 = 0
        var grantedLength = socklen_t(MemoryLayout<Int32>.size)
        _ = withUnsafeMutableBytes(of: &granted) { raw in
            nothingOrErrno(retryOnInterrupt: true) {
                system_getsockopt(fd, Self.socketLevel, Self.optionReceiveBuffer, raw.baseAddress, &grantedLength)
            }
        }

        // struct sockaddr_nl { sa_family_t nl_family; unsigned short nl_pad; __u32 nl_pid; __u32 nl_groups; }
        var address: (UInt16, UInt16, UInt32, UInt32) = (
            UInt16(Self.addressFamilyNetlink), 0, 0, ProcConnectorParser.connectorIndex
        )
        try withUnsafeBytes(of: &address) { raw in
            nothingOrErrno(retryOnInterrupt: true) {
                system_bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
            }
        }.get()
        try Self.sendControl(fd, Self.multicastListen, eventTypes: eventTypes == .all ? nil : eventTypes)

        self.eventTypes = eventTypes
        fileDescriptor = FileDescriptor(rawValue: fd)
        self.receiveBufferBytes = Int(granted)
        buffer = .allocate(byteCount: Self.readBufferSize, alignment: MemoryLayout<UInt64>.alignment)
        ok = true
    }

    deinit {
        _ = try? Self.sendControl(fileDescriptor.rawValue, Self.multicastIgnore)
        _ = system_close(fileDescriptor.rawValue)
        buffer.deallocate()
    }

    /// Sends `nlmsghdr` + `cn_msg` + the 4-byte `enum proc_cn_mcast_op`, or with event types
    /// the 8-byte `struct proc_input` (the operation, then the `enum proc_cn_event` bits).
    private static func sendControl(_ fd: Int32, _ operation: UInt32, eventTypes: EventTypes? = nil) throws(Errno) {
        let payload = eventTypes == nil ? 4 : 8
        var message = [UInt8](repeating: 0, count: 16 + 20 + payload)
        message.withUnsafeMutableBytes { m in
            m.storeBytes(of: UInt32(m.count), toByteOffset: 0, as: UInt32.self)  // nlmsg_len
            m.storeBytes(of: UInt16(3), toByteOffset: 4, as: UInt16.self)  // NLMSG_DONE
            m.storeBytes(of: UInt32(getpid()), toByteOffset: 12, as: UInt32.self)  // nlmsg_pid
            m.storeBytes(of: ProcConnectorParser.connectorIndex, toByteOffset: 16, as: UInt32.self)
            m.storeBytes(of: ProcConnectorParser.connectorValue, toByteOffset: 20, as: UInt32.self)
            m.storeBytes(of: UInt16(payload), toByteOffset: 32, as: UInt16.self)  // cn_msg.len
            m.storeBytes(of: operation, toByteOffset: 36, as: UInt32.self)
            if let eventTypes { m.storeBytes(of: eventTypes.rawValue, toByteOffset: 40, as: UInt32.self) }
        }
        let sent = message.withUnsafeBytes { m in
            valueOrErrno(retryOnInterrupt: true) { system_send(fd, m.baseAddress, m.count, 0) }
        }
        _ = try sent.get()
    }

    public typealias WaitResult = Poll.WaitResult

    /// Blocks until a message is ready, `wakeup` is signalled, or the timeout (-1: none) passes.
    public func wait(wakeup: EventFD?, timeoutMilliseconds: Int32) throws(Errno) -> WaitResult {
        try Poll.wait(for: fileDescriptor, wakeup: wakeup, timeoutMilliseconds: timeoutMilliseconds)
    }

    /// The outcome of one `receive`.
    public enum ReceiveResult: Hashable, Sendable {
        /// Nothing queued (`EAGAIN`).
        case wouldBlock
        /// The kernel dropped messages since the last read (`ENOBUFS`); reading goes on.
        case overrun
        /// One datagram: `messages` proc events were handed to the body, `malformed` skipped.
        case received(messages: Int, malformed: Int)
    }

    /// Reads one datagram and calls `body` for each proc event in it.
    ///
    /// The corresponding C function is `recv`. Messages are parsed with bounds checks
    /// (`ProcConnectorParser`), so a short or corrupt message never crashes.
    public func receive(
        retryOnInterrupt: Bool = true,
        _ body: (ProcConnectorMessage) -> Void
    ) throws(Errno) -> ReceiveResult {
        let result = valueOrErrno(retryOnInterrupt: retryOnInterrupt) {
            system_recv(fileDescriptor.rawValue, buffer.baseAddress, buffer.count, 0)
        }
        switch result {
        case .failure(let err) where err == .resourceTemporarilyUnavailable:
            return .wouldBlock
        case .failure(let err) where err == .noBufferSpace:
            return .overrun
        case .failure(let err):
            throw err
        case .success(let count):
            let valid = max(0, min(count, buffer.count))
            // The socket joins the multicast group at bind, before `PROC_CN_MCAST_LISTEN` sets
            // its filter: events of other kinds queued in between are left out here.
            var skipped = 0
            let summary = ProcConnectorParser.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<valid])) { message in
                if eventTypes != .all, let kind = EventTypes(message.event), !eventTypes.contains(kind) {
                    skipped += 1
                    return
                }
                body(message)
            }
            return .received(messages: summary.messages - skipped, malformed: summary.malformed)
        }
    }
}

@available(*, unavailable)
extension ProcConnector: Sendable {}
