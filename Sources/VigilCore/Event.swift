import Glibc

/// The event model shared by every Vigil component.
///
/// Field names in JSON follow the Sigma / Sysmon-for-Linux taxonomy (`Image`, `CommandLine`,
/// `TargetFilename`, ...) for the fields rules match on, and Zeek's connection vocabulary for
/// flows, so public Sigma rules and Zeek-trained eyes read Vigil data unchanged.

/// Nanoseconds since the Unix epoch (UTC).
public struct Timestamp: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var nanosecondsSinceEpoch: Int64

    public init(nanosecondsSinceEpoch: Int64) {
        self.nanosecondsSinceEpoch = nanosecondsSinceEpoch
    }

    /// The current wall-clock time (`CLOCK_REALTIME`).
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(nanosecondsSinceEpoch: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }

    public var secondsSinceEpoch: Double { Double(nanosecondsSinceEpoch) / 1e9 }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.nanosecondsSinceEpoch < rhs.nanosecondsSinceEpoch
    }

    /// ISO 8601 in UTC with microseconds, e.g. `2026-11-28T13:25:55.123456Z`.
    public var iso8601: String {
        let seconds =
            nanosecondsSinceEpoch >= 0
            ? nanosecondsSinceEpoch / 1_000_000_000
            : (nanosecondsSinceEpoch - 999_999_999) / 1_000_000_000
        let micros = (nanosecondsSinceEpoch - seconds * 1_000_000_000) / 1000
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let micro = String(micros)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
            + "T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + String(repeating: "0", count: 6 - micro.count) + micro + "Z"
    }

    public var description: String { iso8601 }

    public init(from decoder: any Decoder) throws {
        nanosecondsSinceEpoch = try decoder.singleValueContainer().decode(Int64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(nanosecondsSinceEpoch)
    }
}

/// The kind of an event, as used in queries (`--type`) and storage.
public enum EventType: String, CaseIterable, Sendable, Codable {
    case file
    case process
    case flow
    case alert
    case health
    case gap
}

/// One record in an agent's stream. `(agent id, seq)` identifies it; `seq` is strictly
/// increasing per agent, across restarts.
public struct Event: Hashable, Sendable {
    public var seq: UInt64
    public var time: Timestamp
    public var payload: Payload

    public init(seq: UInt64 = 0, time: Timestamp = .now(), payload: Payload) {
        self.seq = seq
        self.time = time
        self.payload = payload
    }

    public indirect enum Payload: Hashable, Sendable {
        case file(FileEvent)
        case process(ProcessEvent)
        case flow(FlowEvent)
        case alert(Alert)
        case health(AgentHealth)
        case gap(GapRecord)
    }

    public var type: EventType {
        switch payload {
        case .file: .file
        case .process: .process
        case .flow: .flow
        case .alert: .alert
        case .health: .health
        case .gap: .gap
        }
    }

    /// Alerts and the records that describe the stream itself are kept longest when the agent
    /// must shed load or drop from a full spool.
    public var isHighPriority: Bool {
        switch payload {
        case .alert, .health, .gap: true
        case .file, .process, .flow: false
        }
    }
}

extension Event: Codable {
    enum CodingKeys: String, CodingKey {
        case seq, time, type, file, process, flow, alert, health, gap
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        seq = try c.decode(UInt64.self, forKey: .seq)
        time = try c.decode(Timestamp.self, forKey: .time)
        let type = try c.decode(EventType.self, forKey: .type)
        switch type {
        case .file: payload = .file(try c.decode(FileEvent.self, forKey: .file))
        case .process: payload = .process(try c.decode(ProcessEvent.self, forKey: .process))
        case .flow: payload = .flow(try c.decode(FlowEvent.self, forKey: .flow))
        case .alert: payload = .alert(try c.decode(Alert.self, forKey: .alert))
        case .health: payload = .health(try c.decode(AgentHealth.self, forKey: .health))
        case .gap: payload = .gap(try c.decode(GapRecord.self, forKey: .gap))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(seq, forKey: .seq)
        try c.encode(time, forKey: .time)
        try c.encode(type, forKey: .type)
        switch payload {
        case .file(let v): try c.encode(v, forKey: .file)
        case .process(let v): try c.encode(v, forKey: .process)
        case .flow(let v): try c.encode(v, forKey: .flow)
        case .alert(let v): try c.encode(v, forKey: .alert)
        case .health(let v): try c.encode(v, forKey: .health)
        case .gap(let v): try c.encode(v, forKey: .gap)
        }
    }
}

/// A change to a file or directory seen by the file sensor.
public struct FileEvent: Hashable, Sendable, Codable {
    public enum Action: String, Sendable, Codable, CaseIterable {
        case create
        /// Closed after being written.
        case modify
        /// Mode, owner, timestamps or extended attributes changed.
        case attrib
        case delete
        /// A move within the watched trees: `sourceFilename` → `targetFilename`.
        case rename
    }

