import VigilCore

/// Why a flow record was reported.
public enum FlowEndReason: String, Sendable {
    /// No packet within the idle (or, for a closed TCP connection, the closed) timeout.
    case idle
    /// Still active after the active timeout; the flow goes on with fresh counters.
    case active
    /// The table was full and this was the least recently seen flow.
    case evicted
    /// The capture ended or the sensor stopped.
    case flushed
}

/// A flow record the table reported: its event is built on demand, and its JSON line can be
/// written straight from the record (`vigilctl flows --json`).
public struct CompletedFlow {
    let record: FlowRecord
    let metadata: FlowMetadata?
    public let reason: FlowEndReason

    /// The record in Zeek's connection vocabulary, with its payload metadata.
    public var event: FlowEvent {
        var event = record.event
        metadata?.apply(to: &event)
        return event
    }

    /// Appends `event.jsonLine` (UTF-8, no newline) to `out`: the same bytes, without building
    /// the event's strings.
    public func appendJSONLine(to out: inout [UInt8]) {
        FlowJSONLine.append(record.jsonNumbers, RecordJSONText(record, metadata: metadata), to: &out)
    }

    /// Appends the row `vigilctl flows` prints for the flow (UTF-8, no newline): `ts duration
    /// proto orig_h:orig_p -> resp_h:resp_p pkts/pkts ip_bytes/ip_bytes state community_id`,
    /// then the TLS server name or else the DNS query when known; written straight from the
    /// record, as the JSON line is.
    public func appendTextRow(to out: inout [UInt8]) {
        let text = RecordJSONText(record, metadata: nil)
        let trailing = metadata?.serverName ?? metadata?.dnsQuery
        let n = record.jsonNumbers
        // Numbers, separators and the two timestamps need under 250 bytes.
        withUnsafeTemporaryAllocation(
            of: UInt8.self,
            capacity: 250 + text.maximumBytes + (trailing?.utf8.count ?? 0)
        ) { buffer in
            var w = ByteWriter(buffer)
            /// `address:port` of one end.
            func endpoint(originator: Bool, port: UInt16) {
                text.writeAddress(originator: originator, &w)
                w.byte(UInt8(ascii: ":"))
                w.decimal(UInt64(port))
            }
            /// `originator/responder` counts and a space.
            func counts(_ originator: UInt64, _ responder: UInt64) {
                w.decimal(originator)
                w.byte(UInt8(ascii: "/"))
                w.decimal(responder)
                w.byte(UInt8(ascii: " "))
            }
            w.fixed6(n.ts)
            w.byte(UInt8(ascii: " "))
            w.fixed6(n.duration)
            w.byte(UInt8(ascii: " "))
            text.writeProto(&w)
            w.byte(UInt8(ascii: " "))
            endpoint(originator: true, port: n.origP)
            w.ascii(" -> ")
            endpoint(originator: false, port: n.respP)
            w.byte(UInt8(ascii: " "))
            counts(n.origPkts, n.respPkts)
            counts(n.origIPBytes, n.respIPBytes)
            text.writeState(&w)
            w.byte(UInt8(ascii: " "))
            text.writeCommunityID(&w)
            if let trailing {
                w.byte(UInt8(ascii: " "))
                w.string(trailing)
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[..<w.count]))
        }
    }
}

/// The bidirectional flow table shared by the live sensor and `vigilctl flows`.
///
/// Flows are keyed by the 5-tuple in canonical order (ICMP: type/counterpart and echo id), so
/// both directions meet in one record. The originator is the sender of the first packet,
/// corrected as Zeek does: a SYN-ACK seen first, a later SYN from the other side, or (with no
/// SYN) a likely server port on the sender's side make the other side the originator.
///
/// Time is packet time (nanoseconds since the epoch); `expire(now:)` lets a live capture move
/// it forward when no packets arrive. Completed records queue up until `takeCompleted()`.
/// Memory is bounded by `maxFlows`.
public struct FlowTable: Sendable {
    public let configuration: FlowTableConfiguration
    public private(set) var statistics = FlowTableStatistics()
    private var index: FlowIndex
    private var records: FlowRecordStorage
    private var free: [Int32] = []
    /// Expiry lists, least recently seen first: TCP open, TCP closed, everything else.
    private var heads: [Int32] = [-1, -1, -1]
    private var tails: [Int32] = [-1, -1, -1]
    private var timeouts: [Int64]
    private let activeTimeout: Int64
    /// Reported records, with their metadata (if any) as it was when reported.
    private var completed: [(FlowRecord, FlowEndReason, FlowMetadata?)] = []
    /// No list head is due before this time, so `expire` has nothing to do until then.
    private var nextDeadline: Int64 = .max
    /// DNS and TLS metadata of the flows that have some (`FlowRecord.metadataSlot`; freed slots
    /// in `freeMetadata`): see the Metadata extension.
    private var metadata: [FlowMetadata] = []
    private var freeMetadata: [Int32] = []

