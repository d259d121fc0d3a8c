import Glibc
import SystemPackage

/// An IPv4 or IPv6 address as two numbers: IPv4 in the low 32 bits of `low`, IPv6 as its first
/// and last 8 bytes read big-endian (the flow decoder's convention).
public struct InetAddress: Hashable, Sendable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64 = 0, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// `0.0.0.0` / `::`: a wildcard in a sock_diag query.
    public static let unspecified = InetAddress(low: 0)

    /// The address in `text` (dotted quad or IPv6) and its family (4 or 6); nil when neither.
    public static func parse(_ text: String) -> (family: UInt8, address: InetAddress)? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return (4, InetAddress(low: UInt64(UInt32(bigEndian: v4.s_addr))))
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        return withUnsafeBytes(of: &v6) { raw in
            (
                6,
                InetAddress(
                    high: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                    low: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                )
            )
        }
    }
}

/// One socket end pair to look up: protocol, family and the 4-tuple seen from this host.
public struct InetSocketTuple: Hashable, Sendable {
    /// IP protocol number: 6 (TCP), 17 (UDP), 132 (SCTP, when the kernel has `sctp_diag`).
    public var proto: UInt8
    /// 4 or 6.
    public var family: UInt8
    public var localAddress: InetAddress
    public var localPort: UInt16
    /// `InetAddress.unspecified` and port 0 for a listening or unconnected socket.
    public var remoteAddress: InetAddress
    public var remotePort: UInt16

    public init(
        proto: UInt8,
        family: UInt8,
        localAddress: InetAddress,
        localPort: UInt16,
        remoteAddress: InetAddress = .unspecified,
        remotePort: UInt16 = 0
    ) {
        self.proto = proto
        self.family = family
        self.localAddress = localAddress
        self.localPort = localPort
        self.remoteAddress = remoteAddress
        self.remotePort = remotePort
    }

    /// The same tuple with the remote end a wildcard (a listener or an unconnected socket).
    public var wildcardRemote: InetSocketTuple {
        InetSocketTuple(proto: proto, family: family, localAddress: localAddress, localPort: localPort)
    }
}

/// A client of the kernel's socket monitoring interface (`NETLINK_SOCK_DIAG`, `inet_diag`):
/// finds the socket behind a 4-tuple in this network namespace, with its inode and owner uid.
///
/// Needs no capability: any process may look up and dump the namespace's TCP and UDP sockets
/// (as `ss` does); only extensions this client does not ask for (socket marks, BPF filters
/// of other users) need `CAP_NET_ADMIN`. The socket is close-on-exec and blocking with a
/// receive timeout. Not thread-safe: one thread uses it.
public final class SockDiag {
    /// What the kernel reports of one socket (`struct inet_diag_msg`).
    public struct Socket: Hashable, Sendable {
        public var family: UInt8
        public var proto: UInt8
        /// The TCP state number (`TCP_ESTABLISHED` 1 … `TCP_LISTEN` 10; UDP: 7 unconnected, 1 connected).
        public var state: UInt8
        public var localAddress: InetAddress
        public var localPort: UInt16
        public var remoteAddress: InetAddress
        public var remotePort: UInt16
        /// The interface the socket is bound to, 0 if none.
        public var interface: UInt32
        /// The uid that created the socket.
        public var uid: UInt32
        /// The socket's inode in sockfs (`socket:[INODE]` in `/proc/PID/fd`); 0 when no process
        /// holds it (TIME_WAIT, a connection not yet accepted, a closed orphan).
        public var inode: UInt64
        /// The kernel's socket cookie.
        public var cookie: UInt64
    }

    /// TCP states as `inet_diag_msg.idiag_state` reports them.
    public enum TCPState {
        public static let established: UInt8 = 1
        public static let synReceived: UInt8 = 3
        public static let timeWait: UInt8 = 6
        public static let listen: UInt8 = 10
        public static let newSynReceived: UInt8 = 12
    }

    /// Attempts of a dump whose socket table changed under it (`NLM_F_DUMP_INTR`).
    public static let dumpAttempts = 3

    private let fd: Int32
    private let buffer: UnsafeMutableRawBufferPointer
    private var sequence: UInt32 = 0