    public var action: Action
    public var targetFilename: String
    public var sourceFilename: String?
    public var isDirectory: Bool
    /// File metadata, nil when the file was already gone when the sensor looked.
    public var metadata: FileMetadata?
    /// Lower-case hex SHA-256 of a regular file's content, when hashed.
    public var sha256: String?
    /// Why there is no hash: `too_large`, `not_regular`, `unreadable`, `disabled`, `gone`.
    public var hashSkipped: String?
    /// The process that made the change, when known (fanotify attribution).
    public var image: String?
    public var processId: UInt32?
    public var user: String?

    public init(
        action: Action,
        targetFilename: String,
        sourceFilename: String? = nil,
        isDirectory: Bool = false,
        metadata: FileMetadata? = nil,
        sha256: String? = nil,
        hashSkipped: String? = nil,
        image: String? = nil,
        processId: UInt32? = nil,
        user: String? = nil
    ) {
        self.action = action
        self.targetFilename = targetFilename
        self.sourceFilename = sourceFilename
        self.isDirectory = isDirectory
        self.metadata = metadata
        self.sha256 = sha256
        self.hashSkipped = hashSkipped
        self.image = image
        self.processId = processId
        self.user = user
    }

    enum CodingKeys: String, CodingKey {
        case action
        case targetFilename = "TargetFilename"
        case sourceFilename = "SourceFilename"
        case isDirectory = "is_directory"
        case metadata
        case sha256
        case hashSkipped = "hash_skipped"
        case image = "Image"
        case processId = "ProcessId"
        case user = "User"
    }
}

/// `stat` fields of a file.
public struct FileMetadata: Hashable, Sendable, Codable {
    /// `st_mode`, file type bits included.
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var inode: UInt64

    public init(mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64, inode: UInt64) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.inode = inode
    }

    public var isSetUID: Bool { mode & 0o4000 != 0 }
    public var isSetGID: Bool { mode & 0o2000 != 0 }
    public var permissions: UInt32 { mode & 0o7777 }
}

/// A process lifecycle event (filled by the process sensor).
public struct ProcessEvent: Hashable, Sendable, Codable {
    public enum Action: String, Sendable, Codable, CaseIterable {
        case exec, fork, exit
        case uidChange = "uid_change"
        case gidChange = "gid_change"
        case sidChange = "sid_change"
        case ptrace
        case commChange = "comm_change"
    }

    public var action: Action
    public var processId: UInt32
    public var parentProcessId: UInt32?
    public var image: String?
    public var commandLine: String?
    public var argv: [String]
    public var currentDirectory: String?
    public var user: String?
    public var uid: UInt32?
    public var euid: UInt32?
    public var gid: UInt32?
    public var parentImage: String?
    public var parentCommandLine: String?
    public var startTimeTicks: UInt64?
    public var tty: String?
    public var loginUid: UInt32?
    public var sessionId: UInt32?
    public var containerId: String?
    public var exitCode: Int32?
    public var comm: String?
    /// Some context could not be read (the process was already gone).
    public var incomplete: Bool

    public init(
        action: Action,
        processId: UInt32,
        parentProcessId: UInt32? = nil,
        image: String? = nil,
        commandLine: String? = nil,
        argv: [String] = [],
        currentDirectory: String? = nil,
        user: String? = nil,
        uid: UInt32? = nil,
        euid: UInt32? = nil,
        gid: UInt32? = nil,
        parentImage: String? = nil,
        parentCommandLine: String? = nil,
        startTimeTicks: UInt64? = nil,
        tty: String? = nil,
        loginUid: UInt32? = nil,
        sessionId: UInt32? = nil,
        containerId: String? = nil,
        exitCode: Int32? = nil,
        comm: String? = nil,
        incomplete: Bool = false
    ) {
        self.action = action
        self.processId = processId
        self.parentProcessId = parentProcessId
        self.image = image
        self.commandLine = commandLine
        self.argv = argv
        self.currentDirectory = currentDirectory
        self.user = user
        self.uid = uid
        self.euid = euid
        self.gid = gid
        self.parentImage = parentImage
        self.parentCommandLine = parentCommandLine
        self.startTimeTicks = startTimeTicks
        self.tty = tty
        self.loginUid = loginUid
        self.sessionId = sessionId
        self.containerId = containerId
        self.exitCode = exitCode
        self.comm = comm
        self.incomplete = incomplete
    }