    private static let tcpList: UInt8 = 0
    private static let closedList: UInt8 = 1
    private static let otherList: UInt8 = 2
    /// Marks a removed record, whose slot waits in `free`.
    private static let freeList: UInt8 = 3

    public init(configuration: FlowTableConfiguration = FlowTableConfiguration()) {
        self.configuration = configuration
        timeouts = [
            configuration.tcpIdleTimeout.nanoseconds, configuration.closedTimeout.nanoseconds,
            configuration.idleTimeout.nanoseconds,
        ]
        activeTimeout = configuration.activeTimeout?.nanoseconds ?? .max
        // The index grows as flows arrive (it is zeroed when made); the records' mapping is
        // reserved for the limit and committed as it fills.
        index = FlowIndex(capacity: min(max(configuration.maxFlows, 1), 65_536))
        records = FlowRecordStorage(capacity: max(configuration.maxFlows, 1))
    }

    /// Copy-on-write: the records live in a class, so a table whose records are shared (a
    /// copy of this value exists) copies them before changing anything.
    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&records) { records = records.copy() }
    }

    /// Counts `packet`, seen at `time`, towards its flow. With `frame` (the captured bytes
    /// `packet` was decoded from) and `configuration.metadata`, DNS and TLS ClientHello
    /// payloads add their metadata to the flow.
    public mutating func add(_ packet: DecodedPacket, at time: Int64, frame: UnsafeRawBufferPointer? = nil) {
        makeUnique()
        expire(now: time)
        let (key, sourceIsLow) = FlowKey.of(packet)
        let hash = index.hash(key)
        let slot: Int32
        var isNew = false
        if let existing = index.find(hash: hash, where: { records[Int($0)].key == key }) {
            slot = existing
        } else {
            slot = create(key: key, hash: hash, packet: packet, sourceIsLow: sourceIsLow, time: time)
            isNew = true
        }
        // `records[i]` addresses the record in place: no copy, no uniqueness check.
        let i = Int(slot)
        let isTCP = packet.proto == IPProtocol.tcp
        var fromOriginator = sourceIsLow == records[i].originatorIsLow
        if isTCP && !isNew {
            let flags = packet.tcpFlags & (TCPFlag.syn | TCPFlag.ack)
            let record = records[i]
            if (flags == TCPFlag.syn && !fromOriginator && !record.sawSYNFromOriginator)
                || (flags == TCPFlag.syn | TCPFlag.ack && fromOriginator && !record.sawSYNAckFromResponder
                    && !record.sawSYNFromOriginator)
            {
                records[i].flip()
                fromOriginator.toggle()
            }
        }
        if time &- records[i].first >= activeTimeout {
            statistics.activeTimeouts &+= 1
            report(records[i], reason: .active)
            records[i].restartCounters(at: time)
            // `last` may have moved back (packets out of order).
            lowerDeadline(for: slot)
        }
        if time > records[i].last { records[i].last = time }
        if fromOriginator {
            records[i].originatorPackets &+= 1
            records[i].originatorIPBytes &+= UInt64(packet.ipBytes)
            records[i].originatorPayload &+= UInt64(packet.payloadBytes)
            records[i].originatorFlags |= packet.tcpFlags
        } else {
            records[i].responderPackets &+= 1
            records[i].responderIPBytes &+= UInt64(packet.ipBytes)
            records[i].responderPayload &+= UInt64(packet.payloadBytes)
            records[i].responderFlags |= packet.tcpFlags
        }
        var list = records[i].list
        if isTCP {
            let flags = packet.tcpFlags
            if flags & (TCPFlag.syn | TCPFlag.ack) == TCPFlag.syn {
                if fromOriginator { records[i].sawSYNFromOriginator = true }
            } else if flags & (TCPFlag.syn | TCPFlag.ack) == TCPFlag.syn | TCPFlag.ack, !fromOriginator {
                records[i].sawSYNAckFromResponder = true
            }
            records[i].tcp.update(
                flags: flags,
                payload: packet.payloadBytes,
                fromOriginator: fromOriginator,
                isFirst: isNew
            )
            list = records[i].isTCPClosed ? Self.closedList : Self.tcpList
        }
        if configuration.metadata, let frame, packet.payloadOffset > 0 {
            inspectPayload(frame, of: packet, slot: i, fromOriginator: fromOriginator)
        }
        touch(slot, list: list)
    }

    /// Reports every flow idle for at least its timeout at `now` (Zeek's inactivity timers fire
    /// at exactly the timeout).
    public mutating func expire(now: Int64) {
        guard now >= nextDeadline else { return }
        makeUnique()
        for list in 0..<3 {
            let timeout = timeouts[list]
            while heads[list] >= 0 {
                let head = heads[list]
                guard now &- records[Int(head)].last >= timeout else { break }
                remove(head, reason: .idle)
            }
        }
        nextDeadline = .max
        for list in 0..<3 where heads[list] >= 0 {
            lowerDeadline(for: heads[list])
        }
    }

    /// Reports every flow still tracked (the capture ended), oldest first, and empties the
    /// table.
    public mutating func flush() {
        makeUnique()
        for slot in liveSlotsOldestFirst() { report(records[Int(slot)], reason: .flushed) }
        removeAllFlows()
    }

    /// `flush()`, handing the records to `body` one at a time as `takeCompleted(_:)` does
    /// (those completed earlier first), so the whole table is never queued at once.
    public mutating func flush(_ body: (CompletedFlow) -> Void) {
        takeCompleted(body)
        makeUnique()
        for slot in liveSlotsOldestFirst() {
            statistics.flowsReported &+= 1
            let record = records[Int(slot)]
            body(
                CompletedFlow(
                    record: record,
                    metadata: metadata(of: record),
                    reason: .flushed
                )
            )
        }
        removeAllFlows()
    }

    /// The records completed since the last call, in the order they completed.
    public mutating func takeCompleted() -> [(event: FlowEvent, reason: FlowEndReason)] {
        var taken: [(event: FlowEvent, reason: FlowEndReason)] = []
        taken.reserveCapacity(completed.count)
        takeCompleted { taken.append(($0.event, $0.reason)) }
        return taken
    }

    /// Hands the records completed since the last call to `body`, in the order they completed,
    /// without building an array of events.
    public mutating func takeCompleted(_ body: (CompletedFlow) -> Void) {
        defer { completed.removeAll(keepingCapacity: true) }
        for (record, reason, metadata) in completed {
            body(CompletedFlow(record: record, metadata: metadata, reason: reason))
        }
    }

    /// Whether records are waiting in `takeCompleted()`.
    public var hasCompleted: Bool { !completed.isEmpty }

    // MARK: - Internals

    /// The tracked flows' slots by first packet time (then slot): one pass over the records in
    /// storage order (not from record to record along the lists), sorted as plain pairs.
    private func liveSlotsOldestFirst() -> [Int32] {
        var live: [(first: Int64, slot: Int32)] = []
        live.reserveCapacity(index.count)
        for slot in 0..<records.count where records[slot].list != Self.freeList {
            live.append((records[slot].first, Int32(truncatingIfNeeded: slot)))
        }
        live.sort { ($0.first, $0.slot) < ($1.first, $1.slot) }
        return live.map(\.slot)
    }

    /// Forgets every flow at once (a flush reported them).
    private mutating func removeAllFlows() {
        records.removeAll()
        free.removeAll(keepingCapacity: true)
        index.removeAll()
        metadata.removeAll()
        freeMetadata.removeAll()
        heads = [-1, -1, -1]
        tails = [-1, -1, -1]
        nextDeadline = .max
        statistics.liveFlows = 0
    }

    private mutating func create(
        key: FlowKey,
        hash: UInt32,
        packet: DecodedPacket,
        sourceIsLow: Bool,
        time: Int64
    ) -> Int32 {
        if index.count >= max(configuration.maxFlows, 1) {
            evictOldest()
        }
        var originatorIsLow = sourceIsLow
        if Self.shouldFlipNewFlow(packet) { originatorIsLow.toggle() }
        var record = FlowRecord(key: key, originatorIsLow: originatorIsLow, time: time)
        record.icmpOneWay = packet.icmpOneWay
        record.list = packet.proto == IPProtocol.tcp ? Self.tcpList : Self.otherList
        let slot: Int32
        if let reused = free.popLast() {
            slot = reused
            records[Int(slot)] = record
        } else {
            slot = Int32(records.count)
            records.append(record)
        }
        index.insert(slot, hash: hash)
        append(slot, to: record.list)
        statistics.flowsCreated &+= 1
        statistics.liveFlows = index.count
        return slot
    }

    /// Whether the sender of a flow's first packet is probably the responder.
    static func shouldFlipNewFlow(_ packet: DecodedPacket) -> Bool {
        // A broadcast or multicast destination never originates (as in Zeek).
        if isBroadcastOrMulticast(packet.destination, family: packet.family) { return false }
        switch packet.proto {
        case IPProtocol.tcp:
            let synAck = packet.tcpFlags & (TCPFlag.syn | TCPFlag.ack)
            if synAck == TCPFlag.syn { return false }
            if synAck == TCPFlag.syn | TCPFlag.ack { return true }
            // Midstream: Zeek's heuristic on likely server ports.
            guard LikelyServerPorts.contains(packet.sourcePort) else { return false }
            if LikelyServerPorts.contains(packet.destinationPort) {
                return packet.sourcePort < packet.destinationPort
            }
            return true
        case IPProtocol.udp:
            return LikelyServerPorts.contains(packet.sourcePort) && !LikelyServerPorts.contains(packet.destinationPort)
        default:
            // ICMP included: Zeek keeps the first sender as originator, even for a reply.
            return false
        }
    }

    static func isBroadcastOrMulticast(_ address: IPAddressBits, family: UInt8) -> Bool {
        if family == 4 {
            return address.low == 0xFFFF_FFFF || address.low >> 28 == 0xE
        }
        return address.high >> 56 == 0xFF
    }

    private mutating func evictOldest() {
        var oldest: Int32 = -1
        for list in 0..<3 {
            let head = heads[list]
            if head >= 0, oldest < 0 || records[Int(head)].last < records[Int(oldest)].last {
                oldest = head
            }
        }
        guard oldest >= 0 else { return }
        statistics.evictions &+= 1
        remove(oldest, reason: .evicted)
    }

    /// The payload metadata gathered for `record`, if any.
    private func metadata(of record: FlowRecord) -> FlowMetadata? {
        record.metadataSlot >= 0 ? metadata[Int(record.metadataSlot)] : nil
    }

    private mutating func report(_ record: FlowRecord, reason: FlowEndReason) {
        statistics.flowsReported &+= 1
        completed.append((record, reason, metadata(of: record)))
    }

    private mutating func remove(_ slot: Int32, reason: FlowEndReason) {
        unlink(slot)
        let record = records[Int(slot)]
        records[Int(slot)].list = Self.freeList
        index.remove(slot, hash: index.hash(record.key))
        free.append(slot)
        statistics.liveFlows = index.count
        report(record, reason: reason)
        if record.metadataSlot >= 0 {
            metadata[Int(record.metadataSlot)] = FlowMetadata()
            freeMetadata.append(record.metadataSlot)
        }
    }

    /// Keeps `nextDeadline` at or before the expiry of `slot`, a new list head.
    @inline(__always)
    private mutating func lowerDeadline(for slot: Int32) {
        let record = records[Int(slot)]
        let timeout = timeouts[Int(record.list)]
        let (due, overflow) = record.last.addingReportingOverflow(timeout)
        let deadline = timeout <= 0 ? .min : overflow ? .max : due
        if deadline < nextDeadline { nextDeadline = deadline }
    }

    /// Moves `slot` to the tail (most recent) of `list`.
    @inline(__always)
    private mutating func touch(_ slot: Int32, list: UInt8) {
        if records[Int(slot)].list == list && tails[Int(list)] == slot { return }
        unlink(slot)
        records[Int(slot)].list = list
        append(slot, to: list)
    }

    private mutating func append(_ slot: Int32, to list: UInt8) {
        let l = Int(list)
        records[links: Int(slot)] = FlowRecordStorage.Link(previous: tails[l], next: -1)
        if tails[l] >= 0 {
            records[links: Int(tails[l])].next = slot
        } else {
            heads[l] = slot
            lowerDeadline(for: slot)
        }
        tails[l] = slot
    }

    private mutating func unlink(_ slot: Int32) {
        let l = Int(records[Int(slot)].list)
        let link = records[links: Int(slot)]
        if link.previous >= 0 {
            records[links: Int(link.previous)].next = link.next
        } else {
            heads[l] = link.next
            if link.next >= 0 { lowerDeadline(for: link.next) }
        }
        if link.next >= 0 { records[links: Int(link.next)].previous = link.previous } else { tails[l] = link.previous }
        records[links: Int(slot)] = FlowRecordStorage.Link()
    }
}

