import Testing
import VigilCore
import VigilTestSupport

@testable import VigilSensors

/// `vigilctl flows --json` writes each line straight from the table's record
/// (`CompletedFlow.appendJSONLine`); it must be the event's own line, byte for byte. The same
/// for the table rows `vigilctl flows` prints (`CompletedFlow.appendTextRow`), against the row
/// built from the event's strings (`eventRow`, how vigilctl built it before).
@Suite("Flow JSON lines")
struct FlowJSONTests {
    @Test(
        "a record's JSON line and table row are its event's, byte for byte, for every flow of the corpus",
        .enabled(if: Corpus.isPresent, "the reference corpus is not at ../shared/corpora/pcaps")
    )
    func recordLinesMatchEventLines() throws {
        var compared = 0
        var ipv6 = 0
        var icmp = 0
        var dnsAnswers = 0
        var serverNames = 0
        var mismatches: [String] = []
        for capture in Corpus.captures() {
            guard let linkType = Corpus.linkType(capture), LinkType.isSupported(linkType) else { continue }
            _ = try OfflineFlowReader().read(path: Corpus.directory + "/" + capture) { flow in
                let event = flow.event
                var line: [UInt8] = []
                flow.appendJSONLine(to: &line)
                if line != Array(event.jsonLine.utf8), mismatches.count < 5 {
                    mismatches.append("\(capture): \(String(decoding: line, as: UTF8.self)) vs \(event.jsonLine)")
                }
                var row: [UInt8] = []
                flow.appendTextRow(to: &row)
                if row != Array(Self.eventRow(event).utf8), mismatches.count < 5 {
                    mismatches.append("\(capture): \(String(decoding: row, as: UTF8.self)) vs \(Self.eventRow(event))")
                }
                compared += 1
                if event.origH.contains(":") { ipv6 += 1 }
                if event.proto.hasPrefix("icmp") { icmp += 1 }
                if event.dnsAnswers != nil { dnsAnswers += 1 }
                if event.serverName != nil { serverNames += 1 }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
        // The corpus exercises every kind of text the line holds.
        #expect(compared > 1000 && ipv6 > 0 && icmp > 0 && dnsAnswers > 0 && serverNames > 0)
    }

    @Test("metadata with quotes and IPv6 answers; a protocol without a name; a one-way ICMP flow")
    func syntheticRecords() {
        var metadata = FlowMetadata()
        metadata.dnsQuery = "we\"ird\\name\u{1}"
        metadata.dnsAnswers = [
            DNSAddress(family: 4, bits: IPAddressBits(high: 0, low: 0xC0A8_0001)),
            DNSAddress(family: 6, bits: IPAddressBits(high: 0x2001_0DB8_0000_0000, low: 1)),
        ]
        metadata.serverName = "example.org"
        let v6 = FlowKey(
            lowAddress: IPAddressBits(high: 0x2001_0DB8_0000_0000, low: 1),
            highAddress: IPAddressBits(high: 0xFE80_0000_0000_0000, low: 0x0200_5EFF_FE00_5301),
            lowPort: 53,
            highPort: 40000,
            icmpIdentifier: 0,
            proto: IPProtocol.udp,
            family: 6
        )
        var record = FlowRecord(key: v6, originatorIsLow: false, time: 1_700_000_000_123_456_789)
        record.last = record.first + 2_500_000
        record.originatorPackets = 3
        record.responderPackets = 1
        record.originatorIPBytes = 300
        var queryOnly = metadata
        queryOnly.serverName = nil
        for (record, metadata) in [
            (record, metadata), (record, queryOnly), (withProto(record, 47), nil), (oneWayICMP(), nil),
        ] {
            let flow = CompletedFlow(record: record, metadata: metadata, reason: .flushed)
            var line: [UInt8] = []
            flow.appendJSONLine(to: &line)
            #expect(String(decoding: line, as: UTF8.self) == flow.event.jsonLine)
            var row: [UInt8] = []
            flow.appendTextRow(to: &row)
            #expect(String(decoding: row, as: UTF8.self) == Self.eventRow(flow.event))
        }
    }

    /// A table row from the event's strings: the server name, else the DNS query, last.
    static func eventRow(_ f: FlowEvent) -> String {
        "\(FlowEvent.fixed6(f.ts)) \(FlowEvent.fixed6(f.duration)) \(f.proto) \(f.origH):\(f.origP) -> \(f.respH):\(f.respP)"
            + " \(f.origPkts)/\(f.respPkts) \(f.origIPBytes)/\(f.respIPBytes) \(f.state) \(f.communityID)"
            + ((f.serverName ?? f.dnsQuery).map { " \($0)" } ?? "")
    }

    private func withProto(_ record: FlowRecord, _ proto: UInt8) -> FlowRecord {
        var record = record
        record.key.proto = proto
        return record
    }

    private func oneWayICMP() -> FlowRecord {
        let key = FlowKey(
            lowAddress: IPAddressBits(high: 0, low: 0x0A00_0002),
            highAddress: IPAddressBits(high: 0, low: 0x0A00_0001),
            lowPort: 3,
            highPort: 1,
            icmpIdentifier: 0,
            proto: IPProtocol.icmp,
            family: 4
        )
        var record = FlowRecord(key: key, originatorIsLow: true, time: 5)
        record.icmpOneWay = true
        record.originatorPackets = 1
        return record
    }

    /// 0.0.0.1:1 and 0.0.0.2:2 over `proto`.
    private static func key(proto: UInt8) -> FlowKey {
        FlowKey(
            lowAddress: IPAddressBits(high: 0, low: 1),
            highAddress: IPAddressBits(high: 0, low: 2),
            lowPort: 1,
            highPort: 2,
            icmpIdentifier: 0,
            proto: proto,
            family: 4
        )
    }

    @Test("record storage: a reservation smaller than the records grows by copying, and copies are independent")
    func storageGrowsAndCopies() {
        let storage = FlowRecordStorage(capacity: 16)
        let key = Self.key(proto: IPProtocol.tcp)
        for i in 0..<1000 { storage.append(FlowRecord(key: key, originatorIsLow: true, time: Int64(i))) }
        let copy = storage.copy()
        copy[7].first = -1
        copy.append(FlowRecord(key: key, originatorIsLow: true, time: 1000))
        #expect(storage.count == 1000 && copy.count == 1001)
        #expect((0..<1000).allSatisfy { storage[$0].first == Int64($0) })
        #expect(copy[7].first == -1 && copy[999].first == 999 && copy[1000].first == 1000)
        storage.removeAll()
        #expect(storage.count == 0 && copy.count == 1001)
    }

    @Test("record storage: links are per slot, copied with the records; a record fits two cache lines")
    func storageLinks() {
        let storage = FlowRecordStorage(capacity: 4)
        let key = Self.key(proto: IPProtocol.udp)
        for i in 0..<40 {
            storage.append(FlowRecord(key: key, originatorIsLow: true, time: Int64(i)))
            #expect(storage[links: i].previous == -1 && storage[links: i].next == -1)
            storage[links: i] = FlowRecordStorage.Link(previous: Int32(i) - 1, next: Int32(i) + 1)
        }
        let copy = storage.copy()
        copy[links: 3].next = 99
        #expect(
            (0..<40).allSatisfy {
                storage[links: $0].next == Int32($0) + 1 && copy[links: $0].previous == Int32($0) - 1
            }
        )
        #expect(copy[links: 3].next == 99 && storage[links: 3].next == 4)
        // Two cache lines per record (the table reads one record per packet at random).
        #expect(MemoryLayout<FlowRecord>.stride <= 128)
    }
}
