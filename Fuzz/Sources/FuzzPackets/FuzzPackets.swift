import FuzzSupport
import VigilLinux
import VigilSensors

/// The packet decoder and the flow table, fed raw frames as libpcap hands them over.
/// Input: one byte choosing the link type, then frames, each prefixed by its length (2 bytes,
/// little-endian) and a time step in milliseconds (1 byte).
///
/// Invariants: the table never tracks more flows than its bound; no packet is lost or counted
/// twice (the packets of all reported flows add up to the packets the decoder accepted); a
/// frame is either decoded or counted as dropped, never both or neither.
enum PacketsTarget: FuzzTarget {
    static let linkTypes: [Int32] = [
        LinkType.ethernet, LinkType.linuxSLL, LinkType.linuxSLL2, LinkType.raw, LinkType.null, LinkType.loop,
        LinkType.ppp, LinkType.pppEthernet, LinkType.ipv4, LinkType.ipv6, LinkType.fddi,
    ]
    static let maxFlows = 8

    static func seeds() throws -> [[UInt8]] {
        let captures = FuzzPaths.files(
            under: FuzzPaths.corpora + "/pcaps",
            extensions: [".pcap", ".pcapng", ".trace"],
            limit: 400
        )
        var seeds: [[UInt8]] = []
        for path in captures {
            guard let file = try? PcapFile(path: path) else { continue }
            var seed: [UInt8] = []
            var count = 0
            _ = try? file.forEachPacket { packet in
                guard count < 16, let kind = linkTypes.firstIndex(of: packet.linkType), packet.bytes.count <= 1_500
                else { return }
                if seed.isEmpty { seed.append(UInt8(kind)) }
                guard linkTypes[Int(seed[0])] == packet.linkType else { return }
                let n = packet.bytes.count
                seed += [UInt8(n & 0xff), UInt8(n >> 8), UInt8(count % 3)]
                seed += packet.bytes
                count += 1
            }
            if !seed.isEmpty { seeds.append(seed) }
        }
        return seeds
    }

    static func test(_ input: [UInt8]) {
        guard let first = input.first else { return }
        let linkType = linkTypes[Int(first) % linkTypes.count]
        var decoder = PacketDecoder(fragmentCapacity: 16)
        var table = FlowTable(configuration: FlowTableConfiguration(maxFlows: maxFlows))
        var packet = DecodedPacket()
        var time: Int64 = 1_700_000_000_000_000_000
        var offset = 1
        var accepted: UInt64 = 0
        var frames: UInt64 = 0
        var reported: UInt64 = 0
        while offset + 3 <= input.count {
            let length = min(Int(input[offset]) | Int(input[offset + 1]) << 8, input.count - offset - 3)
            time += Int64(input[offset + 2]) * 1_000_000_000
            let frame = Array(input[(offset + 3)..<(offset + 3 + length)])
            offset += 3 + length
            frames += 1
            packet = DecodedPacket()
            // The frame also goes to the flow table (DNS and TLS metadata read its payload) and,
            // whole, to the payload parsers.
            let ok = frame.withUnsafeBytes { raw in
                _ = DNSMessage.parse(raw)
                _ = TLSClientHello.serverName(in: raw)
                guard decoder.decode(raw, linkType: linkType, into: &packet) else { return false }
                table.add(packet, at: time, frame: raw)
                return true
            }
            if ok { accepted += 1 }
            FuzzCheck.require(
                table.statistics.liveFlows <= maxFlows,
                "\(table.statistics.liveFlows) live flows, bound \(maxFlows)"
            )
            for (flow, _) in table.takeCompleted() { reported &+= flow.origPkts &+ flow.respPkts }
        }
        table.flush()
        for (flow, _) in table.takeCompleted() { reported &+= flow.origPkts &+ flow.respPkts }
        FuzzCheck.require(reported == accepted, "flows hold \(reported) packets, \(accepted) were decoded")
        FuzzCheck.require(table.statistics.liveFlows == 0, "flows left after flush")
        let stats = decoder.statistics
        FuzzCheck.require(stats.packets == frames, "decoder saw \(stats.packets) frames of \(frames)")
        let dropped = stats.dropped.reduce(0, +)
        FuzzCheck.require(
            stats.decoded + dropped == frames,
            "decoded \(stats.decoded) + dropped \(dropped) != \(frames)"
        )
        FuzzCheck.require(
            stats.decoded == accepted,
            "decoder counted \(stats.decoded) decoded, returned true \(accepted) times"
        )
    }
}

@_cdecl("FuzzPackets_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.main(PacketsTarget.self, argc, argv)
}
