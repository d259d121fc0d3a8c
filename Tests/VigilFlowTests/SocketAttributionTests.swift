import Foundation
import Glibc
import Logging
import Testing
import VigilCore
import VigilLinux
import VigilSensors
import VigilTestSupport

/// sock_diag and the `/proc/*/fd` index against real sockets of this process: each lookup must
/// find the socket whose inode `fstat` reports, owned by this process. Needs no privilege.
@Suite("Socket attribution (sock_diag)")
struct SockDiagTests {
    @Test("TCP and UDP lookups over IPv4 and IPv6 find the socket's inode, uid and this process")
    func lookups() throws {
        let diag = try SockDiag()
        let index = SocketInodeIndex()
        let v4 = try #require(InetAddress.parse("127.0.0.1"))
        let v6 = try #require(InetAddress.parse("::1"))

        // TCP: a listener, a connected client and the accepted socket, on both families.
        for (family, loopback) in [(UInt8(4), v4.address), (UInt8(6), v6.address)] {
            let listener = try TestSocket(family: family, type: SOCK_STREAM)
            try listener.bind(loopback, port: 0)
            #expect(Glibc.listen(listener.fd, 4) == 0)
            let client = try TestSocket(family: family, type: SOCK_STREAM)
            try client.connect(loopback, port: listener.port)
            let accepted = TestSocket(adopting: Glibc.accept(listener.fd, nil, nil))
            #expect(accepted.fd >= 0)

            let clientEnd = InetSocketTuple(
                proto: 6,
                family: family,
                localAddress: loopback,
                localPort: client.port,
                remoteAddress: loopback,
                remotePort: listener.port
            )
            let found = try #require(try diag.lookup(clientEnd), "family \(family)")
            #expect(found.inode == client.inode)
            #expect(found.uid == geteuid())
            #expect(found.state == SockDiag.TCPState.established)
            #expect(found.localPort == client.port && found.remotePort == listener.port)
            #expect(found.localAddress == loopback && found.remoteAddress == loopback)

            let serverEnd = InetSocketTuple(
                proto: 6,
                family: family,
                localAddress: loopback,
                localPort: listener.port,
                remoteAddress: loopback,
                remotePort: client.port
            )
            #expect(try diag.lookup(serverEnd)?.inode == accepted.inode)
            let listening = try #require(try diag.lookup(serverEnd.wildcardRemote))
            #expect(listening.inode == listener.inode && listening.state == SockDiag.TCPState.listen)
            #expect(try diag.dump(proto: 6, family: family).contains { $0.inode == listener.inode })

            // No socket, connected or listening, on a free port: not found, no error.
            var missing = clientEnd
            missing.localPort = UInt16(freeLoopbackPort())
            #expect(try diag.lookup(missing) == nil)
        }

        // UDP: a connected socket, and an unconnected one found from its peer's 4-tuple.
        let receiver = try TestSocket(family: 4, type: SOCK_DGRAM)
        try receiver.bind(v4.address, port: 0)
        let sender = try TestSocket(family: 4, type: SOCK_DGRAM)
        try sender.connect(v4.address, port: receiver.port)
        let senderEnd = InetSocketTuple(
            proto: 17,
            family: 4,
            localAddress: v4.address,
            localPort: sender.port,
            remoteAddress: v4.address,
            remotePort: receiver.port
        )
        #expect(try diag.lookup(senderEnd)?.inode == sender.inode)
        let receiverEnd = InetSocketTuple(
            proto: 17,
            family: 4,
            localAddress: v4.address,
            localPort: receiver.port,
            remoteAddress: v4.address,
            remotePort: sender.port
        )
        #expect(try diag.lookup(receiverEnd)?.inode == receiver.inode)
        #expect(try diag.lookup(receiverEnd.wildcardRemote)?.inode == receiver.inode)
        let unusedPort = try TestSocket.unusedUDPPort()
        #expect(
            try diag.lookup(InetSocketTuple(proto: 17, family: 4, localAddress: v4.address, localPort: unusedPort))
                == nil
        )