    // Linux ABI constants (<sys/socket.h>, <linux/netlink.h>, <linux/sock_diag.h>, <linux/inet_diag.h>).
    static let addressFamilyNetlink: Int32 = 16  // AF_NETLINK
    static let socketDatagram: Int32 = 2  // SOCK_DGRAM
    static let socketCloseOnExec: Int32 = 0o2_000_000  // SOCK_CLOEXEC
    static let netlinkSockDiag: Int32 = 4  // NETLINK_SOCK_DIAG
    static let socketLevel: Int32 = 1  // SOL_SOCKET
    static let optionReceiveTimeout: Int32 = 20  // SO_RCVTIMEO (64-bit timeval)
    static let sockDiagByFamily: UInt16 = 20  // SOCK_DIAG_BY_FAMILY
    static let messageError: UInt16 = 2  // NLMSG_ERROR
    static let messageDone: UInt16 = 3  // NLMSG_DONE
    static let flagRequest: UInt16 = 0x1  // NLM_F_REQUEST
    static let flagDump: UInt16 = 0x300  // NLM_F_ROOT | NLM_F_MATCH
    static let flagDumpInterrupted: UInt16 = 0x10  // NLM_F_DUMP_INTR
    static let headerSize = 16  // struct nlmsghdr
    static let requestSize = 56  // struct inet_diag_req_v2
    static let messageSize = 72  // struct inet_diag_msg
    static let noCookie: UInt32 = 0xFFFF_FFFF  // INET_DIAG_NOCOOKIE

    /// Opens the netlink socket. The corresponding C functions are `socket` and `setsockopt`
    /// (`SO_RCVTIMEO`).
    ///
    /// - Parameter receiveTimeoutMilliseconds: how long a reply may take before `.timedOut`.
    public init(receiveTimeoutMilliseconds: Int = 2000) throws(SockDiagError) {
        let opened = valueOrErrno(retryOnInterrupt: true) {
            system_socket(Self.addressFamilyNetlink, Self.socketDatagram | Self.socketCloseOnExec, Self.netlinkSockDiag)
        }
        let fd: Int32
        switch opened {
        case .success(let opened): fd = opened
        case .failure(let err):
            throw SockDiagError(code: .socketUnavailable, message: "cannot open a NETLINK_SOCK_DIAG socket", errno: err)
        }
        var timeout = timeval(
            tv_sec: receiveTimeoutMilliseconds / 1000,
            tv_usec: (receiveTimeoutMilliseconds % 1000) * 1000
        )
        _ = withUnsafeBytes(of: &timeout) { raw in
            nothingOrErrno(retryOnInterrupt: true) {
                system_setsockopt(
                    fd,
                    Self.socketLevel,
                    Self.optionReceiveTimeout,
                    raw.baseAddress,
                    socklen_t(raw.count)
                )
            }
        }
        self.fd = fd
        buffer = .allocate(byteCount: 64 * 1024, alignment: MemoryLayout<UInt64>.alignment)
    }

    deinit {
        _ = system_close(fd)
        buffer.deallocate()
    }

    /// The socket with exactly this tuple, or nil when the kernel has none ("not found" is not
    /// an error). For TCP the kernel matches a connection first, then a listener on the local
    /// end; for UDP a connected socket first, then one bound to the local port (and address or
    /// wildcard). A remote wildcard (`tuple.wildcardRemote`) finds listeners and unconnected
    /// sockets.
    ///
    /// The corresponding C functions are `send` and `recv` of a `SOCK_DIAG_BY_FAMILY` request
    /// without `NLM_F_DUMP`.
    ///
    /// - Throws: `SockDiagError` `.invalidQuery`, `.sendFailed`, `.receiveFailed`, `.timedOut`,
    ///   `.malformedReply`, `.kernelError` (e.g. `EINVAL`: no diag module for the protocol).
    public func lookup(_ tuple: InetSocketTuple) throws(SockDiagError) -> Socket? {
        // udp_diag looks up "src" as the packet's source: the remote end (kept so for
        // historical reasons, says the kernel); inet_diag for TCP takes "src" as the local end.
        let swap = tuple.proto == 17 || tuple.proto == 136
        let seq = try send(
            family: tuple.family,
            proto: tuple.proto,
            states: 0xFFFF_FFFF,
            flags: Self.flagRequest,
            source: swap ? (tuple.remoteAddress, tuple.remotePort) : (tuple.localAddress, tuple.localPort),
            destination: swap ? (tuple.localAddress, tuple.localPort) : (tuple.remoteAddress, tuple.remotePort)
        )
        var found: Socket? = nil
        var finished = false
        while !finished {
            try receive(sequence: seq) { (type, _, payload) throws(SockDiagError) in
                switch type {
                case Self.sockDiagByFamily:
                    if found == nil { found = try Self.parse(payload, proto: tuple.proto) }
                    finished = true
                case Self.messageError:
                    let error = try Self.errorCode(payload)
                    finished = true
                    if error == 0 || error == ENOENT { return }
                    throw SockDiagError(
                        code: .kernelError,
                        message: "sock_diag lookup failed",
                        errno: Errno(rawValue: error)
                    )
                case Self.messageDone:
                    finished = true
                default:
                    break
                }
            }
        }
        return found
    }

