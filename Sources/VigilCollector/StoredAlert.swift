import VigilCore

/// A stored alert, flattened for `GET /v1/alerts` and `vigilctl alerts`: where it came from, the
/// rule that fired, and the event that matched.
public struct StoredAlert: Sendable, Codable, Hashable {
    /// Storage id: the paging cursor, shared with `GET /v1/events`.
    public var id: Int64
    public var agentId: String
    public var batchSeq: UInt64
    public var seq: UInt64
    public var time: Timestamp
    public var ruleId: String
    public var title: String
    /// The rule's level as the agent sent it (normally informational, low, medium, high or
    /// critical).
    public var level: String
    /// The rule's tags, ATT&CK tags (`attack.execution`, `attack.t1059.004`) among them.
    public var tags: [String]
    /// The ATT&CK technique ids among `tags`: `attack.t1059.004` → `T1059.004`.
    public var techniques: [String]
    public var author: String?
    /// Hits of the same rule suppressed since the previous alert.
    public var suppressedCount: UInt64
    /// The event that matched, when the agent sent it.
    public var event: Event?
    /// `collector` for the collector's own chain-anomaly alerts (`ChainAlert`: seq 0, not signed
    /// by the agent); nil for an agent's rule match.
    public var origin: String?
    /// What the collector found (collector alerts); nil for an agent's rule match.
    public var detail: String?

    enum CodingKeys: String, CodingKey {
        case id
        case agentId = "agent_id"
        case batchSeq = "batch_seq"
        case seq, time
        case ruleId = "rule_id"
        case title, level, tags, techniques, author
        case suppressedCount = "suppressed_count"
        case event, origin, detail
    }

    /// The alert in a stored event; nil for any other event.
    public init?(_ stored: StoredEvent) {
        guard case .alert(let alert) = stored.event.payload else { return nil }
        id = stored.id
        agentId = stored.agentId
        batchSeq = stored.batchSeq
        seq = stored.event.seq
        time = stored.event.time
        ruleId = alert.ruleId
        title = alert.title
        level = alert.level
        tags = alert.tags
        techniques = OCSF.techniques(in: alert.tags)
        author = alert.author
        suppressedCount = alert.suppressedCount
        event = alert.event
        origin = alert.origin
        detail = alert.detail
    }
}

extension EventStore {
    /// The alerts that match `query`, in its order (by storage id): `query` with its types
    /// replaced by `[.alert]`.
    public func alerts(_ query: EventQuery) async throws -> [StoredAlert] {
        var query = query
        query.types = [.alert]
        return try await events(query).compactMap(StoredAlert.init)
    }
}
