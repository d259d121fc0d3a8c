/// Finds the server name (SNI, RFC 6066 §3) in a TLS ClientHello at the start of a TCP payload.
///
/// Walks the record header (content type 22, handshake), the handshake header (type 1,
/// ClientHello), the client version and random, the session id, the cipher suites, the
/// compression methods and the extensions up to `server_name` (type 0), and takes its first
/// `host_name` entry. A ClientHello cut short by the capture's snap length (or split across
/// TCP segments) gives the name only when its bytes are all there. Every read is bounds-checked
/// against the captured bytes and the declared lengths; nothing is allocated unless a name is
/// found.
public enum TLSClientHello {
    /// A name longer than a DNS name can be (RFC 1035) is not taken.
    public static let maxNameLength = 255

    /// The `host_name` of the ClientHello's `server_name` extension, bytes outside printable
    /// ASCII written `\xHH`; nil when `payload` does not start with a ClientHello, has no
    /// server name, or the name is not complete in the captured bytes.
    public static func serverName(in payload: UnsafeRawBufferPointer) -> String? {
        let b = payload
        // Record: type 22, version 3.x, length. Handshake: type 1, 24-bit length.
        guard b.count >= 9, b[0] == 22, b[1] == 3, b[5] == 1 else { return nil }
        let recordEnd = 5 + Int(b.be16(3))
        let handshakeEnd = 9 + (Int(b[6]) << 16 | Int(b[7]) << 8 | Int(b[8]))
        let end = min(b.count, recordEnd, handshakeEnd)
        // Client version (2) and random (32).
        var position = 9 + 2 + 32
        guard position + 1 <= end else { return nil }
        position += 1 + Int(b[position])  // session id
        guard position + 2 <= end else { return nil }
        position += 2 + Int(b.be16(position))  // cipher suites
        guard position + 1 <= end else { return nil }
        position += 1 + Int(b[position])  // compression methods
        guard position + 2 <= end else { return nil }
        let extensionsEnd = min(end, position + 2 + Int(b.be16(position)))
        position += 2
        // At most 128 extensions are walked: a ClientHello has a few dozen.
        for _ in 0..<128 {
            guard position + 4 <= extensionsEnd else { return nil }
            let type = b.be16(position)
            let length = Int(b.be16(position + 2))
            let data = position + 4
            if type == 0 {
                return hostName(b, from: data, to: min(extensionsEnd, data + length))
            }
            position = data + length
        }
        return nil
    }

    /// The first `host_name` (type 0) entry of a `ServerNameList` in `b[start..<end]`.
    private static func hostName(_ b: UnsafeRawBufferPointer, from start: Int, to end: Int) -> String? {
        guard start + 2 <= end else { return nil }
        let listEnd = min(end, start + 2 + Int(b.be16(start)))
        var position = start + 2
        for _ in 0..<16 {
            guard position + 3 <= listEnd else { return nil }
            let type = b[position]
            let length = Int(b.be16(position + 1))
            let name = position + 3
            guard name + length <= listEnd else { return nil }
            if type == 0 {
                guard length > 0, length <= maxNameLength else { return nil }
                return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4 * maxNameLength) { text in
                    var count = 0
                    for i in name..<(name + length) {
                        let byte = b[i]
                        // Dots separate labels here: kept as they are.
                        if byte == UInt8(ascii: ".") {
                            text[count] = byte
                            count += 1
                        } else {
                            count = DNSMessage.appendEscaped(byte, to: text, at: count)
                        }
                    }
                    return String(decoding: UnsafeBufferPointer(rebasing: text[0..<count]), as: UTF8.self)
                }
            }
            position = name + length
        }
        return nil
    }
}
