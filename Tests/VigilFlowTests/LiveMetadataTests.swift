import Foundation
import Glibc
import Logging
import Testing
import VigilCore
import VigilLinux
import VigilSensors
import VigilTestSupport

/// Flow metadata on a live capture between two network namespaces: a real DNS query answered
/// by a small responder and a real TLS ClientHello from `openssl s_client` come out on the
/// flows, and the spliced kernel filter keeps those packets long and every other one at the
/// 128-byte snap length. Needs root; outside CI it is skipped without it, in CI it fails.
@Suite("Live flow metadata", .serialized)
struct LiveMetadataTests {
    @Test(
        "DNS query and answers and the TLS server name reach the live flows; other packets stay at 128 bytes",
        .enabled(if: TestEnvironment.isRoot, "needs root (network namespaces, CAP_NET_RAW)"),
        .timeLimit(.minutes(10))
    )
    func dnsAndTLS() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "openssl is needed")
        let pair = try NamespacePair(suffix: "m")
        defer { pair.remove() }
        let options = PcapCaptureOptions(
            interface: pair.interfaceA,
            timeoutMilliseconds: 50,
            filter: "ip or ip6",
            largeSnapshot: FlowSensor.metadataSnapshot
        )
        let capture = try pair.openCapture(options)
        // A second capture with the same filter, read here, to see the captured lengths.
        let lengths = try pair.openCapture(options)
        let sensor = try FlowSensor(
            capture: capture,
            configuration: FlowSensorConfiguration(capture: options, statisticsInterval: .seconds(3600)),
            logger: Logger(label: "test")
        )
        try sensor.start()

        let directory = try TemporaryDirectory()
        let ready = directory.appending("ready")
        let server = try ChildProcess(
            "/usr/sbin/ip",
            ["netns", "exec", pair.nameB, "python3", "-c", Self.server, ready]
        )
        #expect(
            await eventually(timeout: .seconds(180)) { FileManager.default.fileExists(atPath: ready) },
            "server: \(server.stderr)"
        )
        let client = try await runCommand(
            "/usr/sbin/ip",
            ["netns", "exec", pair.nameA, "python3", "-c", Self.client],
            timeout: .seconds(300)
        )
        #expect(client.status == 0, "client: \(client.stderr)")
        #expect(await server.wait(timeout: .seconds(180)) == 0, "server: \(server.stderr)")

        // What the kernel kept of each packet: (captured, on the wire, UDP/TCP ports, payload start).
        var seen: [(caplen: Int, wire: Int, sport: UInt16, dport: UInt16, payload: [UInt8])] = []
        var decoder = PacketDecoder()
        var packet = DecodedPacket()
        for _ in 0..<20 {
            _ = try lengths.dispatch { captured in
                guard decoder.decode(captured.bytes, linkType: captured.linkType, into: &packet) else { return }
                let start = Int(packet.payloadOffset)
                let payload = start > 0 && start < captured.bytes.count ? Array(captured.bytes[start...].prefix(6)) : []
                seen.append(
                    (captured.bytes.count, captured.wireLength, packet.sourcePort, packet.destinationPort, payload)
                )
            }
        }
        let flows = await sensor.stopAndCollect().flows

        let dns = try #require(flows.first { $0.proto == "udp" && $0.respP == 53 }, "flows: \(flows)")
        #expect(dns.origP == 40053 && dns.dnsQuery == String(repeating: "x", count: 60) + ".vigil.test")
        #expect(dns.dnsAnswers == ["10.231.0.99", "2001:db8::99"])
        #expect(dns.serverName == nil)
        let tls = try #require(flows.first { $0.proto == "tcp" && $0.respP == 443 }, "flows: \(flows)")
        #expect(tls.serverName == "sni.vigil.test")
        #expect(tls.dnsQuery == nil)
        let other = try #require(flows.first { $0.proto == "udp" && $0.respP == 9999 })
        #expect(other.dnsQuery == nil && other.serverName == nil && other.origBytes == 1000)

        // The DNS packets (a 60-letter name makes them longer than 128 bytes) and the
        // ClientHello whole; everything else cut at 128.
        let isDNS = { (p: (caplen: Int, wire: Int, sport: UInt16, dport: UInt16, payload: [UInt8])) in
            p.sport == 53 || p.dport == 53
        }
        let isHello = { (p: (caplen: Int, wire: Int, sport: UInt16, dport: UInt16, payload: [UInt8])) in
            p.dport == 443 && p.payload.count >= 6 && p.payload[0] == 22 && p.payload[5] == 1
        }
        let long = seen.filter { isDNS($0) || isHello($0) }
        #expect(long.count == 3, "two DNS packets and one ClientHello: \(seen.map { ($0.caplen, $0.wire) })")
        #expect(
            long.allSatisfy { $0.caplen == min($0.wire, 2048) && $0.caplen > 128 },
            "\(long.map { ($0.caplen, $0.wire) })"
        )
        let short = seen.filter { !isDNS($0) && !isHello($0) }
        #expect(short.allSatisfy { $0.caplen <= 128 }, "\(short.map { ($0.caplen, $0.wire) })")
        // Long packets that are neither: the 1000-byte datagram and the server's 1000 bytes.
        #expect(short.filter { $0.wire > 1000 && $0.caplen == 128 }.count >= 2, "\(short.map { ($0.caplen, $0.wire) })")
    }

    /// B: a DNS responder on 53 answering one query with an A and an AAAA record, a UDP sink on
    /// 9999 and a TCP listener on 443 that reads (a ClientHello) and answers 1000 bytes of not-TLS.
    static let server = """
        import socket, struct, sys
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("10.231.0.2", 53)); u.settimeout(180)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.231.0.2", 9999)); s.settimeout(180)
        t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(("10.231.0.2", 443)); t.listen(1); t.settimeout(180)
        open(sys.argv[1], "w").close()
        q, peer = u.recvfrom(512)
        end = 12
        while q[end] != 0: end += q[end] + 1
        end += 5
        r = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 2, 0, 0) + q[12:end]
        r += b"\\xc0\\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("10.231.0.99")
        r += b"\\xc0\\x0c" + struct.pack("!HHIH", 28, 1, 60, 16) + socket.inet_pton(socket.AF_INET6, "2001:db8::99")
        u.sendto(r, peer)
        s.recvfrom(2000)
        c, _ = t.accept(); c.settimeout(60); c.recv(4096); c.sendall(b"x" * 1000); c.close()
        """

    /// A: the DNS query (from port 40053), 1000 bytes to 9999, then `openssl s_client` with a
    /// server name (it fails once the server answers nonsense; the hello is what counts).
    static let client = """
        import socket, struct, subprocess, time
        q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\\x3c" + b"x" * 60 + b"\\x05vigil\\x04test\\x00" + struct.pack("!HH", 1, 1)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("10.231.0.1", 40053)); u.settimeout(60)
        u.sendto(q, ("10.231.0.2", 53)); u.recvfrom(512)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.sendto(b"y" * 1000, ("10.231.0.2", 9999))
        subprocess.run(["openssl", "s_client", "-connect", "10.231.0.2:443", "-servername", "sni.vigil.test"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        time.sleep(0.3)
        """
}
