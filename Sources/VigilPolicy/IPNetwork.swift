import Foundation

/// An IPv4 or IPv6 network for the `cidr` modifier, e.g. `10.0.0.0/8` or `fe80::/10`.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible {
    /// Address bytes (4 or 16) and prefix length.
    public let address: [UInt8]
    public let prefixLength: Int

    /// Parses `ADDRESS/PREFIX`; a bare address is a host network. Nil when malformed.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let bytes = IPNetwork.parseAddress(String(parts[0])) else { return nil }
        let maxLength = bytes.count * 8
        var length = maxLength
        if parts.count == 2 {
            guard let n = Int(parts[1]), (0...maxLength).contains(n) else { return nil }
            length = n
        }
        address = IPNetwork.masked(bytes, length)
        prefixLength = length
    }

    /// Whether the textual address `ip` lies in this network.
    public func contains(_ ip: String) -> Bool {
        guard let bytes = IPNetwork.parseAddress(ip), bytes.count == address.count else { return false }
        return IPNetwork.masked(bytes, prefixLength) == address
    }

    public var description: String { "\(IPNetwork.format(address))/\(prefixLength)" }

    static func masked(_ bytes: [UInt8], _ length: Int) -> [UInt8] {
        var out = bytes
        for i in 0..<out.count {
            let bits = max(0, min(8, length - i * 8))
            out[i] &= bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
        }
        return out
    }

    /// Parses dotted IPv4 or RFC 4291 IPv6 text (with `::` and an embedded IPv4 tail).
    static func parseAddress(_ text: String) -> [UInt8]? {
        if !text.contains(":") { return parseIPv4(Substring(text)) }
        var text = Substring(text)
        if let zone = text.firstIndex(of: "%") { text = text[..<zone] }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt8]? {
            if s.isEmpty { return [] }
            var out: [UInt8] = []
            let pieces = s.split(separator: ":", omittingEmptySubsequences: false)
            for (n, piece) in pieces.enumerated() {
                if n == pieces.count - 1, piece.contains(".") {
                    guard let v4 = parseIPv4(piece) else { return nil }
                    out += v4
                } else {
                    guard (1...4).contains(piece.count), let v = UInt16(piece, radix: 16) else { return nil }
                    out += [UInt8(v >> 8), UInt8(v & 0xFF)]
                }
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        if halves.count == 1 { return head.count == 16 ? head : nil }
        guard let tail = groups(halves[1]), head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }

    static func parseIPv4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard (1...3).contains(p.count), p.allSatisfy(\.isASCII), let v = UInt8(p) else { return nil }
            out.append(v)
        }
        return out
    }

    static func format(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            .joined(separator: ":")
    }
}
