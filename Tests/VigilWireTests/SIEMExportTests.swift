import Foundation
import Testing
import VigilCore

/// The OCSF records of each event kind, parsed back from their JSON line.
@Suite("OCSF export")
struct OCSFExportTests {
    let agent = "agent-1"
    /// 2026-11-28T13:25:55.123456789Z
    let time = Timestamp(nanosecondsSinceEpoch: 1_795_872_355_123_456_789)

    func record(_ payload: Event.Payload, seq: UInt64 = 7, hostname: String? = "web-1") throws -> [String: Any] {
        let line = OCSF.line(Event(seq: seq, time: time, payload: payload), agentId: agent, hostname: hostname)
        #expect(!line.contains("\n"))
        return try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    func object(_ value: Any?, _ path: String...) -> [String: Any]? {
        var current = value as? [String: Any]
        for key in path { current = current?[key] as? [String: Any] }
        return current
    }

    func expectCommon(_ r: [String: Any], classUID: Int, category: Int, activity: Int) {
        #expect(r["class_uid"] as? Int == classUID)
        #expect(r["category_uid"] as? Int == category)
        #expect(r["activity_id"] as? Int == activity)
        #expect(r["type_uid"] as? Int == classUID * 100 + activity)
        #expect(r["time"] as? Int == 1_795_872_355_123)
        #expect(r["severity_id"] is Int)
        #expect(object(r, "metadata", "product")?["name"] as? String == "Vigil")
        #expect(object(r, "metadata", "product")?["vendor_name"] as? String == "Vigil")
        #expect(object(r, "metadata")?["version"] as? String == "1.1.0")
        #expect(object(r, "metadata")?["uid"] as? String == "agent-1:7")
        #expect(object(r, "device")?["uid"] as? String == agent)
        #expect(object(r, "device")?["hostname"] as? String == "web-1")
        #expect(object(r, "device", "os")?["type_id"] as? Int == 200)
    }

    @Test(
        "file actions map to File System Activity with their activity ids",
        arguments: [
            (FileEvent.Action.create, 1), (.modify, 3), (.delete, 4), (.rename, 5), (.attrib, 6),
        ]
    )
    func fileActivities(action: FileEvent.Action, activity: Int) throws {
        let r = try record(
            .file(
                FileEvent(
                    action: action,
                    targetFilename: "/srv/app/run.sh",
                    sourceFilename: action == .rename ? "/srv/app/old.sh" : nil
                )
            )
        )
        expectCommon(r, classUID: 1001, category: 1, activity: activity)
        #expect(r["severity_id"] as? Int == 1)
        if action == .rename {
            #expect(object(r, "file")?["path"] as? String == "/srv/app/old.sh")
            #expect(object(r, "file_result")?["path"] as? String == "/srv/app/run.sh")
        } else {
            #expect(object(r, "file")?["path"] as? String == "/srv/app/run.sh")
            #expect(r["file_result"] == nil)
        }
    }

    @Test("a file event carries name, type, hash, owner, size and its attributed actor")
    func fileObjects() throws {
        let sha = String(repeating: "ab", count: 32)
        let r = try record(
            .file(
                FileEvent(
                    action: .create,
                    targetFilename: "/srv/app/run.sh",
                    metadata: FileMetadata(mode: 0o104755, uid: 1000, gid: 100, size: 42, inode: 9),
                    sha256: sha,
                    image: "/usr/bin/cp",
                    processId: 4242,
                    user: "alice"
                )
            )
        )
        let file = try #require(object(r, "file"))
        #expect(file["name"] as? String == "run.sh")
        #expect(file["parent_folder"] as? String == "/srv/app")
        #expect(file["type_id"] as? Int == 1)
        #expect(file["size"] as? Int == 42)
        #expect(object(file, "owner")?["uid"] as? String == "1000")
        let hashes = try #require(file["hashes"] as? [[String: Any]])
        #expect(hashes.count == 1)
        #expect(hashes.first?["algorithm_id"] as? Int == 3)
        #expect(hashes.first?["value"] as? String == sha)
        #expect(object(r, "actor", "process")?["pid"] as? Int == 4242)
        #expect(object(r, "actor", "process", "file")?["path"] as? String == "/usr/bin/cp")
        #expect(object(r, "actor", "process", "user")?["name"] as? String == "alice")
        #expect(object(r, "actor", "user")?["name"] as? String == "alice")
        #expect(object(r, "unmapped")?["mode"] as? String == "4755")
        #expect(object(r, "unmapped")?["gid"] as? Int == 100)
    }

    @Test("a directory without metadata is a folder, and an unattributed change has no actor")
    func directory() throws {
        let r = try record(.file(FileEvent(action: .delete, targetFilename: "/srv/app/cache/", isDirectory: true)))
        #expect(object(r, "file")?["type_id"] as? Int == 2)
        #expect(object(r, "file")?["name"] as? String == "cache")
        #expect(r["actor"] == nil)
    }

    @Test(
        "process actions map to Process Activity with their activity ids",
        arguments: [
            (ProcessEvent.Action.exec, 1), (.exit, 2), (.ptrace, 3), (.uidChange, 5), (.fork, 99), (.gidChange, 99),
            (.sidChange, 99), (.commChange, 99),
        ]
    )
    func processActivities(action: ProcessEvent.Action, activity: Int) throws {
        let r = try record(.process(ProcessEvent(action: action, processId: 10, parentProcessId: 1)))
        expectCommon(r, classUID: 1007, category: 1, activity: activity)
        #expect(object(r, "process")?["pid"] as? Int == 10)
        if action == .ptrace {
            #expect(object(r, "actor", "process")?["pid"] as? Int == 1, "the tracer")
            #expect(object(r, "process", "parent_process") == nil)
        }
    }

    @Test("an exec names the process, its command line, user, parent and working directory")
    func exec() throws {
        let r = try record(
            .process(
                ProcessEvent(
                    action: .exec,
                    processId: 4321,
                    parentProcessId: 4000,
                    image: "/usr/bin/curl",
                    commandLine: "curl -s http://example.com",
                    argv: ["curl", "-s", "http://example.com"],
                    currentDirectory: "/tmp",
                    user: "bob",
                    uid: 1001,
                    parentImage: "/bin/bash",
                    parentCommandLine: "bash -i"
                )
            )
        )
        let process = try #require(object(r, "process"))
        #expect(process["pid"] as? Int == 4321)
        #expect(process["name"] as? String == "curl")
        #expect(process["cmd_line"] as? String == "curl -s http://example.com")
        #expect(object(process, "file")?["path"] as? String == "/usr/bin/curl")
        #expect(object(process, "user")?["name"] as? String == "bob")
        #expect(object(process, "user")?["uid"] as? String == "1001")
        #expect(object(process, "parent_process")?["pid"] as? Int == 4000)
        #expect(object(process, "parent_process", "file")?["path"] as? String == "/bin/bash")
        #expect(object(r, "actor", "process")?["pid"] as? Int == 4000)
        #expect(object(r, "actor", "process")?["cmd_line"] as? String == "bash -i")
        #expect(object(r, "unmapped")?["CurrentDirectory"] as? String == "/tmp")
        #expect((object(r, "unmapped")?["argv"] as? [String])?.count == 3)
    }

    @Test("an exit carries its exit code")
    func exit() throws {
        let r = try record(.process(ProcessEvent(action: .exit, processId: 9, exitCode: 3)))
        #expect(r["exit_code"] as? Int == 3)
        #expect(object(r, "actor", "process")?["pid"] as? Int == 9)
    }

    @Test("a flow maps to Network Activity: endpoints, protocol, traffic, times")
    func flow() throws {
        let flow = FlowEvent(
            ts: 1_795_872_350.5,
            duration: 2.25,
            proto: "tcp",
            origH: "10.0.0.5",
            origP: 51000,
            respH: "93.184.216.34",
            respP: 443,
            origPkts: 10,
            respPkts: 12,
            origIPBytes: 900,
            respIPBytes: 15000,
            state: "SF",
            communityID: "1:abc=",
            image: "/usr/bin/curl",
            processId: 77
        )
        let r = try record(.flow(flow))
        expectCommon(r, classUID: 4001, category: 4, activity: 6)
        #expect(object(r, "src_endpoint")?["ip"] as? String == "10.0.0.5")
        #expect(object(r, "src_endpoint")?["port"] as? Int == 51000)
        #expect(object(r, "dst_endpoint")?["ip"] as? String == "93.184.216.34")
        #expect(object(r, "dst_endpoint")?["port"] as? Int == 443)
        #expect(object(r, "connection_info")?["protocol_name"] as? String == "tcp")
        #expect(object(r, "connection_info")?["protocol_num"] as? Int == 6)
        #expect(object(r, "connection_info")?["protocol_ver_id"] as? Int == 4)
        #expect(object(r, "connection_info")?["community_uid"] as? String == "1:abc=")
        #expect(object(r, "traffic")?["bytes_out"] as? Int == 900)
        #expect(object(r, "traffic")?["bytes_in"] as? Int == 15000)
        #expect(object(r, "traffic")?["packets"] as? Int == 22)
        #expect(r["start_time"] as? Int == 1_795_872_350_500)
        #expect(r["end_time"] as? Int == 1_795_872_352_750)
        #expect(r["duration"] as? Int == 2250)
        #expect(object(r, "unmapped")?["ProcessId"] as? Int == 77)
        #expect(r["tls"] == nil && object(r, "unmapped")?["dns_query"] == nil)

        // Payload metadata: the SNI in tls.sni, DNS (no Network Activity attribute) unmapped.
        var named = flow
        named.serverName = "example.com"
        named.dnsQuery = "example.com"
        named.dnsAnswers = ["93.184.216.34"]
        let withMetadata = try record(.flow(named))
        #expect(object(withMetadata, "tls")?["sni"] as? String == "example.com")
        #expect(object(withMetadata, "unmapped")?["dns_query"] as? String == "example.com")
        #expect(object(withMetadata, "unmapped")?["dns_answers"] as? [String] == ["93.184.216.34"])

        var rejected = flow
        rejected.state = "REJ"
        rejected.proto = "icmp6"
        rejected.origH = "fe80::1"
        let refused = try record(.flow(rejected))
        #expect(refused["activity_id"] as? Int == 5)
        #expect(refused["type_uid"] as? Int == 400_105)
        #expect(object(refused, "connection_info")?["protocol_name"] as? String == "ipv6-icmp")
        #expect(object(refused, "connection_info")?["protocol_ver_id"] as? Int == 6)
        #expect(object(refused, "src_endpoint")?["port"] == nil, "ICMP has no ports")
    }

    @Test("an alert maps to a Detection Finding with analytic, ATT&CK technique and evidence")
    func alert() throws {
        let matched = Event(
            seq: 6,
            time: time,
            payload: .file(FileEvent(action: .create, targetFilename: "/srv/evil.sh"))
        )
        let alert = Alert(
            ruleId: "11111111-1111-4111-8111-111111111111",
            title: "Test file /evil.sh",
            level: "high",
            tags: ["attack.execution", "attack.t1059.004", "attack.T1105", "cve.2021-1234"],
            event: matched
        )
        let r = try record(.alert(alert))
        expectCommon(r, classUID: 2004, category: 2, activity: 1)
        #expect(r["severity_id"] as? Int == 4)
        #expect(r["message"] as? String == "Test file /evil.sh")
        let finding = try #require(object(r, "finding_info"))
        #expect(finding["uid"] as? String == "agent-1:7")
        #expect(finding["title"] as? String == "Test file /evil.sh")
        #expect(object(finding, "analytic")?["uid"] as? String == alert.ruleId)
        #expect(object(finding, "analytic")?["name"] as? String == alert.title)
        #expect(object(finding, "analytic")?["type_id"] as? Int == 1)
        let attacks = try #require(finding["attacks"] as? [[String: Any]])
        #expect(attacks.compactMap { object($0, "technique")?["uid"] as? String } == ["T1059.004", "T1105"])
        let related = try #require(finding["related_events"] as? [[String: Any]])
        #expect(related.first?["uid"] as? String == "agent-1:6")
        #expect(related.first?["type_uid"] as? Int == 100_101)
        let evidences = try #require(r["evidences"] as? [[String: Any]])
        #expect(object(evidences.first, "file")?["path"] as? String == "/srv/evil.sh")
    }

    @Test(
        "alert levels map to OCSF severities",
        arguments: [
            ("informational", 1), ("low", 2), ("medium", 3), ("high", 4), ("critical", 5), ("odd", 0),
        ]
    )
    func alertSeverity(level: String, id: Int) throws {
        let r = try record(.alert(Alert(ruleId: "r", title: "t", level: level)))
        #expect(r["severity_id"] as? Int == id)
        #expect(r["evidences"] == nil)
        #expect(object(r, "finding_info")?["attacks"] == nil)
    }

    @Test("health and gap records map to the Base Event")
    func baseEvents() throws {
        let health = try record(.health(AgentHealth(kind: "started", message: "up", counters: ["n": 2])))
        expectCommon(health, classUID: 0, category: 0, activity: 99)
        #expect(health["message"] as? String == "started: up [n=2]")
        #expect(object(health, "unmapped")?["kind"] as? String == "started")
        #expect(object(health, "unmapped", "counters")?["n"] as? Int == 2)
        let gap = try record(
            .gap(GapRecord(firstSeq: 10, lastSeq: 20, droppedByType: ["file": 11], reason: "spool_full"))
        )
        expectCommon(gap, classUID: 0, category: 0, activity: 99)
        #expect(gap["severity_id"] as? Int == 3)
        #expect(object(gap, "unmapped")?["last_seq"] as? Int == 20)
    }

    @Test("no hostname leaves device.hostname out; strings are escaped; lines are deterministic")
    func encoding() throws {
        let payload = Event.Payload.file(FileEvent(action: .create, targetFilename: "/tmp/a\"b\\c\nd\u{1}é"))
        let r = try record(payload, hostname: nil)
        #expect(object(r, "device")?["hostname"] == nil)
        #expect(object(r, "file")?["path"] as? String == "/tmp/a\"b\\c\nd\u{1}é")
        let event = Event(seq: 1, time: time, payload: payload)
        #expect(OCSF.line(event, agentId: agent, hostname: nil) == OCSF.line(event, agentId: agent, hostname: nil))
    }

    @Test("string escaping, to the byte: quote, backslash, short escapes, \\u00XX for controls and DEL")
    func stringBytes() {
        let text = "a\"b\\c\n\r\t\u{1}\u{1f}\u{7f}é/"
        #expect(OCSF.Value.string(text).json == #""a\"b\\c\n\r\t\u0001\u001f\u007fé/""#)
        #expect(OCSF.Value.object([text: 1]).json == #"{"a\"b\\c\n\r\t\u0001\u001f\u007fé/":1}"#)
    }

    @Test("technique ids come from attack.tNNNN[.NNN] tags only")
    func techniques() {
        #expect(
            OCSF.techniques(in: ["attack.t1059", "attack.t1059.004", "attack.t1059", "attack.t12", "attack.s0001"])
                == ["T1059", "T1059.004"]
        )
    }
}

