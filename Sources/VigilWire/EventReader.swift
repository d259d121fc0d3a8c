import VigilCore

/// Parses `vigil.v1.Event` bytes straight into the `VigilCore` model, without building the
/// generated messages first: the mirror of `EventWriter`, on the collector's hot path.
///
/// It reads what writers of this schema write — file, process and flow events, each field at most
/// once (a repeated field any number of times) with its declared wire type — and gives up (nil) on
/// anything else: alert, health and gap events, unknown fields, a field seen twice, a value out
/// of its type's range, an unknown action, invalid UTF-8, a truncated message. The caller then
/// decodes the same bytes with SwiftProtobuf, which either reads them or says what is wrong, so
/// the result is always SwiftProtobuf's (the wire tests and a fuzz target compare the two).
/// Inside, giving up is a thrown `GiveUp`: every read either yields its value or ends the reading.
enum EventReader {
    /// An event as read, with the time fields as they were on the wire.
    struct Read {
        var event: Event
        var timeUnixNano: Int64
        var timeDeltaNano: Int64
    }

    static func read(_ bytes: UnsafeRawBufferPointer) -> Read? {
        do {
            return try event(bytes)
        } catch {
            return nil
        }
    }

    /// Why the direct reader gave way. Nothing to say: SwiftProtobuf's reading says it.
    private struct GiveUp: Error {}

