/// A bidirectional flow key: the two endpoints in canonical order (lower address/port first),
/// the IP protocol and, for ICMP echo, the identifier.
struct FlowKey: Hashable, Sendable {
    var lowAddress: IPAddressBits
    var highAddress: IPAddressBits
    var lowPort: UInt16
    var highPort: UInt16
    var icmpIdentifier: UInt16
    var proto: UInt8
    var family: UInt8

    /// The key of `packet`, and whether its source is the key's low endpoint.
    @inline(__always)
    static func of(_ packet: DecodedPacket) -> (key: FlowKey, sourceIsLow: Bool) {
        let sourceIsLow =
            packet.source < packet.destination
            || (packet.source == packet.destination && packet.sourcePort <= packet.destinationPort)
        let key =
            sourceIsLow
            ? FlowKey(
                lowAddress: packet.source,
                highAddress: packet.destination,
                lowPort: packet.sourcePort,
                highPort: packet.destinationPort,
                icmpIdentifier: packet.icmpIdentifier,
                proto: packet.proto,
                family: packet.family
            )
            : FlowKey(
                lowAddress: packet.destination,
                highAddress: packet.source,
                lowPort: packet.destinationPort,
                highPort: packet.sourcePort,
                icmpIdentifier: packet.icmpIdentifier,
                proto: packet.proto,
                family: packet.family
            )
        return (key, sourceIsLow)
    }

    @inline(__always)
    func hash(into hasher: inout Hasher) {
        hasher.combine(lowAddress.high ^ highAddress.high)
        hasher.combine(lowAddress.low)
        hasher.combine(highAddress.low)
        hasher.combine(
            UInt64(lowPort) | UInt64(highPort) << 16 | UInt64(icmpIdentifier) << 32 | UInt64(proto) << 48
                | UInt64(family) << 56
        )
    }
}
