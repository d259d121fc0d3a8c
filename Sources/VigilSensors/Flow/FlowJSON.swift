import Glibc
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
        FlowJSONLine.append(
            FlowJSONNumbers(
                ts: ts,
                duration: duration,
                origP: origP,
                respP: respP,
                origPkts: origPkts,
                respPkts: respPkts,
                origIPBytes: origIPBytes,
                respIPBytes: respIPBytes,
                origBytes: origBytes,
                respBytes: respBytes,
                origTCPFlags: origTCPFlags,
                respTCPFlags: respTCPFlags
            ),
            EventJSONText(self),
            to: &out
        )
    }

    /// An event with `numbers` and the text members given (a table record's, `FlowRecord.event`).
    init(
        _ numbers: FlowJSONNumbers,
        proto: String,
        origH: String,
        respH: String,
        state: String,
        communityID: String
    ) {
        let n = numbers
        self.init(
            ts: n.ts,
            duration: n.duration,
            proto: proto,
            origH: origH,
            origP: n.origP,
            respH: respH,
            respP: n.respP,
            origPkts: n.origPkts,
            respPkts: n.respPkts,
            origIPBytes: n.origIPBytes,
            respIPBytes: n.respIPBytes,
            origBytes: n.origBytes,
            respBytes: n.respBytes,
            origTCPFlags: n.origTCPFlags,
            respTCPFlags: n.respTCPFlags,
            state: state,
            communityID: communityID
        )
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

/// A flow's JSON line, laid out once for both sources: a `FlowEvent`, or a table record with
/// its metadata (`CompletedFlow`, which `vigilctl flows` writes without building the event's
/// strings). The numbers come as they are; the text members from a `FlowJSONText`.
enum FlowJSONLine {
    static func append(_ n: FlowJSONNumbers, _ text: some FlowJSONText, to out: inout [UInt8]) {
        // Literals and numbers need under 700 bytes.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 700 + text.maximumBytes) { buffer in
            var w = ByteWriter(buffer)
            w.ascii("{\"ts\":")
            w.fixed6(n.ts)
            w.ascii(",\"duration\":")
            w.fixed6(n.duration)
            w.ascii(",\"proto\":\"")
            text.writeProto(&w)
            w.ascii("\",\"orig_h\":\"")
            text.writeAddress(originator: true, &w)
            w.ascii("\",\"orig_p\":")
            w.decimal(UInt64(n.origP))
            w.ascii(",\"resp_h\":\"")
            text.writeAddress(originator: false, &w)
            w.ascii("\",\"resp_p\":")
            w.decimal(UInt64(n.respP))
            w.ascii(",\"orig_pkts\":")
            w.decimal(n.origPkts)
            w.ascii(",\"resp_pkts\":")
            w.decimal(n.respPkts)
            w.ascii(",\"orig_ip_bytes\":")
            w.decimal(n.origIPBytes)
            w.ascii(",\"resp_ip_bytes\":")
            w.decimal(n.respIPBytes)
            w.ascii(",\"orig_bytes\":")
            w.decimal(n.origBytes)
            w.ascii(",\"resp_bytes\":")
            w.decimal(n.respBytes)
            w.ascii(",\"orig_tcp_flags\":")
            w.decimal(UInt64(n.origTCPFlags))
            w.ascii(",\"resp_tcp_flags\":")
            w.decimal(UInt64(n.respTCPFlags))
            w.ascii(",\"state\":\"")
            text.writeState(&w)
            w.ascii("\",\"community_id\":\"")
            text.writeCommunityID(&w)
            w.ascii("\"")
            text.writeOptionalMembers(&w)
            w.ascii("}")
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[..<w.count]))
        }
    }
}

/// The numeric members of a flow's JSON line.
struct FlowJSONNumbers {
    var ts: Double
    var duration: Double
    var origP: UInt16
    var respP: UInt16
    var origPkts: UInt64
    var respPkts: UInt64
    var origIPBytes: UInt64
    var respIPBytes: UInt64
    var origBytes: UInt64
    var respBytes: UInt64
    var origTCPFlags: UInt8
    var respTCPFlags: UInt8
}

/// The text members of a flow's JSON line, written in place (the layout is `FlowJSONLine`'s).
protocol FlowJSONText {
    /// The most bytes all the writes below take together.
    var maximumBytes: Int { get }
    func writeProto(_ w: inout ByteWriter)
    func writeAddress(originator: Bool, _ w: inout ByteWriter)
    func writeState(_ w: inout ByteWriter)
    func writeCommunityID(_ w: inout ByteWriter)
    /// `dns_query`, `dns_answers`, `server_name`, `Image`, `ProcessId`: those known, each with
    /// its leading comma.
    func writeOptionalMembers(_ w: inout ByteWriter)
}

/// A `FlowEvent`'s strings, the optional ones quoted up front (they are rare).
private struct EventJSONText: FlowJSONText {
    let event: FlowEvent
    let image: String?
    let dnsQuery: String?
    let dnsAnswers: String?
    let serverName: String?

