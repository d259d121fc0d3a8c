import Testing
import VigilCore
import VigilSensors
import VigilTestSupport

/// Flow table behaviour on synthetic packets: direction, timeouts, the flow bound.
@Suite("Flow table")
struct FlowTableTests {
    private func tcp(
        _ src: UInt64,
        _ sport: UInt16,
        _ dst: UInt64,
        _ dport: UInt16,
        flags: UInt8,
        payload: UInt32 = 0
    ) -> DecodedPacket {
        var p = DecodedPacket()
        p.family = 4
        p.source = IPAddressBits(high: 0, low: src)
        p.destination = IPAddressBits(high: 0, low: dst)
        p.proto = IPProtocol.tcp
        p.sourcePort = sport
        p.destinationPort = dport
        p.tcpFlags = flags
        p.payloadBytes = payload
        p.ipBytes = 40 + payload
        return p
    }

    private let second: Int64 = 1_000_000_000
    private let client: UInt64 = 0x0A00_0001
    private let server: UInt64 = 0x0A00_0002

    @Test("a handshake seen from the SYN-ACK makes the SYN-ACK sender the responder; a full close is SF")
    func synAckFirst() {
        var table = FlowTable()
        table.add(tcp(server, 80, client, 40000, flags: TCPFlag.syn | TCPFlag.ack), at: 0)
        table.add(tcp(client, 40000, server, 80, flags: TCPFlag.ack), at: 1)
        table.add(tcp(client, 40000, server, 80, flags: TCPFlag.fin | TCPFlag.ack), at: 2)
        table.add(tcp(server, 80, client, 40000, flags: TCPFlag.fin | TCPFlag.ack), at: 3)
        table.flush()
        let flows = table.takeCompleted()
        #expect(flows.count == 1)
        let flow = flows[0].event
        #expect(flow.origH == "10.0.0.1" && flow.origP == 40000 && flow.respP == 80)
        #expect(flow.origPkts == 2 && flow.respPkts == 2)
        #expect(flow.respTCPFlags == TCPFlag.syn | TCPFlag.ack | TCPFlag.fin)
    }

    @Test("states: S0 for an unanswered SYN, REJ for SYN then RST, SF for a full session")
    func states() {
        var table = FlowTable()
        table.add(tcp(client, 1, server, 80, flags: TCPFlag.syn), at: 0)
        table.add(tcp(client, 2, server, 80, flags: TCPFlag.syn), at: 0)
        table.add(tcp(server, 80, client, 2, flags: TCPFlag.rst | TCPFlag.ack), at: 1)
        table.add(tcp(client, 3, server, 80, flags: TCPFlag.syn), at: 0)
        table.add(tcp(server, 80, client, 3, flags: TCPFlag.syn | TCPFlag.ack), at: 1)
        table.add(tcp(client, 3, server, 80, flags: TCPFlag.ack, payload: 10), at: 2)
        table.add(tcp(client, 3, server, 80, flags: TCPFlag.fin | TCPFlag.ack), at: 3)
        table.add(tcp(server, 80, client, 3, flags: TCPFlag.fin | TCPFlag.ack), at: 4)
        table.flush()
        let states = Dictionary(uniqueKeysWithValues: table.takeCompleted().map { ($0.event.origP, $0.event.state) })
        #expect(states == [1: "S0", 2: "REJ", 3: "SF"])
    }

    @Test("idle and active timeouts report flows; an active flow goes on with fresh counters")
    func timeouts() {
        var table = FlowTable(
            configuration: FlowTableConfiguration(
                tcpIdleTimeout: .seconds(10),
                idleTimeout: .seconds(10),
                activeTimeout: .seconds(30)
            )
        )
        // Ephemeral client ports, so the midstream port heuristic keeps the client as originator.
        table.add(tcp(client, 40001, server, 80, flags: TCPFlag.ack), at: 0)
        table.add(tcp(client, 40002, server, 80, flags: TCPFlag.ack), at: 0)
        for t in stride(from: 5, through: 35, by: 5) {
            table.add(tcp(client, 40002, server, 80, flags: TCPFlag.ack), at: Int64(t) * second)
        }
        let reported = table.takeCompleted()
        #expect(reported.map(\.reason) == [.idle, .active])
        // 40001 idle since 0, reported by the packet at 10 s; 40002 active since 0, reported at
        // 30 s with its packets at 0...25 s.
        #expect(reported[0].event.origP == 40001 && reported[0].event.origPkts == 1)
        #expect(reported[1].event.origP == 40002 && reported[1].event.origPkts == 6)
        table.expire(now: 50 * second)
        let later = table.takeCompleted()
        #expect(later.count == 1 && later[0].reason == .idle && later[0].event.origPkts == 2)
        #expect(table.statistics.liveFlows == 0)
    }