// MARK: - Metadata (DNS, TLS SNI)

extension FlowTable {
    /// The first TCP payload packets of the originator offered to the TLS parser, at most.
    static let inspectedPayloads: UInt8 = 3

    /// Hands a UDP port-53 payload to the DNS parser, and one of the originator's first TCP
    /// payloads to the TLS ClientHello parser; any other packet costs a branch or two.
    @inline(__always)
    fileprivate mutating func inspectPayload(
        _ frame: UnsafeRawBufferPointer,
        of packet: DecodedPacket,
        slot i: Int,
        fromOriginator: Bool
    ) {
        let offset = Int(packet.payloadOffset)
        guard offset < frame.count, packet.payloadBytes > 0 else { return }
        let payload = UnsafeRawBufferPointer(
            rebasing: frame[offset..<(offset + min(frame.count - offset, Int(packet.payloadBytes)))]
        )
        if packet.proto == IPProtocol.udp {
            guard packet.sourcePort == 53 || packet.destinationPort == 53 else { return }
            inspectDNS(payload, slot: i)
        } else if packet.proto == IPProtocol.tcp {
            guard fromOriginator, records[i].payloadsInspected < Self.inspectedPayloads else { return }
            records[i].payloadsInspected += 1
            if let name = TLSClientHello.serverName(in: payload) {
                records[i].payloadsInspected = Self.inspectedPayloads
                metadata[metadataSlot(of: i)].serverName = name
            }
        }
    }

