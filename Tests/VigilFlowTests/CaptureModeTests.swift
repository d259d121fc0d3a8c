import Foundation
import Testing
import VigilLinux
import VigilSensors
import VigilTestSupport

/// The self-watchdog's capture modes, installed on a live capture on `lo` (Ethernet framing; the
/// kernel hands each loopback packet over once): each filter compiles
/// and installs in the kernel, `paused` lets nothing through, `reduced` passes UDP (non-TCP)
/// cut to 96 bytes, and `full` restores the configured filter and snap length.
@Suite("Capture modes", .serialized)
struct CaptureModeTests {
    /// Sends `count` UDP datagrams of `size` bytes to 127.0.0.1:`port`.
    func sendUDP(port: UInt16, count: Int, size: Int) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let payload = [UInt8](repeating: 0x41, count: size)
        for _ in 0..<count {
            _ = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, payload, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    /// Captured lengths of packets to `port` seen within a few reads.
    func captured(_ capture: PcapCapture, port: UInt16) throws -> [Int] {
        var lengths: [Int] = []
        for _ in 0..<8 {
            _ = try capture.dispatch { packet in
                // Ethernet (14 bytes) + IPv4 (20) + UDP: destination port at 14+20+2.
                let b = packet.bytes
                if b.count >= 38, UInt16(b[36]) << 8 | UInt16(b[37]) == port { lengths.append(b.count) }
            }
        }
        return lengths
    }

    @Test(
        "paused passes nothing, reduced cuts and keeps UDP, full restores",
        .enabled(if: TestEnvironment.isRoot, "needs CAP_NET_RAW")
    )
    func modes() throws {
        let port = UInt16(freeLoopbackPort())
        let capture = try PcapCapture(
            options: PcapCaptureOptions(
                interface: "lo",
                snapshotLength: 256,
                timeoutMilliseconds: 50,
                filter: "udp port \(port)"
            )
        )
        #expect(capture.linkType == 1)
        let configured = "udp port \(port)"

        let paused = FlowSensor.kernelFilter(for: .paused, configured: configured)
        try capture.setFilter(paused.expression, snapshotLength: paused.snapshotLength)
        _ = try captured(capture, port: port)  // drain what came before
        sendUDP(port: port, count: 5, size: 200)
        #expect(try captured(capture, port: port).isEmpty)

        let reduced = FlowSensor.kernelFilter(for: .reduced, configured: configured)
        try capture.setFilter(reduced.expression, snapshotLength: reduced.snapshotLength)
        sendUDP(port: port, count: 5, size: 200)
        let cut = try captured(capture, port: port)
        #expect(cut.count == 5)
        #expect(cut.allSatisfy { $0 == 96 }, "\(cut)")

        let full = FlowSensor.kernelFilter(for: .full, configured: configured)
        try capture.setFilter(full.expression, snapshotLength: full.snapshotLength)
        sendUDP(port: port, count: 5, size: 200)
        let whole = try captured(capture, port: port)
        #expect(whole.count == 5)
        #expect(whole.allSatisfy { $0 == 14 + 20 + 8 + 200 }, "\(whole)")

        #expect(throws: PcapError.self) { try capture.setFilter("not a filter (") }
    }
}
