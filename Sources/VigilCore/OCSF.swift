/// Vigil events as OCSF 1.1.0 records (the Open Cybersecurity Schema Framework), one JSON object
/// each, so SIEM pipelines (Vector, Fluent Bit, Elastic, Security Lake) take them without custom
/// parsing. A pure mapping: no I/O, same input, same output (keys sorted).
///
/// | Vigil event | OCSF class (`class_uid`) | `category_uid` | `activity_id` |
/// | --- | --- | --- | --- |
/// | file `create` | File System Activity (1001) | 1 System Activity | 1 Create |
/// | file `modify` (closed after write) | File System Activity (1001) | 1 | 3 Update |
/// | file `delete` | File System Activity (1001) | 1 | 4 Delete |
/// | file `rename` | File System Activity (1001) | 1 | 5 Rename: `file` the old name, `file_result` the new |
/// | file `attrib` | File System Activity (1001) | 1 | 6 Set Attributes |
/// | process `exec` | Process Activity (1007) | 1 | 1 Launch (`actor.process` the parent) |
/// | process `exit` | Process Activity (1007) | 1 | 2 Terminate, with `exit_code` |
/// | process `ptrace` | Process Activity (1007) | 1 | 3 Open (`actor.process` the tracer, `process` the tracee) |
/// | process `uid_change` | Process Activity (1007) | 1 | 5 Set User ID |
/// | process `fork`, `gid_change`, `sid_change`, `comm_change` | Process Activity (1007) | 1 | 99 Other (`activity_name` says which) |
/// | flow | Network Activity (4001) | 4 Network Activity | 6 Traffic (a summary of the whole connection); 5 Refuse for Zeek state `REJ` |
/// | alert | Detection Finding (2004) | 2 Findings | 1 Create |
/// | health | Base Event (0) | 0 Uncategorized | 99 Other |
/// | gap | Base Event (0) | 0 Uncategorized | 99 Other, `severity_id` 3 Medium (events were lost) |
///
/// A fork starts no new program, so it is not a Launch: process-launch content sees exactly the
/// execs, as with Sysmon's process creation. Health and gap records go to the generic Base Event
/// rather than being skipped, so a SIEM sees an agent's drops and restarts in the same stream
/// (filter them with `--type` if unwanted).
///
/// Every record has `class_uid`, `category_uid`, `activity_id`, `type_uid` (= `class_uid` × 100
/// + `activity_id`), their captions (`class_name`, `category_name`, `activity_name`,
/// `type_name`), `time` (milliseconds since the epoch), `severity_id` (1 Informational; alerts
/// by rule level: informational 1, low 2, medium 3, high 4, critical 5, anything else 0 Unknown),
/// `message` (the line `vigilctl events` prints), and:
///
/// | attribute | from |
/// | --- | --- |
/// | `metadata.product` | `{name: "Vigil", vendor_name: "Vigil", version: VigilVersion}` |
/// | `metadata.version` | `"1.1.0"`, the OCSF schema version |
/// | `metadata.uid`, `metadata.sequence` | `AGENT_ID:SEQ`, and the event's `seq` |
/// | `device` | `{uid: agent id, hostname (when known), type_id: 0, os: {name: "Linux", type_id: 200}}` |
/// | `file` | `{path, name, parent_folder, type_id (1 regular, 2 folder, 3 char device, 4 block device, 5 socket, 6 pipe, 7 symlink, from st_mode), size, owner {uid}, hashes [{algorithm_id: 3, algorithm: "SHA-256", value}]}` |
/// | `actor` (file) | `{process {pid, file {path, name}, user {name}}, user {name}}` when attributed, else absent |
/// | `process` | `{pid, name (comm, else the image's base name), cmd_line, file {path, name}, user {name, uid}, parent_process {pid, cmd_line, file {path, name}}}` |
/// | `exit_code` | the exit status of an `exit` |
/// | `src_endpoint`, `dst_endpoint` | `{ip, port}` of the originator (`orig_h`, `orig_p`) and responder; no ports for ICMP |
/// | `connection_info` | `{protocol_name (tcp, udp, icmp, ipv6-icmp), protocol_num, protocol_ver_id (4 or 6), direction_id: 0 Unknown, community_uid}` |
/// | `traffic` | `{bytes_out, bytes_in, bytes, packets_out, packets_in, packets}`: out = originator → responder, IP bytes (`orig_ip_bytes`) |
/// | `start_time`, `end_time`, `duration` | a flow's first packet, last packet, and their distance (ms) |
/// | `tls` | `{sni}`: a flow's TLS server name (`server_name`), when it has one |
/// | `finding_info` | `{uid: AGENT_ID:SEQ, title, analytic {uid: rule id, name: title, type_id: 1 Rule}, attacks [{technique {uid: "T1059.004"}}] from tags `attack.tNNNN[.NNN]`, related_events [{uid, type_uid}] of the matched event}` |
/// | `evidences` | one artifact with the matched event's `actor`, `file` (for a rename, the new name), `process`, `src_endpoint`, `dst_endpoint`, `connection_info` |
///
/// Whatever OCSF 1.1 has no attribute for that we are sure of goes to `unmapped`, under Vigil's
/// own JSON names: a file's `mode` (octal), `gid`, `inode`, `hash_skipped`; a process's `argv`,
/// `CurrentDirectory`, `euid`, `gid`, `tty`, `login_uid`, `session_id`, `container_id`,
/// `start_time_ticks`, `incomplete`; a flow's `state`, TCP flags, payload bytes, attribution
/// (`Image`, `ProcessId`) and DNS metadata (`dns_query`, `dns_answers`: Network Activity has no
/// DNS attribute; DNS Activity is one record per query, not per flow); an alert's `tags`, `author`, `suppressed_count`; a health record's
/// `kind` and `counters`; a gap's seq range, counts and reason.
///
/// Not mapped: the direction of a flow (the agent does not record which side is local), ATT&CK
/// tactics (`attack.execution` tags), and the time the collector stored the event.
public enum OCSF {
    /// The OCSF schema version the records follow (`metadata.version`).
    public static let schemaVersion = "1.1.0"

