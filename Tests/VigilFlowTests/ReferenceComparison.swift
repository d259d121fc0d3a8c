import Foundation
import Glibc
import VigilCore
import VigilSensors

/// One field where Vigil's flow differs from a reference record.
struct Difference: Hashable, Codable, Comparable {
    /// `<expected file> <tuple as the reference wrote it>` (or `#n` for tuple-less records).
    var record: String
    var field: String
    var ours: String
    var expected: String

    static func < (a: Difference, b: Difference) -> Bool {
        (a.record, a.field, a.ours, a.expected) < (b.record, b.field, b.ours, b.expected)
    }
}

/// A documented difference (the committed fixture).
struct KnownDifference: Codable {
    var record: String
    var field: String
    var ours: String
    var expected: String
    var reason: String

    var difference: Difference { Difference(record: record, field: field, ours: ours, expected: expected) }
}

struct UnsupportedCapture: Codable, Hashable {
    var pcap: String
    var reason: String
}

struct KnownDifferences: Codable {
    var unsupportedLinkTypes: [UnsupportedCapture]
    var differences: [KnownDifference]

    enum CodingKeys: String, CodingKey {
        case unsupportedLinkTypes = "unsupported_link_types"
        case differences
    }
}

/// Compares our flows of one capture with one reference record, by each reference's own
/// semantics (corpus README): Zeek for packets and IP bytes per direction, originator and
/// Community ID; Suricata for packets, start, end and TCP flags per direction.
struct ReferenceComparison {
    let expected: Corpus.Expected
    let flows: [FlowEvent]
    /// Among the records of the same file with the same tuple, which one this is (Zeek logs
    /// a new connection each time a closed or expired one is reused).
    var occurrence = 0
    var occurrences = 1
    /// The Community ID seed the reference ran with.
    var communityIDSeed: UInt16 = 0

    /// The endpoint view of a reference record: originator/client and responder/server.
    private struct Tuple {
        var originatorAddress: String?
        var originatorPort: Int?
        var responderAddress: String?
        var responderPort: Int?
        var proto: Int?
        var ignorePorts = false
    }

    private var tuple: Tuple {
        let e = expected
        if e.source == "zeek" {
            var t = Tuple()
            t.originatorAddress = e.string("id.orig_h").map(canonicalAddress)
            t.responderAddress = e.string("id.resp_h").map(canonicalAddress)
            t.originatorPort = e.string("id.orig_p").flatMap { Int($0) }
            t.responderPort = e.string("id.resp_p").flatMap { Int($0) }
            t.proto = e.string("ip_proto").flatMap { Int($0) }
            if t.proto == nil, let name = e.string("proto") {
                t.proto = ["tcp": 6, "udp": 17][name]
            }
            // Zeek logs port-less protocols (SCTP here) as unknown_transport with ports 0.
            t.ignorePorts = e.string("proto") == "unknown_transport" || e.string("proto") == "unknown"
            return t
        }
        var t = Tuple()
        t.originatorAddress = e.string("src_ip").map(canonicalAddress)
        t.responderAddress = e.string("dest_ip").map(canonicalAddress)
        t.originatorPort = e.string("src_port").flatMap { Int($0) }
        t.responderPort = e.string("dest_port").flatMap { Int($0) }
        t.proto = e.string("proto").flatMap { ["TCP": 6, "UDP": 17, "ICMP": 1, "IPV6-ICMP": 58][$0.uppercased()] }
        return t
    }

    var recordName: String {
        let t = tuple
        guard t.originatorAddress != nil || t.responderAddress != nil || t.responderPort != nil else {
            return "\(expected.expectedFile) #\(expected.ordinal)"
        }
        let o = "\(t.originatorAddress ?? "*"):\(t.originatorPort.map(String.init) ?? "*")"
        let r = "\(t.responderAddress ?? "*"):\(t.responderPort.map(String.init) ?? "*")"
        return "\(expected.expectedFile) \(o)>\(r)/\(t.proto.map(String.init) ?? "*")"
    }

    /// Whether `flow` has the reference's endpoints (in either order) and protocol.
    private func matches(_ flow: FlowEvent, _ t: Tuple) -> Bool {
        if let proto = t.proto, protocolNumber(flow.proto) != proto { return false }
        if t.proto == nil, expected.source == "zeek", let name = expected.string("proto"), name == "icmp",
            flow.proto != "icmp" && flow.proto != "icmp6"
        {
            return false
        }
        func side(_ address: String?, _ port: Int?, _ flowAddress: String, _ flowPort: UInt16) -> Bool {
            (address == nil || address == flowAddress) && (t.ignorePorts || port == nil || port == Int(flowPort))
        }
        let forward =
            side(t.originatorAddress, t.originatorPort, flow.origH, flow.origP)
            && side(t.responderAddress, t.responderPort, flow.respH, flow.respP)
        let backward =
            side(t.originatorAddress, t.originatorPort, flow.respH, flow.respP)
            && side(t.responderAddress, t.responderPort, flow.origH, flow.origP)
        return forward || backward
    }

    /// Fields this reference record lets us compare.
    private static let comparable: Set<String> = [
        "orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes", "community_id", "id.orig_h",
        "flow.pkts_toserver", "flow.pkts_toclient", "flow.start", "flow.end", "tcp.tcp_flags_ts", "tcp.tcp_flags_tc",
        "src_ip",
    ]

