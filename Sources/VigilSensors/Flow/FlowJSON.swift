import VigilCore

extension FlowEvent {
    /// One JSON object on one line with DESIGN.md's field names (the same keys `Codable` uses,
    /// in Zeek's column order), written without `JSONEncoder` because offline runs print
    /// millions of these. `dns_query`, `dns_answers`, `server_name` (payload metadata) and
    /// `Image`/`ProcessId` appear when known.
    public var jsonLine: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(400)
        appendJSONLine(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `jsonLine` (UTF-8, no newline) to `out`, with no temporary strings.
    public func appendJSONLine(to out: inout [UInt8]) {
        let image = self.image.map { JSONString.quoted($0) }
        let dnsQuery = self.dnsQuery.map { JSONString.quoted($0) }
        let dnsAnswers = self.dnsAnswers.map { $0.map { JSONString.quoted($0) }.joined(separator: ",") }
        let serverName = self.serverName.map { JSONString.quoted($0) }
        // Literals and numbers need under 700 bytes; the strings are copied as they are.
        var capacity = 700 + proto.utf8.count + origH.utf8.count + respH.utf8.count + state.utf8.count
        capacity += communityID.utf8.count + (image?.utf8.count ?? 0)
        capacity += (dnsQuery?.utf8.count ?? 0) + (dnsAnswers?.utf8.count ?? 0) + (serverName?.utf8.count ?? 0)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { buffer in
            var w = ByteWriter(buffer)
            w.ascii("{\"ts\":")
            w.fixed6(ts)
            w.ascii(",\"duration\":")
            w.fixed6(duration)
            w.ascii(",\"proto\":\"")
            w.string(proto)
            w.ascii("\",\"orig_h\":\"")
            w.string(origH)
            w.ascii("\",\"orig_p\":")
            w.decimal(UInt64(origP))
            w.ascii(",\"resp_h\":\"")
            w.string(respH)
            w.ascii("\",\"resp_p\":")
            w.decimal(UInt64(respP))
            w.ascii(",\"orig_pkts\":")
            w.decimal(origPkts)
            w.ascii(",\"resp_pkts\":")
            w.decimal(respPkts)
            w.ascii(",\"orig_ip_bytes\":")
            w.decimal(origIPBytes)
            w.ascii(",\"resp_ip_bytes\":")
            w.decimal(respIPBytes)
            w.ascii(",\"orig_bytes\":")
            w.decimal(origBytes)
            w.ascii(",\"resp_bytes\":")
            w.decimal(respBytes)
            w.ascii(",\"orig_tcp_flags\":")
            w.decimal(UInt64(origTCPFlags))
            w.ascii(",\"resp_tcp_flags\":")
            w.decimal(UInt64(respTCPFlags))
            w.ascii(",\"state\":\"")
            w.string(state)
            w.ascii("\",\"community_id\":\"")
            w.string(communityID)
            w.ascii("\"")
            if let dnsQuery {
                w.ascii(",\"dns_query\":")
                w.string(dnsQuery)
            }
            if let dnsAnswers {
                w.ascii(",\"dns_answers\":[")
                w.string(dnsAnswers)
                w.ascii("]")
            }
            if let serverName {
                w.ascii(",\"server_name\":")
                w.string(serverName)
            }
            if let image {
                w.ascii(",\"Image\":")
                w.string(image)
            }
            if let processId {
                w.ascii(",\"ProcessId\":")
                w.decimal(UInt64(processId))
            }
            w.ascii("}")
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[..<w.count]))
        }
    }

    /// Seconds with exactly six decimals (microseconds), as Zeek logs them.
    public static func fixed6(_ value: Double) -> String {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { buffer in
            var w = ByteWriter(buffer)
            w.fixed6(value)
            return String(decoding: UnsafeBufferPointer(rebasing: buffer[..<w.count]), as: UTF8.self)
        }
    }
}

/// Writes bytes front to back into a buffer; every write checks that it fits.
struct ByteWriter {
    private let buffer: UnsafeMutableBufferPointer<UInt8>
    private(set) var count = 0

    init(_ buffer: UnsafeMutableBufferPointer<UInt8>) {
        self.buffer = buffer
    }

    @inline(__always)
    mutating func bytes(_ source: UnsafeRawBufferPointer) {
        precondition(source.count <= buffer.count - count, "JSON line longer than its buffer")
        guard let from = source.baseAddress, let to = buffer.baseAddress else { return }
        UnsafeMutableRawPointer(to + count).copyMemory(from: from, byteCount: source.count)
        count += source.count
    }

    @inline(__always)
    mutating func ascii(_ text: StaticString) {
        bytes(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        precondition(count < buffer.count, "JSON line longer than its buffer")
        buffer[count] = value
        count += 1
    }

    mutating func string(_ text: String) {
        var text = text
        text.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }

    /// `value` in decimal, zero-padded to `minimumDigits` (at most 20).
    mutating func decimal(_ value: UInt64, minimumDigits: Int = 1) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { raw in
            var v = value
            var start = 24
            repeat {
                start -= 1
                raw[start] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
                v /= 10
            } while v > 0 || 24 - start < Swift.min(minimumDigits, 20)
            bytes(UnsafeRawBufferPointer(rebasing: raw[start...]))
        }
    }

    /// Seconds with six decimals; a value that is not finite or beyond 2^63 microseconds
    /// prints as 0.000000.
    mutating func fixed6(_ value: Double) {
        let scaled = (value * 1e6).rounded()
        let micros = scaled.isFinite && scaled.magnitude < 9.2e18 ? Int64(scaled) : 0
        if micros < 0 { byte(UInt8(ascii: "-")) }
        let magnitude = micros.magnitude
        decimal(magnitude / 1_000_000)
        byte(UInt8(ascii: "."))
        decimal(magnitude % 1_000_000, minimumDigits: 6)
    }
}
