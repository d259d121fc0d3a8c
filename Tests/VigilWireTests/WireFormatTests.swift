import Crypto
import Glibc
import SwiftProtobuf
import Testing
import VigilCore
import VigilSensors

@testable import VigilWire

/// A deterministic source of varied events: every optional field present or not, empty and
/// non-ASCII strings, negative and extreme numbers. With `exact`, only events the model and the
/// schema represent alike (no empty optional strings, lowercase hashes, no zero pids), so they
/// must come back equal; without it also the ones the codec normalizes (`""` read as absent).
private struct Variety {
    var state: UInt64
    var exact = true

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func pick<T>(_ choices: [T]) -> T { choices[Int(next() % UInt64(choices.count))] }
    mutating func maybe<T>(_ value: T) -> T? { next() % 2 == 0 ? value : nil }
    mutating func number() -> UInt64 { pick([0, 1, 127, 128, 300, 1 << 32, UInt64.max, next()]) }
    mutating func text() -> String { pick(["", "a", "/etc/passwd", "ünïcødé ✓", String(repeating: "x", count: 200)]) }
    mutating func some() -> String? { exact ? maybe(pick(["a", "/etc/passwd", "ünïcødé ✓"])) : maybe(text()) }
    mutating func pid() -> UInt32? {
        maybe(exact ? UInt32(1 + next() % 4_000_000) : UInt32(truncatingIfNeeded: number()))
    }
    mutating func sha() -> String? {
        maybe(exact ? String(repeating: "0f", count: 32) : pick(["0f", "ABCDEF", "abc", "not hex!", ""]))
    }

    mutating func event(seq: UInt64) -> Event {
        let time = Timestamp(nanosecondsSinceEpoch: pick([0, -1, Int64.min, Int64.max, Int64(bitPattern: next())]))
        let payload: Event.Payload
        switch next() % 3 {
        case 0:
            payload = .file(
                FileEvent(
                    action: pick([.create, .modify, .attrib, .delete, .rename]),
                    targetFilename: text(),
                    sourceFilename: some(),
                    isDirectory: next() % 2 == 0,
                    metadata: maybe(
                        FileMetadata(
                            mode: UInt32(truncatingIfNeeded: number()),
                            uid: UInt32(truncatingIfNeeded: number()),
                            gid: 0,
                            size: number(),
                            inode: number()
                        )
                    ),
                    sha256: sha(),
                    hashSkipped: some(),
                    image: some(),
                    processId: pid(),
                    user: some()
                )
            )
        case 1:
            payload = .process(
                ProcessEvent(
                    action: pick([.exec, .fork, .exit, .uidChange, .gidChange, .sidChange, .ptrace, .commChange]),
                    processId: UInt32(truncatingIfNeeded: number()),
                    parentProcessId: pid(),
                    image: some(),
                    commandLine: some(),
                    argv: pick([[], ["sh"], ["", "-c", "ünïcødé ✓"]]),
                    currentDirectory: some(),
                    user: some(),
                    uid: maybe(pick([0, 1000])),
                    euid: maybe(0),
                    gid: maybe(UInt32.max),
                    parentImage: some(),
                    parentCommandLine: some(),
                    startTimeTicks: maybe(number()),
                    tty: some(),
                    loginUid: maybe(UInt32.max),
                    sessionId: maybe(0),
                    containerId: some(),
                    exitCode: maybe(pick([0, -1, Int32.min, Int32.max, 137])),
                    comm: some(),
                    incomplete: next() % 2 == 0
                )
            )
        default:
            var flow = FlowEvent(
                ts: pick([0, -0.0, 1_764_334_800.123456, 1e300, Double(next() % 1_000_000_007) / 7]),
                duration: pick([0, 0.5, 1e-6]),
                proto: pick(["tcp", "udp", "icmp", "icmp6", "sctp", "47", "", "TCP"]),
                origH: pick(["10.0.0.1", "192.168.1.52", "fe80::1", "2001:db8::2", "", "not an address"]),
                origP: UInt16(truncatingIfNeeded: number()),
                respH: pick(["10.0.0.2", "8.8.8.8", "fe80::1", "::", "10.0.0.1"]),
                respP: UInt16(truncatingIfNeeded: number()),
                origPkts: number(),
                respPkts: number(),
                origIPBytes: number(),
                respIPBytes: number(),
                origBytes: number(),
                respBytes: number(),
                origTCPFlags: UInt8(truncatingIfNeeded: number()),
                respTCPFlags: UInt8(truncatingIfNeeded: number()),
                state: pick(["", "SF", "S0"]),
                image: some(),
                processId: pid(),
                dnsQuery: some(),
                // Repeated: an empty element is written and read back; an empty list is absent.
                dnsAnswers: exact
                    ? pick([nil, ["192.0.2.1"], ["2001:db8::1", "", "ünïcødé ✓"]])
                    : pick([nil, [], [""], ["10.0.0.1", "::1"]]),
                serverName: some()
            )
            flow.communityID = pick(["", "1:abc=", sensorCommunityID(flow) ?? "", sensorCommunityID(flow) ?? "x"])
            payload = .flow(flow)
        }
        return Event(seq: seq, time: time, payload: payload)
    }
}

