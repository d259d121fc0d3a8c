import Foundation
import Glibc
import Logging
import Synchronization
import Testing
import VigilCore
import VigilLinux
import VigilSensors
import VigilTestSupport

/// The live sensor on a veth pair between two network namespaces created for the test: known
/// TCP, UDP and ICMP exchanges must come out as flows. Needs root; outside CI it is skipped
/// without it, in CI it fails.
@Suite("Live flow capture", .serialized)
struct LiveCaptureTests {
    @Test("live capture needs root, and CI has it")
    func rootInCI() {
        #expect(TestEnvironment.isRoot || !TestEnvironment.isCI, "CI must run the live capture tests as root")
    }

    @Test(
        "TCP, UDP and ICMP exchanges between two namespaces are reported as flows",
        .enabled(if: TestEnvironment.isRoot, "needs root (network namespaces, CAP_NET_RAW)"),
        .timeLimit(.minutes(2))
    )
    func namespacePair() async throws {
        let pair = try NamespacePair()
        defer { pair.remove() }
        let capture = try pair.openCapture(
            PcapCaptureOptions(interface: pair.interfaceA, timeoutMilliseconds: 50, filter: "ip or ip6")
        )
        let sensor = try FlowSensor(
            capture: capture,
            configuration: FlowSensorConfiguration(statisticsInterval: .seconds(3600)),
            logger: Logger(label: "test")
        )
        try sensor.start()

        let directory = try TemporaryDirectory()
        let ready = directory.appending("ready")
        let server = try ChildProcess(
            "/usr/sbin/ip",
            ["netns", "exec", pair.nameB, "python3", "-c", Self.server, ready]
        )
        // One UDP datagram and one connection: the client must not start before the server listens.
        #expect(
            await eventually(timeout: .seconds(20)) { FileManager.default.fileExists(atPath: ready) },
            "server: \(server.stderr)"
        )
        let client = try await runCommand("/usr/sbin/ip", ["netns", "exec", pair.nameA, "python3", "-c", Self.client])
        #expect(client.status == 0, "client: \(client.stderr)")
        #expect(await server.wait(timeout: .seconds(20)) == 0, "server: \(server.stderr)")
        let (flows, health) = await sensor.stopAndCollect()
        let tcp = try #require(flows.first { $0.proto == "tcp" && $0.origP == 40001 }, "flows: \(flows)")
        #expect(tcp.origH == "10.231.0.1" && tcp.respH == "10.231.0.2" && tcp.respP == 8080)
        #expect(tcp.origBytes == 5 && tcp.respBytes == 5)
        #expect(tcp.origTCPFlags & (TCPFlag.syn | TCPFlag.ack | TCPFlag.fin) == TCPFlag.syn | TCPFlag.ack | TCPFlag.fin)
        #expect(tcp.respTCPFlags & (TCPFlag.syn | TCPFlag.ack) == TCPFlag.syn | TCPFlag.ack)
        #expect(tcp.origPkts >= 4 && tcp.respPkts >= 3)
        #expect(tcp.state == "SF")
        #expect(tcp.communityID.hasPrefix("1:"))

        let udp = try #require(flows.first { $0.proto == "udp" && $0.origP == 40000 }, "flows: \(flows)")
        #expect(udp.respH == "10.231.0.2" && udp.respP == 9999)
        #expect(udp.origPkts == 1 && udp.respPkts == 1 && udp.origBytes == 4 && udp.respBytes == 4)
        #expect(udp.origIPBytes == 32 && udp.respIPBytes == 32)
        #expect(udp.state == "SF")

        let icmp = try #require(flows.first { $0.proto == "icmp" && $0.origP == 8 }, "flows: \(flows)")
        #expect(icmp.origH == "10.231.0.1" && icmp.respP == 0)
        #expect(icmp.origPkts == 3 && icmp.respPkts == 3)
        // 20-byte IP header + 8-byte echo header, no data.
        #expect(icmp.origIPBytes == 3 * 28 && icmp.origBytes == 0 && icmp.respIPBytes == 3 * 28)

