/// Link-layer header types the decoder reads (`LINKTYPE_*`, and the `DLT_*` values libpcap
/// maps them to on Linux).
public enum LinkType {
    public static let null: Int32 = 0
    public static let ethernet: Int32 = 1
    public static let ppp: Int32 = 9
    public static let fddi: Int32 = 10
    public static let raw: Int32 = 12
    public static let rawOpenBSD: Int32 = 14
    public static let pppSerial: Int32 = 50
    public static let pppEthernet: Int32 = 51
    public static let linktypeRaw: Int32 = 101
    public static let loop: Int32 = 108
    public static let linuxSLL: Int32 = 113
    public static let ipv4: Int32 = 228
    public static let ipv6: Int32 = 229
    public static let linuxSLL2: Int32 = 276

    /// Whether `decode` understands `linkType`.
    public static func isSupported(_ linkType: Int32) -> Bool {
        switch linkType {
        case null, ethernet, ppp, fddi, raw, rawOpenBSD, pppSerial, pppEthernet, linktypeRaw, loop,
            linuxSLL, ipv4, ipv6, linuxSLL2:
            true
        default: false
        }
    }
}

/// Decodes captured frames down to the flow-relevant fields: link layer (Ethernet with 802.1Q
/// and QinQ tags, 802.3 LLC/SNAP, MPLS, PPPoE, PPP, Linux cooked SLL and SLL2, raw IP, BSD
/// loopback, FDDI), IPv4 (fragments), IPv6 (extension headers, fragments), then TCP, UDP,
/// ICMP, ICMPv6 and SCTP.
///
/// Safe on hostile input: every read is bounds-checked against the captured bytes, lengths
/// from the packet never index memory unchecked and arithmetic on them cannot trap. A packet
/// that cannot be decoded is counted by reason in `statistics`.
public struct PacketDecoder: Sendable {
    /// Counters since creation.
    public private(set) var statistics = DecodeStatistics()
    private var fragments: FragmentTracker

    /// - Parameter fragmentCapacity: how many fragmented datagrams' ports are remembered to
    ///   attribute their later fragments.
    public init(fragmentCapacity: Int = 4096) {
        fragments = FragmentTracker(capacity: fragmentCapacity)
    }

    /// Decodes one frame of link type `linkType` into `packet`. Returns false (and counts the
    /// reason) when the packet does not belong to any flow.
    public mutating func decode(
        _ bytes: UnsafeRawBufferPointer,
        linkType: Int32,
        into packet: inout DecodedPacket
    ) -> Bool {
        statistics.packets &+= 1
        let result = decodeLink(bytes, linkType: linkType, into: &packet)
        if let reason = result {
            statistics[reason] &+= 1
            return false
        }
        statistics.decoded &+= 1
        if packet.isFragment { statistics.fragments &+= 1 }
        return true
    }

    // MARK: - Link layer

    private mutating func decodeLink(
        _ b: UnsafeRawBufferPointer,
        linkType: Int32,
        into p: inout DecodedPacket
    ) -> DecodeDropReason? {
        switch linkType {
        case LinkType.ethernet:
            guard b.count >= 14 else { return .truncatedLinkHeader }
            return decodeEtherType(b, b.be16(12), at: 14, into: &p)
        case LinkType.linuxSLL:
            guard b.count >= 16 else { return .truncatedLinkHeader }
            return decodeEtherType(b, b.be16(14), at: 16, into: &p)
        case LinkType.linuxSLL2:
            guard b.count >= 20 else { return .truncatedLinkHeader }
            return decodeEtherType(b, b.be16(0), at: 20, into: &p)
        case LinkType.raw, LinkType.rawOpenBSD, LinkType.linktypeRaw:
            guard b.count >= 1 else { return .truncatedIPHeader }
            switch b[0] >> 4 {
            case 4: return decodeIPv4(b, at: 0, into: &p)
            case 6: return decodeIPv6(b, at: 0, into: &p)
            default: return .malformedIPHeader
            }
        case LinkType.ipv4:
            return decodeIPv4(b, at: 0, into: &p)
        case LinkType.ipv6:
            return decodeIPv6(b, at: 0, into: &p)
        case LinkType.ppp, LinkType.pppSerial:
            return decodePPP(b, at: 0, into: &p)
        case LinkType.pppEthernet:
            guard b.count >= 6 else { return .truncatedLinkHeader }
            return decodePPP(b, at: 6, into: &p)
        case LinkType.null, LinkType.loop:
            guard b.count >= 4 else { return .truncatedLinkHeader }
            // The address family, in the writer's byte order (NULL) or network order (LOOP).
            let raw = b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
            let family = raw > 0xFFFF ? raw.byteSwapped : raw
            switch family {
            case 2: return decodeIPv4(b, at: 4, into: &p)
            case 10, 24, 28, 30: return decodeIPv6(b, at: 4, into: &p)
            default: return .notIP
            }
        case LinkType.fddi:
            // Frame control, destination, source; then 802.2 LLC.
            return decodeLLC(b, at: 13, into: &p)
        default:
            return .unsupportedLinkType
        }
    }