    /// A JSON value, written with sorted keys so equal records are equal lines.
    public indirect enum Value: Hashable, Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
        ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
    {
        case string(String)
        case int(Int64)
        case bool(Bool)
        case array([Value])
        case object([String: Value])

        public init(stringLiteral value: String) { self = .string(value) }
        public init(integerLiteral value: Int64) { self = .int(value) }
        public init(booleanLiteral value: Bool) { self = .bool(value) }
        public init(arrayLiteral elements: Value...) { self = .array(elements) }
        public init(dictionaryLiteral elements: (String, Value)...) {
            self = .object(Dictionary(elements, uniquingKeysWith: { first, _ in first }))
        }

        /// An unsigned count, clamped to the largest JSON-safe signed 64-bit integer.
        static func count(_ v: UInt64) -> Value { .int(Int64(clamping: v)) }

        /// Compact JSON text, keys sorted, slashes and non-ASCII characters left as they are.
        public var json: String {
            var out = ""
            write(to: &out)
            return out
        }

        func write(to out: inout String) {
            switch self {
            case .string(let s): JSONString.append(s, to: &out, escapingDelete: true)
            case .int(let i): out += String(i)
            case .bool(let b): out += b ? "true" : "false"
            case .array(let items):
                out += "["
                for (i, item) in items.enumerated() {
                    if i > 0 { out += "," }
                    item.write(to: &out)
                }
                out += "]"
            case .object(let members):
                out += "{"
                for (i, key) in members.keys.sorted().enumerated() {
                    if i > 0 { out += "," }
                    JSONString.append(key, to: &out, escapingDelete: true)
                    out += ":"
                    members[key]!.write(to: &out)
                }
                out += "}"
            }
        }

        /// The member `key` of an object.
        public subscript(key: String) -> Value? {
            guard case .object(let members) = self else { return nil }
            return members[key]
        }
    }