        let stats = try #require(health.last { $0.kind == "pcap_stats" })
        #expect(stats.counters["pcap_received", default: 0] >= 13)
        #expect(stats.counters["pcap_dropped"] == 0)
    }

    @Test(
        "a bad BPF filter is a clear error quoting it",
        .enabled(if: TestEnvironment.isRoot, "needs root (CAP_NET_RAW)")
    )
    func badFilter() throws {
        let options = PcapCaptureOptions(interface: "lo", filter: "tcp port nonsense-port")
        #expect {
            _ = try FlowSensor(configuration: FlowSensorConfiguration(capture: options), logger: Logger(label: "test"))
        } throws: { error in
            guard let error = error as? FlowSensorError else { return false }
            return error.code == .invalidFilter && error.message.contains("'tcp port nonsense-port'")
        }
    }

    /// B: answers one UDP datagram on 9999 and one TCP connection on 8080 ("hello" → "world");
    /// creates the file named by its argument once both sockets listen.
    static let server = """
        import socket, sys
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("10.231.0.2", 9999))
        t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(("10.231.0.2", 8080)); t.listen(1); t.settimeout(20); u.settimeout(20)
        open(sys.argv[1], "w").close()
        data, peer = u.recvfrom(100); u.sendto(b"pong", peer)
        c, _ = t.accept(); c.recv(5); c.sendall(b"world"); c.shutdown(socket.SHUT_WR); c.recv(10); c.close()
        """

    /// A: UDP from port 40000, TCP from port 40001, then three ICMP echoes (id 0x1234) to B.
    static let client = """
        import socket, struct, time
        def checksum(b):
            s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
            return ~s & 0xffff
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("10.231.0.1", 40000)); u.settimeout(5)
        u.sendto(b"ping", ("10.231.0.2", 9999)); u.recvfrom(100)
        t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(("10.231.0.1", 40001))
        t.connect(("10.231.0.2", 8080)); t.sendall(b"hello"); t.recv(5); t.shutdown(socket.SHUT_WR); t.recv(10); t.close()
        r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); r.settimeout(2)
        for seq in range(3):
            header = struct.pack("!BBHHH", 8, 0, 0, 0x1234, seq)
            r.sendto(struct.pack("!BBHHH", 8, 0, checksum(header), 0x1234, seq), ("10.231.0.2", 0))
            while True:
                packet = r.recv(100)
                if packet[20] == 0: break
        time.sleep(0.3)
        """
}

/// Two network namespaces joined by a veth pair (10.231.0.1/24 in A, .2 in B), removed by
/// `remove()` (call it in a `defer`).
final class NamespacePair: Sendable {
    let nameA: String
    let nameB: String
    let interfaceA: String
    let interfaceB: String

    /// `suffix` (a letter or two) keeps the names of pairs made by suites running at once apart.
    init(suffix: String = "") throws {
        let tag = String(getpid() % 100_000) + suffix
        nameA = "vigil-flow-a-\(tag)"
        nameB = "vigil-flow-b-\(tag)"
        interfaceA = "vgfa\(tag)"
        interfaceB = "vgfb\(tag)"
        remove()
        do {
            try Self.ip(["netns", "add", nameA])
            try Self.ip(["netns", "add", nameB])
            try Self.ip([
                "link", "add", interfaceA, "netns", nameA, "type", "veth", "peer", "name", interfaceB, "netns", nameB,
            ])
            try Self.ip(["-n", nameA, "addr", "add", "10.231.0.1/24", "dev", interfaceA])
            try Self.ip(["-n", nameB, "addr", "add", "10.231.0.2/24", "dev", interfaceB])
            for (ns, interface) in [(nameA, interfaceA), (nameB, interfaceB)] {
                try Self.ip(["-n", ns, "link", "set", interface, "up"])
                try Self.ip(["-n", ns, "link", "set", "lo", "up"])
            }
        } catch {
            remove()
            throw error
        }
    }

    func remove() {
        for ns in [nameA, nameB] { _ = try? Self.ip(["netns", "del", ns], allowFailure: true) }
    }

    private static func ip(_ arguments: [String], allowFailure: Bool = false) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = arguments
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        if process.terminationStatus != 0 && !allowFailure {
            throw NamespaceError(message: "ip \(arguments.joined(separator: " ")) exited \(process.terminationStatus)")
        }
    }

    /// Opens a capture inside namespace A: a short-lived thread enters it with `setns`, so the
    /// packet socket belongs to A while the test process stays where it is.
    func openCapture(_ options: PcapCaptureOptions) throws -> PcapCapture {
        let path = "/run/netns/\(nameA)"
        let result = Mutex<Result<PcapCapture, any Error>?>(nil)
        let thread = try PosixThread.spawn(name: "vigil-netns") {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                result.withLock { $0 = .failure(NamespaceError(message: "cannot open \(path)")) }
                return
            }
            defer { close(fd) }
            typealias SetNS = @convention(c) (Int32, Int32) -> Int32
            guard let symbol = dlsym(nil, "setns"), unsafeBitCast(symbol, to: SetNS.self)(fd, 0x4000_0000) == 0 else {
                result.withLock { $0 = .failure(NamespaceError(message: "setns(\(path)) failed")) }
                return
            }
            let opened = Result<PcapCapture, any Error> { try PcapCapture(options: options) }
            result.withLock { $0 = opened }
        }
        thread.join()
        guard let outcome = result.withLock({ $0 }) else { throw NamespaceError(message: "no capture opened") }
        return try outcome.get()
    }
}

struct NamespaceError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