        // inode → this process, with its executable.
        index.sweep()
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        for socket in [sender, receiver] {
            let owner = try #require(index.cachedOwner(inode: socket.inode), "inode \(socket.inode)")
            #expect(owner.pid == UInt32(getpid()))
            #expect(owner.fd == socket.fd)
            #expect(owner.image == exe)
        }
        // A closed socket's cached entry is not trusted.
        let closedInode = sender.inode
        sender.close()
        #expect(index.cachedOwner(inode: closedInode) == nil)
    }
}

/// The live flow sensor on `lo` with attribution: a child process's TCP connection and UDP
/// datagrams carry its pid and executable; a spoofed datagram between two unused ports stays
/// unattributed. Needs root (capture, raw socket); outside CI it is skipped without it.
@Suite("Live flow attribution", .serialized)
struct LiveAttributionTests {
    @Test("live attribution needs root, and CI has it")
    func rootInCI() {
        #expect(TestEnvironment.isRoot || !TestEnvironment.isCI, "CI must run the live attribution tests as root")
    }

    @Test(
        "flows of a child process carry its pid and image; a spoofed flow does not",
        .enabled(if: TestEnvironment.isRoot, "needs root (CAP_NET_RAW, raw sockets)"),
        .timeLimit(.minutes(2))
    )
    func childProcessFlows() async throws {
        let loopback = try #require(InetAddress.parse("127.0.0.1")).address
        let listener = try TestSocket(family: 4, type: SOCK_STREAM)
        try listener.bind(loopback, port: 0)
        #expect(Glibc.listen(listener.fd, 4) == 0)
        let receiver = try TestSocket(family: 4, type: SOCK_DGRAM)
        try receiver.bind(loopback, port: 0)
        let spoofSource = try TestSocket.unusedUDPPort()
        let spoofDestination = try TestSocket.unusedUDPPort()
        let ports = [listener.port, receiver.port, spoofSource]

        let sensor = try FlowSensor(
            configuration: FlowSensorConfiguration(
                capture: PcapCaptureOptions(
                    interface: "lo",
                    timeoutMilliseconds: 50,
                    filter: ports.map { "port \($0)" }.joined(separator: " or ")
                ),
                statisticsInterval: .seconds(3600),
                attribution: FlowAttributionConfiguration()
            ),
            logger: Logger(label: "test")
        )
        try sensor.start()
        defer { sensor.stop() }

        let directory = try TemporaryDirectory()
        let ready = directory.appending("ready")
        let go = directory.appending("go")
        let child = try ChildProcess(
            "/usr/bin/python3",
            [
                "-c", Self.client, String(listener.port), String(receiver.port), String(spoofSource),
                String(spoofDestination), ready, go,
            ]
        )
        let pid = UInt32(child.process.processIdentifier)
        #expect(
            await eventually(timeout: .seconds(30)) { FileManager.default.fileExists(atPath: ready) },
            "child: \(child.stderr)"
        )
        let image = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
        // The child keeps its sockets open until the sensor has resolved them (however slow the
        // machine), then closes them and exits.
        #expect(
            await eventually(timeout: .seconds(30)) {
                let stats = sensor.attributionStatistics ?? FlowAttributionStatistics()
                return stats.attributed >= 2 && stats.unattributed >= 1
            },
            "statistics: \(String(describing: sensor.attributionStatistics))"
        )
        _ = FileManager.default.createFile(atPath: go, contents: nil)
        #expect(await child.wait(timeout: .seconds(30)) == 0, "child: \(child.stderr)")
        let (flows, health) = await sensor.stopAndCollect()
        let tcp = try #require(flows.first { $0.proto == "tcp" && $0.respP == listener.port }, "flows: \(flows)")
        #expect(tcp.processId == pid && tcp.image == image, "tcp: \(tcp)")
        let udp = try #require(flows.first { $0.proto == "udp" && $0.respP == receiver.port }, "flows: \(flows)")
        #expect(udp.processId == pid && udp.image == image, "udp: \(udp)")
        #expect(udp.origPkts == 3)
        let spoofed = try #require(flows.first { $0.proto == "udp" && $0.origP == spoofSource }, "flows: \(flows)")
        #expect(spoofed.processId == nil && spoofed.image == nil)

        let stats = try #require(health.last { $0.kind == "pcap_stats" })
        #expect(stats.counters["attributed", default: 0] >= 2)
        #expect(stats.counters["unattributed", default: 0] >= 1)
        #expect(stats.counters["attribution_queue_dropped"] == 0)
    }

    @Test(
        "a flow that ends before the sweep that finds its process is held back for it and reported with it",
        .enabled(if: TestEnvironment.isRoot, "needs root (CAP_NET_RAW)"),
        .timeLimit(.minutes(2))
    )
    func flowHeldForLateSweep() async throws {
        let loopback = try #require(InetAddress.parse("127.0.0.1")).address
        let receiver = try TestSocket(family: 4, type: SOCK_DGRAM)
        try receiver.bind(loopback, port: 0)
        let own = try TestSocket(family: 4, type: SOCK_DGRAM)
        try own.bind(loopback, port: 0)
        // Flows end after 1 s idle; a socket not found at once waits up to 8 s for the next
        // sweep (no new processes are looked at in between, only recent socket owners).
        let sensor = try FlowSensor(
            configuration: FlowSensorConfiguration(
                capture: PcapCaptureOptions(
                    interface: "lo",
                    timeoutMilliseconds: 50,
                    filter: "udp port \(receiver.port)"
                ),
                table: FlowTableConfiguration(idleTimeout: .seconds(1)),
                statisticsInterval: .seconds(3600),
                attribution: FlowAttributionConfiguration(
                    minimumSweepInterval: .seconds(8),
                    quickSweepProcesses: 0,
                    maximumReportDelay: .seconds(30)
                )
            ),
            logger: Logger(label: "test")
        )
        try sensor.start()
        defer { sensor.stop() }

        // This process's flow: a first full sweep, right away; the next one is 8 s later.
        try own.send(Array("first".utf8), to: loopback, port: receiver.port)
        #expect(
            await eventually(timeout: .seconds(30)) {
                (sensor.attributionStatistics?.attributed ?? 0) >= 1
            },
            "statistics: \(String(describing: sensor.attributionStatistics))"
        )
        // A child's flow: not a recent owner, so it waits for that sweep, and ends before it.
        let directory = try TemporaryDirectory()
        let go = directory.appending("go")
        let child = try ChildProcess(
            "/usr/bin/python3",
            [
                "-c",
                """
                import os, socket, sys, time
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.sendto(b"second", ("127.0.0.1", int(sys.argv[1])))
                deadline = time.time() + 60
                while not os.path.exists(sys.argv[2]) and time.time() < deadline: time.sleep(0.05)
                """,
                String(receiver.port), go,
            ]
        )
        let pid = UInt32(child.process.processIdentifier)
        #expect(
            await eventually(timeout: .seconds(60)) {
                (sensor.attributionStatistics?.attributed ?? 0) >= 2
            },
            "statistics: \(String(describing: sensor.attributionStatistics)); child: \(child.stderr)"
        )
        let image = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
        _ = FileManager.default.createFile(atPath: go, contents: nil)
        #expect(await child.wait(timeout: .seconds(30)) == 0, "child: \(child.stderr)")
        let (flows, health) = await sensor.stopAndCollect()
        let first = try #require(flows.first { $0.origP == own.port }, "flows: \(flows)")
        #expect(first.processId == UInt32(getpid()))
        let second = try #require(flows.first { $0.origP != own.port }, "flows: \(flows)")
        #expect(second.processId == pid && second.image == image, "second: \(second)")
        let stats = try #require(health.last { $0.kind == "pcap_stats" })
        #expect(stats.counters["attribution_held_flows", default: 0] >= 1, "\(stats.counters)")
        #expect(stats.counters["attribution_sweeps", default: 0] >= 2, "\(stats.counters)")
    }

    /// Connects to the TCP port, sends three datagrams to the UDP port, sends one spoofed UDP
    /// datagram between two unused ports through a raw socket; then creates `ready` and waits
    /// for `go` before closing everything.
    static let client = """
        import os, socket, struct, sys, time
        tcp_port, udp_port, spoof_src, spoof_dst = map(int, sys.argv[1:5]); ready, go = sys.argv[5:7]
        t = socket.create_connection(("127.0.0.1", tcp_port)); t.sendall(b"hello")
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(3): u.sendto(b"ping", ("127.0.0.1", udp_port))
        r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        payload = b"spoof"
        udp = struct.pack("!HHHH", spoof_src, spoof_dst, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                         socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))
        r.sendto(ip + udp, ("127.0.0.1", 0))
        open(ready, "w").close()
        deadline = time.time() + 60
        while not os.path.exists(go) and time.time() < deadline: time.sleep(0.05)
        t.close(); u.close(); r.close()
        """
}

