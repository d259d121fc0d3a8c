/// An address from a DNS answer (A or AAAA record).
public struct DNSAddress: Hashable, Sendable {
    /// 4 or 6.
    public var family: UInt8
    public var bits: IPAddressBits

    public init(family: UInt8, bits: IPAddressBits) {
        self.family = family
        self.bits = bits
    }

    /// The address in its usual text form (dotted quad, RFC 5952 IPv6).
    public var text: String { FlowRecord.format(bits, family: family) }
}

/// What a flow record keeps of a DNS message over UDP (RFC 1035 §4): whether it is a response,
/// the name of its first question and the addresses of its A and AAAA answers.
///
/// Safe on hostile input: every read is bounds-checked, compression pointers must point
/// backwards (so they cannot loop) and are followed at most `maxPointerJumps` times, a name
/// has at most 127 labels and 255 bytes, and the record loops are bounded by the counts and by
/// the bytes left. Nothing is allocated unless a name or an address is found.
public struct DNSMessage: Hashable, Sendable {
    /// QR bit: a response (else a query).
    public var isResponse: Bool
    /// The first question's name, labels joined by dots (`.` for the root), bytes outside
    /// printable ASCII and dots inside a label written `\xHH` as Zeek does; nil when the
    /// message has no question, its name is malformed, or it was not asked for.
    public var queryName: String?
    /// A and AAAA addresses of the answer section, in order, distinct, at most `maxAnswers`.
    public var answers: [DNSAddress]

    /// Compression pointers followed in one name, at most.
    public static let maxPointerJumps = 32
    /// A name's wire length (RFC 1035 §3.1), at most.
    public static let maxNameLength = 255

    public init(isResponse: Bool, queryName: String?, answers: [DNSAddress] = []) {
        self.isResponse = isResponse
        self.queryName = queryName
        self.answers = answers
    }

    /// Parses the DNS message in `payload` (a UDP payload, possibly cut short by the capture).
    ///
    /// Returns nil when it is not a standard query or response (too short for a header, an
    /// opcode other than QUERY, more than 16 questions, or a malformed question). Answers after
    /// a malformed or cut-off record are not read; those before it are kept.
    /// - Parameters:
    ///   - decodeName: whether to build `queryName` (a caller that knows it already saves the
    ///     allocation).
    ///   - maxAnswers: the most addresses kept.
    public static func parse(
        _ payload: UnsafeRawBufferPointer,
        decodeName: Bool = true,
        maxAnswers: Int = 8
    ) -> DNSMessage? {
        let b = payload
        guard b.count >= 12 else { return nil }
        let flags = b.be16(2)
        guard (flags >> 11) & 0xF == 0 else { return nil }  // opcode QUERY only
        let questions = Int(b.be16(4))
        let answerCount = Int(b.be16(6))
        guard questions <= 16 else { return nil }
        var message = DNSMessage(isResponse: flags & 0x8000 != 0, queryName: nil)
        var position = 12
        for question in 0..<questions {
            if question == 0 && decodeName {
                guard let name = readName(b, at: position) else { return nil }
                message.queryName = name
            }
            guard let end = skipName(b, at: position), end + 4 <= b.count else {
                // A question cut off by the snap length: the name (if complete) is kept.
                return question == 0 && message.queryName == nil ? nil : message
            }
            position = end + 4
        }
        guard message.isResponse, maxAnswers > 0 else { return message }
        for _ in 0..<min(answerCount, 256) {
            guard let end = skipName(b, at: position), end + 10 <= b.count else { break }
            let type = b.be16(end)
            let rrClass = b.be16(end + 2)
            let length = Int(b.be16(end + 8))
            let data = end + 10
            guard data + length <= b.count else { break }
            position = data + length
            guard rrClass == 1 else { continue }
            let address: DNSAddress
            if type == 1 && length == 4 {
                address = DNSAddress(family: 4, bits: IPAddressBits(high: 0, low: UInt64(b.be32(data))))
            } else if type == 28 && length == 16 {
                address = DNSAddress(family: 6, bits: IPAddressBits(high: b.be64(data), low: b.be64(data + 8)))
            } else {
                continue
            }
            if !message.answers.contains(address) {
                message.answers.append(address)
                if message.answers.count >= maxAnswers { break }
            }
        }
        return message
    }

    /// The offset just past the name at `start` in the message (a pointer ends it), or nil
    /// when it runs past the captured bytes or uses a reserved label type.
    static func skipName(_ b: UnsafeRawBufferPointer, at start: Int) -> Int? {
        var position = start
        // A name inside a record has at most 128 labels and is followed by more bytes; the
        // count bound only keeps a crafted message from costing more than its length.
        for _ in 0..<128 {
            guard position < b.count else { return nil }
            let length = Int(b[position])
            switch length & 0xC0 {
            case 0:
                if length == 0 { return position + 1 }
                position += 1 + length
            case 0xC0:
                return position + 2 <= b.count ? position + 2 : nil
            default:
                return nil
            }
        }
        return nil
    }

    /// The name at `start` in text form, following backward compression pointers; nil when it
    /// is malformed, longer than 255 bytes, or cut off.
    static func readName(_ b: UnsafeRawBufferPointer, at start: Int) -> String? {
        // Each wire byte becomes at most four characters (`\xHH`): 1024 is room for any name.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { text -> String? in
            var count = 0
            var position = start
            var wireLength = 0
            var jumps = 0
            // Pointers must go strictly backwards from the lowest offset seen so far, so a chain
            // of them cannot revisit a label; the jump bound keeps the cost small on top.
            var lowest = start
            while true {
                guard position < b.count else { return nil }
                let length = Int(b[position])
                switch length & 0xC0 {
                case 0:
                    wireLength += 1 + length
                    guard wireLength <= maxNameLength else { return nil }
                    if length == 0 {
                        if count == 0 {
                            text[0] = UInt8(ascii: ".")
                            count = 1
                        }
                        return String(decoding: UnsafeBufferPointer(rebasing: text[0..<count]), as: UTF8.self)
                    }
                    guard position + 1 + length <= b.count else { return nil }
                    if count > 0 {
                        text[count] = UInt8(ascii: ".")
                        count += 1
                    }
                    for i in (position + 1)..<(position + 1 + length) {
                        count = appendEscaped(b[i], to: text, at: count)
                    }
                    position += 1 + length
                case 0xC0:
                    guard position + 2 <= b.count else { return nil }
                    let target = Int(b.be16(position) & 0x3FFF)
                    jumps += 1
                    guard target < lowest, jumps <= maxPointerJumps else { return nil }
                    lowest = target
                    position = target
                default:
                    return nil
                }
            }
        }
    }

    /// Writes `byte` at `text[index]`, escaped as `\xHH` unless it is printable ASCII other than
    /// `.` and `\`; returns the next index.
    @inline(__always)
    static func appendEscaped(_ byte: UInt8, to text: UnsafeMutableBufferPointer<UInt8>, at index: Int) -> Int {
        if byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: ".") && byte != UInt8(ascii: "\\") {
            text[index] = byte
            return index + 1
        }
        let digits: StaticString = "0123456789abcdef"
        text[index] = UInt8(ascii: "\\")
        text[index + 1] = UInt8(ascii: "x")
        text[index + 2] = digits.utf8Start[Int(byte >> 4)]
        text[index + 3] = digits.utf8Start[Int(byte & 0xF)]
        return index + 4
    }
}
