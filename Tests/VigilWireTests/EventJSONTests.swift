import Foundation
import Testing
import VigilCore
import VigilTestSupport

/// `Event.sortedKeysJSON` is what the collector stores; it must be what `JSONEncoder` with
/// `.sortedKeys` and `.withoutEscapingSlashes` (as in the collector's HTTP answers) writes, byte
/// for byte, for every kind of event, every combination of present and absent fields, and any
/// string an agent can send.
@Suite("Event JSON as stored")
struct EventJSONTests {
    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    @Test("the fixture events: the same bytes as JSONEncoder, and decoded back equal")
    func fixtures() throws {
        let encoder = Self.encoder()
        for event in Fixtures.events() {
            let expected = String(decoding: try encoder.encode(event), as: UTF8.self)
            #expect(event.sortedKeysJSON == expected)
            let decoded = try JSONDecoder().decode(Event.self, from: Data(event.sortedKeysJSON.utf8))
            #expect(decoded == event)
            // Rows stored by earlier collectors escaped every slash; they read back the same.
            let escaped = event.sortedKeysJSON.replacingOccurrences(of: "/", with: "\\/")
            #expect(try JSONDecoder().decode(Event.self, from: Data(escaped.utf8)) == event)
        }
    }

    @Test("strings with quotes, backslashes, slashes, every control character, DEL, U+2028 and emoji")
    func hostileStrings() throws {
        var nasty = "\"\\/'<>&\u{7F}\u{2028}\u{2029}é中😀\u{FEFF}\u{0}"
        for value in 0..<0x20 { nasty.unicodeScalars.append(Unicode.Scalar(UInt8(value))) }
        let event = Event(
            seq: 7,
            time: Timestamp(nanosecondsSinceEpoch: -1),
            payload: .health(
                AgentHealth(
                    kind: nasty,
                    message: nasty + nasty,
                    counters: [nasty: 1, "B": 2, "a": 3, "é": 4, "e\u{301}x": 5, "": 6, "Z\u{7F}": 7, "中": 8, "😀": 9],
                    attributes: [nasty: nasty, "z": ""]
                )
            )
        )
        let expected = String(decoding: try Self.encoder().encode(event), as: UTF8.self)
        #expect(event.sortedKeysJSON == expected)
    }