    init(_ event: FlowEvent) {
        self.event = event
        image = event.image.map { JSONString.quoted($0) }
        dnsQuery = event.dnsQuery.map { JSONString.quoted($0) }
        dnsAnswers = event.dnsAnswers.map { $0.map { JSONString.quoted($0) }.joined(separator: ",") }
        serverName = event.serverName.map { JSONString.quoted($0) }
    }

    var maximumBytes: Int {
        var count = event.proto.utf8.count + event.origH.utf8.count + event.respH.utf8.count
        count += event.state.utf8.count + event.communityID.utf8.count + (image?.utf8.count ?? 0)
        return count + (dnsQuery?.utf8.count ?? 0) + (dnsAnswers?.utf8.count ?? 0) + (serverName?.utf8.count ?? 0)
    }

    func writeProto(_ w: inout ByteWriter) { w.string(event.proto) }
    func writeAddress(originator: Bool, _ w: inout ByteWriter) { w.string(originator ? event.origH : event.respH) }
    func writeState(_ w: inout ByteWriter) { w.string(event.state) }
    func writeCommunityID(_ w: inout ByteWriter) { w.string(event.communityID) }

    func writeOptionalMembers(_ w: inout ByteWriter) {
        w.member(",\"dns_query\":", dnsQuery)
        if let dnsAnswers {
            w.ascii(",\"dns_answers\":[")
            w.string(dnsAnswers)
            w.ascii("]")
        }
        w.member(",\"server_name\":", serverName)
        w.member(",\"Image\":", image)
        if let processId = event.processId {
            w.ascii(",\"ProcessId\":")
            w.decimal(UInt64(processId))
        }
    }
}

/// A table record's text, written from its fields: addresses and the Community ID go straight
/// into the line. Records carry no process (attribution happens on events).
struct RecordJSONText: FlowJSONText {
    let record: FlowRecord
    let endpoints: FlowRecord.Endpoints
    let dnsQuery: String?
    let dnsAnswers: [DNSAddress]
    let serverName: String?

    init(_ record: FlowRecord, metadata: FlowMetadata?) {
        self.record = record
        endpoints = record.endpoints
        dnsQuery = metadata?.dnsQuery.map { JSONString.quoted($0) }
        dnsAnswers = metadata?.dnsAnswers ?? []
        serverName = metadata?.serverName.map { JSONString.quoted($0) }
    }

    /// The longest address text (`INET6_ADDRSTRLEN` counts its NUL).
    static let addressBytes = Int(INET6_ADDRSTRLEN)

    var maximumBytes: Int {
        // Protocol (3 digits at most), two addresses, state, Community ID, metadata.
        var count = 5 + 2 * Self.addressBytes + 6 + CommunityID.textBytes
        count += (dnsQuery?.utf8.count ?? 0) + dnsAnswers.count * (Self.addressBytes + 3)
        return count + (serverName?.utf8.count ?? 0)
    }

    func writeProto(_ w: inout ByteWriter) { w.string(FlowRecord.protocolName(record.key.proto)) }

    func writeAddress(originator: Bool, _ w: inout ByteWriter) {
        w.address(originator ? endpoints.originator : endpoints.responder, family: record.key.family)
    }

    func writeState(_ w: inout ByteWriter) { w.string(record.state) }

    func writeCommunityID(_ w: inout ByteWriter) {
        w.bytes(maximum: CommunityID.textBytes) { out in
            CommunityID.write(
                family: record.key.family,
                source: endpoints.originator,
                destination: endpoints.responder,
                proto: record.key.proto,
                sourcePort: endpoints.originatorPort,
                destinationPort: endpoints.responderPort,
                oneWay: record.icmpOneWay,
                into: out
            )
        }
    }

    func writeOptionalMembers(_ w: inout ByteWriter) {
        w.member(",\"dns_query\":", dnsQuery)
        if !dnsAnswers.isEmpty {
            w.ascii(",\"dns_answers\":[")
            for (i, answer) in dnsAnswers.enumerated() {
                w.ascii(i == 0 ? "\"" : ",\"")
                w.address(answer.bits, family: answer.family)
                w.ascii("\"")
            }
            w.ascii("]")
        }
        w.member(",\"server_name\":", serverName)
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

    /// Lets `body` write up to `maximum` bytes in place; it returns how many it wrote.
    mutating func bytes(maximum: Int, _ body: (UnsafeMutableBufferPointer<UInt8>) -> Int) {
        precondition(maximum <= buffer.count - count, "JSON line longer than its buffer")
        count += body(UnsafeMutableBufferPointer(rebasing: buffer[count..<(count + maximum)]))
    }

    /// The address in its usual text form, as `FlowRecord.format` gives it.
    mutating func address(_ address: IPAddressBits, family: UInt8) {
        bytes(maximum: RecordJSONText.addressBytes) { FlowRecord.format(address, family: family, into: $0) }
    }

    /// `prefix` (`,"name":`) and `text`, JSON already, when there is a text.
    mutating func member(_ prefix: StaticString, _ text: String?) {
        guard let text else { return }
        ascii(prefix)
        string(text)
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