    enum CodingKeys: String, CodingKey {
        case action
        case processId = "ProcessId"
        case parentProcessId = "ParentProcessId"
        case image = "Image"
        case commandLine = "CommandLine"
        case argv
        case currentDirectory = "CurrentDirectory"
        case user = "User"
        case uid, euid, gid
        case parentImage = "ParentImage"
        case parentCommandLine = "ParentCommandLine"
        case startTimeTicks = "start_time_ticks"
        case tty
        case loginUid = "login_uid"
        case sessionId = "session_id"
        case containerId = "container_id"
        case exitCode = "exit_code"
        case comm
        case incomplete
    }
}

/// A network flow summary in Zeek's connection vocabulary.
public struct FlowEvent: Hashable, Sendable, Codable {
    public var ts: Double
    public var duration: Double
    public var proto: String
    public var origH: String
    public var origP: UInt16
    public var respH: String
    public var respP: UInt16
    public var origPkts: UInt64
    public var respPkts: UInt64
    public var origIPBytes: UInt64
    public var respIPBytes: UInt64
    public var origBytes: UInt64
    public var respBytes: UInt64
    public var origTCPFlags: UInt8
    public var respTCPFlags: UInt8
    public var state: String
    public var communityID: String
    public var image: String?
    public var processId: UInt32?
    /// The first DNS query name of the flow (Zeek dns.log `query`), when it carried DNS.
    public var dnsQuery: String?
    /// Distinct A/AAAA addresses of its DNS answers, in order, at most 8 (dns.log `answers`).
    public var dnsAnswers: [String]?
    /// The TLS server name (SNI) of the originator's ClientHello (Zeek ssl.log `server_name`).
    public var serverName: String?

    public init(
        ts: Double,
        duration: Double,
        proto: String,
        origH: String,
        origP: UInt16,
        respH: String,
        respP: UInt16,
        origPkts: UInt64 = 0,
        respPkts: UInt64 = 0,
        origIPBytes: UInt64 = 0,
        respIPBytes: UInt64 = 0,
        origBytes: UInt64 = 0,
        respBytes: UInt64 = 0,
        origTCPFlags: UInt8 = 0,
        respTCPFlags: UInt8 = 0,
        state: String = "",
        communityID: String = "",
        image: String? = nil,
        processId: UInt32? = nil,
        dnsQuery: String? = nil,
        dnsAnswers: [String]? = nil,
        serverName: String? = nil
    ) {
        self.ts = ts
        self.duration = duration
        self.proto = proto
        self.origH = origH
        self.origP = origP
        self.respH = respH
        self.respP = respP
        self.origPkts = origPkts
        self.respPkts = respPkts
        self.origIPBytes = origIPBytes
        self.respIPBytes = respIPBytes
        self.origBytes = origBytes
        self.respBytes = respBytes
        self.origTCPFlags = origTCPFlags
        self.respTCPFlags = respTCPFlags
        self.state = state
        self.communityID = communityID
        self.image = image
        self.processId = processId
        self.dnsQuery = dnsQuery
        self.dnsAnswers = dnsAnswers
        self.serverName = serverName
    }

    enum CodingKeys: String, CodingKey {
        case ts, duration, proto
        case origH = "orig_h"
        case origP = "orig_p"
        case respH = "resp_h"
        case respP = "resp_p"
        case origPkts = "orig_pkts"
        case respPkts = "resp_pkts"
        case origIPBytes = "orig_ip_bytes"
        case respIPBytes = "resp_ip_bytes"
        case origBytes = "orig_bytes"
        case respBytes = "resp_bytes"
        case origTCPFlags = "orig_tcp_flags"
        case respTCPFlags = "resp_tcp_flags"
        case state
        case communityID = "community_id"
        case image = "Image"
        case processId = "ProcessId"
        case dnsQuery = "dns_query"
        case dnsAnswers = "dns_answers"
        case serverName = "server_name"
    }
}

