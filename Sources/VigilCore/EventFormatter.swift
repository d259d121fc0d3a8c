/// Renders events as one readable line each, for terminals (`vigilctl events`, `vigild --demo`).
public enum EventFormatter {
    public static func line(_ event: Event, agentId: String? = nil) -> String {
        var parts: [String] = [event.time.iso8601]
        if let agentId { parts.append(String(agentId.prefix(8))) }
        parts.append("#\(event.seq)")
        parts.append(event.type.rawValue.padded(7))
        parts.append(summary(event.payload))
        return parts.joined(separator: " ")
    }

    public static func summary(_ payload: Event.Payload) -> String {
        switch payload {
        case .file(let f):
            var s = "\(f.action.rawValue.padded(6)) \(f.targetFilename)"
            if let src = f.sourceFilename { s = "\(f.action.rawValue.padded(6)) \(src) -> \(f.targetFilename)" }
            if let md = f.metadata {
                s += " mode=\(octal(md.permissions)) uid=\(md.uid) gid=\(md.gid) size=\(md.size)"
                if md.isSetUID { s += " SETUID" }
            }
            if let h = f.sha256 { s += " sha256=\(h.prefix(16))…" }
            if let image = f.image { s += " by \(image)" + (f.processId.map { "[\($0)]" } ?? "") }
            return s
        case .process(let p):
            var s = "\(p.action.rawValue) pid=\(p.processId)"
            if let image = p.image { s += " \(image)" }
            if let cmd = p.commandLine { s += " \"\(cmd)\"" }
            if let user = p.user { s += " user=\(user)" }
            if p.incomplete { s += " (incomplete)" }
            return s
        case .flow(let f):
            return
                "\(f.proto) \(f.origH):\(f.origP) -> \(f.respH):\(f.respP) pkts=\(f.origPkts)/\(f.respPkts) bytes=\(f.origIPBytes)/\(f.respIPBytes) \(f.state)"
        case .alert(let a):
            var s = "[\(a.level)] \(a.title) (rule \(a.ruleId))"
            if !a.tags.isEmpty { s += " " + a.tags.joined(separator: ",") }
            if let e = a.event { s += " ← " + summary(e.payload) }
            if let origin = a.origin { s += " (raised by the \(origin)" + (a.detail.map { ": \($0)" } ?? "") + ")" }
            return s
        case .health(let h):
            let counters = h.counters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let attributes = h.attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            let fields = (attributes + (counters.isEmpty ? [] : [counters])).joined(separator: " ")
            return "\(h.kind): \(h.message)" + (fields.isEmpty ? "" : " [\(fields)]")
        case .gap(let g):
            return "GAP seq \(g.firstSeq)-\(g.lastSeq) dropped (\(g.reason))"
        }
    }

    static func octal(_ v: UInt32) -> String {
        let s = String(v, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }
}

extension String {
    /// Pads with spaces on the right to `width` characters (longer strings are left as they are).
    public func padded(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
