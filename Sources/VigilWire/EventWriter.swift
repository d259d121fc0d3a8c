import SwiftProtobuf
import VigilCore

/// Serializes events straight from the `VigilCore` model to `vigil.v1.Event` protobuf bytes,
/// without building the generated messages first: the hot path of the spool and the sealer.
///
/// The output is byte for byte what SwiftProtobuf writes for `EventCodec.message(from:)` (fields
/// in number order, proto3 defaults left out; the wire tests compare the two). File, process and
/// flow events are written here; the rare alert, health and gap events go through the generated
/// messages. Buffers are reused across calls: give each task its own writer.
struct EventWriter {
    /// The event being written (without its body length prefix).
    private var event: [UInt8] = []
    /// The payload message being written, before its length is known.
    private var payload: [UInt8] = []

    init(reserving capacity: Int = 512) {
        event.reserveCapacity(capacity)
        payload.reserveCapacity(capacity)
    }

    /// The event in full (`seq` and `time_unix_nano`), as `EventCodec.encode` returns it.
    mutating func full(_ e: Event) throws(WireError) -> [UInt8] {
        event.removeAll(keepingCapacity: true)
        Self.varintField(1, e.seq, to: &event)
        Self.varintField(2, UInt64(bitPattern: e.time.nanosecondsSinceEpoch), to: &event)
        try writePayload(e)
        return event
    }

    /// Appends the format 2 body form of `e` with its length prefix: `seq` (left out when 0, the
    /// implied one) and `time_delta_nano` instead of `time_unix_nano`.
    mutating func appendBodyForm(_ e: Event, seq: UInt64, timeDelta: Int64, to out: inout [UInt8]) throws(WireError) {
        event.removeAll(keepingCapacity: true)
        Self.varintField(1, seq, to: &event)
        Self.varintField(3, UInt64(bitPattern: (timeDelta << 1) ^ (timeDelta >> 63)), to: &event)
        try writePayload(e)
        Varint.append(UInt64(event.count), to: &out)
        out.append(contentsOf: event)
    }

    private mutating func writePayload(_ e: Event) throws(WireError) {
        payload.removeAll(keepingCapacity: true)
        let field: UInt64
        switch e.payload {
        case .file(let f):
            Self.file(f, to: &payload)
            field = 10
        case .process(let p):
            Self.process(p, to: &payload)
            field = 11
        case .flow(let f):
            Self.flow(f, to: &payload)
            field = 12
        case .alert, .health, .gap:
            // Rare: the generated message writes the oneof field (and nothing else, seq and
            // time being 0), which follows fields 1-3 exactly as SwiftProtobuf orders them.
            var m = EventCodec.message(from: e)
            m.seq = 0
            m.timeUnixNano = 0
            do {
                event += try m.serializedBytes() as [UInt8]
            } catch {
                throw WireError(.malformedEvent, "cannot encode event \(e.seq): \(error)")
            }
            return
        }
        Self.tag(field, wireType: 2, to: &event)
        Varint.append(UInt64(payload.count), to: &event)
        event.append(contentsOf: payload)
    }

    // MARK: messages (field numbers as in vigil.proto)

    private static func file(_ f: FileEvent, to out: inout [UInt8]) {
        let action: UInt64 =
            switch f.action {
            case .create: 1
            case .modify: 2
            case .attrib: 3
            case .delete: 4
            case .rename: 5
            }
        varintField(1, action, to: &out)
        stringField(2, f.targetFilename, to: &out)
        stringField(3, f.sourceFilename, to: &out)
        varintField(4, f.isDirectory ? 1 : 0, to: &out)
        if let md = f.metadata {
            varintField(5, 1, to: &out)
            varintField(6, UInt64(md.mode), to: &out)
            varintField(7, UInt64(md.uid), to: &out)
            varintField(8, UInt64(md.gid), to: &out)
            varintField(9, md.size, to: &out)
            varintField(10, md.inode, to: &out)
        }
        if let hex = f.sha256 { hexBytesField(11, hex, to: &out) }
        stringField(12, f.hashSkipped, to: &out)
        stringField(20, f.image, to: &out)
        varintField(21, UInt64(f.processId ?? 0), to: &out)
        stringField(22, f.user, to: &out)
    }