    /// Every socket of `proto` and `family` in this network namespace whose state is in
    /// `states` (a bit per TCP state number; all by default).
    ///
    /// A dump the kernel marks interrupted (the table changed meanwhile) is tried again, up to
    /// `dumpAttempts` times. The corresponding C functions are `send` and `recv` (multi-part
    /// replies up to `NLMSG_DONE`).
    ///
    /// - Throws: as `lookup`, and `.dumpInterrupted`.
    public func dump(proto: UInt8, family: UInt8, states: UInt32 = 0xFFFF_FFFF) throws(SockDiagError) -> [Socket] {
        for _ in 0..<Self.dumpAttempts {
            let seq = try send(
                family: family,
                proto: proto,
                states: states,
                flags: Self.flagRequest | Self.flagDump,
                source: (.unspecified, 0),
                destination: (.unspecified, 0)
            )
            var sockets: [Socket] = []
            var interrupted = false
            var finished = false
            while !finished {
                try receive(sequence: seq) { (type, flags, payload) throws(SockDiagError) in
                    if flags & Self.flagDumpInterrupted != 0 { interrupted = true }
                    switch type {
                    case Self.sockDiagByFamily:
                        sockets.append(try Self.parse(payload, proto: proto))
                    case Self.messageError:
                        let error = try Self.errorCode(payload)
                        finished = true
                        if error != 0 {
                            throw SockDiagError(
                                code: .kernelError,
                                message: "sock_diag dump failed",
                                errno: Errno(rawValue: error)
                            )
                        }
                    case Self.messageDone:
                        finished = true
                    default:
                        break
                    }
                }
            }
            if !interrupted { return sockets }
        }
        throw SockDiagError(
            code: .dumpInterrupted,
            message: "the socket table changed during each of \(Self.dumpAttempts) dumps"
        )
    }

    // MARK: - Internals

    /// Sends a `SOCK_DIAG_BY_FAMILY` request; returns its sequence number.
    private func send(
        family: UInt8,
        proto: UInt8,
        states: UInt32,
        flags: UInt16,
        source: (InetAddress, UInt16),
        destination: (InetAddress, UInt16)
    ) throws(SockDiagError) -> UInt32 {
        guard family == 4 || family == 6 else {
            throw SockDiagError(code: .invalidQuery, message: "address family \(family) is neither 4 nor 6")
        }
        sequence &+= 1
        let seq = sequence
        let length = Self.headerSize + Self.requestSize
        let request = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
        request.initializeMemory(as: UInt8.self, repeating: 0)
        request.storeBytes(of: UInt32(length), toByteOffset: 0, as: UInt32.self)  // nlmsg_len
        request.storeBytes(of: Self.sockDiagByFamily, toByteOffset: 4, as: UInt16.self)  // nlmsg_type
        request.storeBytes(of: flags, toByteOffset: 6, as: UInt16.self)  // nlmsg_flags
        request.storeBytes(of: seq, toByteOffset: 8, as: UInt32.self)  // nlmsg_seq
        let r = Self.headerSize
        request[r] = family == 4 ? UInt8(AF_INET) : UInt8(AF_INET6)  // sdiag_family
        request[r + 1] = proto  // sdiag_protocol
        request.storeBytes(of: states, toByteOffset: r + 4, as: UInt32.self)  // idiag_states
        // struct inet_diag_sockid: sport, dport (network order), src[4], dst[4], if, cookie[2].
        request.storeBytes(of: source.1.bigEndian, toByteOffset: r + 8, as: UInt16.self)
        request.storeBytes(of: destination.1.bigEndian, toByteOffset: r + 10, as: UInt16.self)
        Self.store(source.0, family: family, into: request, at: r + 12)
        Self.store(destination.0, family: family, into: request, at: r + 28)
        request.storeBytes(of: Self.noCookie, toByteOffset: r + 48, as: UInt32.self)
        request.storeBytes(of: Self.noCookie, toByteOffset: r + 52, as: UInt32.self)
        let sent = valueOrErrno(retryOnInterrupt: true) { system_send(fd, request.baseAddress, length, 0) }
        if case .failure(let err) = sent {
            throw SockDiagError(code: .sendFailed, message: "cannot send the sock_diag request", errno: err)
        }
        return seq
    }