    private mutating func inspectDNS(_ payload: UnsafeRawBufferPointer, slot i: Int) {
        let existing = Int(records[i].metadataSlot)
        var wantName = true
        if existing >= 0 {
            wantName = metadata[existing].dnsQuery == nil
            if !wantName && metadata[existing].dnsAnswers.count >= FlowMetadata.maxAnswers { return }
        }
        guard let message = DNSMessage.parse(payload, decodeName: wantName, maxAnswers: FlowMetadata.maxAnswers),
            message.queryName != nil || !message.answers.isEmpty
        else { return }
        let m = metadataSlot(of: i)
        if metadata[m].dnsQuery == nil { metadata[m].dnsQuery = message.queryName }
        for address in message.answers where metadata[m].dnsAnswers.count < FlowMetadata.maxAnswers {
            if !metadata[m].dnsAnswers.contains(address) { metadata[m].dnsAnswers.append(address) }
        }
    }

    /// The side-table slot of record `i`'s metadata, taken now if it has none.
    private mutating func metadataSlot(of i: Int) -> Int {
        if records[i].metadataSlot >= 0 { return Int(records[i].metadataSlot) }
        let slot: Int32
        if let reused = freeMetadata.popLast() {
            slot = reused
        } else {
            slot = Int32(metadata.count)
            metadata.append(FlowMetadata())
        }
        records[i].metadataSlot = slot
        return Int(slot)
    }
}

/// Ports a server probably listens on (a stand-in for Zeek's `likely_server_ports`, which its
/// analyzers fill): the well-known range, except the DHCP client port 68 (DHCP servers answer
/// from 67 to 68), and common registered service ports.
enum LikelyServerPorts {
    private static let registered: Set<UInt16> = [
        1080, 1194, 1433, 1521, 1723, 1812, 1813, 1883, 2049, 2181, 3128, 3260, 3306, 3389, 3478, 4500,
        5060, 5061, 5222, 5353, 5355, 5432, 5671, 5672, 5900, 6379, 6443, 6667, 6697, 8000, 8008, 8080,
        8443, 8883, 8888, 9000, 9092, 9200, 9418, 11211, 27017,
    ]

    static func contains(_ port: UInt16) -> Bool {
        (port > 0 && port < 1024 && port != 68) || registered.contains(port)
    }
}