    func differences() -> [Difference] {
        guard !Self.comparable.isDisjoint(with: expected.record.keys) else { return [] }
        let t = tuple
        var candidates = flows.filter { matches($0, t) }
        if occurrences > 1, candidates.count == occurrences {
            candidates = [candidates.sorted { $0.ts < $1.ts }[occurrence]]
        }
        let name = recordName
        func diff(_ field: String, _ ours: String, _ theirs: String) -> Difference? {
            ours == theirs ? nil : Difference(record: name, field: field, ours: ours, expected: theirs)
        }
        guard let first = candidates.first else {
            return [Difference(record: name, field: "flow", ours: "missing", expected: "present")]
        }
        // Several records for one reference flow (ICMP echo ids, active timeouts): same
        // endpoints, so they add up; anything else is ambiguous.
        let sameEndpoints = candidates.allSatisfy {
            Set([$0.origH + "|" + String($0.origP), $0.respH + "|" + String($0.respP)])
                == Set([first.origH + "|" + String(first.origP), first.respH + "|" + String(first.respP)])
        }
        guard sameEndpoints else {
            return [Difference(record: name, field: "flow", ours: "\(candidates.count) flows", expected: "1 flow")]
        }
        // Orientation: does our originator equal the reference's?
        var forward = true
        if let address = t.originatorAddress {
            forward =
                address == first.origH
                && (t.ignorePorts || t.originatorPort == nil || t.originatorPort == Int(first.origP))
        } else if let port = t.responderPort {
            forward = port == Int(first.respP)
        }
        var origPkts: UInt64 = 0
        var respPkts: UInt64 = 0
        var origIP: UInt64 = 0
        var respIP: UInt64 = 0
        var origFlags: UInt8 = 0
        var respFlags: UInt8 = 0
        var start = Double.infinity
        var end = -Double.infinity
        for flow in candidates {
            let same = flow.origH == first.origH && flow.origP == first.origP
            let fo = same == forward
            origPkts += fo ? flow.origPkts : flow.respPkts
            respPkts += fo ? flow.respPkts : flow.origPkts
            origIP += fo ? flow.origIPBytes : flow.respIPBytes
            respIP += fo ? flow.respIPBytes : flow.origIPBytes
            origFlags |= fo ? flow.origTCPFlags : flow.respTCPFlags
            respFlags |= fo ? flow.respTCPFlags : flow.origTCPFlags
            start = min(start, flow.ts)
            end = max(end, flow.ts + flow.duration)
        }
        var result: [Difference?] = []
        if let address = t.originatorAddress, !forward {
            let theirs = "\(address):\(t.ignorePorts ? "*" : t.originatorPort.map(String.init) ?? "*")"
            result.append(diff("originator", "\(first.origH):\(first.origP)", theirs))
        }
        let e = expected
        if e.source == "zeek" {
            if let v = e.string("orig_pkts") { result.append(diff("orig_pkts", String(origPkts), v)) }
            if let v = e.string("resp_pkts") { result.append(diff("resp_pkts", String(respPkts), v)) }
            if let v = e.string("orig_ip_bytes") { result.append(diff("orig_ip_bytes", String(origIP), v)) }
            if let v = e.string("resp_ip_bytes") { result.append(diff("resp_ip_bytes", String(respIP), v)) }
        } else {
            if let v = e.string("flow.pkts_toserver") { result.append(diff("flow.pkts_toserver", String(origPkts), v)) }
            if let v = e.string("flow.pkts_toclient") { result.append(diff("flow.pkts_toclient", String(respPkts), v)) }
            if let v = e.string("flow.start") { result.append(diff("flow.start", suricataTime(start), v)) }
            if let v = e.string("flow.end") { result.append(diff("flow.end", suricataTime(end), v)) }
            if let v = e.string("tcp.tcp_flags_ts") { result.append(diff("tcp.tcp_flags_ts", hex(origFlags), v)) }
            if let v = e.string("tcp.tcp_flags_tc") { result.append(diff("tcp.tcp_flags_tc", hex(respFlags), v)) }
        }
        if let v = e.string("community_id") {
            let ours = Set(candidates.map { communityID($0, seed: communityIDSeed) }).sorted().joined(separator: ",")
            result.append(diff("community_id", ours, v))
        }
        return result.compactMap { $0 }
    }

    /// Our flow's Community ID, recomputed when the reference used another seed.
    private func communityID(_ flow: FlowEvent, seed: UInt16) -> String {
        guard seed != 0, let proto = protocolNumber(flow.proto) else { return flow.communityID }
        let family: UInt8 = flow.origH.contains(":") ? 6 : 4
        return CommunityID.compute(
            family: family,
            source: addressBits(flow.origH),
            destination: addressBits(flow.respH),
            proto: UInt8(proto),
            sourcePort: flow.origP,
            destinationPort: flow.respP,
            seed: seed
        )
    }

    private func hex(_ flags: UInt8) -> String {
        let s = String(flags, radix: 16)
        return s.count == 1 ? "0" + s : s
    }
}

/// The bits of a text address, as the decoder stores them.
func addressBits(_ text: String) -> IPAddressBits {
    var v4 = in_addr()
    if inet_pton(AF_INET, text, &v4) == 1 {
        return IPAddressBits(high: 0, low: UInt64(UInt32(bigEndian: v4.s_addr)))
    }
    var v6 = in6_addr()
    _ = inet_pton(AF_INET6, text, &v6)
    let halves = withUnsafeBytes(of: &v6) { raw in
        (
            UInt64(bigEndian: raw.loadUnaligned(as: UInt64.self)),
            UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        )
    }
    return IPAddressBits(high: halves.0, low: halves.1)
}