/// A socket of this test process, closed on release.
final class TestSocket {
    private(set) var fd: Int32
    let family: UInt8

    init(family: UInt8, type: __socket_type) throws {
        self.family = family
        fd = socket(family == 4 ? AF_INET : AF_INET6, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketTestError(message: "socket: errno \(errno)") }
    }

    init(adopting fd: Int32) {
        self.fd = fd
        family = 0
    }

    deinit { close() }

    func close() {
        if fd >= 0 { _ = Glibc.close(fd) }
        fd = -1
    }

    /// A UDP port on 127.0.0.1 that was free a moment ago.
    static func unusedUDPPort() throws -> UInt16 {
        let probe = try TestSocket(family: 4, type: SOCK_DGRAM)
        try probe.bind(try #require(InetAddress.parse("127.0.0.1")).address, port: 0)
        return probe.port
    }

    func bind(_ address: InetAddress, port: UInt16) throws {
        let rc = withAddress(address, port: port) { Glibc.bind(fd, $0, $1) }
        guard rc == 0 else { throw SocketTestError(message: "bind: errno \(errno)") }
    }

    /// Sends `bytes` to `address`:`port` in one datagram.
    func send(_ bytes: [UInt8], to address: InetAddress, port: UInt16) throws {
        let sent = withAddress(address, port: port) { Int32(sendto(fd, bytes, bytes.count, 0, $0, $1)) }
        guard sent == bytes.count else { throw SocketTestError(message: "sendto: errno \(errno)") }
    }

    func connect(_ address: InetAddress, port: UInt16) throws {
        let rc = withAddress(address, port: port) { Glibc.connect(fd, $0, $1) }
        guard rc == 0 else { throw SocketTestError(message: "connect: errno \(errno)") }
    }

    /// The bound local port.
    var port: UInt16 {
        var storage = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: storage.sin6_port)  // sin_port and sin6_port share the offset
    }

    /// `fstat(fd).st_ino`.
    var inode: UInt64 {
        var status = stat()
        _ = fstat(fd, &status)
        return UInt64(status.st_ino)
    }

    private func withAddress(
        _ address: InetAddress,
        port: UInt16,
        _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32
    )
        -> Int32
    {
        if family == 4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = UInt32(truncatingIfNeeded: address.low).bigEndian
            return withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &sin6.sin6_addr) { raw in
            raw.storeBytes(of: address.high.bigEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: address.low.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        return withUnsafePointer(to: &sin6) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
    }
}

struct SocketTestError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
