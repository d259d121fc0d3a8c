extension Event {
    /// The event as `JSONEncoder` with `.sortedKeys` and `.withoutEscapingSlashes` writes it,
    /// byte for byte (keys in UTF-8 order, absent optionals left out, `/` as it is, doubles as
    /// Swift prints them without a trailing `.0`), written directly instead of through
    /// `Codable`: the collector stores every event it receives in this form, and `JSONEncoder`
    /// was half of its CPU. `JSONDecoder` reads it back into an equal event (and reads rows
    /// stored before slashes were left unescaped alike).
    public var sortedKeysJSON: String {
        var writer = SortedKeysJSONWriter()
        writer.bytes.reserveCapacity(512)
        writer.event(self)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}

/// Writes `Event` JSON with the keys of the `Codable` conformances (Event.swift), each
/// object's keys in the order `JSONEncoder`'s `.sortedKeys` puts them (by their UTF-8 bytes),
/// strings as `.withoutEscapingSlashes` writes them.
/// The tests compare it with `JSONEncoder` on every kind of event and on hostile strings.
struct SortedKeysJSONWriter {
    var bytes: [UInt8] = []

    mutating func event(_ event: Event) {
        var o = ObjectState()
        // "alert" … "process" sort before "seq", "time", "type".
        switch event.payload {
        case .alert(let alert):
            key("alert", &o)
            self.alert(alert)
        case .file(let file):
            key("file", &o)
            self.file(file)
        case .flow(let flow):
            key("flow", &o)
            self.flow(flow)
        case .gap(let gap):
            key("gap", &o)
            self.gap(gap)
        case .health(let health):
            key("health", &o)
            self.health(health)
        case .process(let process):
            key("process", &o)
            self.process(process)
        }
        field("seq", event.seq, &o)
        field("time", event.time.nanosecondsSinceEpoch, &o)
        field("type", event.type.rawValue, &o)
        end(o)
    }

    // MARK: - Payloads (keys in UTF-8 order: upper case before lower case; nil fields left out)

    private mutating func file(_ f: FileEvent) {
        var o = ObjectState()
        field("Image", f.image, &o)
        field("ProcessId", f.processId, &o)
        field("SourceFilename", f.sourceFilename, &o)
        field("TargetFilename", f.targetFilename, &o)
        field("User", f.user, &o)
        field("action", f.action.rawValue, &o)
        field("hash_skipped", f.hashSkipped, &o)
        field("is_directory", f.isDirectory, &o)
        if let m = f.metadata {
            key("metadata", &o)
            var mo = ObjectState()
            field("gid", m.gid, &mo)
            field("inode", m.inode, &mo)
            field("mode", m.mode, &mo)
            field("size", m.size, &mo)
            field("uid", m.uid, &mo)
            end(mo)
        }
        field("sha256", f.sha256, &o)
        end(o)
    }

    private mutating func process(_ p: ProcessEvent) {
        var o = ObjectState()
        field("CommandLine", p.commandLine, &o)
        field("CurrentDirectory", p.currentDirectory, &o)
        field("Image", p.image, &o)
        field("ParentCommandLine", p.parentCommandLine, &o)
        field("ParentImage", p.parentImage, &o)
        field("ParentProcessId", p.parentProcessId, &o)
        field("ProcessId", p.processId, &o)
        field("User", p.user, &o)
        field("action", p.action.rawValue, &o)
        field("argv", p.argv, &o)
        field("comm", p.comm, &o)
        field("container_id", p.containerId, &o)
        field("euid", p.euid, &o)
        field("exit_code", p.exitCode, &o)
        field("gid", p.gid, &o)
        field("incomplete", p.incomplete, &o)
        field("login_uid", p.loginUid, &o)
        field("session_id", p.sessionId, &o)
        field("start_time_ticks", p.startTimeTicks, &o)
        field("tty", p.tty, &o)
        field("uid", p.uid, &o)
        end(o)
    }

    private mutating func flow(_ f: FlowEvent) {
        var o = ObjectState()
        field("Image", f.image, &o)
        field("ProcessId", f.processId, &o)
        field("community_id", f.communityID, &o)
        field("dns_answers", f.dnsAnswers, &o)
        field("dns_query", f.dnsQuery, &o)
        field("duration", f.duration, &o)
        field("orig_bytes", f.origBytes, &o)
        field("orig_h", f.origH, &o)
        field("orig_ip_bytes", f.origIPBytes, &o)
        field("orig_p", f.origP, &o)
        field("orig_pkts", f.origPkts, &o)
        field("orig_tcp_flags", f.origTCPFlags, &o)
        field("proto", f.proto, &o)
        field("resp_bytes", f.respBytes, &o)
        field("resp_h", f.respH, &o)
        field("resp_ip_bytes", f.respIPBytes, &o)
        field("resp_p", f.respP, &o)
        field("resp_pkts", f.respPkts, &o)
        field("resp_tcp_flags", f.respTCPFlags, &o)
        field("server_name", f.serverName, &o)
        field("state", f.state, &o)
        field("ts", f.ts, &o)
        end(o)
    }

    private mutating func alert(_ a: Alert) {
        var o = ObjectState()
        field("author", a.author, &o)
        field("detail", a.detail, &o)
        if let v = a.event {
            key("event", &o)
            event(v)
        }
        field("level", a.level, &o)
        field("origin", a.origin, &o)
        field("rule_id", a.ruleId, &o)
        field("suppressed_count", a.suppressedCount, &o)
        field("tags", a.tags, &o)
        field("title", a.title, &o)
        end(o)
    }

    private mutating func health(_ h: AgentHealth) {
        var o = ObjectState()
        if !h.attributes.isEmpty {
            key("attributes", &o)
            dictionary(h.attributes) { $0.string($1) }
        }
        key("counters", &o)
        dictionary(h.counters) { $0.unsigned($1) }
        field("kind", h.kind, &o)
        field("message", h.message, &o)
        end(o)
    }

    private mutating func gap(_ g: GapRecord) {
        var o = ObjectState()
        key("dropped_by_type", &o)
        dictionary(g.droppedByType) { $0.unsigned($1) }
        field("first_seq", g.firstSeq, &o)
        field("last_seq", g.lastSeq, &o)
        field("reason", g.reason, &o)
        end(o)
    }

    // MARK: - Members

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

    /// Closes an object (`{}` when it got no member).
    private mutating func end(_ state: ObjectState) {
        if state.empty { bytes.append(UInt8(ascii: "{")) }
        bytes.append(UInt8(ascii: "}"))
    }

    private mutating func field(_ name: StaticString, _ value: String?, _ state: inout ObjectState) {
        guard let value else { return }
        key(name, &state)
        string(value)
    }

    private mutating func field(_ name: StaticString, _ values: [String]?, _ state: inout ObjectState) {
        guard let values else { return }
        key(name, &state)
        strings(values)
    }

    private mutating func field<Integer: BinaryInteger>(
        _ name: StaticString,
        _ value: Integer?,
        _ state: inout ObjectState
    ) {
        guard let value else { return }
        key(name, &state)
        if Integer.isSigned {
            signed(Int64(value))
        } else {
            unsigned(UInt64(value))
        }
    }

    private mutating func field(_ name: StaticString, _ value: Bool, _ state: inout ObjectState) {
        key(name, &state)
        bytes += value ? "true".utf8 : "false".utf8
    }

    private mutating func field(_ name: StaticString, _ value: Double, _ state: inout ObjectState) {
        key(name, &state)
        double(value)
    }

    // MARK: - Values

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

    /// A JSON string as `JSONEncoder` with `.withoutEscapingSlashes` writes it: `"` and `\`
    /// escaped with a backslash, backspace, form feed, line feed, carriage return and tab as
    /// `\b` `\f` `\n` `\r` `\t`, other control characters as `\u00xx` (lower-case hex),
    /// everything else as it is. Most strings need no escape and are copied in one piece.
    private mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                if start < index { bytes += UnsafeBufferPointer(rebasing: utf8[start..<index]) }
                start = index + 1
                bytes.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(byte)
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
