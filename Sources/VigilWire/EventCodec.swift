import Foundation
import SwiftProtobuf
import VigilCore

/// Converts between the `VigilCore` event model and the `vigil.v1` protobuf messages.
public enum EventCodec {
    /// Serializes one event to protobuf bytes.
    public static func encode(_ event: Event) throws(WireError) -> [UInt8] {
        var writer = EventWriter()
        return try writer.full(event)
    }

    /// Parses one event from protobuf bytes.
    public static func decode<Bytes: SwiftProtobufContiguousBytes>(_ bytes: Bytes) throws(WireError) -> Event {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(WireError) in try Self.read(buffer, index: nil).event }
        }.get()
    }

    /// Whether `bytes` is a serialized event as the spool keeps it and a batch can carry: it
    /// decodes, carries `seq` itself, and is in full (its own `time_unix_nano`, no body-form
    /// delta). The spool checks its stored events against this when sealing them fails.
    public static func isIntact(_ bytes: [UInt8], seq: UInt64) -> Bool {
        guard seq != 0, let event = try? decode(bytes), event.seq == seq else { return false }
        var previousTime: Int64? = nil
        var body: [UInt8] = []
        return (try? BodyForm.append(bytes, expectedSeq: seq, index: 0, previousTime: &previousTime, to: &body)) != nil
    }

    /// Parses one event: directly into the model when `EventReader` can, else through the
    /// generated message (the same result, or the error that says what is wrong).
    static func read(_ bytes: UnsafeRawBufferPointer, index: Int?) throws(WireError) -> EventReader.Read {
        if let read = EventReader.read(bytes) { return read }
        return try readWithSwiftProtobuf(bytes, index: index)
    }

    /// Parses one event through the generated message (`index` names it in the error).
    private static func readWithSwiftProtobuf(
        _ bytes: UnsafeRawBufferPointer,
        index: Int?
    ) throws(WireError) -> EventReader.Read {
        let message: Vigil_V1_Event
        do {
            message = try Vigil_V1_Event(serializedBytes: bytes.bytes)
        } catch {
            let which = index.map { "event \($0)" } ?? "event"
            throw WireError(.malformedEvent, "\(which) is not valid vigil.v1.Event protobuf: \(error)")
        }
        return EventReader.Read(
            event: try event(from: message),
            timeUnixNano: message.timeUnixNano,
            timeDeltaNano: message.timeDeltaNano
        )
    }

    /// Parses one event through the generated message only (what `decode` must agree with).
    public static func decodeWithSwiftProtobuf(_ bytes: [UInt8]) throws(WireError) -> Event {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(WireError) in try readWithSwiftProtobuf(buffer, index: nil).event }
        }.get()
    }

    // MARK: model -> protobuf

    public static func message(from event: Event) -> Vigil_V1_Event {
        var m = Vigil_V1_Event()
        m.seq = event.seq
        m.timeUnixNano = event.time.nanosecondsSinceEpoch
        switch event.payload {
        case .file(let f): m.file = message(from: f)
        case .process(let p): m.process = message(from: p)
        case .flow(let f): m.flow = message(from: f)
        case .alert(let a): m.alert = message(from: a)
        case .health(let h):
            var pb = Vigil_V1_AgentHealth()
            pb.kind = h.kind
            pb.message = h.message
            pb.counters = h.counters
            pb.attributes = h.attributes
            m.health = pb
        case .gap(let g):
            var pb = Vigil_V1_GapRecord()
            pb.firstSeq = g.firstSeq
            pb.lastSeq = g.lastSeq
            pb.droppedByType = g.droppedByType
            pb.reason = g.reason
            m.gap = pb
        }
        return m
    }

    static func message(from f: FileEvent) -> Vigil_V1_FileEvent {
        var pb = Vigil_V1_FileEvent()
        pb.action =
            switch f.action {
            case .create: .create
            case .modify: .modify
            case .attrib: .attrib
            case .delete: .delete
            case .rename: .rename
            }
        pb.targetFilename = f.targetFilename
        pb.sourceFilename = f.sourceFilename ?? ""
        pb.isDirectory = f.isDirectory
        if let md = f.metadata {
            pb.hasMetadata_p = true
            pb.mode = md.mode
            pb.uid = md.uid
            pb.gid = md.gid
            pb.size = md.size
            pb.inode = md.inode
        }
        if let hex = f.sha256, let bytes = Hex.decode(hex) { pb.sha256 = Data(bytes) }
        pb.hashSkipped = f.hashSkipped ?? ""
        pb.image = f.image ?? ""
        pb.processID = f.processId ?? 0
        pb.user = f.user ?? ""
        return pb
    }

    static func message(from p: ProcessEvent) -> Vigil_V1_ProcessEvent {
        var pb = Vigil_V1_ProcessEvent()
        pb.action =
            switch p.action {
            case .exec: .exec
            case .fork: .fork
            case .exit: .exit
            case .uidChange: .uidChange
            case .gidChange: .gidChange
            case .sidChange: .sidChange
            case .ptrace: .ptrace
            case .commChange: .commChange
            }
        pb.processID = p.processId
        pb.parentProcessID = p.parentProcessId ?? 0
        pb.image = p.image ?? ""
        pb.commandLine = p.commandLine ?? ""
        pb.argv = p.argv
        pb.currentDirectory = p.currentDirectory ?? ""
        pb.user = p.user ?? ""
        if let v = p.uid { pb.uid = v }
        if let v = p.euid { pb.euid = v }
        if let v = p.gid { pb.gid = v }
        pb.parentImage = p.parentImage ?? ""
        pb.parentCommandLine = p.parentCommandLine ?? ""
        if let v = p.startTimeTicks { pb.startTimeTicks = v }
        pb.tty = p.tty ?? ""
        if let v = p.loginUid { pb.loginUid = v }
        if let v = p.sessionId { pb.sessionID = v }
        pb.containerID = p.containerId ?? ""
        if let v = p.exitCode { pb.exitCode = v }
        pb.comm = p.comm ?? ""
        pb.incomplete = p.incomplete
        return pb
    }

    static func message(from f: FlowEvent) -> Vigil_V1_FlowEvent {
        var pb = Vigil_V1_FlowEvent()
        pb.ts = f.ts
        pb.duration = f.duration
        pb.proto = f.proto
        pb.origH = f.origH
        pb.origP = UInt32(f.origP)
        pb.respH = f.respH
        pb.respP = UInt32(f.respP)
        pb.origPkts = f.origPkts
        pb.respPkts = f.respPkts
        pb.origIpBytes = f.origIPBytes
        pb.respIpBytes = f.respIPBytes
        pb.origBytes = f.origBytes
        pb.respBytes = f.respBytes
        pb.origTcpFlags = UInt32(f.origTCPFlags)
        pb.respTcpFlags = UInt32(f.respTCPFlags)
        pb.state = f.state
        // Readers compute the Community ID when it is left out (FlowCommunityID).
        if !FlowCommunityID.matches(f) { pb.communityID = f.communityID }
        pb.image = f.image ?? ""
        pb.processID = f.processId ?? 0
        pb.dnsQuery = f.dnsQuery ?? ""
        pb.dnsAnswers = f.dnsAnswers ?? []
        pb.serverName = f.serverName ?? ""
        return pb
    }

    static func message(from a: Alert) -> Vigil_V1_Alert {
        var pb = Vigil_V1_Alert()
        pb.ruleID = a.ruleId
        pb.title = a.title
        pb.level = a.level
        pb.tags = a.tags
        if let e = a.event { pb.event = message(from: e) }
        pb.author = a.author ?? ""
        pb.suppressedCount = a.suppressedCount
        return pb
    }

    // MARK: protobuf -> model

    public static func event(from m: Vigil_V1_Event) throws(WireError) -> Event {
        let payload: Event.Payload
        switch m.payload {
        case .file(let f): payload = .file(try fileEvent(from: f))
        case .process(let p): payload = .process(try processEvent(from: p))
        case .flow(let f): payload = .flow(try flowEvent(from: f))
        case .alert(let a):
            payload = .alert(
                Alert(
                    ruleId: a.ruleID,
                    title: a.title,
                    level: a.level,
                    tags: a.tags,
                    event: a.hasEvent ? try event(from: a.event) : nil,
                    author: a.author.nilIfEmpty,
                    suppressedCount: a.suppressedCount
                )
            )
        case .health(let h):
            payload = .health(
                AgentHealth(kind: h.kind, message: h.message, counters: h.counters, attributes: h.attributes)
            )
        case .gap(let g):
            payload = .gap(
                GapRecord(firstSeq: g.firstSeq, lastSeq: g.lastSeq, droppedByType: g.droppedByType, reason: g.reason)
            )
        case nil:
            throw WireError(.malformedEvent, "event \(m.seq) has no payload")
        }
        return Event(seq: m.seq, time: Timestamp(nanosecondsSinceEpoch: m.timeUnixNano), payload: payload)
    }

    static func fileEvent(from pb: Vigil_V1_FileEvent) throws(WireError) -> FileEvent {
        let action: FileEvent.Action
        switch pb.action {
        case .create: action = .create
        case .modify: action = .modify
        case .attrib: action = .attrib
        case .delete: action = .delete
        case .rename: action = .rename
        case .unspecified, .UNRECOGNIZED:
            throw WireError(.malformedEvent, "file event has unknown action \(pb.action.rawValue)")
        }
        return FileEvent(
            action: action,
            targetFilename: pb.targetFilename,
            sourceFilename: pb.sourceFilename.nilIfEmpty,
            isDirectory: pb.isDirectory,
            metadata: pb.hasMetadata_p
                ? FileMetadata(mode: pb.mode, uid: pb.uid, gid: pb.gid, size: pb.size, inode: pb.inode) : nil,
            sha256: pb.sha256.isEmpty ? nil : Hex.encode(pb.sha256),
            hashSkipped: pb.hashSkipped.nilIfEmpty,
            image: pb.image.nilIfEmpty,
            processId: pb.processID.nilIfZero,
            user: pb.user.nilIfEmpty
        )
    }

    static func processEvent(from pb: Vigil_V1_ProcessEvent) throws(WireError) -> ProcessEvent {
        let action: ProcessEvent.Action
        switch pb.action {
        case .exec: action = .exec
        case .fork: action = .fork
        case .exit: action = .exit
        case .uidChange: action = .uidChange
        case .gidChange: action = .gidChange
        case .sidChange: action = .sidChange
        case .ptrace: action = .ptrace
        case .commChange: action = .commChange
        case .unspecified, .UNRECOGNIZED:
            throw WireError(.malformedEvent, "process event has unknown action \(pb.action.rawValue)")
        }
        return ProcessEvent(
            action: action,
            processId: pb.processID,
            parentProcessId: pb.parentProcessID.nilIfZero,
            image: pb.image.nilIfEmpty,
            commandLine: pb.commandLine.nilIfEmpty,
            argv: pb.argv,
            currentDirectory: pb.currentDirectory.nilIfEmpty,
            user: pb.user.nilIfEmpty,
            uid: pb.hasUid ? pb.uid : nil,
            euid: pb.hasEuid ? pb.euid : nil,
            gid: pb.hasGid ? pb.gid : nil,
            parentImage: pb.parentImage.nilIfEmpty,
            parentCommandLine: pb.parentCommandLine.nilIfEmpty,
            startTimeTicks: pb.hasStartTimeTicks ? pb.startTimeTicks : nil,
            tty: pb.tty.nilIfEmpty,
            loginUid: pb.hasLoginUid ? pb.loginUid : nil,
            sessionId: pb.hasSessionID ? pb.sessionID : nil,
            containerId: pb.containerID.nilIfEmpty,
            exitCode: pb.hasExitCode ? pb.exitCode : nil,
            comm: pb.comm.nilIfEmpty,
            incomplete: pb.incomplete
        )
    }

    static func flowEvent(from pb: Vigil_V1_FlowEvent) throws(WireError) -> FlowEvent {
        var flow = try flowFields(from: pb)
        flow.communityID = pb.hasCommunityID ? pb.communityID : FlowCommunityID.derive(flow)
        return flow
    }

    private static func flowFields(from pb: Vigil_V1_FlowEvent) throws(WireError) -> FlowEvent {
        guard pb.origP <= UInt16.max, pb.respP <= UInt16.max, pb.origTcpFlags <= UInt8.max, pb.respTcpFlags <= UInt8.max
        else {
            throw WireError(.malformedEvent, "flow event has a port or flag byte out of range")
        }
        // NaN would not even compare equal to itself, and JSON has no spelling for it.
        guard pb.ts.isFinite, pb.duration.isFinite, pb.duration >= 0 else {
            throw WireError(.malformedEvent, "flow event ts and duration must be finite (and duration not negative)")
        }
        return FlowEvent(
            ts: pb.ts,
            duration: pb.duration,
            proto: pb.proto,
            origH: pb.origH,
            origP: UInt16(pb.origP),
            respH: pb.respH,
            respP: UInt16(pb.respP),
            origPkts: pb.origPkts,
            respPkts: pb.respPkts,
            origIPBytes: pb.origIpBytes,
            respIPBytes: pb.respIpBytes,
            origBytes: pb.origBytes,
            respBytes: pb.respBytes,
            origTCPFlags: UInt8(pb.origTcpFlags),
            respTCPFlags: UInt8(pb.respTcpFlags),
            state: pb.state,
            image: pb.image.nilIfEmpty,
            processId: pb.processID.nilIfZero,
            dnsQuery: pb.dnsQuery.nilIfEmpty,
            dnsAnswers: pb.dnsAnswers.isEmpty ? nil : pb.dnsAnswers,
            serverName: pb.serverName.nilIfEmpty
        )
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}

extension UInt32 {
    /// Nil for 0 (proto3's default: not set).
    var nilIfZero: UInt32? { self == 0 ? nil : self }
}