    private static func process(_ p: ProcessEvent, to out: inout [UInt8]) {
        let action: UInt64 =
            switch p.action {
            case .exec: 1
            case .fork: 2
            case .exit: 3
            case .uidChange: 4
            case .gidChange: 5
            case .sidChange: 6
            case .ptrace: 7
            case .commChange: 8
            }
        varintField(1, action, to: &out)
        varintField(2, UInt64(p.processId), to: &out)
        varintField(3, UInt64(p.parentProcessId ?? 0), to: &out)
        stringField(4, p.image, to: &out)
        stringField(5, p.commandLine, to: &out)
        for arg in p.argv {
            tag(6, wireType: 2, to: &out)
            appendString(arg, to: &out)
        }
        stringField(7, p.currentDirectory, to: &out)
        stringField(8, p.user, to: &out)
        optionalField(9, p.uid.map(UInt64.init), to: &out)
        optionalField(10, p.euid.map(UInt64.init), to: &out)
        optionalField(11, p.gid.map(UInt64.init), to: &out)
        stringField(12, p.parentImage, to: &out)
        stringField(13, p.parentCommandLine, to: &out)
        optionalField(14, p.startTimeTicks, to: &out)
        stringField(15, p.tty, to: &out)
        optionalField(16, p.loginUid.map(UInt64.init), to: &out)
        optionalField(17, p.sessionId.map(UInt64.init), to: &out)
        stringField(18, p.containerId, to: &out)
        // int32: negative values are sign-extended to ten bytes, as protobuf specifies.
        optionalField(19, p.exitCode.map { UInt64(bitPattern: Int64($0)) }, to: &out)
        varintField(20, p.incomplete ? 1 : 0, to: &out)
        stringField(21, p.comm, to: &out)
    }

    private static func flow(_ f: FlowEvent, to out: inout [UInt8]) {
        doubleField(1, f.ts, to: &out)
        doubleField(2, f.duration, to: &out)
        stringField(3, f.proto, to: &out)
        stringField(4, f.origH, to: &out)
        varintField(5, UInt64(f.origP), to: &out)
        stringField(6, f.respH, to: &out)
        varintField(7, UInt64(f.respP), to: &out)
        varintField(8, f.origPkts, to: &out)
        varintField(9, f.respPkts, to: &out)
        varintField(10, f.origIPBytes, to: &out)
        varintField(11, f.respIPBytes, to: &out)
        varintField(12, f.origBytes, to: &out)
        varintField(13, f.respBytes, to: &out)
        varintField(14, UInt64(f.origTCPFlags), to: &out)
        varintField(15, UInt64(f.respTCPFlags), to: &out)
        stringField(16, f.state, to: &out)
        // Left out when readers compute the same value (FlowCommunityID); else sent, even empty.
        if !FlowCommunityID.matches(f) {
            tag(17, wireType: 2, to: &out)
            appendString(f.communityID, to: &out)
        }
        stringField(20, f.image, to: &out)
        varintField(21, UInt64(f.processId ?? 0), to: &out)
        stringField(22, f.dnsQuery, to: &out)
        // Repeated: every element is written, even an empty one, as SwiftProtobuf does.
        for answer in f.dnsAnswers ?? [] {
            tag(23, wireType: 2, to: &out)
            appendString(answer, to: &out)
        }
        stringField(24, f.serverName, to: &out)
    }

    // MARK: fields

    @inline(__always)
    private static func tag(_ field: UInt64, wireType: UInt64, to out: inout [UInt8]) {
        Varint.append(field << 3 | wireType, to: &out)
    }

    /// A proto3 scalar: left out when 0.
    @inline(__always)
    private static func varintField(_ field: UInt64, _ value: UInt64, to out: inout [UInt8]) {
        guard value != 0 else { return }
        tag(field, wireType: 0, to: &out)
        Varint.append(value, to: &out)
    }

    /// A proto3 `optional` scalar: written when present, even 0.
    @inline(__always)
    private static func optionalField(_ field: UInt64, _ value: UInt64?, to out: inout [UInt8]) {
        guard let value else { return }
        tag(field, wireType: 0, to: &out)
        Varint.append(value, to: &out)
    }

    @inline(__always)
    private static func doubleField(_ field: UInt64, _ value: Double, to out: inout [UInt8]) {
        guard value.bitPattern != 0 else { return }  // -0.0 is written, as SwiftProtobuf does
        tag(field, wireType: 1, to: &out)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { out.append(contentsOf: $0) }
    }

    /// A proto3 string: left out when empty (or nil in the model).
    @inline(__always)
    private static func stringField(_ field: UInt64, _ value: String?, to out: inout [UInt8]) {
        guard let value, !value.isEmpty else { return }
        tag(field, wireType: 2, to: &out)
        appendString(value, to: &out)
    }

    /// Length and UTF-8 bytes of `value`.
    @inline(__always)
    private static func appendString(_ value: String, to out: inout [UInt8]) {
        var value = value
        value.withUTF8 { utf8 in
            Varint.append(UInt64(utf8.count), to: &out)
            out.append(contentsOf: utf8)
        }
    }

    /// The bytes a hex string spells, as `bytes` (left out when empty or not hex: what
    /// `EventCodec.message(from:)` does with `Hex.decode`).
    private static func hexBytesField(_ field: UInt64, _ hex: String, to out: inout [UInt8]) {
        var hex = hex
        hex.withUTF8 { digits in
            guard !digits.isEmpty, digits.count % 2 == 0, digits.allSatisfy({ hexValue($0) != nil }) else { return }
            tag(field, wireType: 2, to: &out)
            Varint.append(UInt64(digits.count / 2), to: &out)
            var i = 0
            while i < digits.count {
                out.append(hexValue(digits[i])! << 4 | hexValue(digits[i + 1])!)
                i += 2
            }
        }
    }

    /// The value of a hex digit (either case), as `Hex.decode` reads it.
    @inline(__always)
    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