    private static func event(_ bytes: UnsafeRawBufferPointer) throws(GiveUp) -> Read {
        var input = Input(bytes)
        var seq: UInt64 = 0
        var timeUnixNano: Int64 = 0
        var timeDeltaNano: Int64 = 0
        var payload: Event.Payload?
        var seen: UInt64 = 0
        while !input.atEnd {
            let (field, wireType) = try input.field(&seen)
            switch (field, wireType) {
            case (1, 0):
                seq = try input.varint()
            case (2, 0):
                timeUnixNano = Int64(bitPattern: try input.varint())
            case (3, 0):
                let v = try input.varint()
                timeDeltaNano = Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1)
            case (10, 2), (11, 2), (12, 2):
                // One payload: a second one (the oneof's last would win) is left to SwiftProtobuf.
                try require(payload == nil)
                var message = Input(try input.lengthDelimited())
                switch field {
                case 10: payload = .file(try file(&message))
                case 11: payload = .process(try process(&message))
                default: payload = .flow(try flow(&message))
                }
            default:
                throw GiveUp()
            }
        }
        guard let payload else { throw GiveUp() }
        return Read(
            event: Event(seq: seq, time: Timestamp(nanosecondsSinceEpoch: timeUnixNano), payload: payload),
            timeUnixNano: timeUnixNano,
            timeDeltaNano: timeDeltaNano
        )
    }

    // MARK: messages (field numbers as in vigil.proto, values as EventCodec maps them)

    private static func file(_ input: inout Input) throws(GiveUp) -> FileEvent {
        var action: FileEvent.Action?
        var target = ""
        var source: String?
        var isDirectory = false
        var hasMetadata = false
        var metadata = FileMetadata(mode: 0, uid: 0, gid: 0, size: 0, inode: 0)
        var sha256: String?
        var hashSkipped: String?
        var image: String?
        var processId: UInt32?
        var user: String?
        var seen: UInt64 = 0
        while !input.atEnd {
            switch try input.field(&seen) {
            case (1, 0):
                switch try input.varint() {
                case 1: action = .create
                case 2: action = .modify
                case 3: action = .attrib
                case 4: action = .delete
                case 5: action = .rename
                default: throw GiveUp()
                }
            case (2, 2):
                target = try input.string()
            case (3, 2):
                source = try input.string().nilIfEmpty
            case (4, 0):
                isDirectory = try input.bool()
            case (5, 0):
                hasMetadata = try input.bool()
            case (6, 0):
                metadata.mode = try input.uint32()
            case (7, 0):
                metadata.uid = try input.uint32()
            case (8, 0):
                metadata.gid = try input.uint32()
            case (9, 0):
                metadata.size = try input.varint()
            case (10, 0):
                metadata.inode = try input.varint()
            case (11, 2):
                let bytes = try input.lengthDelimited()
                sha256 = bytes.isEmpty ? nil : Hex.encode(bytes)
            case (12, 2):
                hashSkipped = try input.string().nilIfEmpty
            case (20, 2):
                image = try input.string().nilIfEmpty
            case (21, 0):
                processId = try input.uint32().nilIfZero
            case (22, 2):
                user = try input.string().nilIfEmpty
            default: throw GiveUp()
            }
        }
        guard let action else { throw GiveUp() }  // unspecified: SwiftProtobuf's reading says why
        return FileEvent(
            action: action,
            targetFilename: target,
            sourceFilename: source,
            isDirectory: isDirectory,
            metadata: hasMetadata ? metadata : nil,
            sha256: sha256,
            hashSkipped: hashSkipped,
            image: image,
            processId: processId,
            user: user
        )
    }

    private static func process(_ input: inout Input) throws(GiveUp) -> ProcessEvent {
        var action: ProcessEvent.Action?
        var p = ProcessEvent(action: .exec, processId: 0)
        var seen: UInt64 = 0
        while !input.atEnd {
            switch try input.field(&seen, repeated: 6) {
            case (1, 0):
                switch try input.varint() {
                case 1: action = .exec
                case 2: action = .fork
                case 3: action = .exit
                case 4: action = .uidChange
                case 5: action = .gidChange
                case 6: action = .sidChange
                case 7: action = .ptrace
                case 8: action = .commChange
                default: throw GiveUp()
                }
            case (2, 0):
                p.processId = try input.uint32()
            case (3, 0):
                p.parentProcessId = try input.uint32().nilIfZero
            case (4, 2):
                p.image = try input.string().nilIfEmpty
            case (5, 2):
                p.commandLine = try input.string().nilIfEmpty
            case (6, 2):
                p.argv.append(try input.string())
            case (7, 2):
                p.currentDirectory = try input.string().nilIfEmpty
            case (8, 2):
                p.user = try input.string().nilIfEmpty
            case (9, 0):
                p.uid = try input.uint32()
            case (10, 0):
                p.euid = try input.uint32()
            case (11, 0):
                p.gid = try input.uint32()
            case (12, 2):
                p.parentImage = try input.string().nilIfEmpty
            case (13, 2):
                p.parentCommandLine = try input.string().nilIfEmpty
            case (14, 0):
                p.startTimeTicks = try input.varint()
            case (15, 2):
                p.tty = try input.string().nilIfEmpty
            case (16, 0):
                p.loginUid = try input.uint32()
            case (17, 0):
                p.sessionId = try input.uint32()
            case (18, 2):
                p.containerId = try input.string().nilIfEmpty
            case (19, 0):
                // int32: a negative value comes sign-extended to ten bytes; anything else that
                // does not fit is left to SwiftProtobuf.
                p.exitCode = try exactly(Int32.self, Int64(bitPattern: try input.varint()))
            case (20, 0):
                p.incomplete = try input.bool()
            case (21, 2):
                p.comm = try input.string().nilIfEmpty
            default: throw GiveUp()
            }
        }
        guard let action else { throw GiveUp() }
        p.action = action
        return p
    }

    private static func flow(_ input: inout Input) throws(GiveUp) -> FlowEvent {
        var f = FlowEvent(
            ts: 0,
            duration: 0,
            proto: "",
            origH: "",
            origP: 0,
            respH: "",
            respP: 0,
            origPkts: 0,
            respPkts: 0,
            origIPBytes: 0,
            respIPBytes: 0,
            origBytes: 0,
            respBytes: 0,
            origTCPFlags: 0,
            respTCPFlags: 0,
            state: ""
        )
        var communityID: String?
        var answers: [String] = []
        var seen: UInt64 = 0
        while !input.atEnd {
            switch try input.field(&seen, repeated: 23) {
            case (1, 1):
                f.ts = try input.double()
            case (2, 1):
                f.duration = try input.double()
                try require(f.duration >= 0)
            case (3, 2):
                f.proto = try input.string()
            case (4, 2):
                f.origH = try input.string()
            case (5, 0):
                f.origP = try exactly(UInt16.self, try input.varint())
            case (6, 2):
                f.respH = try input.string()
            case (7, 0):
                f.respP = try exactly(UInt16.self, try input.varint())
            case (8, 0):
                f.origPkts = try input.varint()
            case (9, 0):
                f.respPkts = try input.varint()
            case (10, 0):
                f.origIPBytes = try input.varint()
            case (11, 0):
                f.respIPBytes = try input.varint()
            case (12, 0):
                f.origBytes = try input.varint()
            case (13, 0):
                f.respBytes = try input.varint()
            case (14, 0):
                f.origTCPFlags = try exactly(UInt8.self, try input.varint())
            case (15, 0):
                f.respTCPFlags = try exactly(UInt8.self, try input.varint())
            case (16, 2):
                f.state = try input.string()
            case (17, 2):
                communityID = try input.string()
            case (20, 2):
                f.image = try input.string().nilIfEmpty
            case (21, 0):
                f.processId = try input.uint32().nilIfZero
            case (22, 2):
                f.dnsQuery = try input.string().nilIfEmpty
            case (23, 2):
                answers.append(try input.string())
            case (24, 2):
                f.serverName = try input.string().nilIfEmpty
            default: throw GiveUp()
            }
        }
        // NaN, infinities and a negative duration are refused by SwiftProtobuf's path, with the reason.
        try require(f.ts.isFinite && f.duration.isFinite)
        f.dnsAnswers = answers.isEmpty ? nil : answers
        f.communityID = communityID ?? FlowCommunityID.derive(f)
        return f
    }

    // MARK: wire

    @inline(__always)
    private static func require(_ condition: Bool) throws(GiveUp) {
        guard condition else { throw GiveUp() }
    }

    /// `value` as `T`, or give up if it does not fit.
    @inline(__always)
    private static func exactly<T: FixedWidthInteger>(_: T.Type, _ value: some FixedWidthInteger) throws(GiveUp) -> T {
        guard let v = T(exactly: value) else { throw GiveUp() }
        return v
    }

    /// A cursor over protobuf bytes; every read gives up rather than run past the end.
    private struct Input {
        let base: UnsafeRawBufferPointer
        var offset = 0

        init(_ base: UnsafeRawBufferPointer) { self.base = base }

        var atEnd: Bool { offset >= base.count }

        @inline(__always)
        mutating func varint() throws(GiveUp) -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while offset < base.count, shift < 70 {
                let b = base[offset]
                offset += 1
                result |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 {
                    // The tenth byte holds one bit: more would overflow 64 bits.
                    try require(shift != 63 || b <= 1)
                    return result
                }
                shift += 7
            }
            throw GiveUp()
        }

        /// The next field's number and wire type. Each field may come once (`seen` has a bit
        /// per field number below 64), except the one numbered `repeated`.
        @inline(__always)
        mutating func field(_ seen: inout UInt64, repeated: UInt64 = 0) throws(GiveUp) -> (UInt64, UInt64) {
            let v = try varint()
            let field = v >> 3
            try require(field != 0 && field < 64)
            if field != repeated {
                try require(seen & (1 << field) == 0)
                seen |= 1 << field
            }
            return (field, v & 7)
        }

        @inline(__always)
        mutating func uint32() throws(GiveUp) -> UInt32 {
            try exactly(UInt32.self, try varint())
        }

        @inline(__always)
        mutating func bool() throws(GiveUp) -> Bool {
            switch try varint() {
            case 0: return false
            case 1: return true
            default: throw GiveUp()
            }
        }

        @inline(__always)
        mutating func double() throws(GiveUp) -> Double {
            try require(base.count - offset >= 8)
            let bits = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            offset += 8
            return Double(bitPattern: UInt64(littleEndian: bits))
        }

        @inline(__always)
        mutating func lengthDelimited() throws(GiveUp) -> UnsafeRawBufferPointer {
            let length = try varint()
            try require(length <= UInt64(base.count - offset))
            let start = offset
            offset += Int(length)
            return UnsafeRawBufferPointer(rebasing: base[start..<offset])
        }

        /// A string field: ASCII (paths, addresses, names: nearly all of them) is checked eight
        /// bytes at a time; anything else is validated as UTF-8.
        @inline(__always)
        mutating func string() throws(GiveUp) -> String {
            let bytes = try lengthDelimited()
            let utf8 = bytes.assumingMemoryBound(to: UInt8.self)
            var i = 0
            while i + 8 <= bytes.count,
                bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0
            {
                i += 8
            }
            while i < bytes.count, utf8[i] < 0x80 { i += 1 }
            if i == bytes.count { return String(decoding: utf8, as: UTF8.self) }
            guard let s = String(validating: utf8, as: UTF8.self) else { throw GiveUp() }
            return s
        }
    }
}
