import Testing
import VigilLinux

/// The record parser never trusts lengths from the kernel.
@Suite("inotify record parsing")
struct InotifyParserTests {
    /// One `struct inotify_event` as the kernel lays it out (little-endian), name NUL-padded.
    static func record(
        wd: Int32,
        mask: UInt32,
        cookie: UInt32 = 0,
        name: String? = nil,
        padTo: Int? = nil,
        declaredLength: UInt32? = nil
    ) -> [UInt8] {
        var nameBytes = Array((name ?? "").utf8)
        if name != nil {
            nameBytes.append(0)
            let padded = padTo ?? ((nameBytes.count + 15) / 16 * 16)
            nameBytes += [UInt8](repeating: 0, count: max(0, padded - nameBytes.count))
        }
        var bytes: [UInt8] = []
        func append<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        append(wd)
        append(mask)
        append(cookie)
        append(declaredLength ?? UInt32(nameBytes.count))
        return bytes + nameBytes
    }

    static func parse(_ bytes: [UInt8]) -> ([InotifyEvent], InotifyEventParser.Summary) {
        var events: [InotifyEvent] = []
        let summary = bytes.withUnsafeBytes { InotifyEventParser.parse($0) { events.append($0) } }
        return (events, summary)
    }

    @Test("well-formed records, with and without names")
    func wellFormed() {
        let bytes =
            Self.record(wd: 1, mask: 0x100, name: "a.txt")
            + Self.record(wd: 2, mask: 0x40, cookie: 77, name: "moved")
            + Self.record(wd: -1, mask: 0x4000)
        let (events, summary) = Self.parse(bytes)
        #expect(
            events == [
                InotifyEvent(watchDescriptor: 1, mask: .create, name: "a.txt"),
                InotifyEvent(watchDescriptor: 2, mask: .movedFrom, cookie: 77, name: "moved"),
                InotifyEvent(watchDescriptor: -1, mask: .queueOverflow),
            ]
        )
        #expect(summary == .init(events: 3, malformedBytes: 0))
    }

    @Test("a truncated header is left alone")
    func truncatedHeader() {
        let bytes = Self.record(wd: 1, mask: 0x100, name: "ok") + [1, 2, 3, 4, 5, 6, 7]
        let (events, summary) = Self.parse(bytes)
        #expect(events.count == 1)
        #expect(summary.malformedBytes == 7)
    }

    @Test("a name length past the end of the read is not followed")
    func lengthPastEnd() {
        let bytes = Self.record(wd: 1, mask: 0x100, name: "x", declaredLength: 4096)
        let (events, summary) = Self.parse(bytes)
        #expect(events.isEmpty)
        #expect(summary.malformedBytes == bytes.count)
        let huge = Self.record(wd: 1, mask: 0x100, declaredLength: .max)
        #expect(Self.parse(huge).0.isEmpty)
    }

    @Test("a name without its NUL uses the declared length; an all-NUL name is no name")
    func oddNames() {
        let unterminated = Self.record(wd: 3, mask: 0x100, name: "abcd", padTo: 4)
        #expect(Self.parse(unterminated).0.first?.name == "abcd")
        let empty = Self.record(wd: 3, mask: 0x100, name: "", padTo: 16)
        #expect(Self.parse(empty).0.first?.name == nil)
        let invalidUTF8 = Self.record(wd: 3, mask: 0x100, name: "a", padTo: 16).enumerated().map {
            $0.offset == 16 ? UInt8(0xff) : $0.element
        }
        #expect(Self.parse(invalidUTF8).0.first?.name == "\u{FFFD}")
    }

    @Test("random bytes never crash the parser")
    func fuzz() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let count = Int.random(in: 0..<200, using: &generator)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let (events, summary) = Self.parse(bytes)
            #expect(summary.events == events.count)
            #expect(summary.malformedBytes >= 0 && summary.malformedBytes <= count)
        }
    }
}
