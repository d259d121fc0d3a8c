extension Event {
    /// The event as `JSONEncoder` with `.sortedKeys` writes it, byte for byte (keys in UTF-8
    /// order, absent optionals left out, `/` escaped as `\/`, doubles as Swift prints them
    /// without a trailing `.0`), written directly instead of through `Codable`: the collector
    /// stores every event it receives in this form, and `JSONEncoder` was half of its CPU.
    /// `JSONDecoder` reads it back into an equal event.
    public var sortedKeysJSON: String {
        var writer = SortedKeysJSONWriter()
        writer.bytes.reserveCapacity(512)
        writer.event(self)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}

/// Writes `Event` JSON with the keys of the `Codable` conformances (Event.swift), each
/// object's keys in the order `JSONEncoder`'s `.sortedKeys` puts them (by their UTF-8 bytes).
/// The tests compare it with `JSONEncoder` on every kind of event and on hostile strings.
struct SortedKeysJSONWriter {
    var bytes: [UInt8] = []

    mutating func event(_ event: Event) {
        bytes.append(UInt8(ascii: "{"))
        // "alert" … "process" sort before "seq", "time", "type".
        switch event.payload {
        case .alert(let alert):
            bytes += #""alert":"#.utf8
            self.alert(alert)
        case .file(let file):
            bytes += #""file":"#.utf8
            self.file(file)
        case .flow(let flow):
            bytes += #""flow":"#.utf8
            self.flow(flow)
        case .gap(let gap):
            bytes += #""gap":"#.utf8
            self.gap(gap)
        case .health(let health):
            bytes += #""health":"#.utf8
            self.health(health)
        case .process(let process):
            bytes += #""process":"#.utf8
            self.process(process)
        }
        bytes += #","seq":"#.utf8
        unsigned(event.seq)
        bytes += #","time":"#.utf8
        signed(event.time.nanosecondsSinceEpoch)
        bytes += #","type":"#.utf8
        string(event.type.rawValue)
        bytes.append(UInt8(ascii: "}"))
    }

    // MARK: - Payloads (keys in UTF-8 order: upper case before lower case)

    private mutating func file(_ f: FileEvent) {
        var o = ObjectState()
        if let v = f.image {
            key("Image", &o)
            string(v)
        }
        if let v = f.processId {
            key("ProcessId", &o)
            unsigned(UInt64(v))
        }
        if let v = f.sourceFilename {
            key("SourceFilename", &o)
            string(v)
        }
        key("TargetFilename", &o)
        string(f.targetFilename)
        if let v = f.user {
            key("User", &o)
            string(v)
        }
        key("action", &o)
        string(f.action.rawValue)
        if let v = f.hashSkipped {
            key("hash_skipped", &o)
            string(v)
        }
        key("is_directory", &o)
        bool(f.isDirectory)
        if let m = f.metadata {
            key("metadata", &o)
            bytes += #"{"gid":"#.utf8
            unsigned(UInt64(m.gid))
            bytes += #","inode":"#.utf8
            unsigned(m.inode)
            bytes += #","mode":"#.utf8
            unsigned(UInt64(m.mode))
            bytes += #","size":"#.utf8
            unsigned(m.size)
            bytes += #","uid":"#.utf8
            unsigned(UInt64(m.uid))
            bytes.append(UInt8(ascii: "}"))
        }
        if let v = f.sha256 {
            key("sha256", &o)
            string(v)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    private mutating func process(_ p: ProcessEvent) {
        var o = ObjectState()
        if let v = p.commandLine {
            key("CommandLine", &o)
            string(v)
        }
        if let v = p.currentDirectory {
            key("CurrentDirectory", &o)
            string(v)
        }
        if let v = p.image {
            key("Image", &o)
            string(v)
        }
        if let v = p.parentCommandLine {
            key("ParentCommandLine", &o)
            string(v)
        }
        if let v = p.parentImage {
            key("ParentImage", &o)
            string(v)
        }
        if let v = p.parentProcessId {
            key("ParentProcessId", &o)
            unsigned(UInt64(v))
        }
        key("ProcessId", &o)
        unsigned(UInt64(p.processId))
        if let v = p.user {
            key("User", &o)
            string(v)
        }
        key("action", &o)
        string(p.action.rawValue)
        key("argv", &o)
        strings(p.argv)
        if let v = p.comm {
            key("comm", &o)
            string(v)
        }
        if let v = p.containerId {
            key("container_id", &o)
            string(v)
        }
        if let v = p.euid {
            key("euid", &o)
            unsigned(UInt64(v))
        }
        if let v = p.exitCode {
            key("exit_code", &o)
            signed(Int64(v))
        }
        if let v = p.gid {
            key("gid", &o)
            unsigned(UInt64(v))
        }
        key("incomplete", &o)
        bool(p.incomplete)
        if let v = p.loginUid {
            key("login_uid", &o)
            unsigned(UInt64(v))
        }
        if let v = p.sessionId {
            key("session_id", &o)
            unsigned(UInt64(v))
        }
        if let v = p.startTimeTicks {
            key("start_time_ticks", &o)
            unsigned(v)
        }
        if let v = p.tty {
            key("tty", &o)
            string(v)
        }
        if let v = p.uid {
            key("uid", &o)
            unsigned(UInt64(v))
        }
        bytes.append(UInt8(ascii: "}"))
    }

    private mutating func flow(_ f: FlowEvent) {
        var o = ObjectState()
        if let v = f.image {
            key("Image", &o)
            string(v)
        }
        if let v = f.processId {
            key("ProcessId", &o)
            unsigned(UInt64(v))
        }
        key("community_id", &o)
        string(f.communityID)
        if let v = f.dnsAnswers {
            key("dns_answers", &o)
            strings(v)
        }
        if let v = f.dnsQuery {
            key("dns_query", &o)
            string(v)
        }
        key("duration", &o)
        double(f.duration)
        key("orig_bytes", &o)
        unsigned(f.origBytes)
        key("orig_h", &o)
        string(f.origH)
        key("orig_ip_bytes", &o)
        unsigned(f.origIPBytes)
        key("orig_p", &o)
        unsigned(UInt64(f.origP))
        key("orig_pkts", &o)
        unsigned(f.origPkts)
        key("orig_tcp_flags", &o)
        unsigned(UInt64(f.origTCPFlags))
        key("proto", &o)
        string(f.proto)
        key("resp_bytes", &o)
        unsigned(f.respBytes)
        key("resp_h", &o)
        string(f.respH)
        key("resp_ip_bytes", &o)
        unsigned(f.respIPBytes)
        key("resp_p", &o)
        unsigned(UInt64(f.respP))
        key("resp_pkts", &o)
        unsigned(f.respPkts)
        key("resp_tcp_flags", &o)
        unsigned(UInt64(f.respTCPFlags))
        if let v = f.serverName {
            key("server_name", &o)
            string(v)
        }
        key("state", &o)
        string(f.state)
        key("ts", &o)
        double(f.ts)
        bytes.append(UInt8(ascii: "}"))
    }

    private mutating func alert(_ a: Alert) {
        var o = ObjectState()
        if let v = a.author {
            key("author", &o)
            string(v)
        }
        if let v = a.detail {
            key("detail", &o)
            string(v)
        }
        if let v = a.event {
            key("event", &o)
            event(v)
        }
        key("level", &o)
        string(a.level)
        if let v = a.origin {
            key("origin", &o)
            string(v)
        }
        key("rule_id", &o)
        string(a.ruleId)
        key("suppressed_count", &o)
        unsigned(a.suppressedCount)
        key("tags", &o)
        strings(a.tags)
        key("title", &o)
        string(a.title)
        bytes.append(UInt8(ascii: "}"))
    }

    private mutating func health(_ h: AgentHealth) {
        var o = ObjectState()
        if !h.attributes.isEmpty {
            key("attributes", &o)
            dictionary(h.attributes) { $0.string($1) }
        }
        key("counters", &o)
        dictionary(h.counters) { $0.unsigned($1) }
        key("kind", &o)
        string(h.kind)
        key("message", &o)
        string(h.message)
        bytes.append(UInt8(ascii: "}"))
    }

    private mutating func gap(_ g: GapRecord) {
        bytes += #"{"dropped_by_type":"#.utf8
        dictionary(g.droppedByType) { $0.unsigned($1) }
        bytes += #","first_seq":"#.utf8
        unsigned(g.firstSeq)
        bytes += #","last_seq":"#.utf8
        unsigned(g.lastSeq)
        bytes += #","reason":"#.utf8
        string(g.reason)
        bytes.append(UInt8(ascii: "}"))
    }

    // MARK: - Values

    /// Whether an object has a member yet: its opening brace comes with the first key.
    private struct ObjectState {
        var empty = true
    }

    private mutating func key(_ name: StaticString, _ state: inout ObjectState) {
        bytes.append(UInt8(ascii: state.empty ? "{" : ","))
        state.empty = false
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes += $0 }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    private mutating func dictionary<Value>(
        _ values: [String: Value],
        _ write: (inout SortedKeysJSONWriter, Value) -> Void
    ) {
        bytes.append(UInt8(ascii: "{"))
        let sorted = values.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        for (index, entry) in sorted.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            string(entry.key)
            bytes.append(UInt8(ascii: ":"))
            write(&self, entry.value)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    private mutating func strings(_ values: [String]) {
        bytes.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            string(value)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    private mutating func bool(_ value: Bool) {
        bytes += value ? "true".utf8 : "false".utf8
    }

    /// A finite double as `JSONEncoder` writes it: Swift's shortest round-trip form, without a
    /// trailing `.0` (`1`, `0.5`, `1e-05`, `1e+21`, `-0`). The wire decoder refuses NaN and
    /// infinities, so none reach here; were one to, it is written as `0`, not as invalid JSON.
    private mutating func double(_ value: Double) {
        guard value.isFinite else {
            bytes.append(UInt8(ascii: "0"))
            return
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        bytes += text.utf8
    }

    private mutating func signed(_ value: Int64) {
        if value < 0 {
            bytes.append(UInt8(ascii: "-"))
            unsigned(value.magnitude)
        } else {
            unsigned(UInt64(value))
        }
    }

    private mutating func unsigned(_ value: UInt64) {
        guard value >= 10 else {
            bytes.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value))
            return
        }
        var digits: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)  // 40 bytes ≥ 20 digits
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { buffer in
            while rest > 0 {
                buffer[39 - count] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
                rest /= 10
                count += 1
            }
            bytes += buffer[(40 - count)...]
        }
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") &+ nibble : UInt8(ascii: "a") &+ nibble &- 10
    }

    /// A JSON string as `JSONEncoder` writes it: `"`, `\` and `/` escaped with a backslash,
    /// backspace, form feed, line feed, carriage return and tab as `\b` `\f` `\n` `\r` `\t`,
    /// other control characters as `\u00xx` (lower-case hex), everything else as it is.
    private mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard
                    byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "/")
                else { continue }
                if start < index { bytes += UnsafeBufferPointer(rebasing: utf8[start..<index]) }
                start = index + 1
                bytes.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): bytes.append(byte)
                case 0x08: bytes.append(UInt8(ascii: "b"))
                case 0x0C: bytes.append(UInt8(ascii: "f"))
                case 0x0A: bytes.append(UInt8(ascii: "n"))
                case 0x0D: bytes.append(UInt8(ascii: "r"))
                case 0x09: bytes.append(UInt8(ascii: "t"))
                default:
                    bytes += "u00".utf8
                    bytes.append(Self.hexDigit(byte >> 4))
                    bytes.append(Self.hexDigit(byte & 0xF))
                }
            }
            if start < utf8.count { bytes += UnsafeBufferPointer(rebasing: utf8[start...]) }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