    @Test("the flow bound holds: the least recently seen flow is evicted and counted")
    func bound() {
        var table = FlowTable(configuration: FlowTableConfiguration(maxFlows: 100))
        for port in 1...1000 {
            table.add(tcp(client, UInt16(port), server, 80, flags: TCPFlag.syn), at: Int64(port))
            #expect(table.statistics.liveFlows <= 100)
        }
        #expect(table.statistics.evictions == 900)
        let evicted = table.takeCompleted()
        #expect(evicted.count == 900 && evicted.allSatisfy { $0.reason == .evicted })
        #expect(evicted.first?.event.origP == 1)
        table.flush()
        #expect(table.takeCompleted().count == 100)
    }

    @Test("under churn (evictions, idle expiry, table growth) every packet counts towards its own flow")
    func churn() {
        // 4000 UDP conversations, IPv4 and IPv6, some differing only in the high address half or
        // a port; the table holds 300, so records leave by eviction, idle and active timeout all
        // along and slots and index buckets are reused. Per conversation, the packets of all its
        // records must add up to what was sent: a lookup that found another flow's record
        // would move packets between conversations.
        var table = FlowTable(
            configuration: FlowTableConfiguration(maxFlows: 300, idleTimeout: .seconds(2), activeTimeout: .seconds(7))
        )
        var generator = SplitMix64(seed: 0xF10)
        var sent: [String: UInt64] = [:]
        var counted: [String: UInt64] = [:]
        func conversation(_ flow: FlowEvent) -> String {
            let a = "\(flow.origH)|\(flow.origP)"
            let b = "\(flow.respH)|\(flow.respP)"
            return a < b ? a + "-" + b : b + "-" + a
        }
        func collect() {
            for (flow, _) in table.takeCompleted() {
                counted[conversation(flow), default: 0] += flow.origPkts + flow.respPkts
            }
        }
        var time: Int64 = 0
        for _ in 0..<60_000 {
            // A fifth of the packets go to ten busy conversations, which outlive the active timeout.
            let n = generator.next() % 5 == 0 ? generator.next() % 10 : generator.next() % 4000
            var p = DecodedPacket()
            p.family = n % 5 == 0 ? 6 : 4
            // IPv6 groups all non-zero, so the printed form has no `::` to reproduce.
            let high: UInt64 = p.family == 6 ? 0x2001_0DB8_0001_0001 + (n % 3) : 0
            let low: UInt64 = p.family == 6 ? 0x0001_0001_0001_0001 : 0x0A00_0000
            p.source = IPAddressBits(high: high, low: low + n / 7)
            p.destination = IPAddressBits(high: high, low: low + 1)
            p.proto = IPProtocol.udp
            p.sourcePort = UInt16(20_000 + n % 7)
            p.destinationPort = 30_000
            if generator.next() % 2 == 0 {
                swap(&p.source, &p.destination)
                swap(&p.sourcePort, &p.destinationPort)
            }
            p.ipBytes = 28
            time += Int64(generator.next() % 1_000_000)
            table.add(p, at: time)
            let key = conversation(
                FlowEvent(
                    ts: 0,
                    duration: 0,
                    proto: "udp",
                    origH: Self.text(p.source, family: p.family),
                    origP: p.sourcePort,
                    respH: Self.text(p.destination, family: p.family),
                    respP: p.destinationPort
                )
            )
            sent[key, default: 0] += 1
            #expect(table.statistics.liveFlows <= 300)
            collect()
        }
        table.flush()
        collect()
        #expect(table.statistics.liveFlows == 0)
        #expect(table.statistics.evictions > 0 && table.statistics.activeTimeouts > 0)
        #expect(sent.count > 3000)
        #expect(counted == sent)
    }

    /// The address as the flow table prints it (dotted quad; IPv6 without zero groups).
    private static func text(_ address: IPAddressBits, family: UInt8) -> String {
        if family == 4 {
            let v = address.low
            return "\(v >> 24 & 255).\(v >> 16 & 255).\(v >> 8 & 255).\(v & 255)"
        }
        var groups: [UInt16] = []
        for half in [address.high, address.low] {
            for shift in stride(from: 48, through: 0, by: -16) {
                groups.append(UInt16(truncatingIfNeeded: half >> UInt64(shift)))
            }
        }
        return groups.map { String($0, radix: 16) }.joined(separator: ":")
    }
}
