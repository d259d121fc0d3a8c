import Foundation
import Glibc
import VigilCore
import VigilLinux
import VigilSensors

/// The shared reference corpus (`<repo>/../shared/corpora/pcaps`, see its README.md): Zeek and
/// suricata-verify captures with the records those tools are checked against.
enum Corpus {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let directory = repositoryRoot.deletingLastPathComponent()
        .appendingPathComponent("shared/corpora/pcaps").standardizedFileURL.path
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
        .path

    static var isPresent: Bool {
        FileManager.default.fileExists(atPath: directory + "/expected_normalized.jsonl")
    }

    /// One expected record of `expected_normalized.jsonl`.
    struct Expected {
        var source: String
        var pcap: String
        var expectedFile: String
        var record: [String: Any]
        /// Position among the records of the same expected file (for tuple-less records).
        var ordinal: Int

        func string(_ key: String) -> String? {
            switch record[key] {
            case let s as String: s
            case let n as NSNumber: n.stringValue
            default: nil
            }
        }
    }

    static func expectedRecords() throws -> [Expected] {
        let text = try String(contentsOfFile: directory + "/expected_normalized.jsonl", encoding: .utf8)
        var ordinals: [String: Int] = [:]
        var result: [Expected] = []
        for line in text.split(separator: "\n") where !line.isEmpty {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
            let file = object["expected_file"] as? String ?? ""
            let ordinal = ordinals[file, default: 0]
            ordinals[file] = ordinal + 1
            result.append(
                Expected(
                    source: object["source"] as? String ?? "",
                    pcap: (object["pcaps"] as? [String])?.first ?? "",
                    expectedFile: file,
                    record: object["record"] as? [String: Any] ?? [:],
                    ordinal: ordinal
                )
            )
        }
        return result
    }

    /// The `community-id-seed` of a suricata-verify test's own `suricata.yaml` (0 when unset).
    static func suricataCommunityIDSeed(_ expected: Expected) -> UInt16 {
        guard expected.source == "suricata-verify" else { return 0 }
        let yaml = directory + "/" + (expected.expectedFile as NSString).deletingLastPathComponent + "/suricata.yaml"
        guard let text = try? String(contentsOfFile: yaml, encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2, parts[0] == "community-id-seed", let seed = UInt16(parts[1]) { return seed }
        }
        return 0
    }

    /// Every capture file under the corpus, relative to it.
    static func captures() -> [String] {
        let enumerator = FileManager.default.enumerator(atPath: directory)
        var result: [String] = []
        while let path = enumerator?.nextObject() as? String {
            if path.hasSuffix(".pcap") || path.hasSuffix(".pcapng") { result.append(path) }
        }
        return result.sorted()
    }

    /// The link type of a capture, or nil when libpcap cannot open it.
    static func linkType(_ relative: String) -> Int32? {
        try? PcapFile(path: directory + "/" + relative).linkType
    }

    /// The flows of a capture through the library, in report order.
    static func flows(_ relative: String) throws -> [FlowEvent] {
        var flows: [FlowEvent] = []
        _ = try OfflineFlowReader().read(path: directory + "/" + relative) { flows.append($0.event) }
        return flows
    }
}

/// An IP address in canonical text form (`inet_pton` then `inet_ntop`), so Suricata's
/// expanded IPv6 matches the compressed form.
func canonicalAddress(_ text: String) -> String {
    var v4 = in_addr()
    var v6 = in6_addr()
    var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    if inet_pton(AF_INET, text, &v4) == 1 {
        _ = inet_ntop(AF_INET, &v4, &out, socklen_t(out.count))
    } else if inet_pton(AF_INET6, text, &v6) == 1 {
        _ = inet_ntop(AF_INET6, &v6, &out, socklen_t(out.count))
    } else {
        return text
    }
    return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The IP protocol number of one of our `proto` names.
func protocolNumber(_ proto: String) -> Int? {
    switch proto {
    case "tcp": 6
    case "udp": 17
    case "icmp": 1
    case "icmp6": 58
    case "sctp": 132
    default: Int(proto)
    }
}

/// Seconds since the epoch as Suricata writes them: `2009-10-16T16:44:16.083524+0000`.
func suricataTime(_ seconds: Double) -> String {
    let micros = Int64((seconds * 1e6).rounded())
    var t = time_t(micros / 1_000_000)
    var parts = tm()
    gmtime_r(&t, &parts)
    func pad(_ v: Int, _ width: Int) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }
    return "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))"
        + "T\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2))"
        + ".\(pad(Int(micros % 1_000_000), 6))+0000"
}