    /// The OCSF record of one stored event.
    /// - Parameters:
    ///   - event: the event.
    ///   - agentId: the agent that recorded it (`device.uid`, part of `metadata.uid`).
    ///   - hostname: the agent's host name as enrolled (`device.hostname`); nil leaves it out.
    public static func record(_ event: Event, agentId: String, hostname: String?) -> Value {
        var r: [String: Value] = [
            "time": .int(milliseconds(event.time)),
            "message": .string(EventFormatter.summary(event.payload)),
            "metadata": [
                "product": ["name": "Vigil", "vendor_name": "Vigil", "version": .string(VigilVersion.string)],
                "version": .string(schemaVersion),
                "uid": .string(uid(of: event, agentId: agentId)),
                "sequence": .count(event.seq),
            ],
            "device": object([
                ("uid", .string(agentId)),
                ("hostname", hostname.flatMap { $0.isEmpty ? nil : .string($0) }),
                ("type_id", 0),
                ("type", "Unknown"),
                ("os", ["name": "Linux", "type_id": 200, "type": "Linux"]),
            ]),
        ]
        let classification: Classification
        var severity: (id: Int64, name: String) = (1, "Informational")
        switch event.payload {
        case .file(let f):
            classification = fileClass(f.action)
            r.merge(fileObjects(f)) { _, new in new }
        case .process(let p):
            classification = processClass(p.action)
            r.merge(processObjects(p)) { _, new in new }
        case .flow(let f):
            classification = Classification(
                classUID: 4001,
                className: "Network Activity",
                categoryUID: 4,
                categoryName: "Network Activity",
                activity: f.state == "REJ" ? (5, "Refuse") : (6, "Traffic")
            )
            r.merge(flowObjects(f)) { _, new in new }
        case .alert(let a):
            classification = Classification(
                classUID: 2004,
                className: "Detection Finding",
                categoryUID: 2,
                categoryName: "Findings",
                activity: (1, "Create")
            )
            severity = alertSeverity(a.level)
            r["message"] = .string(a.title)
            r.merge(findingObjects(a, agentId: agentId, uid: uid(of: event, agentId: agentId))) { _, new in new }
        case .health(let h):
            classification = .base
            var unmapped: [String: Value] = [
                "kind": .string(h.kind),
                "counters": .object(h.counters.mapValues { .count($0) }),
            ]
            if !h.attributes.isEmpty { unmapped["attributes"] = .object(h.attributes.mapValues { .string($0) }) }
            r["unmapped"] = .object(unmapped)
        case .gap(let g):
            classification = .base
            severity = (3, "Medium")
            r["unmapped"] = [
                "first_seq": .count(g.firstSeq),
                "last_seq": .count(g.lastSeq),
                "dropped_by_type": .object(g.droppedByType.mapValues { .count($0) }),
                "reason": .string(g.reason),
            ]
        }
        r["class_uid"] = .int(classification.classUID)
        r["class_name"] = .string(classification.className)
        r["category_uid"] = .int(classification.categoryUID)
        r["category_name"] = .string(classification.categoryName)
        r["activity_id"] = .int(classification.activity.id)
        r["activity_name"] = .string(classification.activity.name)
        r["type_uid"] = .int(classification.classUID * 100 + classification.activity.id)
        r["type_name"] = .string("\(classification.className): \(classification.activity.name)")
        r["severity_id"] = .int(severity.id)
        r["severity"] = .string(severity.name)
        return .object(r)
    }

    /// The record as one line of NDJSON (no trailing newline).
    public static func line(_ event: Event, agentId: String, hostname: String?) -> String {
        record(event, agentId: agentId, hostname: hostname).json
    }

    // MARK: Classes and activities

    struct Classification {
        var classUID: Int64
        var className: String
        var categoryUID: Int64
        var categoryName: String
        var activity: (id: Int64, name: String)

        static let base = Classification(
            classUID: 0,
            className: "Base Event",
            categoryUID: 0,
            categoryName: "Uncategorized",
            activity: (99, "Other")
        )
    }

    static func fileClass(_ action: FileEvent.Action) -> Classification {
        let activity: (Int64, String) =
            switch action {
            case .create: (1, "Create")
            case .modify: (3, "Update")
            case .delete: (4, "Delete")
            case .rename: (5, "Rename")
            case .attrib: (6, "Set Attributes")
            }
        return Classification(
            classUID: 1001,
            className: "File System Activity",
            categoryUID: 1,
            categoryName: "System Activity",
            activity: activity
        )
    }

