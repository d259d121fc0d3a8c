import Glibc
import VigilCore

/// One tracked flow: counters per direction, TCP state and its place in the expiry lists.
struct FlowRecord: Sendable {
    var key: FlowKey
    /// The originator is the key's low endpoint.
    var originatorIsLow: Bool
    var first: Int64
    var last: Int64
    var originatorPackets: UInt64 = 0
    var responderPackets: UInt64 = 0
    var originatorIPBytes: UInt64 = 0
    var responderIPBytes: UInt64 = 0
    var originatorPayload: UInt64 = 0
    var responderPayload: UInt64 = 0
    var originatorFlags: UInt8 = 0
    var responderFlags: UInt8 = 0
    var icmpOneWay = false
    var sawSYNFromOriginator = false
    var sawSYNAckFromResponder = false
    var tcp = TCPConnectionState()
    /// Where this flow's metadata is in `FlowTable`'s side table (-1: none), and how many of
    /// the originator's TCP payload packets were offered to the TLS parser.
    var metadataSlot: Int32 = -1
    var payloadsInspected: UInt8 = 0
    /// Expiry list (see `FlowTable`) and links in it.
    var list: UInt8 = 0
    var previous: Int32 = -1
    var next: Int32 = -1

    init(key: FlowKey, originatorIsLow: Bool, time: Int64) {
        self.key = key
        self.originatorIsLow = originatorIsLow
        self.first = time
        self.last = time
    }

    /// Swaps originator and responder.
    mutating func flip() {
        originatorIsLow.toggle()
        swap(&originatorPackets, &responderPackets)
        swap(&originatorIPBytes, &responderIPBytes)
        swap(&originatorPayload, &responderPayload)
        swap(&originatorFlags, &responderFlags)
        sawSYNFromOriginator = false
        sawSYNAckFromResponder = false
        tcp.flip()
    }

    /// Starts the counters over after an active-timeout report.
    mutating func restartCounters(at time: Int64) {
        first = time
        last = time
        originatorPackets = 0
        responderPackets = 0
        originatorIPBytes = 0
        responderIPBytes = 0
        originatorPayload = 0
        responderPayload = 0
        originatorFlags = 0
        responderFlags = 0
    }

    @inline(__always)
    var isTCPClosed: Bool {
        key.proto == IPProtocol.tcp
            && (tcp.originator == .reset || tcp.responder == .reset
                || (tcp.originator == .closed && tcp.responder == .closed))
    }

    /// The record in Zeek's connection vocabulary.
    var event: FlowEvent {
        let origAddress = originatorIsLow ? key.lowAddress : key.highAddress
        let respAddress = originatorIsLow ? key.highAddress : key.lowAddress
        let origPort = originatorIsLow ? key.lowPort : key.highPort
        let respPort = originatorIsLow ? key.highPort : key.lowPort
        let state: String
        switch key.proto {
        case IPProtocol.tcp:
            state = tcp.summary
        case IPProtocol.udp:
            state =
                originatorPackets > 0
                ? (responderPackets > 0 ? "SF" : "S0")
                : (responderPackets > 0 ? "SHR" : "OTH")
        default:
            state = "OTH"
        }
        return FlowEvent(
            ts: Double(first) / 1e9,
            duration: Double(last &- first) / 1e9,
            proto: Self.protocolName(key.proto),
            origH: Self.format(origAddress, family: key.family),
            origP: origPort,
            respH: Self.format(respAddress, family: key.family),
            respP: respPort,
            origPkts: originatorPackets,
            respPkts: responderPackets,
            origIPBytes: originatorIPBytes,
            respIPBytes: responderIPBytes,
            origBytes: originatorPayload,
            respBytes: responderPayload,
            origTCPFlags: originatorFlags,
            respTCPFlags: responderFlags,
            state: state,
            communityID: CommunityID.compute(
                family: key.family,
                source: origAddress,
                destination: respAddress,
                proto: key.proto,
                sourcePort: origPort,
                destinationPort: respPort,
                oneWay: icmpOneWay
            )
        )
    }

    /// `tcp`, `udp`, `icmp`, `icmp6`, `sctp`, or the protocol number.
    static func protocolName(_ proto: UInt8) -> String {
        switch proto {
        case IPProtocol.tcp: "tcp"
        case IPProtocol.udp: "udp"
        case IPProtocol.icmp: "icmp"
        case IPProtocol.icmpv6: "icmp6"
        case IPProtocol.sctp: "sctp"
        default: String(proto)
        }
    }

    /// The address in its usual text form (`inet_ntop`: dotted quad, RFC 5952 IPv6).
    static func format(_ address: IPAddressBits, family: UInt8) -> String {
        if family == 4 {
            // Dotted quad by hand: at most 15 characters, no C call, no temporary array.
            let value = UInt32(truncatingIfNeeded: address.low)
            return String(unsafeUninitializedCapacity: 15) { text in
                var count = 0
                for shift in stride(from: 24, through: 0, by: -8) {
                    let octet = Int(value >> UInt32(shift) & 0xFF)
                    if octet >= 100 {
                        text[count] = UInt8(ascii: "0") &+ UInt8(octet / 100)
                        count += 1
                    }
                    if octet >= 10 {
                        text[count] = UInt8(ascii: "0") &+ UInt8(octet / 10 % 10)
                        count += 1
                    }
                    text[count] = UInt8(ascii: "0") &+ UInt8(octet % 10)
                    count += 1
                    if shift > 0 {
                        text[count] = UInt8(ascii: ".")
                        count += 1
                    }
                }
                return count
            }
        }
        var raw = (address.high.bigEndian, address.low.bigEndian)
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(INET6_ADDRSTRLEN) + 1) { text in
            text.initialize(repeating: 0)
            guard inet_ntop(AF_INET6, &raw, text.baseAddress, socklen_t(text.count - 1)) != nil else { return "" }
            return String(cString: text.baseAddress!)
        }
    }
}
