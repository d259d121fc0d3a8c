/// An IPv4 or IPv6 address as two big-endian 64-bit halves. IPv4 sits in the low 32 bits of
/// `low` with `high == 0`; the family is carried beside it.
public struct IPAddressBits: Hashable, Sendable, Comparable {
    public var high: UInt64
    public var low: UInt64

    @inlinable
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    @inlinable
    public static func < (a: IPAddressBits, b: IPAddressBits) -> Bool {
        a.high != b.high ? a.high < b.high : a.low < b.low
    }
}

/// The flow-relevant fields of one packet, as the decoder found them.
public struct DecodedPacket: Sendable {
    /// 4 or 6.
    public var family: UInt8 = 0
    public var source = IPAddressBits(high: 0, low: 0)
    public var destination = IPAddressBits(high: 0, low: 0)
    /// The IP protocol of the transport (after IPv6 extension headers).
    public var proto: UInt8 = 0
    /// TCP/UDP/SCTP ports; for ICMP the type (source) and the counterpart type or the code
    /// (destination), as Zeek and Community ID do; 0 for protocols without ports.
    public var sourcePort: UInt16 = 0
    public var destinationPort: UInt16 = 0
    /// The echo identifier of ICMP echo request/reply (part of the flow key), else 0.
    public var icmpIdentifier: UInt16 = 0
    /// ICMP message without a request/reply counterpart (Community ID's "one-way").
    public var icmpOneWay = false
    /// ICMP reply half of a request/reply pair (echo reply, neighbor advertisement...).
    public var icmpIsReply = false
    /// The IP total length (IPv6: 40 + payload length).
    public var ipBytes: UInt32 = 0
    /// Transport payload: bytes after the TCP/UDP/ICMP/SCTP header (IP payload otherwise).
    public var payloadBytes: UInt32 = 0
    /// The TCP flags byte (FIN 0x01 ... CWR 0x80); 0 for other protocols.
    public var tcpFlags: UInt8 = 0
    /// The packet was an IP fragment (attributed to its datagram's flow).
    public var isFragment = false
    /// Where the TCP or UDP payload starts in the captured frame; 0 when the packet has none
    /// the decoder located (other protocols, later fragments). What was captured of it is
    /// `min(frame.count - payloadOffset, payloadBytes)` (flow metadata reads it).
    public var payloadOffset: Int32 = 0

    public init() {}
}

/// IP protocol numbers the decoder knows.
public enum IPProtocol {
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let icmpv6: UInt8 = 58
    public static let sctp: UInt8 = 132
}

/// TCP flag bits.
public enum TCPFlag {
    public static let fin: UInt8 = 0x01
    public static let syn: UInt8 = 0x02
    public static let rst: UInt8 = 0x04
    public static let psh: UInt8 = 0x08
    public static let ack: UInt8 = 0x10
}