    static func processClass(_ action: ProcessEvent.Action) -> Classification {
        let activity: (Int64, String) =
            switch action {
            case .exec: (1, "Launch")
            case .exit: (2, "Terminate")
            case .ptrace: (3, "Open")
            case .uidChange: (5, "Set User ID")
            case .fork: (99, "Fork")
            case .gidChange: (99, "Set Group ID")
            case .sidChange: (99, "Set Session ID")
            case .commChange: (99, "Rename")
            }
        return Classification(
            classUID: 1007,
            className: "Process Activity",
            categoryUID: 1,
            categoryName: "System Activity",
            activity: activity
        )
    }

    /// OCSF `severity_id` and caption of a Sigma rule level.
    public static func alertSeverity(_ level: String) -> (id: Int64, name: String) {
        switch level.lowercased() {
        case "informational": (1, "Informational")
        case "low": (2, "Low")
        case "medium": (3, "Medium")
        case "high": (4, "High")
        case "critical": (5, "Critical")
        default: (0, "Unknown")
        }
    }

    // MARK: Objects

    static func fileObjects(_ f: FileEvent) -> [String: Value] {
        var r: [String: Value] = [:]
        var target = fileObject(path: f.targetFilename, isDirectory: f.isDirectory, metadata: f.metadata)
        if let sha256 = f.sha256, case .object(var members) = target {
            members["hashes"] = [["algorithm_id": 3, "algorithm": "SHA-256", "value": .string(sha256)]]
            target = .object(members)
        }
        if let source = f.sourceFilename {
            r["file"] = fileObject(path: source, isDirectory: f.isDirectory, metadata: nil)
            r["file_result"] = target
        } else {
            r["file"] = target
        }
        if f.image != nil || f.processId != nil || f.user != nil {
            let user: Value? = f.user.map { ["name": .string($0)] }
            r["actor"] = object([
                (
                    "process",
                    object([
                        ("pid", f.processId.map { .int(Int64($0)) }),
                        ("file", f.image.map { executable($0) }),
                        ("user", user),
                    ])
                ),
                ("user", user),
            ])
        }
        var unmapped: [(String, Value?)] = [("hash_skipped", f.hashSkipped.map { .string($0) })]
        if let md = f.metadata {
            unmapped += [
                ("mode", .string(EventFormatter.octal(md.permissions))),
                ("gid", .int(Int64(md.gid))),
                ("inode", .count(md.inode)),
            ]
        }
        if case .object(let members) = object(unmapped), !members.isEmpty { r["unmapped"] = .object(members) }
        return r
    }

    static func fileObject(path: String, isDirectory: Bool, metadata: FileMetadata?) -> Value {
        var typeID: Int64 = isDirectory ? 2 : (metadata == nil ? 0 : 1)
        var typeName = isDirectory ? "Folder" : (metadata == nil ? "Unknown" : "Regular File")
        if let md = metadata {
            (typeID, typeName) =
                switch md.mode & 0o170000 {
                case 0o100000: (1, "Regular File")
                case 0o040000: (2, "Folder")
                case 0o020000: (3, "Character Device")
                case 0o060000: (4, "Block Device")
                case 0o140000: (5, "Local Socket")
                case 0o010000: (6, "Named Pipe")
                case 0o120000: (7, "Symbolic Link")
                default: (99, "Other")
                }
        }
        let (parent, name) = split(path)
        return object([
            ("path", .string(path)),
            ("name", .string(name)),
            ("parent_folder", parent.map { .string($0) }),
            ("type_id", .int(typeID)),
            ("type", .string(typeName)),
            ("size", metadata.map { .count($0.size) }),
            ("owner", metadata.map { ["uid": .string(String($0.uid))] }),
        ])
    }

    /// A process's executable as an OCSF file object.
    static func executable(_ path: String) -> Value {
        ["path": .string(path), "name": .string(split(path).name), "type_id": 1, "type": "Regular File"]
    }