    /// Reads one datagram and calls `body` with each netlink message of sequence `seq` in it
    /// (others are replies to earlier requests that timed out, skipped).
    private func receive(
        sequence seq: UInt32,
        _ body: (UInt16, UInt16, UnsafeRawBufferPointer) throws(SockDiagError) -> Void
    ) throws(SockDiagError) {
        let received = valueOrErrno(retryOnInterrupt: true) { system_recv(fd, buffer.baseAddress, buffer.count, 0) }
        let count: Int
        switch received {
        case .success(let n): count = n
        case .failure(let err) where err == .resourceTemporarilyUnavailable:
            throw SockDiagError(code: .timedOut, message: "no sock_diag reply within the receive timeout", errno: err)
        case .failure(let err):
            throw SockDiagError(code: .receiveFailed, message: "cannot read the sock_diag reply", errno: err)
        }
        let datagram = UnsafeRawBufferPointer(rebasing: buffer[0..<min(count, buffer.count)])
        var offset = 0
        while offset + Self.headerSize <= datagram.count {
            let length = Int(datagram.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            guard length >= Self.headerSize, length <= datagram.count - offset else {
                throw SockDiagError(
                    code: .malformedReply,
                    message: "netlink message length \(length) at offset \(offset) of a \(datagram.count)-byte reply"
                )
            }
            let type = datagram.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
            let flags = datagram.loadUnaligned(fromByteOffset: offset + 6, as: UInt16.self)
            let messageSeq = datagram.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
            if messageSeq == seq {
                try body(
                    type,
                    flags,
                    UnsafeRawBufferPointer(rebasing: datagram[(offset + Self.headerSize)..<(offset + length)])
                )
            }
            offset += (length + 3) & ~3  // NLMSG_ALIGN
        }
    }

    private static func errorCode(_ payload: UnsafeRawBufferPointer) throws(SockDiagError) -> Int32 {
        guard payload.count >= 4 else {
            throw SockDiagError(code: .malformedReply, message: "NLMSG_ERROR of \(payload.count) bytes")
        }
        return -payload.loadUnaligned(as: Int32.self)
    }

    private static func parse(_ payload: UnsafeRawBufferPointer, proto: UInt8) throws(SockDiagError) -> Socket {
        guard payload.count >= messageSize else {
            throw SockDiagError(code: .malformedReply, message: "inet_diag_msg of \(payload.count) bytes")
        }
        let family: UInt8 = payload[0] == UInt8(AF_INET) ? 4 : 6
        return Socket(
            family: family,
            proto: proto,
            state: payload[1],
            localAddress: load(payload, family: family, at: 8),
            localPort: UInt16(bigEndian: payload.loadUnaligned(fromByteOffset: 4, as: UInt16.self)),
            remoteAddress: load(payload, family: family, at: 24),
            remotePort: UInt16(bigEndian: payload.loadUnaligned(fromByteOffset: 6, as: UInt16.self)),
            interface: payload.loadUnaligned(fromByteOffset: 40, as: UInt32.self),
            uid: payload.loadUnaligned(fromByteOffset: 64, as: UInt32.self),
            inode: UInt64(payload.loadUnaligned(fromByteOffset: 68, as: UInt32.self)),
            cookie: UInt64(payload.loadUnaligned(fromByteOffset: 44, as: UInt32.self))
                | UInt64(payload.loadUnaligned(fromByteOffset: 48, as: UInt32.self)) << 32
        )
    }

    private static func store(
        _ address: InetAddress,
        family: UInt8,
        into buffer: UnsafeMutableRawBufferPointer,
        at offset: Int
    ) {
        if family == 4 {
            buffer.storeBytes(
                of: UInt32(truncatingIfNeeded: address.low).bigEndian,
                toByteOffset: offset,
                as: UInt32.self
            )
        } else {
            buffer.storeBytes(of: address.high.bigEndian, toByteOffset: offset, as: UInt64.self)
            buffer.storeBytes(of: address.low.bigEndian, toByteOffset: offset + 8, as: UInt64.self)
        }
    }

    private static func load(_ buffer: UnsafeRawBufferPointer, family: UInt8, at offset: Int) -> InetAddress {
        if family == 4 {
            return InetAddress(
                low: UInt64(UInt32(bigEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            )
        }
        return InetAddress(
            high: UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self)),
            low: UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
        )
    }
}

@available(*, unavailable)
extension SockDiag: Sendable {}