    private mutating func decodeEtherType(
        _ b: UnsafeRawBufferPointer,
        _ type: UInt16,
        at start: Int,
        into p: inout DecodedPacket
    ) -> DecodeDropReason? {
        var etherType = type
        var offset = start
        // Tags and shims: at most 8, so a crafted frame cannot loop long.
        for _ in 0..<8 {
            switch etherType {
            case 0x0800:
                return decodeIPv4(b, at: offset, into: &p)
            case 0x86DD:
                return decodeIPv6(b, at: offset, into: &p)
            case 0x8100, 0x88A8, 0x9100:
                guard b.count >= offset + 4 else { return .truncatedLinkHeader }
                etherType = b.be16(offset + 2)
                offset += 4
            case 0x8847, 0x8848:
                return decodeMPLS(b, at: offset, into: &p)
            case 0x8864:
                // PPPoE session: version/type, code, session id, length, then the PPP protocol.
                guard b.count >= offset + 6 else { return .truncatedLinkHeader }
                return decodePPPProtocol(b, at: offset + 6, into: &p)
            case ..<0x0600:
                // 802.3 length field: an LLC header follows.
                return decodeLLC(b, at: offset, into: &p)
            default:
                return .notIP
            }
        }
        return .truncatedLinkHeader
    }

    private mutating func decodeLLC(
        _ b: UnsafeRawBufferPointer,
        at offset: Int,
        into p: inout DecodedPacket
    ) -> DecodeDropReason? {
        guard b.count >= offset + 3 else { return .truncatedLinkHeader }
        // Only SNAP (AA AA 03) carries an EtherType; other SAPs are not IP.
        guard b[offset] == 0xAA, b[offset + 1] == 0xAA, b[offset + 2] == 0x03 else { return .notIP }
        guard b.count >= offset + 8 else { return .truncatedLinkHeader }
        let type = b.be16(offset + 6)
        guard type >= 0x0600 else { return .notIP }
        return decodeEtherType(b, type, at: offset + 8, into: &p)
    }

    private mutating func decodeMPLS(
        _ b: UnsafeRawBufferPointer,
        at start: Int,
        into p: inout DecodedPacket
    ) -> DecodeDropReason? {
        var offset = start
        for _ in 0..<16 {
            guard b.count >= offset + 4 else { return .truncatedLinkHeader }
            let entry = b.be32(offset)
            offset += 4
            guard entry & 0x100 == 0 else {
                // Bottom of stack: IP is recognised by its version nibble.
                guard b.count > offset else { return .truncatedIPHeader }
                switch b[offset] >> 4 {
                case 4: return decodeIPv4(b, at: offset, into: &p)
                case 6: return decodeIPv6(b, at: offset, into: &p)
                default: return .notIP
                }
            }
        }
        return .truncatedLinkHeader
    }

    private mutating func decodePPP(
        _ b: UnsafeRawBufferPointer,
        at start: Int,
        into p: inout DecodedPacket
    ) -> DecodeDropReason? {
        var offset = start
        guard b.count >= offset + 2 else { return .truncatedLinkHeader }
        // Address and control (FF 03) are optional (address/control field compression).
        if b[offset] == 0xFF, b[offset + 1] == 0x03 { offset += 2 }
        return decodePPPProtocol(b, at: offset, into: &p)
    }

    private mutating func decodePPPProtocol(
        _ b: UnsafeRawBufferPointer,
        at start: Int,
        into p: inout DecodedPacket
    ) -> DecodeDropReason? {
        guard b.count >= start + 1 else { return .truncatedLinkHeader }
        var proto = UInt16(b[start])
        var offset = start + 1
        // Protocol field compression: an odd first byte is a one-byte protocol.
        if proto & 1 == 0 {
            guard b.count >= start + 2 else { return .truncatedLinkHeader }
            proto = b.be16(start)
            offset = start + 2
        }
        switch proto {
        case 0x0021: return decodeIPv4(b, at: offset, into: &p)
        case 0x0057: return decodeIPv6(b, at: offset, into: &p)
        default: return .notIP
        }
    }

