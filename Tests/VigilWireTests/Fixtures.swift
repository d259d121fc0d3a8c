import VigilCore

/// One event of every kind, with the optional fields set, for round trips.
enum Fixtures {
    static let time = Timestamp(nanosecondsSinceEpoch: 1_764_334_800_123_456_789)

    static func events(firstSeq: UInt64 = 1) -> [Event] {
        let file = FileEvent(
            action: .rename,
            targetFilename: "/etc/cron.d/new",
            sourceFilename: "/etc/cron.d/.tmp123",
            isDirectory: false,
            metadata: FileMetadata(mode: 0o104755, uid: 0, gid: 0, size: 42, inode: 123_456),
            sha256: String(repeating: "ab", count: 32),
            image: "/usr/bin/python3",
            processId: 4242,
            user: "root"
        )
        let process = ProcessEvent(
            action: .exec,
            processId: 1234,
            parentProcessId: 1,
            image: "/usr/bin/curl",
            commandLine: "curl -o /tmp/x http://127.0.0.1/x",
            argv: ["curl", "-o", "/tmp/x", "http://127.0.0.1/x"],
            currentDirectory: "/root",
            user: "root",
            uid: 0,
            euid: 0,
            gid: 0,
            parentImage: "/usr/bin/bash",
            parentCommandLine: "bash",
            startTimeTicks: 99,
            tty: "pts/0",
            loginUid: 1000,
            sessionId: 7,
            containerId: "abc",
            exitCode: 0,
            comm: "curl",
            incomplete: true
        )
        let flow = FlowEvent(
            ts: 1_764_334_800.5,
            duration: 1.25,
            proto: "tcp",
            origH: "10.0.0.1",
            origP: 51_000,
            respH: "10.0.0.2",
            respP: 443,
            origPkts: 10,
            respPkts: 8,
            origIPBytes: 1000,
            respIPBytes: 5000,
            origBytes: 400,
            respBytes: 4200,
            origTCPFlags: 0x1b,
            respTCPFlags: 0x1a,
            state: "SF",
            communityID: "1:abc=",
            image: "/usr/bin/curl",
            processId: 1234
        )
        let health = AgentHealth(
            kind: "inotify_overflow",
            message: "queue overflowed",
            counters: ["lost": 1, "rescans": 2]
        )
        let gap = GapRecord(firstSeq: 10, lastSeq: 20, droppedByType: ["file": 11], reason: "spool full")
        let matched = Event(seq: firstSeq, time: time, payload: .process(process))
        let alert = Alert(
            ruleId: "r-1",
            title: "Curl to tmp",
            level: "high",
            tags: ["attack.t1105"],
            event: matched,
            author: "someone",
            suppressedCount: 7
        )
        let payloads: [Event.Payload] = [
            .file(file), .process(process), .flow(flow), .alert(alert), .health(health), .gap(gap),
        ]
        return payloads.enumerated().map { i, p in Event(seq: firstSeq + UInt64(i), time: time, payload: p) }
    }

    /// Many small file events with distinct paths.
    static func fileEvents(count: Int, firstSeq: UInt64 = 1) -> [Event] {
        (0..<count).map { i in
            Event(
                seq: firstSeq + UInt64(i),
                time: time,
                payload: .file(
                    FileEvent(
                        action: .modify,
                        targetFilename: "/srv/data/file-\(i).txt",
                        metadata: FileMetadata(
                            mode: 0o100644,
                            uid: 1000,
                            gid: 1000,
                            size: UInt64(i),
                            inode: UInt64(1000 + i)
                        )
                    )
                )
            )
        }
    }
}
