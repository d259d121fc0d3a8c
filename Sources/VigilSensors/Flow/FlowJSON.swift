import VigilCore

extension FlowEvent {
    /// One JSON object on one line with DESIGN.md's field names (the same keys `Codable` uses,
    /// in Zeek's column order), written without `JSONEncoder` because offline runs print
    /// millions of these. `dns_query`, `dns_answers`, `server_name` (payload metadata) and
    /// `Image`/`ProcessId` appear when known.
    public var jsonLine: String {
        var s = "{\"ts\":"
        s += Self.fixed6(ts)
        s += ",\"duration\":" + Self.fixed6(duration)
        s += ",\"proto\":\"" + proto + "\""
        s += ",\"orig_h\":\"" + origH + "\",\"orig_p\":" + String(origP)
        s += ",\"resp_h\":\"" + respH + "\",\"resp_p\":" + String(respP)
        s += ",\"orig_pkts\":" + String(origPkts) + ",\"resp_pkts\":" + String(respPkts)
        s += ",\"orig_ip_bytes\":" + String(origIPBytes) + ",\"resp_ip_bytes\":" + String(respIPBytes)
        s += ",\"orig_bytes\":" + String(origBytes) + ",\"resp_bytes\":" + String(respBytes)
        s += ",\"orig_tcp_flags\":" + String(origTCPFlags) + ",\"resp_tcp_flags\":" + String(respTCPFlags)
        s += ",\"state\":\"" + state + "\",\"community_id\":\"" + communityID + "\""
        if let dnsQuery { s += ",\"dns_query\":" + Self.quoted(dnsQuery) }
        if let dnsAnswers { s += ",\"dns_answers\":[" + dnsAnswers.map(Self.quoted).joined(separator: ",") + "]" }
        if let serverName { s += ",\"server_name\":" + Self.quoted(serverName) }
        if let image { s += ",\"Image\":" + Self.quoted(image) }
        if let processId { s += ",\"ProcessId\":" + String(processId) }
        s += "}"
        return s
    }

    /// Seconds with exactly six decimals (microseconds), as Zeek logs them.
    public static func fixed6(_ value: Double) -> String {
        let micros = Int64((value * 1e6).rounded())
        let sign = micros < 0 ? "-" : ""
        let magnitude = micros.magnitude
        let fraction = String(magnitude % 1_000_000)
        return sign + String(magnitude / 1_000_000) + "." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }

    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
