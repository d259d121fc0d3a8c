import Glibc
import VigilCore

/// One tracked flow: counters per direction, TCP state and its place in the expiry lists.
///
/// Laid out to fit 128 bytes (two cache lines in the storage's mapping): the one-byte fields
/// fill the padding after the key; the expiry list links live in the storage beside it.
struct FlowRecord: Sendable {
    var key: FlowKey
    /// The originator is the key's low endpoint.
    var originatorIsLow: Bool
    var originatorFlags: UInt8 = 0
    var responderFlags: UInt8 = 0
    var icmpOneWay = false
    var sawSYNFromOriginator = false
    var sawSYNAckFromResponder = false
    /// How many of the originator's TCP payload packets were offered to the TLS parser.
    var payloadsInspected: UInt8 = 0
    var first: Int64
    var last: Int64
    var originatorPackets: UInt64 = 0
    var responderPackets: UInt64 = 0
    var originatorIPBytes: UInt64 = 0
    var responderIPBytes: UInt64 = 0
    var originatorPayload: UInt64 = 0
    var responderPayload: UInt64 = 0
    var tcp = TCPConnectionState()
    /// Expiry list (see `FlowTable`); its links are in `FlowRecordStorage`.
    var list: UInt8 = 0
    /// Where this flow's metadata is in `FlowTable`'s side table (-1: none).
    var metadataSlot: Int32 = -1

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

    /// Originator and responder, from the key's low and high ends.
    struct Endpoints {
        var originator: IPAddressBits
        var originatorPort: UInt16
        var responder: IPAddressBits
        var responderPort: UInt16
    }

    var endpoints: Endpoints {
        originatorIsLow
            ? Endpoints(
                originator: key.lowAddress,
                originatorPort: key.lowPort,
                responder: key.highAddress,
                responderPort: key.highPort
            )
            : Endpoints(
                originator: key.highAddress,
                originatorPort: key.highPort,
                responder: key.lowAddress,
                responderPort: key.lowPort
            )
    }

    /// Zeek's `conn_state`.
    var state: String {
        switch key.proto {
        case IPProtocol.tcp:
            tcp.summary
        case IPProtocol.udp:
            originatorPackets > 0
                ? (responderPackets > 0 ? "SF" : "S0")
                : (responderPackets > 0 ? "SHR" : "OTH")
        default:
            "OTH"
        }
    }

    /// The numeric members of the record's JSON line (`CompletedFlow.appendJSONLine`), as
    /// `event` has them.
    var jsonNumbers: FlowJSONNumbers {
        let ends = endpoints
        return FlowJSONNumbers(
            ts: Double(first) / 1e9,
            duration: Double(last &- first) / 1e9,
            origP: ends.originatorPort,
            respP: ends.responderPort,
            origPkts: originatorPackets,
            respPkts: responderPackets,
            origIPBytes: originatorIPBytes,
            respIPBytes: responderIPBytes,
            origBytes: originatorPayload,
            respBytes: responderPayload,
            origTCPFlags: originatorFlags,
            respTCPFlags: responderFlags
        )
    }

    /// The record in Zeek's connection vocabulary.
    var event: FlowEvent {
        let ends = endpoints
        return FlowEvent(
            jsonNumbers,
            proto: Self.protocolName(key.proto),
            origH: Self.format(ends.originator, family: key.family),
            respH: Self.format(ends.responder, family: key.family),
            state: state,
            communityID: CommunityID.compute(
                family: key.family,
                source: ends.originator,
                destination: ends.responder,
                proto: key.proto,
                sourcePort: ends.originatorPort,
                destinationPort: ends.responderPort,
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
        // At most 15 bytes for IPv4: a small string, no allocation.
        String(unsafeUninitializedCapacity: family == 4 ? 15 : Int(INET6_ADDRSTRLEN)) {
            format(address, family: family, into: $0)
        }
    }

    /// Writes `format(address, family:)` to the start of `text` (at least `INET6_ADDRSTRLEN`
    /// bytes) and returns its length.
    static func format(_ address: IPAddressBits, family: UInt8, into text: UnsafeMutableBufferPointer<UInt8>) -> Int {
        if family == 4 {
            // Dotted quad by hand: at most 15 characters, no C call.
            let value = UInt32(truncatingIfNeeded: address.low)
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
        precondition(text.count >= Int(INET6_ADDRSTRLEN), "address text buffer too small")
        var raw = (address.high.bigEndian, address.low.bigEndian)
        return text.withMemoryRebound(to: CChar.self) { chars in
            guard inet_ntop(AF_INET6, &raw, chars.baseAddress, socklen_t(chars.count)) != nil else { return 0 }
            return strlen(chars.baseAddress!)
        }
    }
}
