import Crypto
import Foundation
import VigilCore

/// The Community ID v1 (seed 0, https://github.com/corelight/community-id-spec) a reader
/// computes from a flow record's own fields when the wire leaves `community_id` out.
///
/// The encoder leaves it out only when the record's value is exactly this hash, and a reader
/// recomputes the same string, so a stored flow is identical to the agent's. This works on the
/// record's text fields (the flow sensor hashes its decoded packet keys, `CommunityID` in
/// VigilSensors), so anything it cannot reproduce (ICMP one-way messages, a seed, an edited
/// value) simply travels in full.
enum FlowCommunityID {
    /// Whether a reader that finds no `community_id` recomputes exactly `flow.communityID`.
    static func matches(_ flow: FlowEvent) -> Bool {
        var expected = flow.communityID
        return withText(of: flow) { derived in expected.withUTF8 { derived.elementsEqual($0) } }
    }

    /// The Community ID of `flow`'s 5-tuple, or "" when its protocol or addresses cannot be hashed.
    static func derive(_ flow: FlowEvent) -> String {
        withText(of: flow) { String(decoding: $0, as: UTF8.self) }
    }

    /// Calls `body` with the UTF-8 text of `flow`'s Community ID (empty when it has none), built
    /// on the stack: this runs for every flow event written or read.
    private static func withText<R>(of flow: FlowEvent, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        var origin = in6_addr()
        var responder = in6_addr()
        guard let proto = protocolNumber(flow.proto), let family = parse(flow.origH, into: &origin),
            parse(flow.respH, into: &responder) == family
        else { return body(UnsafeBufferPointer(start: nil, count: 0)) }
        let width = family == AF_INET ? 4 : 16
        var originPort = flow.origP
        var responderPort = flow.respP
        // Endpoints in ascending (address, port) order; addresses compare as big-endian numbers.
        let order = memcmp(&origin, &responder, width)
        let swapped = order > 0 || (order == 0 && originPort > responderPort)
        if swapped { swap(&originPort, &responderPort) }
        // seed (2) + two addresses (at most 32) + protocol and a zero (2) + ports (4), then the
        // text: "1:" and the base64 of the 20-byte SHA-1.
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40 + 30) { buffer in
            var n = 0
            func put(_ byte: UInt8) {
                buffer[n] = byte
                n += 1
            }
            put(0)  // seed 0, big-endian
            put(0)
            let (first, second) = swapped ? (responder, origin) : (origin, responder)
            withUnsafeBytes(of: first) { for i in 0..<width { put($0[i]) } }
            withUnsafeBytes(of: second) { for i in 0..<width { put($0[i]) } }
            put(proto)
            put(0)
            switch proto {
            case 6, 17, 132, 1, 58:  // tcp, udp, sctp, icmp, icmpv6 carry ports
                put(UInt8(originPort >> 8))
                put(UInt8(truncatingIfNeeded: originPort))
                put(UInt8(responderPort >> 8))
                put(UInt8(truncatingIfNeeded: responderPort))
            default: break
            }
            let digest = Insecure.SHA1.hash(
                data: UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[0..<n]))
            )
            let text = UnsafeMutableBufferPointer(rebasing: buffer[40...])
            text[0] = UInt8(ascii: "1")
            text[1] = UInt8(ascii: ":")
            let length = digest.withUnsafeBytes { base64($0, into: text, at: 2) }
            return body(UnsafeBufferPointer(UnsafeMutableBufferPointer(rebasing: text[0..<length])))
        }
    }

    /// Parses an IPv4 or IPv6 address (`inet_pton`) into `address`'s leading bytes; its family.
    private static func parse(_ text: String, into address: inout in6_addr) -> Int32? {
        if inet_pton(AF_INET, text, &address) == 1 { return AF_INET }
        if inet_pton(AF_INET6, text, &address) == 1 { return AF_INET6 }
        return nil
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Standard base64 with padding (RFC 4648 §4) of `bytes`, written from `start`; the end.
    private static func base64(
        _ bytes: UnsafeRawBufferPointer,
        into out: UnsafeMutableBufferPointer<UInt8>,
        at start: Int
    ) -> Int {
        var o = start
        var i = 0
        while i < bytes.count {
            let rest = bytes.count - i
            let n =
                UInt32(bytes[i]) << 16 | (rest > 1 ? UInt32(bytes[i + 1]) << 8 : 0)
                | (rest > 2 ? UInt32(bytes[i + 2]) : 0)
            out[o] = alphabet[Int(n >> 18 & 63)]
            out[o + 1] = alphabet[Int(n >> 12 & 63)]
            out[o + 2] = rest > 1 ? alphabet[Int(n >> 6 & 63)] : UInt8(ascii: "=")
            out[o + 3] = rest > 2 ? alphabet[Int(n & 63)] : UInt8(ascii: "=")
            o += 4
            i += 3
        }
        return o
    }

    /// The IP protocol number of a Zeek-style `proto` (`tcp`, `udp`, `icmp`, `icmp6`, `sctp`
    /// or a decimal number).
    static func protocolNumber(_ proto: String) -> UInt8? {
        switch proto {
        case "tcp": 6
        case "udp": 17
        case "icmp": 1
        case "icmp6": 58
        case "sctp": 132
        default: UInt8(proto).flatMap { String($0) == proto ? $0 : nil }
        }
    }
}