    // MARK: - Network layer

    private mutating func decodeIPv4(
        _ b: UnsafeRawBufferPointer,
        at offset: Int,
        into p: inout DecodedPacket
    ) -> DecodeDropReason? {
        guard b.count >= offset + 20 else { return .truncatedIPHeader }
        let versionIHL = b[offset]
        guard versionIHL >> 4 == 4 else { return .malformedIPHeader }
        let headerLength = Int(versionIHL & 0x0F) * 4
        let totalLength = Int(b.be16(offset + 2))
        guard headerLength >= 20, totalLength >= headerLength else { return .malformedIPHeader }
        guard b.count >= offset + headerLength else { return .truncatedIPHeader }
        let fragment = b.be16(offset + 6)
        let fragmentOffset = fragment & 0x1FFF
        let moreFragments = fragment & 0x2000 != 0
        p.family = 4
        p.proto = b[offset + 9]
        p.source = IPAddressBits(high: 0, low: UInt64(b.be32(offset + 12)))
        p.destination = IPAddressBits(high: 0, low: UInt64(b.be32(offset + 16)))
        p.ipBytes = UInt32(totalLength)
        p.isFragment = fragmentOffset != 0 || moreFragments
        let transportLength = totalLength - headerLength
        let start = offset + headerLength
        guard p.isFragment else {
            return decodeTransport(b, at: start, length: transportLength, into: &p)
        }
        let id = FragmentTracker.Key(
            source: p.source,
            destination: p.destination,
            identification: UInt32(b.be16(offset + 4)),
            proto: p.proto
        )
        return decodeFragment(b, at: start, length: transportLength, isFirst: fragmentOffset == 0, id: id, into: &p)
    }

    private mutating func decodeIPv6(
        _ b: UnsafeRawBufferPointer,
        at offset: Int,
        into p: inout DecodedPacket
    ) -> DecodeDropReason? {
        guard b.count >= offset + 40 else { return .truncatedIPHeader }
        guard b[offset] >> 4 == 6 else { return .malformedIPHeader }
        let payloadLength = Int(b.be16(offset + 4))
        var next = b[offset + 6]
        p.family = 6
        p.source = IPAddressBits(high: b.be64(offset + 8), low: b.be64(offset + 16))
        p.destination = IPAddressBits(high: b.be64(offset + 24), low: b.be64(offset + 32))
        p.ipBytes = UInt32(40 + payloadLength)
        p.isFragment = false
        var position = offset + 40
        let end = position + payloadLength
        var fragmentKey: FragmentTracker.Key?
        var firstFragment = true
        chain: for _ in 0..<16 {
            switch next {
            case 0, 43, 60, 135, 139, 140:
                guard b.count >= position + 2 else { return .malformedIPv6ExtensionHeader }
                next = b[position]
                position += (Int(b[position + 1]) + 1) * 8
            case 51:
                guard b.count >= position + 2 else { return .malformedIPv6ExtensionHeader }
                next = b[position]
                position += (Int(b[position + 1]) + 2) * 4
            case 44:
                guard b.count >= position + 8 else { return .malformedIPv6ExtensionHeader }
                next = b[position]
                let field = b.be16(position + 2)
                firstFragment = field >> 3 == 0
                if !firstFragment || field & 1 != 0 {
                    p.isFragment = true
                    fragmentKey = FragmentTracker.Key(
                        source: p.source,
                        destination: p.destination,
                        identification: b.be32(position + 4),
                        proto: 0
                    )
                }
                position += 8
            default:
                break chain
            }
            guard position <= end else { return .malformedIPv6ExtensionHeader }
        }
        p.proto = next
        let transportLength = end - position
        guard transportLength >= 0 else { return .malformedIPv6ExtensionHeader }
        if var key = fragmentKey {
            key.proto = next
            return decodeFragment(b, at: position, length: transportLength, isFirst: firstFragment, id: key, into: &p)
        }
        return decodeTransport(b, at: position, length: transportLength, into: &p)
    }

    private mutating func decodeFragment(
        _ b: UnsafeRawBufferPointer,
        at start: Int,
        length: Int,
        isFirst: Bool,
        id: FragmentTracker.Key,
        into p: inout DecodedPacket
    ) -> DecodeDropReason? {
        if isFirst {
            if let reason = decodeTransport(b, at: start, length: length, into: &p) { return reason }
            fragments.remember(id, ports: (p.sourcePort, p.destinationPort, p.icmpIdentifier))
            return nil
        }
        guard let ports = fragments.ports(of: id) else { return .unattributedFragment }
        p.sourcePort = ports.0
        p.destinationPort = ports.1
        p.icmpIdentifier = ports.2
        p.payloadBytes = UInt32(length)
        p.tcpFlags = 0
        p.payloadOffset = 0
        return nil
    }