    static func processObjects(_ p: ProcessEvent) -> [String: Value] {
        let user: Value? =
            p.user == nil && p.uid == nil
            ? nil
            : object([("name", p.user.map { .string($0) }), ("uid", p.uid.map { .string(String($0)) })])
        // For ptrace the parent fields name the tracer, not the parent.
        let parent: Value? = p.parentProcessId.map { ppid in
            object([
                ("pid", .int(Int64(ppid))),
                ("cmd_line", p.parentCommandLine.map { .string($0) }),
                ("file", p.parentImage.map { executable($0) }),
            ])
        }
        let process = object([
            ("pid", .int(Int64(p.processId))),
            ("name", (p.comm ?? p.image.map { split($0).name }).map { .string($0) }),
            ("cmd_line", p.commandLine.map { .string($0) }),
            ("file", p.image.map { executable($0) }),
            ("user", user),
            ("parent_process", p.action == .ptrace ? nil : parent),
        ])
        var r: [String: Value] = ["process": process]
        let actorProcess: Value =
            switch p.action {
            case .exec, .fork, .ptrace: parent ?? process
            case .exit, .uidChange, .gidChange, .sidChange, .commChange: process
            }
        r["actor"] = object([("process", actorProcess), ("user", p.action == .ptrace ? nil : user)])
        if p.action == .exit, let code = p.exitCode { r["exit_code"] = .int(Int64(code)) }
        let unmapped = object([
            ("argv", p.argv.isEmpty ? nil : .array(p.argv.map { .string($0) })),
            ("CurrentDirectory", p.currentDirectory.map { .string($0) }),
            ("euid", p.euid.map { .int(Int64($0)) }),
            ("gid", p.gid.map { .int(Int64($0)) }),
            ("tty", p.tty.map { .string($0) }),
            ("login_uid", p.loginUid.map { .int(Int64($0)) }),
            ("session_id", p.sessionId.map { .int(Int64($0)) }),
            ("container_id", p.containerId.map { .string($0) }),
            ("start_time_ticks", p.startTimeTicks.map { .count($0) }),
            ("incomplete", p.incomplete ? true : nil),
        ])
        if case .object(let members) = unmapped, !members.isEmpty { r["unmapped"] = unmapped }
        return r
    }

    static func flowObjects(_ f: FlowEvent) -> [String: Value] {
        let protocolNumber: Int64? =
            switch f.proto {
            case "tcp": 6
            case "udp": 17
            case "icmp": 1
            case "icmp6": 58
            default: Int64(f.proto)
            }
        let protocolName: String =
            switch f.proto {
            case "icmp6": "ipv6-icmp"
            default: f.proto.lowercased()
            }
        let hasPorts = protocolNumber != 1 && protocolNumber != 58
        func endpoint(_ ip: String, _ port: UInt16) -> Value {
            object([("ip", .string(ip)), ("port", hasPorts ? .int(Int64(port)) : nil)])
        }
        let start = Int64((f.ts * 1000).rounded())
        let duration = Int64((f.duration * 1000).rounded())
        var r: [String: Value] = [
            "src_endpoint": endpoint(f.origH, f.origP),
            "dst_endpoint": endpoint(f.respH, f.respP),
            "connection_info": object([
                ("protocol_name", .string(protocolName)),
                ("protocol_num", protocolNumber.map { .int($0) }),
                ("protocol_ver_id", f.origH.contains(":") ? 6 : 4),
                ("direction_id", 0),
                ("direction", "Unknown"),
                ("community_uid", f.communityID.isEmpty ? nil : .string(f.communityID)),
            ]),
            "traffic": [
                "bytes_out": .count(f.origIPBytes),
                "bytes_in": .count(f.respIPBytes),
                "bytes": .count(f.origIPBytes &+ f.respIPBytes),
                "packets_out": .count(f.origPkts),
                "packets_in": .count(f.respPkts),
                "packets": .count(f.origPkts &+ f.respPkts),
            ],
            "start_time": .int(start),
            "end_time": .int(start + duration),
            "duration": .int(duration),
        ]
        r["unmapped"] = object([
            ("state", f.state.isEmpty ? nil : .string(f.state)),
            ("orig_bytes", .count(f.origBytes)),
            ("resp_bytes", .count(f.respBytes)),
            ("orig_tcp_flags", f.origTCPFlags == 0 ? nil : .int(Int64(f.origTCPFlags))),
            ("resp_tcp_flags", f.respTCPFlags == 0 ? nil : .int(Int64(f.respTCPFlags))),
            ("Image", f.image.map { .string($0) }),
            ("ProcessId", f.processId.map { .int(Int64($0)) }),
            ("dns_query", f.dnsQuery.map { .string($0) }),
            ("dns_answers", f.dnsAnswers.map { .array($0.map { .string($0) }) }),
        ])
        if let sni = f.serverName { r["tls"] = ["sni": .string(sni)] }
        return r
    }

