/// Alerts as RFC 5424 syslog messages, one line each:
///
/// ```
/// <107>1 2026-11-28T13:25:55.123456Z web-1 vigil - ALERT [vigil@32473 rule="RULE-ID" level="high" agent="AGENT-ID"] Test file /evil.sh: create /srv/evil.sh
/// ```
///
/// | field | value |
/// | --- | --- |
/// | PRI | facility × 8 + severity. Facility 13 (log audit) by default: the alerts are audit records of the host, not authentication messages (facility 4), and a dedicated facility lets a relay route them apart. Severity from the rule level: critical 2, high 3, medium 4, low 5, informational 6; any other level 4 (warning), so an unexpected level is not buried |
/// | VERSION | `1` |
/// | TIMESTAMP | the alert's time, UTC with microseconds (`TIME-SECFRAC` at most 6 digits) |
/// | HOSTNAME | the agent's host name; characters outside printable US-ASCII dropped, at most 255; NILVALUE `-` when unknown |
/// | APP-NAME | `vigil` |
/// | PROCID | NILVALUE `-`: the exporter is not the process that raised the alert |
/// | MSGID | `ALERT` |
/// | STRUCTURED-DATA | `[vigil@32473 rule="…" level="…" agent="…"]`; in PARAM-VALUE `"`, `\` and `]` are escaped with `\` (RFC 5424 §6.3.3) |
/// | MSG | the rule title and, when known, the matched event as `vigilctl events` prints it (`...` for `…`). Pure ASCII is sent as is (MSG-ANY); anything else starts with a UTF-8 BOM, as MSG-UTF8 requires |
///
/// 32473 is the private enterprise number RFC 5612 reserves for documentation; a site that
/// registers its own can rewrite the SD-ID in its pipeline. Line breaks and other control
/// characters in values and in MSG become spaces, so one alert stays one line.
public enum Syslog {
    /// RFC 5424 facility 13, "log audit".
    public static let defaultFacility = 13
    /// The SD-ID of Vigil's structured data element.
    public static let structuredDataID = "vigil@32473"

    /// The RFC 5424 severity of a Sigma rule level.
    public static func severity(level: String) -> Int {
        switch level.lowercased() {
        case "critical": 2
        case "high": 3
        case "medium": 4
        case "low": 5
        case "informational": 6
        default: 4
        }
    }

    /// The PRI value: `facility * 8 + severity`.
    public static func priority(facility: Int, level: String) -> Int {
        facility * 8 + severity(level: level)
    }

    /// The syslog line of an alert event, or nil when the event is not an alert.
    /// - Parameters:
    ///   - event: an event whose payload is `.alert`.
    ///   - agentId: the agent that raised it (the `agent` SD-PARAM).
    ///   - hostname: the agent's host name; nil or empty writes NILVALUE.
    ///   - facility: 0-23; `defaultFacility` unless a site routes alerts elsewhere.
    public static func line(
        _ event: Event,
        agentId: String,
        hostname: String?,
        facility: Int = defaultFacility
    ) -> String? {
        guard case .alert(let alert) = event.payload else { return nil }
        precondition((0...23).contains(facility), "syslog facilities are 0-23")
        let host = hostname.map(headerField(_:)) ?? "-"
        let params = [("rule", alert.ruleId), ("level", alert.level), ("agent", agentId)]
            .map { "\($0.0)=\"\(escapeParamValue($0.1))\"" }
            .joined(separator: " ")
        var message = alert.title
        if let matched = alert.event {
            // Vigil's own text stays ASCII, so only non-ASCII data brings the BOM.
            message += ": " + asciiEllipses(EventFormatter.summary(matched.payload))
        }
        message = String(String.UnicodeScalarView(message.unicodeScalars.map(flattenControl)))
        if !message.unicodeScalars.allSatisfy(\.isASCII) { message = "\u{FEFF}" + message }
        return "<\(priority(facility: facility, level: alert.level))>1 \(event.time.iso8601) \(host) vigil - ALERT "
            + "[\(structuredDataID) \(params)] \(message)"
    }

    /// Escapes an SD-PARAM value: `"`, `\` and `]` get a backslash (RFC 5424 §6.3.3); control
    /// characters become spaces.
    public static func escapeParamValue(_ value: String) -> String {
        var out = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"", "\\", "]":
                out += "\\"
                out.unicodeScalars.append(scalar)
            default: out.unicodeScalars.append(flattenControl(scalar))
            }
        }
        return out
    }

    /// A header field (HOSTNAME): printable US-ASCII only (33-126), at most 255 characters;
    /// NILVALUE when nothing is left.
    public static func headerField(_ value: String) -> String {
        let kept = String(String.UnicodeScalarView(value.unicodeScalars.filter { (33...126).contains($0.value) }))
        return kept.isEmpty ? "-" : String(kept.prefix(255))
    }

    static func asciiEllipses(_ s: String) -> String {
        s.split(separator: "…", omittingEmptySubsequences: false).joined(separator: "...")
    }

    static func flattenControl(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
        scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value) ? " " : scalar
    }
}
