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
        String(unsafeUninitializedCapacity: textBytes) { text in
            write(
                family: family,
                source: source,
                destination: destination,
                proto: proto,
                sourcePort: sourcePort,
                destinationPort: destinationPort,
                oneWay: oneWay,
                seed: seed,
                into: text
            )
        }
    }

    /// The length of a Community ID: `1:` and the base64 of a 20-byte SHA-1.
    static let textBytes = 2 + Base64.encodedCount(Insecure.SHA1.byteCount)

    /// Writes `compute(...)` to the start of `text` (at least `textBytes` long) and returns its
    /// length.
    static func write(
        family: UInt8,
        source: IPAddressBits,
        destination: IPAddressBits,
        proto: UInt8,
        sourcePort: UInt16,
        destinationPort: UInt16,
        oneWay: Bool = false,
        seed: UInt16 = 0,
        into text: UnsafeMutableBufferPointer<UInt8>
    ) -> Int {
        precondition(text.count >= textBytes, "Community ID buffer too small")
        var srcAddress = source
        var dstAddress = destination
        var srcPort = sourcePort
        var dstPort = destinationPort
        let ordered = srcAddress < dstAddress || (srcAddress == dstAddress && srcPort <= dstPort)
        let isICMP = proto == IPProtocol.icmp || proto == IPProtocol.icmpv6
        let hasPorts = isICMP || proto == IPProtocol.tcp || proto == IPProtocol.udp || proto == IPProtocol.sctp
        if !(isICMP && oneWay) && !ordered {
            swap(&srcAddress, &dstAddress)
            swap(&srcPort, &dstPort)
        }
        // Seed, two addresses, protocol, padding, two ports: at most 40 bytes, on the stack.
        var input = InputBytes()
        input.append(seed)
        input.append(srcAddress, family: family)
        input.append(dstAddress, family: family)
        input.append(proto)
        input.append(UInt8(0))
        if hasPorts {
            input.append(srcPort)
            input.append(dstPort)
        }
        var sha1 = Insecure.SHA1()
        input.withBytes { sha1.update(bufferPointer: $0) }
        return sha1.finalize().withUnsafeBytes { digest in
            text[0] = UInt8(ascii: "1")
            text[1] = UInt8(ascii: ":")
            return 2 + Base64.encode(digest, into: UnsafeMutableBufferPointer(rebasing: text[2...]))
        }
    }

    /// A fixed 40-byte buffer filled front to back with big-endian integers.
    private struct InputBytes {
        private var storage: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        private var count = 0

        mutating func append<T: FixedWidthInteger>(_ value: T) {
            let size = MemoryLayout<T>.size
            precondition(count + size <= MemoryLayout.size(ofValue: storage))
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: value.bigEndian, toByteOffset: count, as: T.self) }
            count += size
        }

        mutating func append(_ address: IPAddressBits, family: UInt8) {
            if family == 4 {
                append(UInt32(truncatingIfNeeded: address.low))
            } else {
                append(address.high)
                append(address.low)
            }
        }

        func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
            withUnsafeBytes(of: storage) { body(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4).
enum Base64 {
    private static let alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    static func encode(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { raw in
            String(unsafeUninitializedCapacity: encodedCount(raw.count)) { encode(raw, into: $0) }
        }
    }

    /// The length of the encoding of `count` bytes.
    static func encodedCount(_ count: Int) -> Int {
        (count + 2) / 3 * 4
    }

    /// Writes the encoding of `bytes` to the start of `out` (at least `encodedCount` long) and
    /// returns its length.
    static func encode(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<UInt8>) -> Int {
        let table = UnsafeRawBufferPointer(start: alphabet.utf8Start, count: alphabet.utf8CodeUnitCount)
        func symbol(_ n: UInt32, _ shift: UInt32) -> UInt8 {
            table[Int(n >> shift & 63)]
        }
        var index = 0
        var written = 0
        while index + 3 <= bytes.count {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out[written] = symbol(n, 18)
            out[written + 1] = symbol(n, 12)
            out[written + 2] = symbol(n, 6)
            out[written + 3] = symbol(n, 0)
            index += 3
            written += 4
        }
        let rest = bytes.count - index
        if rest > 0 {
            var n = UInt32(bytes[index]) << 16
            if rest == 2 { n |= UInt32(bytes[index + 1]) << 8 }
            out[written] = symbol(n, 18)
            out[written + 1] = symbol(n, 12)
            out[written + 2] = rest == 2 ? symbol(n, 6) : UInt8(ascii: "=")
            out[written + 3] = UInt8(ascii: "=")
            written += 4
        }
        return written
    }
}
