/// The Sigma `logsource` categories Vigil's events map to (product `linux`), and the fields each
/// one provides, by their Sigma / Sysmon-for-Linux names.
public enum EventCategory: String, CaseIterable, Sendable, Hashable {
    case processCreation = "process_creation"
    case fileEvent = "file_event"
    case fileChange = "file_change"
    case fileDelete = "file_delete"
    case fileRename = "file_rename"
    case networkConnection = "network_connection"
    /// A flow that carried DNS (its first query name and answer addresses): Sysmon's event 22.
    case dnsQuery = "dns_query"

    /// Fields Vigil fills for events of this category. A rule testing any other field is not
    /// applicable (it could never match), except with `exists: false` or `null`.
    public var fields: [String] {
        switch self {
        case .processCreation:
            [
                "Image", "CommandLine", "ParentImage", "ParentCommandLine", "CurrentDirectory", "User",
                "LogonId", "ProcessId", "ParentProcessId",
            ]
        case .fileEvent, .fileChange, .fileDelete, .fileRename:
            [
                "TargetFilename", "SourceFilename", "Image", "ProcessId", "User", "FileMode", "SetUID", "SetGID",
                "Hashes",
            ]
        case .networkConnection:
            [
                "Image", "ProcessId", "Protocol", "Initiated", "SourceIp", "SourcePort", "DestinationIp",
                "DestinationPort", "DestinationHostname", "QueryName", "QueryResults",
            ]
        case .dnsQuery:
            ["Image", "ProcessId", "QueryName", "QueryResults"]
        }
    }
}

/// Read access to one event's fields, by Sigma name: the matcher's only view of an event, so
/// live `Event` values and JSON-lines test events are evaluated by the same code.
public protocol SigmaFields: Sendable {
    /// The categories this event belongs to (a rewritten file is both `file_event` and `file_change`).
    var categories: [EventCategory] { get }
    /// The field's value as text, nil when the event does not have it.
    func value(of field: String) -> String?
    /// Sets `values[i]` to the value of `names[i]` (`values` has room for them all): how the
    /// compiled matcher reads an event, once per field.
    func values(of names: [String], into values: inout [String?])
}

extension SigmaFields {
    public func values(of names: [String], into values: inout [String?]) {
        for (i, name) in names.enumerated() { values[i] = value(of: name) }
    }
}

/// Fields given as a dictionary (JSON-lines test events, tests).
public struct DictionaryFields: SigmaFields, Sendable {
    public var categories: [EventCategory]
    public var values: [String: String]

    public init(category: EventCategory, values: [String: String]) {
        self.categories = [category]
        self.values = values
    }

    public func value(of field: String) -> String? { values[field] }
}
