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
enum EventReader {
    /// An event as read, with the time fields as they were on the wire.
    struct Read {
        var event: Event
        var timeUnixNano: Int64
        var timeDeltaNano: Int64
    }

    static func read(_ bytes: UnsafeRawBufferPointer) -> Read? {
        var input = Input(bytes)
        var seq: UInt64 = 0
        var timeUnixNano: Int64 = 0
        var timeDeltaNano: Int64 = 0
        var payload: Event.Payload?
        var seen: UInt64 = 0
        while !input.atEnd {
            guard let (field, wireType) = input.tag(), field < 64, seen & (1 << field) == 0 else { return nil }
            seen |= 1 << field
            switch (field, wireType) {
            case (1, 0):
                guard let v = input.varint() else { return nil }
                seq = v
            case (2, 0):
                guard let v = input.varint() else { return nil }
                timeUnixNano = Int64(bitPattern: v)
            case (3, 0):
                guard let v = input.varint() else { return nil }
                timeDeltaNano = Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1)
            case (10, 2), (11, 2), (12, 2):
                // One payload: a second one (the oneof's last would win) is left to SwiftProtobuf.
                guard payload == nil, let body = input.lengthDelimited() else { return nil }
                var message = Input(body)
                switch field {
                case 10: payload = file(&message).map { .file($0) }
                case 11: payload = process(&message).map { .process($0) }
                default: payload = flow(&message).map { .flow($0) }
                }
                guard payload != nil else { return nil }
            default:
                return nil
            }
        }
        guard let payload else { return nil }
        return Read(
            event: Event(seq: seq, time: Timestamp(nanosecondsSinceEpoch: timeUnixNano), payload: payload),
            timeUnixNano: timeUnixNano,
            timeDeltaNano: timeDeltaNano
        )
    }

    // MARK: messages (field numbers as in vigil.proto, values as EventCodec maps them)

    private static func file(_ input: inout Input) -> FileEvent? {
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
            guard let (field, wireType) = input.tag(), field < 64, seen & (1 << field) == 0 else { return nil }
            seen |= 1 << field
            switch (field, wireType) {
            case (1, 0):
                guard let v = input.varint() else { return nil }
                switch v {
                case 1: action = .create
                case 2: action = .modify
                case 3: action = .attrib
                case 4: action = .delete
                case 5: action = .rename
                default: return nil
                }
            case (2, 2):
                guard let s = input.string() else { return nil }
                target = s
            case (3, 2):
                guard let s = input.string() else { return nil }
                source = s.nilIfEmpty
            case (4, 0):
                guard let b = input.bool() else { return nil }
                isDirectory = b
            case (5, 0):
                guard let b = input.bool() else { return nil }
                hasMetadata = b
            case (6, 0):
                guard let v = input.uint32() else { return nil }
                metadata.mode = v
            case (7, 0):
                guard let v = input.uint32() else { return nil }
                metadata.uid = v
            case (8, 0):
                guard let v = input.uint32() else { return nil }
                metadata.gid = v
            case (9, 0):
                guard let v = input.varint() else { return nil }
                metadata.size = v
            case (10, 0):
                guard let v = input.varint() else { return nil }
                metadata.inode = v
            case (11, 2):
                guard let bytes = input.lengthDelimited() else { return nil }
                sha256 = bytes.isEmpty ? nil : Hex.encode(bytes)
            case (12, 2):
                guard let s = input.string() else { return nil }
                hashSkipped = s.nilIfEmpty
            case (20, 2):
                guard let s = input.string() else { return nil }
                image = s.nilIfEmpty
            case (21, 0):
                guard let v = input.uint32() else { return nil }
                processId = v == 0 ? nil : v
            case (22, 2):
                guard let s = input.string() else { return nil }
                user = s.nilIfEmpty
            default: return nil
            }
        }
        guard let action else { return nil }  // unspecified: SwiftProtobuf's reading says why
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

    private static func process(_ input: inout Input) -> ProcessEvent? {
        var action: ProcessEvent.Action?
        var p = ProcessEvent(action: .exec, processId: 0)
        var seen: UInt64 = 0
        while !input.atEnd {
            guard let (field, wireType) = input.tag(), field < 64 else { return nil }
            if field != 6 {
                guard seen & (1 << field) == 0 else { return nil }
                seen |= 1 << field
            }
            switch (field, wireType) {
            case (1, 0):
                guard let v = input.varint() else { return nil }
                switch v {
                case 1: action = .exec
                case 2: action = .fork
                case 3: action = .exit
                case 4: action = .uidChange
                case 5: action = .gidChange
                case 6: action = .sidChange
                case 7: action = .ptrace
                case 8: action = .commChange
                default: return nil
                }
            case (2, 0):
                guard let v = input.uint32() else { return nil }
                p.processId = v
            case (3, 0):
                guard let v = input.uint32() else { return nil }
                p.parentProcessId = v == 0 ? nil : v
            case (4, 2):
                guard let s = input.string() else { return nil }
                p.image = s.nilIfEmpty
            case (5, 2):
                guard let s = input.string() else { return nil }
                p.commandLine = s.nilIfEmpty
            case (6, 2):
                guard let s = input.string() else { return nil }
                p.argv.append(s)
            case (7, 2):
                guard let s = input.string() else { return nil }
                p.currentDirectory = s.nilIfEmpty
            case (8, 2):
                guard let s = input.string() else { return nil }
                p.user = s.nilIfEmpty
            case (9, 0):
                guard let v = input.uint32() else { return nil }
                p.uid = v
            case (10, 0):
                guard let v = input.uint32() else { return nil }
                p.euid = v
            case (11, 0):
                guard let v = input.uint32() else { return nil }
                p.gid = v
            case (12, 2):
                guard let s = input.string() else { return nil }
                p.parentImage = s.nilIfEmpty
            case (13, 2):
                guard let s = input.string() else { return nil }
                p.parentCommandLine = s.nilIfEmpty
            case (14, 0):
                guard let v = input.varint() else { return nil }
                p.startTimeTicks = v
            case (15, 2):
                guard let s = input.string() else { return nil }
                p.tty = s.nilIfEmpty
            case (16, 0):
                guard let v = input.uint32() else { return nil }
                p.loginUid = v
            case (17, 0):
                guard let v = input.uint32() else { return nil }
                p.sessionId = v
            case (18, 2):
                guard let s = input.string() else { return nil }
                p.containerId = s.nilIfEmpty
            case (19, 0):
                // int32: a negative value comes sign-extended to ten bytes; anything else that
                // does not fit is left to SwiftProtobuf.
                guard let v = input.varint(), let code = Int32(exactly: Int64(bitPattern: v)) else { return nil }
                p.exitCode = code
            case (20, 0):
                guard let b = input.bool() else { return nil }
                p.incomplete = b
            case (21, 2):
                guard let s = input.string() else { return nil }
                p.comm = s.nilIfEmpty
            default: return nil
            }
        }
        guard let action else { return nil }
        p.action = action
        return p
    }

    private static func flow(_ input: inout Input) -> FlowEvent? {
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
            guard let (field, wireType) = input.tag(), field < 64 else { return nil }
            if field != 23 {
                guard seen & (1 << field) == 0 else { return nil }
                seen |= 1 << field
            }
            switch (field, wireType) {
            case (1, 1):
                guard let d = input.double() else { return nil }
                f.ts = d
            case (2, 1):
                guard let d = input.double(), d >= 0 else { return nil }
                f.duration = d
            case (3, 2):
                guard let s = input.string() else { return nil }
                f.proto = s
            case (4, 2):
                guard let s = input.string() else { return nil }
                f.origH = s
            case (5, 0):
                guard let v = input.varint(), let p = UInt16(exactly: v) else { return nil }
                f.origP = p
            case (6, 2):
                guard let s = input.string() else { return nil }
                f.respH = s
            case (7, 0):
                guard let v = input.varint(), let p = UInt16(exactly: v) else { return nil }
                f.respP = p
            case (8, 0):
                guard let v = input.varint() else { return nil }
                f.origPkts = v
            case (9, 0):
                guard let v = input.varint() else { return nil }
                f.respPkts = v
            case (10, 0):
                guard let v = input.varint() else { return nil }
                f.origIPBytes = v
            case (11, 0):
                guard let v = input.varint() else { return nil }
                f.respIPBytes = v
            case (12, 0):
                guard let v = input.varint() else { return nil }
                f.origBytes = v
            case (13, 0):
                guard let v = input.varint() else { return nil }
                f.respBytes = v
            case (14, 0):
                guard let v = input.varint(), let flags = UInt8(exactly: v) else { return nil }
                f.origTCPFlags = flags
            case (15, 0):
                guard let v = input.varint(), let flags = UInt8(exactly: v) else { return nil }
                f.respTCPFlags = flags
            case (16, 2):
                guard let s = input.string() else { return nil }
                f.state = s
            case (17, 2):
                guard let s = input.string() else { return nil }
                communityID = s
            case (20, 2):
                guard let s = input.string() else { return nil }
                f.image = s.nilIfEmpty
            case (21, 0):
                guard let v = input.uint32() else { return nil }
                f.processId = v == 0 ? nil : v
            case (22, 2):
                guard let s = input.string() else { return nil }
                f.dnsQuery = s.nilIfEmpty
            case (23, 2):
                guard let s = input.string() else { return nil }
                answers.append(s)
            case (24, 2):
                guard let s = input.string() else { return nil }
                f.serverName = s.nilIfEmpty
            default: return nil
            }
        }
        // NaN, infinities and a negative duration are refused by SwiftProtobuf's path, with the reason.
        guard f.ts.isFinite, f.duration.isFinite else { return nil }
        f.dnsAnswers = answers.isEmpty ? nil : answers
        f.communityID = communityID ?? FlowCommunityID.derive(f)
        return f
    }

    // MARK: wire

    /// A cursor over protobuf bytes; every read returns nil rather than run past the end.
    private struct Input {
        let base: UnsafeRawBufferPointer
        var offset = 0

        init(_ base: UnsafeRawBufferPointer) { self.base = base }

        var atEnd: Bool { offset >= base.count }

        @inline(__always)
        mutating func varint() -> UInt64? {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while offset < base.count, shift < 70 {
                let b = base[offset]
                offset += 1
                result |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 {
                    // The tenth byte holds one bit: more would overflow 64 bits.
                    return shift == 63 && b > 1 ? nil : result
                }
                shift += 7
            }
            return nil
        }

        @inline(__always)
        mutating func tag() -> (field: UInt64, wireType: UInt64)? {
            guard let v = varint(), v >> 3 != 0 else { return nil }
            return (v >> 3, v & 7)
        }

        @inline(__always)
        mutating func uint32() -> UInt32? {
            guard let v = varint() else { return nil }
            return UInt32(exactly: v)
        }

        @inline(__always)
        mutating func bool() -> Bool? {
            switch varint() {
            case 0: false
            case 1: true
            default: nil
            }
        }

        @inline(__always)
        mutating func double() -> Double? {
            guard base.count - offset >= 8 else { return nil }
            let bits = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            offset += 8
            return Double(bitPattern: UInt64(littleEndian: bits))
        }

        @inline(__always)
        mutating func lengthDelimited() -> UnsafeRawBufferPointer? {
            guard let length = varint(), length <= UInt64(base.count - offset) else { return nil }
            let start = offset
            offset += Int(length)
            return UnsafeRawBufferPointer(rebasing: base[start..<offset])
        }

        /// A string field: ASCII (paths, addresses, names: nearly all of them) is checked eight
        /// bytes at a time; anything else is validated as UTF-8.
        @inline(__always)
        mutating func string() -> String? {
            guard let bytes = lengthDelimited() else { return nil }
            let utf8 = bytes.assumingMemoryBound(to: UInt8.self)
            var i = 0
            while i + 8 <= bytes.count,
                bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0
            {
                i += 8
            }
            while i < bytes.count, utf8[i] < 0x80 { i += 1 }
            if i == bytes.count { return String(decoding: utf8, as: UTF8.self) }
            return String(validating: utf8, as: UTF8.self)
        }
    }
}