@Suite("Syslog export")
struct SyslogExportTests {
    let time = Timestamp(nanosecondsSinceEpoch: 1_795_872_355_123_456_789)

    func alertEvent(_ alert: Alert) -> Event { Event(seq: 3, time: time, payload: .alert(alert)) }

    @Test("an alert is one RFC 5424 line with PRI, header, structured data and message")
    func line() throws {
        let matched = Event(
            seq: 2,
            time: time,
            payload: .file(FileEvent(action: .create, targetFilename: "/x/evil.sh"))
        )
        let line = try #require(
            Syslog.line(
                alertEvent(Alert(ruleId: "r-1", title: "Evil file", level: "high", event: matched)),
                agentId: "agent-1",
                hostname: "web-1"
            )
        )
        #expect(
            line
                == "<107>1 2026-11-28T13:25:55.123456Z web-1 vigil - ALERT [vigil@32473 rule=\"r-1\" level=\"high\" agent=\"agent-1\"] Evil file: create /x/evil.sh"
        )
    }

    @Test(
        "PRI is facility × 8 + the severity of the rule level",
        arguments: [
            ("critical", 2), ("high", 3), ("medium", 4), ("low", 5), ("informational", 6), ("unknown", 4),
        ]
    )
    func priority(level: String, severity: Int) throws {
        #expect(Syslog.priority(facility: 13, level: level) == 104 + severity)
        #expect(Syslog.priority(facility: 4, level: level) == 32 + severity)
        let line = try #require(
            Syslog.line(alertEvent(Alert(ruleId: "r", title: "t", level: level)), agentId: "a", hostname: "h")
        )
        #expect(line.hasPrefix("<\(104 + severity)>1 "))
        let auth = Syslog.line(
            alertEvent(Alert(ruleId: "r", title: "t", level: level)),
            agentId: "a",
            hostname: "h",
            facility: 4
        )
        #expect(auth?.hasPrefix("<\(32 + severity)>1 ") == true)
    }

    @Test("Vigil's own decorations keep an ASCII message free of the BOM")
    func asciiSummary() throws {
        let file = FileEvent(action: .create, targetFilename: "/x/evil.sh", sha256: String(repeating: "0", count: 64))
        let matched = Event(seq: 2, time: time, payload: .file(file))
        let line = try #require(
            Syslog.line(
                alertEvent(Alert(ruleId: "r", title: "t", level: "low", event: matched)),
                agentId: "a",
                hostname: "h"
            )
        )
        #expect(line.hasSuffix("] t: create /x/evil.sh sha256=0000000000000000..."))
    }

    @Test("SD-PARAM values escape \", \\ and ] and flatten line breaks")
    func escaping() throws {
        #expect(Syslog.escapeParamValue(#"a"b\c]d[e"#) == #"a\"b\\c\]d[e"#)
        #expect(Syslog.escapeParamValue("one\ntwo") == "one two")
        let line = try #require(
            Syslog.line(
                alertEvent(Alert(ruleId: #"x"]\"#, title: "multi\nline", level: "low")),
                agentId: "a",
                hostname: "h"
            )
        )
        #expect(line.contains(#"[vigil@32473 rule="x\"\]\\" level="low" agent="a"] multi line"#))
        #expect(!line.contains("\n"))
    }

    @Test("NILVALUE for an unknown host; invalid host characters are dropped; UTF-8 MSG has a BOM")
    func nilValues() throws {
        let alert = alertEvent(Alert(ruleId: "r", title: "café", level: "low"))
        let unknown = try #require(Syslog.line(alert, agentId: "a", hostname: nil))
        #expect(unknown.contains("Z - vigil - ALERT ["))
        #expect(unknown.hasSuffix("] \u{FEFF}café"))
        let empty = try #require(Syslog.line(alert, agentId: "a", hostname: " "))
        #expect(empty.contains("Z - vigil - ALERT ["))
        let spaced = try #require(Syslog.line(alert, agentId: "a", hostname: "my host"))
        #expect(spaced.contains("Z myhost vigil - ALERT ["))
        let ascii = try #require(
            Syslog.line(alertEvent(Alert(ruleId: "r", title: "plain", level: "low")), agentId: "a", hostname: "h")
        )
        #expect(ascii.hasSuffix("] plain"))
    }

    @Test("events other than alerts have no syslog line")
    func notAlerts() {
        let event = Event(seq: 1, time: time, payload: .health(AgentHealth(kind: "started", message: "")))
        #expect(Syslog.line(event, agentId: "a", hostname: "h") == nil)
    }
}
