/// The format 2 body form of serialized events (vigil.proto, "Format 2"): the implied `seq`
/// left out and `time_unix_nano` replaced by `time_delta_nano` from the previous event.
///
/// The spool keeps events serialized in full; sealing rewrites only their two leading fields
/// and copies every other field byte for byte, so nothing is decoded or re-encoded.
enum BodyForm {
    /// The seq to write for the event at `index`: 0 (left out) when it is the implied one.
    static func explicitSeq(_ seq: UInt64, expected: UInt64, index: Int) throws(WireError) -> UInt64 {
        if seq == expected { return 0 }
        // A seq of 0 cannot be written: a reader would take the implied one instead.
        guard seq != 0 else { throw WireError(.malformedEvent, "event \(index) has seq 0, expected \(expected)") }
        return seq
    }

    /// The `time_unix_nano` of a serialized event, the base time of a body that starts with it.
    static func baseTime(of event: [UInt8]?) -> Int64? {
        guard let event, let fields = try? scan(event) else { return nil }
        return fields.time
    }

    /// Appends the length-prefixed body form of `event` (a serialized `vigil.v1.Event` in full)
    /// to `out`. `previousTime` is the previous event's time (nil before the first event, whose
    /// delta is then 0: its time is the header's base time).
    static func append(
        _ event: [UInt8],
        expectedSeq: UInt64,
        index: Int,
        previousTime: inout Int64?,
        to out: inout [UInt8]
    ) throws(WireError) {
        let fields = try scan(event)
        let seq = try explicitSeq(fields.seq, expected: expectedSeq, index: index)
        let delta = fields.time &- (previousTime ?? fields.time)
        previousTime = fields.time
        let zigzag = UInt64(bitPattern: (delta << 1) ^ (delta >> 63))
        let seqBytes = seq == 0 ? 0 : 1 + Varint.size(seq)
        let deltaBytes = zigzag == 0 ? 0 : 1 + Varint.size(zigzag)
        let restBytes = fields.rest.reduce(0) { $0 + $1.count }
        Varint.append(UInt64(seqBytes + deltaBytes + restBytes), to: &out)
        if seq != 0 {
            out.append(0x08)  // field 1 (seq), varint
            Varint.append(seq, to: &out)
        }
        if zigzag != 0 {
            out.append(0x18)  // field 3 (time_delta_nano), varint (zigzag)
            Varint.append(zigzag, to: &out)
        }
        for range in fields.rest { out.append(contentsOf: event[range]) }
    }

    /// The seq and time of a serialized event, and the byte ranges of all its other fields.
    private static func scan(_ event: [UInt8]) throws(WireError) -> (seq: UInt64, time: Int64, rest: [Range<Int>]) {
        var seq: UInt64 = 0
        var time: Int64 = 0
        var rest: [Range<Int>] = []
        var offset = 0
        while offset < event.count {
            let start = offset
            guard let (key, keyBytes) = Varint.read(event, at: offset) else { throw malformed(offset) }
            offset += keyBytes
            let field = key >> 3
            switch key & 7 {
            case 0:
                guard let (value, used) = Varint.read(event, at: offset) else { throw malformed(offset) }
                offset += used
                if field == 1 {
                    seq = value
                    continue
                }
                if field == 2 {
                    time = Int64(bitPattern: value)
                    continue
                }
            case 1: offset += 8
            case 2:
                guard let (length, used) = Varint.read(event, at: offset), length <= UInt64(event.count - offset - used)
                else { throw malformed(offset) }
                offset += used + Int(length)
            case 5: offset += 4
            default: throw malformed(start)
            }
            guard offset <= event.count, field != 3 else { throw malformed(start) }
            if let last = rest.last, last.upperBound == start {
                rest[rest.count - 1] = last.lowerBound..<offset
            } else {
                rest.append(start..<offset)
            }
        }
        return (seq, time, rest)
    }

    private static func malformed(_ offset: Int) -> WireError {
        WireError(.malformedEvent, "serialized event is not a vigil.v1.Event in full (byte \(offset))")
    }
}
