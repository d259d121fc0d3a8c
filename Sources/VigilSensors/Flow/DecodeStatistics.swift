/// Why a packet did not count towards any flow.
public enum DecodeDropReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// The capture's link type is not one the decoder reads.
    case unsupportedLinkType
    /// The link-layer header (Ethernet, VLAN, MPLS, PPP, SLL...) is cut short.
    case truncatedLinkHeader
    /// Not IP: ARP, LLDP, spanning tree, an unknown EtherType or PPP protocol.
    case notIP
    /// Fewer bytes captured than the IPv4/IPv6 header (with its options) needs.
    case truncatedIPHeader
    /// IPv4 with a header length below 20, a total length below the header, a wrong version.
    case malformedIPHeader
    /// An IPv6 extension header chain that is cut short, too long or overruns the payload.
    case malformedIPv6ExtensionHeader
    /// The TCP/UDP/ICMP/SCTP header is cut short (snap length or a short datagram).
    case truncatedTransportHeader
    /// A TCP data offset or UDP length that does not fit the IP payload.
    case malformedTransportHeader
    /// A non-first fragment whose first fragment was not seen (its ports are unknown).
    case unattributedFragment

    public var description: String {
        switch self {
        case .unsupportedLinkType: "unsupported_link_type"
        case .truncatedLinkHeader: "truncated_link_header"
        case .notIP: "not_ip"
        case .truncatedIPHeader: "truncated_ip_header"
        case .malformedIPHeader: "malformed_ip_header"
        case .malformedIPv6ExtensionHeader: "malformed_ipv6_extension_header"
        case .truncatedTransportHeader: "truncated_transport_header"
        case .malformedTransportHeader: "malformed_transport_header"
        case .unattributedFragment: "unattributed_fragment"
        }
    }
}

/// Counters of the packet decoder.
public struct DecodeStatistics: Hashable, Sendable {
    /// Packets offered to the decoder.
    public var packets: UInt64 = 0
    /// Packets that counted towards a flow.
    public var decoded: UInt64 = 0
    /// IP fragments seen (first and later ones).
    public var fragments: UInt64 = 0
    /// Packets not counted, by reason (index: `DecodeDropReason.rawValue`).
    public var dropped: [UInt64] = Array(repeating: 0, count: DecodeDropReason.allCases.count)

    public init() {}

    /// Packets dropped for `reason`.
    public subscript(reason: DecodeDropReason) -> UInt64 {
        get { dropped[reason.rawValue] }
        set { dropped[reason.rawValue] = newValue }
    }

    /// Non-zero drop counters by reason name, for health events and summaries.
    public var droppedByReason: [String: UInt64] {
        var result: [String: UInt64] = [:]
        for reason in DecodeDropReason.allCases where dropped[reason.rawValue] > 0 {
            result[reason.description] = dropped[reason.rawValue]
        }
        return result
    }
}
