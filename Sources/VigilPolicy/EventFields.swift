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
/// Payload metadata: `DestinationHostname` is the TLS server name (SNI), `QueryName` the first
/// DNS query name and `QueryResults` the DNS answer addresses joined by `;` (Sysmon's
/// vocabulary); a flow with a DNS query is also in category `dns_query`.
public struct EventFields: SigmaFields {
    public let event: Event
    public let localAddresses: Set<String>?

    public init(_ event: Event, localAddresses: Set<String>? = nil) {
        self.event = event
        self.localAddresses = localAddresses
    }

    // Shared arrays, so asking an event its categories allocates nothing.
    private static let processCreation: [EventCategory] = [.processCreation]
    private static let fileCreate: [EventCategory] = [.fileEvent]
    private static let fileModify: [EventCategory] = [.fileEvent, .fileChange]
    private static let fileAttrib: [EventCategory] = [.fileChange]
    private static let fileDelete: [EventCategory] = [.fileDelete]
    private static let fileRename: [EventCategory] = [.fileEvent, .fileRename]
    private static let networkConnection: [EventCategory] = [.networkConnection]
    private static let networkConnectionAndDNS: [EventCategory] = [.networkConnection, .dnsQuery]

    public var categories: [EventCategory] {
        switch event.payload {
        case .process(let p): p.action == .exec ? Self.processCreation : []
        case .file(let f):
            switch f.action {
            case .create: Self.fileCreate
            case .modify: Self.fileModify
            case .attrib: Self.fileAttrib
            case .delete: Self.fileDelete
            case .rename: Self.fileRename
            }
        case .flow(let f): f.dnsQuery == nil ? Self.networkConnection : Self.networkConnectionAndDNS
        case .alert, .health, .gap: []
        }
    }

    public func values(of names: [String], into values: inout [String?]) {
        self.values(of: names.map(Field.init(rawValue:)), into: &values)
    }

    public func value(of field: String) -> String? {
        guard let id = Field(rawValue: field) else { return nil }
        return value(of: id)
    }

    func value(of field: Field) -> String? {
        switch event.payload {
        case .process(let p): Self.value(of: field, in: p)
        case .file(let f): Self.value(of: field, in: f)
        case .flow(let f): value(of: field, in: f)
        case .alert, .health, .gap: nil
        }
    }

    /// Reads the payload once for all the fields (`nil`: a field no event has).
    func values(of fields: [Field?], into values: inout [String?]) {
        switch event.payload {
        case .process(let p):
            for (i, field) in fields.enumerated() { values[i] = field.flatMap { Self.value(of: $0, in: p) } }
        case .file(let f):
            for (i, field) in fields.enumerated() { values[i] = field.flatMap { Self.value(of: $0, in: f) } }
        case .flow(let f):
            for (i, field) in fields.enumerated() { values[i] = field.flatMap { value(of: $0, in: f) } }
        case .alert, .health, .gap:
            for i in fields.indices { values[i] = nil }
        }
    }

    /// The Sigma field names Vigil's events have.
    enum Field: String {
        case image = "Image"
        case commandLine = "CommandLine"
        case parentImage = "ParentImage"
        case parentCommandLine = "ParentCommandLine"
        case currentDirectory = "CurrentDirectory"
        case user = "User"
        case logonId = "LogonId"
        case processId = "ProcessId"
        case parentProcessId = "ParentProcessId"
        case targetFilename = "TargetFilename"
        case sourceFilename = "SourceFilename"
        case fileMode = "FileMode"
        case setUID = "SetUID"
        case setGID = "SetGID"
        case hashes = "Hashes"
        case `protocol` = "Protocol"
        case sourceIp = "SourceIp"
        case sourcePort = "SourcePort"
        case destinationIp = "DestinationIp"
        case destinationPort = "DestinationPort"
        case initiated = "Initiated"
        case destinationHostname = "DestinationHostname"
        case queryName = "QueryName"
        case queryResults = "QueryResults"
    }

    static func value(of field: Field, in p: ProcessEvent) -> String? {
        switch field {
        case .image: p.image
        case .commandLine: p.commandLine
        case .parentImage: p.parentImage
        case .parentCommandLine: p.parentCommandLine
        case .currentDirectory: p.currentDirectory
        case .user: p.user ?? p.uid.map(String.init)
        case .logonId: p.loginUid.map(String.init)
        case .processId: String(p.processId)
        case .parentProcessId: p.parentProcessId.map(String.init)
        default: nil
        }
    }

    static func value(of field: Field, in f: FileEvent) -> String? {
        switch field {
        case .targetFilename: f.targetFilename
        case .sourceFilename: f.sourceFilename
        case .image: f.image
        case .processId: f.processId.map(String.init)
        case .user: f.user
        case .fileMode: f.metadata.map { String($0.permissions, radix: 8) }
        case .setUID: f.metadata.map { $0.isSetUID ? "true" : "false" }
        case .setGID: f.metadata.map { $0.isSetGID ? "true" : "false" }
        case .hashes: f.sha256.map { "SHA256=\($0)" }
        default: nil
        }
    }

    func value(of field: Field, in f: FlowEvent) -> String? {
        switch field {
        case .image: f.image
        case .processId: f.processId.map(String.init)
        case .protocol: f.proto
        case .sourceIp: f.origH
        case .sourcePort: String(f.origP)
        case .destinationIp: f.respH
        case .destinationPort: String(f.respP)
        case .initiated: localAddresses.map { $0.contains(f.origH) ? "true" : "false" }
        case .destinationHostname: f.serverName
        case .queryName: f.dnsQuery
        case .queryResults: f.dnsAnswers?.joined(separator: ";")
        default: nil
        }
    }
}