    // MARK: - Transport layer

    /// `length` is the transport length from the IP header; what was captured may be less.
    private func decodeTransport(
        _ b: UnsafeRawBufferPointer,
        at start: Int,
        length: Int,
        into p: inout DecodedPacket
    ) -> DecodeDropReason? {
        p.tcpFlags = 0
        p.icmpIdentifier = 0
        p.icmpOneWay = false
        p.icmpIsReply = false
        p.payloadOffset = 0
        switch p.proto {
        case IPProtocol.tcp:
            guard length >= 14, b.count >= start + 14 else { return .truncatedTransportHeader }
            let dataOffset = Int(b[start + 12] >> 4) * 4
            guard dataOffset >= 20, dataOffset <= length else { return .malformedTransportHeader }
            p.sourcePort = b.be16(start)
            p.destinationPort = b.be16(start + 2)
            p.tcpFlags = b[start + 13]
            p.payloadBytes = UInt32(length - dataOffset)
            p.payloadOffset = Int32(truncatingIfNeeded: start + dataOffset)
        case IPProtocol.udp:
            guard length >= 8, b.count >= start + 4 else { return .truncatedTransportHeader }
            p.sourcePort = b.be16(start)
            p.destinationPort = b.be16(start + 2)
            p.payloadBytes = UInt32(length - 8)
            p.payloadOffset = Int32(truncatingIfNeeded: start + 8)
        case IPProtocol.sctp:
            guard length >= 12, b.count >= start + 4 else { return .truncatedTransportHeader }
            p.sourcePort = b.be16(start)
            p.destinationPort = b.be16(start + 2)
            p.payloadBytes = UInt32(length - 12)
        case IPProtocol.icmp, IPProtocol.icmpv6:
            guard length >= 8, b.count >= start + 2 else { return .truncatedTransportHeader }
            let type = b[start]
            let code = b[start + 1]
            let pair = ICMPTypes.counterpart(type: type, isV6: p.proto == IPProtocol.icmpv6)
            p.sourcePort = UInt16(type)
            if let pair {
                p.destinationPort = UInt16(pair.counterpart)
                p.icmpIsReply = pair.isReply
                if ICMPTypes.isEcho(type: type, isV6: p.proto == IPProtocol.icmpv6) {
                    guard b.count >= start + 6 else { return .truncatedTransportHeader }
                    p.icmpIdentifier = b.be16(start + 4)
                }
            } else {
                p.destinationPort = UInt16(code)
                p.icmpOneWay = true
            }
            p.payloadBytes = UInt32(length - 8)
        default:
            p.sourcePort = 0
            p.destinationPort = 0
            p.payloadBytes = UInt32(length)
        }
        return nil
    }
}

/// Request/reply pairs of ICMP types (Zeek's `ICMP4_counterpart`/`ICMP6_counterpart`, the
/// Community ID spec's port equivalents).
enum ICMPTypes {
    static func counterpart(type: UInt8, isV6: Bool) -> (counterpart: UInt8, isReply: Bool)? {
        if isV6 {
            switch type {
            case 128: (129, false)
            case 129: (128, true)
            case 133: (134, false)
            case 134: (133, true)
            case 135: (136, false)
            case 136: (135, true)
            case 130: (131, false)
            case 131: (130, true)
            case 139: (140, false)
            case 140: (139, true)
            case 144: (145, false)
            case 145: (144, true)
            default: nil
            }
        } else {
            switch type {
            case 8: (0, false)
            case 0: (8, true)
            case 13: (14, false)
            case 14: (13, true)
            case 15: (16, false)
            case 16: (15, true)
            case 10: (9, false)
            case 9: (10, true)
            case 17: (18, false)
            case 18: (17, true)
            default: nil
            }
        }
    }

    static func isEcho(type: UInt8, isV6: Bool) -> Bool {
        isV6 ? (type == 128 || type == 129) : (type == 8 || type == 0)
    }
}

extension UnsafeRawBufferPointer {
    /// Big-endian reads; the caller has checked `offset + size <= count`.
    @inline(__always)
    func be16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always)
    func be32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    func be64(_ offset: Int) -> UInt64 {
        UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}
