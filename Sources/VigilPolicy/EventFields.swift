import VigilCore

/// A Vigil `Event` seen through Sigma field names.
///
/// Processes: only `exec` events are `process_creation`. Files: `create` is `file_event`,
/// `modify` is `file_event` and `file_change`, `attrib` is `file_change`, `delete` is
/// `file_delete`, `rename` is `file_event` (a file appears at `TargetFilename`) and `file_rename`.
/// Flows map Zeek's vocabulary to Sysmon's: `resp_h` → `DestinationIp`, `resp_p` →
/// `DestinationPort`, `orig_h` → `SourceIp`, `orig_p` → `SourcePort`, `proto` → `Protocol`;
/// `Initiated` is `true` when `orig_h` is one of `localAddresses` (the host opened the
/// connection) and `false` otherwise, and absent when no local addresses are known.
/// `DestinationHostname` is absent until flows carry a resolved name.
public struct EventFields: SigmaFields {
    public let event: Event
    public let localAddresses: Set<String>?

    public init(_ event: Event, localAddresses: Set<String>? = nil) {
        self.event = event
        self.localAddresses = localAddresses
    }

    public var categories: [EventCategory] {
        switch event.payload {
        case .process(let p): p.action == .exec ? [.processCreation] : []
        case .file(let f):
            switch f.action {
            case .create: [.fileEvent]
            case .modify: [.fileEvent, .fileChange]
            case .attrib: [.fileChange]
            case .delete: [.fileDelete]
            case .rename: [.fileEvent, .fileRename]
            }
        case .flow: [.networkConnection]
        case .alert, .health, .gap: []
        }
    }

    public func value(of field: String) -> String? {
        switch event.payload {
        case .process(let p): Self.value(of: field, in: p)
        case .file(let f): Self.value(of: field, in: f)
        case .flow(let f): value(of: field, in: f)
        case .alert, .health, .gap: nil
        }
    }

    static func value(of field: String, in p: ProcessEvent) -> String? {
        switch field {
        case "Image": p.image
        case "CommandLine": p.commandLine
        case "ParentImage": p.parentImage
        case "ParentCommandLine": p.parentCommandLine
        case "CurrentDirectory": p.currentDirectory
        case "User": p.user ?? p.uid.map(String.init)
        case "LogonId": p.loginUid.map(String.init)
        case "ProcessId": String(p.processId)
        case "ParentProcessId": p.parentProcessId.map(String.init)
        default: nil
        }
    }

    static func value(of field: String, in f: FileEvent) -> String? {
        switch field {
        case "TargetFilename": f.targetFilename
        case "SourceFilename": f.sourceFilename
        case "Image": f.image
        case "ProcessId": f.processId.map(String.init)
        case "User": f.user
        case "FileMode": f.metadata.map { String($0.permissions, radix: 8) }
        case "SetUID": f.metadata.map { $0.isSetUID ? "true" : "false" }
        case "SetGID": f.metadata.map { $0.isSetGID ? "true" : "false" }
        case "Hashes": f.sha256.map { "SHA256=\($0)" }
        default: nil
        }
    }

    func value(of field: String, in f: FlowEvent) -> String? {
        switch field {
        case "Image": f.image
        case "ProcessId": f.processId.map(String.init)
        case "Protocol": f.proto
        case "SourceIp": f.origH
        case "SourcePort": String(f.origP)
        case "DestinationIp": f.respH
        case "DestinationPort": String(f.respP)
        case "Initiated": localAddresses.map { $0.contains(f.origH) ? "true" : "false" }
        default: nil
        }
    }
}