/// A rule match.
public struct Alert: Hashable, Sendable, Codable {
    public var ruleId: String
    public var title: String
    public var level: String
    public var tags: [String]
    /// The event that matched.
    public var event: Event?
    /// Rule author credit (kept for Sigma's Detection Rule License).
    public var author: String?
    /// Hits of the same rule dropped by its suppression window or rate limit since the
    /// previous alert (the rule's `vigil:` settings).
    public var suppressedCount: UInt64
    /// Who raised the alert when it was not the agent: `collector` for the collector's own
    /// chain-anomaly alerts (`vigil-chain-*`), nil for an agent's rule match. The wire format has
    /// no such field, so an agent cannot set it.
    public var origin: String?
    /// What the raiser found, in a sentence (collector alerts); nil for an agent's rule match.
    public var detail: String?

    public init(
        ruleId: String,
        title: String,
        level: String,
        tags: [String] = [],
        event: Event? = nil,
        author: String? = nil,
        suppressedCount: UInt64 = 0,
        origin: String? = nil,
        detail: String? = nil
    ) {
        self.ruleId = ruleId
        self.title = title
        self.level = level
        self.tags = tags
        self.event = event
        self.author = author
        self.suppressedCount = suppressedCount
        self.origin = origin
        self.detail = detail
    }

    enum CodingKeys: String, CodingKey {
        case ruleId = "rule_id"
        case suppressedCount = "suppressed_count"
        case title, level, tags, event, author, origin, detail
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        ruleId = try c.decode(String.self, forKey: .ruleId)
        title = try c.decode(String.self, forKey: .title)
        level = try c.decode(String.self, forKey: .level)
        tags = try c.decode([String].self, forKey: .tags)
        event = try c.decodeIfPresent(Event.self, forKey: .event)
        author = try c.decodeIfPresent(String.self, forKey: .author)
        // Absent in alerts recorded before the count existed.
        suppressedCount = try c.decodeIfPresent(UInt64.self, forKey: .suppressedCount) ?? 0
        origin = try c.decodeIfPresent(String.self, forKey: .origin)
        detail = try c.decodeIfPresent(String.self, forKey: .detail)
    }
}

/// The agent reporting on itself: start-up, kernel or queue drops, shedding, limits hit.
public struct AgentHealth: Hashable, Sendable, Codable {
    public var kind: String
    public var message: String
    public var counters: [String: UInt64]
    /// Values that are not counts: `version` (of vigild) and `policy_sha256` (of the rules
    /// loaded) in `started`, `policy_loaded` and `status`. Absent from JSON when empty.
    public var attributes: [String: String]

    public init(
        kind: String,
        message: String,
        counters: [String: UInt64] = [:],
        attributes: [String: String] = [:]
    ) {
        self.kind = kind
        self.message = message
        self.counters = counters
        self.attributes = attributes
    }

    enum CodingKeys: String, CodingKey {
        case kind, message, counters, attributes
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decode(String.self, forKey: .kind)
        message = try c.decode(String.self, forKey: .message)
        counters = try c.decode([String: UInt64].self, forKey: .counters)
        // Absent in events recorded before attributes existed.
        attributes = try c.decodeIfPresent([String: String].self, forKey: .attributes) ?? [:]
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind)
        try c.encode(message, forKey: .message)
        try c.encode(counters, forKey: .counters)
        if !attributes.isEmpty { try c.encode(attributes, forKey: .attributes) }
    }
}

/// An explicit statement that events were dropped (spool full), so loss is never silent.
public struct GapRecord: Hashable, Sendable, Codable {
    public var firstSeq: UInt64
    public var lastSeq: UInt64
    public var droppedByType: [String: UInt64]
    public var reason: String

    public init(firstSeq: UInt64, lastSeq: UInt64, droppedByType: [String: UInt64], reason: String) {
        self.firstSeq = firstSeq
        self.lastSeq = lastSeq
        self.droppedByType = droppedByType
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case firstSeq = "first_seq"
        case lastSeq = "last_seq"
        case droppedByType = "dropped_by_type"
        case reason
    }
}