    @Test("10,000 random events of every kind: the same bytes as JSONEncoder")
    func randomEvents() throws {
        var random = RandomEvents(seed: 0x5eed)
        let encoder = Self.encoder()
        var mismatches: [String] = []
        for _ in 0..<10_000 {
            let event = random.event(depth: 0)
            let expected = String(decoding: try encoder.encode(event), as: UTF8.self)
            if event.sortedKeysJSON != expected, mismatches.count < 3 {
                mismatches.append("expected \(expected)\n     got \(event.sortedKeysJSON)")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
    }
}

/// Events with random fields, drawn from a fixed seed.
private struct RandomEvents {
    var generator: SplitMix64

    init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { generator.next() }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    mutating func chance() -> Bool { next() & 1 == 0 }

    mutating func string() -> String {
        let pieces = ["a", "Z", "/", "\\", "\"", "\n", "\t", "\u{1}", "\u{1F}", "\u{7F}", "é", "😀", " ", "0", "_"]
        var out = ""
        for _ in 0..<below(12) { out += pieces[below(pieces.count)] }
        return out
    }

    mutating func maybe<T>(_ make: (inout RandomEvents) -> T) -> T? { chance() ? make(&self) : nil }

    mutating func double() -> Double {
        switch below(6) {
        case 0: return 0
        case 1: return Double(below(1000))
        case 2: return Double(next() % 10_000_000) / 1e6
        case 3: return Double(bitPattern: next() & 0x7FEF_FFFF_FFFF_FFFF)  // any finite positive
        case 4: return 1_795_956_557 + Double(below(1_000_000)) / 1e6
        default: return Double(below(100)) * 1e-7
        }
    }

    mutating func counters() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for _ in 0..<below(5) { out[string()] = next() >> UInt64(below(64)) }
        return out
    }

    mutating func attributes() -> [String: String] {
        var out: [String: String] = [:]
        for _ in 0..<1 + below(3) { out[string()] = string() }
        return out
    }

    mutating func event(depth: Int) -> Event {
        let payload: Event.Payload
        switch below(depth == 0 ? 6 : 5) {
        case 0:
            payload = .file(
                FileEvent(
                    action: FileEvent.Action.allCases[below(FileEvent.Action.allCases.count)],
                    targetFilename: string(),
                    sourceFilename: maybe { $0.string() },
                    isDirectory: chance(),
                    metadata: maybe {
                        FileMetadata(
                            mode: UInt32(truncatingIfNeeded: $0.next()),
                            uid: UInt32(truncatingIfNeeded: $0.next()),
                            gid: UInt32(truncatingIfNeeded: $0.next()),
                            size: $0.next(),
                            inode: $0.next()
                        )
                    },
                    sha256: maybe { $0.string() },
                    hashSkipped: maybe { $0.string() },
                    image: maybe { $0.string() },
                    processId: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                    user: maybe { $0.string() }
                )
            )
        case 1:
            payload = .process(
                ProcessEvent(
                    action: ProcessEvent.Action.allCases[below(ProcessEvent.Action.allCases.count)],
                    processId: UInt32(truncatingIfNeeded: next()),
                    parentProcessId: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                    image: maybe { $0.string() },
                    commandLine: maybe { $0.string() },
                    argv: (0..<below(4)).map { _ in string() },
                    currentDirectory: maybe { $0.string() },
                    user: maybe { $0.string() },
                    uid: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                    euid: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                    gid: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                    parentImage: maybe { $0.string() },
                    parentCommandLine: maybe { $0.string() },
                    startTimeTicks: maybe { $0.next() },
                    tty: maybe { $0.string() },
                    loginUid: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                    sessionId: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                    containerId: maybe { $0.string() },
                    exitCode: maybe { Int32(truncatingIfNeeded: $0.next()) },
                    comm: maybe { $0.string() },
                    incomplete: chance()
                )
            )
        case 2:
            payload = .flow(
                FlowEvent(
                    ts: double(),
                    duration: double(),
                    proto: string(),
                    origH: string(),
                    origP: UInt16(truncatingIfNeeded: next()),
                    respH: string(),
                    respP: UInt16(truncatingIfNeeded: next()),
                    origPkts: next(),
                    respPkts: next() >> 40,
                    origIPBytes: next(),
                    respIPBytes: next() >> 20,
                    origBytes: next(),
                    respBytes: UInt64(below(10)),
                    origTCPFlags: UInt8(truncatingIfNeeded: next()),
                    respTCPFlags: UInt8(truncatingIfNeeded: next()),
                    state: string(),
                    communityID: string(),
                    image: maybe { $0.string() },
                    processId: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                    dnsQuery: maybe { $0.string() },
                    dnsAnswers: maybe { r in (0..<r.below(3)).map { _ in r.string() } },
                    serverName: maybe { $0.string() }
                )
            )
        case 3:
            payload = .health(
                AgentHealth(
                    kind: string(),
                    message: string(),
                    counters: counters(),
                    attributes: chance() ? [:] : attributes()
                )
            )
        case 4:
            payload = .gap(
                GapRecord(firstSeq: next(), lastSeq: next(), droppedByType: counters(), reason: string())
            )
        default:
            payload = .alert(
                Alert(
                    ruleId: string(),
                    title: string(),
                    level: string(),
                    tags: (0..<below(3)).map { _ in string() },
                    event: maybe { $0.event(depth: depth + 1) },
                    author: maybe { $0.string() },
                    suppressedCount: next() >> UInt64(below(64)),
                    origin: maybe { $0.string() },
                    detail: maybe { $0.string() }
                )
            )
        }
        return Event(
            seq: next() >> UInt64(below(64)),
            time: Timestamp(nanosecondsSinceEpoch: Int64(bitPattern: next())),
            payload: payload
        )
    }
}