/// The Community ID the flow sensor computes for `flow`'s tuple (nil for what it cannot hash).
private func sensorCommunityID(_ flow: FlowEvent, oneWay: Bool = false) -> String? {
    let numbers: [String: UInt8] = ["tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58, "sctp": 132, "47": 47]
    guard let proto = numbers[flow.proto], let origin = bits(flow.origH), let responder = bits(flow.respH),
        origin.family == responder.family
    else { return nil }
    return CommunityID.compute(
        family: origin.family,
        source: origin.bits,
        destination: responder.bits,
        proto: proto,
        sourcePort: flow.origP,
        destinationPort: flow.respP,
        oneWay: oneWay
    )
}

private func bits(_ text: String) -> (family: UInt8, bits: IPAddressBits)? {
    var v4 = in_addr()
    if inet_pton(AF_INET, text, &v4) == 1 {
        return (4, IPAddressBits(high: 0, low: UInt64(UInt32(bigEndian: v4.s_addr))))
    }
    var v6 = in6_addr()
    guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
    let bytes = withUnsafeBytes(of: v6) { Array($0) }
    let high = bytes[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    let low = bytes[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    return (6, IPAddressBits(high: high, low: low))
}

@Suite("Wire format")
struct WireFormatTests {
    let identity = AgentIdentity.generate()

    @Test("the direct event writer writes exactly SwiftProtobuf's bytes, which decode to the same event")
    func writerMatchesSwiftProtobuf() throws {
        for exact in [true, false] {
            var variety = Variety(state: 7, exact: exact)
            let events = Fixtures.events() + (1...3000).map { _ in variety.event(seq: variety.number()) }
            for event in events {
                let ours = try EventCodec.encode(event)
                let reference: [UInt8] = try EventCodec.message(from: event).serializedBytes()
                #expect(ours == reference, "event \(event)")
                if exact { #expect(try EventCodec.decode(ours) == event) }
            }
        }
    }

    /// Both readings of `bytes`: the event, or nil where the reading refused them.
    private func bothReadings(_ bytes: [UInt8]) -> (direct: Event?, reference: Event?) {
        (try? EventCodec.decode(bytes), try? EventCodec.decodeWithSwiftProtobuf(bytes))
    }

    @Test("the direct event reader reads every file, process and flow event the writer writes, as SwiftProtobuf does")
    func readerMatchesSwiftProtobuf() throws {
        for exact in [true, false] {
            var variety = Variety(state: 11, exact: exact)
            let events = Fixtures.events() + (1...3000).map { _ in variety.event(seq: variety.number()) }
            for event in events {
                let bytes = try EventCodec.encode(event)
                let reference = try EventCodec.decodeWithSwiftProtobuf(bytes)
                switch event.payload {
                case .file, .process, .flow:
                    // Taken by the direct reader, not handed on to SwiftProtobuf.
                    let direct = bytes.withUnsafeBytes { EventReader.read($0) }
                    #expect(direct?.event == reference, "event \(event)")
                    #expect(direct?.timeUnixNano == event.time.nanosecondsSinceEpoch)
                case .alert, .health, .gap:
                    #expect(bytes.withUnsafeBytes { EventReader.read($0) } == nil)
                }
                #expect(try EventCodec.decode(bytes) == reference)
                if exact { #expect(reference == event) }
            }
        }
    }

    @Test("on bytes other writers may send the direct reader gives way, and the result is SwiftProtobuf's")
    func readerGivesWay() throws {
        let events = Fixtures.events()
        let file = try #require(events.first { if case .file = $0.payload { true } else { false } })
        let process = try #require(events.first { if case .process = $0.payload { true } else { false } })
        let fileBytes = try EventCodec.encode(file)
        let processPayload: [UInt8] = try EventCodec.message(from: process).process.serializedBytes()
        let secondPayload = [0x5a] + Varint.bytes(UInt64(processPayload.count)) + processPayload
        let cases: [(String, [UInt8])] = [
            ("seq written twice (the last wins)", fileBytes + [0x08, 0x05]),
            ("an unknown field", fileBytes + [0xf8, 0x06, 0x01]),
            ("two payloads (the oneof's last wins)", fileBytes + secondPayload),
            ("a payload message merged from two parts", fileBytes + [0x52, 0x02, 0x30, 0x07]),
            ("a uint32 past its range", [0x52, 0x07, 0x08, 0x01, 0x30, 0x80, 0x80, 0x80, 0x80, 0x10]),
            ("a bool written as 2", [0x52, 0x04, 0x08, 0x01, 0x20, 0x02]),
            ("an exit code not sign-extended", [0x5a, 0x09, 0x08, 0x03, 0x98, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            ("invalid UTF-8 in a path", [0x52, 0x05, 0x08, 0x01, 0x12, 0x01, 0xff]),
            ("an unspecified action", [0x52, 0x02, 0x12, 0x00]),
            ("a truncated payload", Array(fileBytes.dropLast())),
            ("a group wire type", fileBytes + [0x0b]),
            ("no payload", [0x08, 0x01]),
        ]
        for (what, bytes) in cases {
            #expect(bytes.withUnsafeBytes { EventReader.read($0) } == nil, "\(what): read directly")
            let (direct, reference) = bothReadings(bytes)
            #expect(direct == reference, "\(what): \(String(describing: direct)) vs \(String(describing: reference))")
        }
        // And every damage of a real event reads the same both ways.
        var variety = Variety(state: 23, exact: false)
        for _ in 1...4000 {
            var bytes = try EventCodec.encode(variety.event(seq: variety.number()))
            switch variety.next() % 3 {
            case 0:
                bytes[Int(variety.next() % UInt64(bytes.count))] ^= UInt8(truncatingIfNeeded: 1 + variety.next() % 255)
            case 1: bytes.removeLast(Int(variety.next() % UInt64(bytes.count)))
            default:
                bytes.insert(UInt8(truncatingIfNeeded: variety.next()), at: Int(variety.next() % UInt64(bytes.count)))
            }
            let (direct, reference) = bothReadings(bytes)
            #expect(direct == reference, "\(bytes): \(String(describing: direct)) vs \(String(describing: reference))")
        }
    }

    @Test("a flow's Community ID is left out when readers compute the same one, and comes back identical")
    func communityIDDerived() throws {
        var variety = Variety(state: 11)
        var derivedCount = 0
        for _ in 0..<2000 {
            guard case .flow(var flow) = variety.event(seq: 1).payload else { continue }
            for oneWay in [false, true] {
                guard let computed = sensorCommunityID(flow, oneWay: oneWay) else { continue }
                flow.communityID = computed
                let bytes = try EventCodec.encode(Event(seq: 1, payload: .flow(flow)))
                let sent = try Vigil_V1_Event(serializedBytes: bytes).flow
                // The sensor's two-way hash is always derivable; a one-way ICMP hash only when it
                // happens to be the same string.
                if !oneWay { #expect(!sent.hasCommunityID, "\(flow)") }
                if !sent.hasCommunityID { derivedCount += 1 }
                guard case .flow(let back) = try EventCodec.decode(bytes).payload else {
                    Issue.record("not a flow")
                    continue
                }
                #expect(back == flow)
            }
        }
        #expect(derivedCount > 100)
        // Anything else travels in full, the empty string included.
        for other in ["", "1:abc=", "1:LQU9qZlK+B5F3KDmev6m5PMibrg="] {
            let flow = FlowEvent(
                ts: 1,
                duration: 0,
                proto: "tcp",
                origH: "10.0.0.1",
                origP: 1,
                respH: "10.0.0.2",
                respP: 2,
                communityID: other
            )
            let bytes = try EventCodec.encode(Event(seq: 1, payload: .flow(flow)))
            #expect(try Vigil_V1_Event(serializedBytes: bytes).flow.hasCommunityID)
            #expect(try EventCodec.decode(bytes).payload == .flow(flow))
        }
    }

    @Test(
        "batches delta-code times (any order, any value) and imply seqs; sealing serialized events gives the same body"
    )
    func bodyForm() throws {
        var variety = Variety(state: 3)
        var events = (0..<500).map { variety.event(seq: 1_000 + UInt64($0)) }
        events += Fixtures.events(firstSeq: 1_500)
        let sealer = BatchSealer(identity: identity)
        let created = Timestamp(nanosecondsSinceEpoch: 5)
        let direct = try sealer.seal(events: events, batchSeq: 1, prevHeaderHash: genesisHeaderHash, created: created)
        let spooled = try sealer.seal(
            encodedEvents: events.map { try EventCodec.encode($0) },
            firstSeq: 1_000,
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash,
            created: created
        )
        #expect(direct.header.formatVersion == 2)
        #expect(direct.header.baseTime == events[0].time)
        #expect(direct.headerBytes == spooled.headerBytes)
        #expect(direct.body == spooled.body)
        let parsed = try BatchOpener.parse(direct.serialized())
        #expect(try BatchOpener.verify(parsed, publicKey: identity.publicKey) == events)
        // Each body event is smaller than the event in full: no seq, a delta for a time.
        #expect(direct.header.uncompressedSize < UInt64(events.reduce(0) { $0 + (try! EventCodec.encode($1)).count }))
    }

    @Test("a seq that is not the implied one is written and checked")
    func explicitSeqChecked() throws {
        var events = Fixtures.fileEvents(count: 3)
        events[2].seq = 9
        let batch = try BatchSealer(identity: identity).seal(
            events: events,
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash
        )
        #expect {
            try BatchOpener.verify(try BatchOpener.parse(batch.serialized()), publicKey: identity.publicKey)
        } throws: { ($0 as? WireError)?.code == .countMismatch }
        events[2].seq = 0
        #expect {
            try BatchSealer(identity: identity).seal(events: events, batchSeq: 1, prevHeaderHash: genesisHeaderHash)
        } throws: { ($0 as? WireError)?.code == .malformedEvent }
    }

    /// Found by FuzzEvent (Fuzz/Regressions/FuzzEvent/flow-ts-nan): a NaN ts decoded, then
    /// compared unequal to itself after a round trip, and would have failed the collector's JSON.
    @Test("a flow event with a NaN, infinite or negative ts or duration is refused as malformed")
    func nonFiniteFlowTimes() throws {
        let flow = try #require(Fixtures.events().first { if case .flow = $0.payload { true } else { false } })
        var good = EventCodec.message(from: flow)
        #expect(try EventCodec.decode(try good.serializedBytes() as [UInt8]) == flow)
        for (ts, duration) in [(Double.nan, 1.5), (1.7e9, .infinity), (-.infinity, 0), (1.7e9, -1), (1.7e9, .nan)] {
            good.flow.ts = ts
            good.flow.duration = duration
            let bytes: [UInt8] = try good.serializedBytes()
            #expect {
                try EventCodec.decode(bytes)
            } throws: { ($0 as? WireError)?.code == .malformedEvent }
        }
    }

    @Test("format 1 batches (events in full) still verify and decode; mixing the forms is refused")
    func formatOne() throws {
        let events = Fixtures.events(firstSeq: 40)
        var raw: [UInt8] = []
        for event in events {
            let bytes = try EventCodec.encode(event)
            Varint.append(UInt64(bytes.count), to: &raw)
            raw += bytes
        }
        let sealer = BatchSealer(identity: identity)
        let v1 = try sealer.seal(
            body: try Zstd().compress(raw),
            uncompressedSize: UInt64(raw.count),
            firstSeq: 40,
            eventCount: UInt32(events.count),
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash,
            formatVersion: 1
        )
        let parsed = try BatchOpener.parse(v1.serialized())
        #expect(parsed.header.formatVersion == 1)
        #expect(try BatchOpener.verify(parsed, publicKey: identity.publicKey) == events)
        // The same full events declared as format 2: time_unix_nano has no place there.
        let mislabeled = try sealer.seal(
            body: try Zstd().compress(raw),
            uncompressedSize: UInt64(raw.count),
            firstSeq: 40,
            eventCount: UInt32(events.count),
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash,
            formatVersion: 2
        )
        #expect {
            try BatchOpener.verify(try BatchOpener.parse(mislabeled.serialized()), publicKey: identity.publicKey)
        } throws: { ($0 as? WireError)?.code == .malformedEvent }
        // A format 2 body declared as format 1: its time deltas are refused.
        let v2 = try sealer.seal(events: events, batchSeq: 1, prevHeaderHash: genesisHeaderHash)
        let relabeled = try sealer.seal(
            body: v2.body,
            uncompressedSize: v2.header.uncompressedSize,
            firstSeq: 40,
            eventCount: UInt32(events.count),
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash,
            formatVersion: 1,
            baseTime: v2.header.baseTime
        )
        #expect {
            try BatchOpener.verify(try BatchOpener.parse(relabeled.serialized()), publicKey: identity.publicKey)
        } throws: { $0 is WireError }
    }

    @Test("an unknown format version is refused")
    func unknownVersion() throws {
        let batch = try BatchSealer(identity: identity).seal(
            body: [],
            uncompressedSize: 0,
            firstSeq: 1,
            eventCount: 0,
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash,
            formatVersion: 3
        )
        #expect { try BatchOpener.parse(batch.serialized()) } throws: {
            ($0 as? WireError)?.code == .unsupportedVersion
        }
    }
}

extension Varint {
    /// `value` as a varint on its own.
    static func bytes(_ value: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        append(value, to: &out)
        return out
    }
}
