import Crypto

/// Community ID v1 flow hashes (https://github.com/corelight/community-id-spec): the base64
/// SHA-1 of seed, ordered addresses, protocol and ordered ports, prefixed `1:`.
public enum CommunityID {
    /// The Community ID of a flow seen from `source`/`sourcePort` to `destination`.
    ///
    /// For ICMP and ICMPv6, the ports are the type and the counterpart type (or the code for
    /// one-way messages), as `DecodedPacket` holds them; `oneWay` keeps the order as given.
    public static func compute(
        family: UInt8,
        source: IPAddressBits,
        destination: IPAddressBits,
        proto: UInt8,
        sourcePort: UInt16,
        destinationPort: UInt16,
        oneWay: Bool = false,
        seed: UInt16 = 0
    ) -> String {
        var srcAddress = source
        var dstAddress = destination
        var srcPort = sourcePort
        var dstPort = destinationPort
        let ordered = srcAddress < dstAddress || (srcAddress == dstAddress && srcPort <= dstPort)
        let hasPorts = [IPProtocol.tcp, IPProtocol.udp, IPProtocol.sctp, IPProtocol.icmp, IPProtocol.icmpv6].contains(
            proto
        )
        if !(hasPorts && (proto == IPProtocol.icmp || proto == IPProtocol.icmpv6) && oneWay) && !ordered {
            swap(&srcAddress, &dstAddress)
            swap(&srcPort, &dstPort)
        }
        var input: [UInt8] = []
        input.reserveCapacity(40)
        append(seed, to: &input)
        for address in [srcAddress, dstAddress] {
            if family == 4 {
                append(UInt32(truncatingIfNeeded: address.low), to: &input)
            } else {
                append(address.high, to: &input)
                append(address.low, to: &input)
            }
        }
        input.append(proto)
        input.append(0)
        if hasPorts {
            append(srcPort, to: &input)
            append(dstPort, to: &input)
        }
        let digest = Insecure.SHA1.hash(data: input)
        return "1:" + Base64.encode(Array(digest))
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Standard base64 with padding (RFC 4648 §4).
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out += [
                alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)],
                alphabet[Int(n & 63)],
            ]
            index += 3
        }
        let rest = bytes.count - index
        if rest == 1 {
            let n = UInt32(bytes[index]) << 16
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if rest == 2 {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            out += [
                alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], UInt8(ascii: "="),
            ]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
