/// Filters for event queries. All are optional and combine with AND.
///
/// Shared by the collector (which parses it from `GET /v1/events`' query string with
/// `parse(_:maxLimit:)`) and its stores; kept here, free of HTTP types, so the parsing can be
/// fuzzed and reused without the collector's server stack.
public struct EventQuery: Sendable, Hashable {
    public var agentId: String?
    public var types: [EventType]
    public var ruleId: String?
    public var since: Timestamp?
    public var until: Timestamp?
    /// Return events with a storage id greater than this (cursor paging).
    public var after: Int64?
    public var limit: Int

    public init(
        agentId: String? = nil,
        types: [EventType] = [],
        ruleId: String? = nil,
        since: Timestamp? = nil,
        until: Timestamp? = nil,
        after: Int64? = nil,
        limit: Int = 100
    ) {
        self.agentId = agentId
        self.types = types
        self.ruleId = ruleId
        self.since = since
        self.until = until
        self.after = after
        self.limit = limit
    }

    /// Why a query string was refused; `message` names the parameter.
    public struct Refusal: Error, Sendable, Hashable, CustomStringConvertible {
        public var message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    /// The parameters `parse` knows.
    public static let parameterNames = ["after", "agent", "limit", "rule", "since", "type", "until"]

    /// Parses percent-decoded query parameters, in order. A repeated parameter counts once: its
    /// first value. Any unknown parameter is refused (a typo must not widen a query silently).
    public static func parse<Key: StringProtocol, Value: StringProtocol>(
        _ parameters: some Sequence<(key: Key, value: Value)>,
        maxLimit: Int
    ) throws(Refusal) -> EventQuery {
        var first: [String: String] = [:]
        for (key, value) in parameters {
            let name = String(key)
            guard parameterNames.contains(name) else {
                throw Refusal("unknown query parameter '\(name)'; known: \(parameterNames.joined(separator: ", "))")
            }
            if first[name] == nil { first[name] = String(value) }
        }
        var q = EventQuery()
        if let agent = first["agent"] {
            guard isValidAgentId(agent) else { throw Refusal("agent: not a valid agent id") }
            q.agentId = agent
        }
        if let types = first["type"] {
            var parsed: [EventType] = []
            for name in types.split(separator: ",") {
                guard let t = EventType(rawValue: String(name)) else {
                    throw Refusal(
                        "type: '\(name)' is not one of \(EventType.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                parsed.append(t)
            }
            q.types = parsed
        }
        if let rule = first["rule"] {
            guard !rule.isEmpty, rule.utf8.count <= 200 else { throw Refusal("rule: must be 1-200 characters") }
            q.ruleId = rule
        }
        for (name, keyPath) in [("since", \EventQuery.since), ("until", \EventQuery.until)] {
            if let text = first[name] {
                guard let t = TimeSpec.parse(text) else {
                    throw Refusal(
                        "\(name): '\(text)' is not a time (use 15m, 2h, 7d, epoch seconds or 2026-11-28T13:00:00Z)"
                    )
                }
                q[keyPath: keyPath] = t
            }
        }
        if let after = first["after"] {
            guard let v = Int64(after), v >= 0 else { throw Refusal("after: must be a non-negative integer cursor") }
            q.after = v
        }
        if let limit = first["limit"] {
            guard let v = Int(limit), v >= 1, v <= maxLimit else {
                throw Refusal("limit: must be an integer from 1 to \(maxLimit)")
            }
            q.limit = v
        }
        return q
    }

    /// Agent ids are 1-64 characters of [A-Za-z0-9._-] (checked at enrollment, in queries and by
    /// `vigilctl keygen`).
    public static func isValidAgentId(_ id: String) -> Bool {
        guard (1...64).contains(id.utf8.count) else { return false }
        return id.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x5f
                || c == 0x2d
        }
    }
}