    /// `agent:seq`; an alert the collector raised (seq 0, `Alert.origin`) is
    /// `agent:collector:time_ns:rule_id` instead, as several share seq 0.
    static func uid(of event: Event, agentId: String) -> String {
        if case .alert(let a) = event.payload, let origin = a.origin {
            return "\(agentId):\(origin):\(event.time.nanosecondsSinceEpoch):\(a.ruleId)"
        }
        return "\(agentId):\(event.seq)"
    }

    static func findingObjects(_ a: Alert, agentId: String, uid: String) -> [String: Value] {
        let attacks = techniques(in: a.tags).map { uid -> Value in ["technique": ["uid": .string(uid)]] }
        var related: Value? = nil
        var evidence: Value? = nil
        if let matched = a.event {
            if case .object(var members) = record(matched, agentId: agentId, hostname: nil) {
                let evidenceKeys = ["actor", "file", "process", "src_endpoint", "dst_endpoint", "connection_info"]
                if let result = members["file_result"] { members["file"] = result }
                let artifact = members.filter { evidenceKeys.contains($0.key) }
                if !artifact.isEmpty { evidence = [.object(artifact)] }
                related = [
                    object([("uid", members["metadata"]?["uid"]), ("type_uid", members["type_uid"])])
                ]
            }
        }
        var r: [String: Value] = [
            "finding_info": object([
                ("uid", .string(uid)),
                ("title", .string(a.title)),
                ("desc", a.detail.map { .string($0) }),
                (
                    "analytic",
                    ["uid": .string(a.ruleId), "name": .string(a.title), "type_id": 1, "type": "Rule"]
                ),
                ("attacks", attacks.isEmpty ? nil : .array(attacks)),
                ("related_events", related),
            ]),
            "unmapped": object([
                ("tags", .array(a.tags.map { .string($0) })),
                ("author", a.author.map { .string($0) }),
                ("origin", a.origin.map { .string($0) }),
                ("suppressed_count", .count(a.suppressedCount)),
            ]),
        ]
        if let evidence { r["evidences"] = evidence }
        return r
    }

    /// ATT&CK technique ids from Sigma tags: `attack.t1059.004` → `T1059.004`, in tag order,
    /// each once. Tactic tags (`attack.execution`) and other namespaces are ignored.
    public static func techniques(in tags: [String]) -> [String] {
        var out: [String] = []
        for tag in tags {
            let lower = tag.lowercased()
            guard lower.hasPrefix("attack.t") else { continue }
            let id = lower.dropFirst("attack.t".count)
            let parts = id.split(separator: ".", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count),
                parts[0].count == 4, parts[0].allSatisfy(isDigit),
                parts.count == 1 || (parts[1].count == 3 && parts[1].allSatisfy(isDigit))
            else { continue }
            let uid = "T" + id
            if !out.contains(uid) { out.append(uid) }
        }
        return out
    }

    // MARK: Helpers

    static func isDigit(_ c: Character) -> Bool { c.isASCII && c.isNumber }

    /// An object of the members that are not nil.
    static func object(_ members: [(String, Value?)]) -> Value {
        var out: [String: Value] = [:]
        for (key, value) in members { if let value { out[key] = value } }
        return .object(out)
    }

    static func milliseconds(_ t: Timestamp) -> Int64 {
        // Floor division, so times before 1970 round down like positive ones.
        let ns = t.nanosecondsSinceEpoch
        return ns >= 0 ? ns / 1_000_000 : (ns - 999_999) / 1_000_000
    }

    /// A path's parent folder (nil for a bare name) and last component.
    static func split(_ path: String) -> (parent: String?, name: String) {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return (nil, String(trimmed)) }
        let name = trimmed[trimmed.index(after: slash)...]
        let parent = slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
        return (parent, name.isEmpty ? String(trimmed) : String(name))
    }
}
