/// Filters for event queries. All are optional and combine with AND.
///
/// Shared by the collector (which parses it from the query string of `GET /v1/events` and
/// `GET /v1/alerts` with `parse(_:maxLimit:alertsOnly:)`) and its stores; kept here, free of HTTP
/// types, so the parsing can be fuzzed and reused without the collector's server stack.
public struct EventQuery: Sendable, Hashable {
    public var agentId: String?
    public var types: [EventType]
    public var ruleId: String?
    /// Only alerts of these levels, in level order; nil: no level filter. Non-alert events have no
    /// level, so any level filter leaves them out. Empty (`level` and `min_level` that do not
    /// overlap) matches nothing.
    public var levels: [AlertLevel]?
    /// Field equality filters (`field=NAME:VALUE`), all of which must hold.
    public var fields: [FieldMatch]
    public var since: Timestamp?
    public var until: Timestamp?
    /// Return events with a storage id greater than this (cursor paging, `order` ascending only).
    public var after: Int64?
    /// Return events with a storage id less than this (cursor paging, `order` descending only).
    public var before: Int64?
    /// Storage-id order of the results: ascending (oldest first, the default) or descending
    /// (newest first).
    public var order: Order
    public var limit: Int

    /// The order of a page, by storage id (arrival order).
    public enum Order: String, Sendable, Hashable, CaseIterable {
        /// Oldest first; paged on with `after`.
        case asc
        /// Newest first; paged on with `before`.
        case desc
    }

    public init(
        agentId: String? = nil,
        types: [EventType] = [],
        ruleId: String? = nil,
        levels: [AlertLevel]? = nil,
        fields: [FieldMatch] = [],
        since: Timestamp? = nil,
        until: Timestamp? = nil,
        after: Int64? = nil,
        before: Int64? = nil,
        order: Order = .asc,
        limit: Int = 100
    ) {
        self.agentId = agentId
        self.types = types
        self.ruleId = ruleId
        self.levels = levels
        self.fields = fields
        self.since = since
        self.until = until
        self.after = after
        self.before = before
        self.order = order
        self.limit = limit
    }

    /// Why a query string was refused; `message` names the parameter.
    public struct Refusal: Error, Sendable, Hashable, CustomStringConvertible {
        public var message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    /// The parameters `parse` knows.
    public static let parameterNames = [
        "after", "agent", "before", "field", "level", "limit", "min_level", "order", "rule", "since", "type",
        "until",
    ]

    /// The most `field` filters one query may carry.
    public static let maxFieldFilters = 8

    /// Parses percent-decoded query parameters, in order. `field` may repeat (every one must
    /// hold); any other repeated parameter counts once: its first value. Any unknown parameter is
    /// refused (a typo must not widen a query silently).
    ///
    /// With `alertsOnly` (`GET /v1/alerts`) the query is for alerts: `type` is refused, since only
    /// alerts are served, and `types` is `[.alert]`.
    ///
    /// `order` is `asc` (the default) or `desc`. Each order has its own cursor: `after` pages on
    /// an ascending query, `before` a descending one; the other cursor is refused, so that a
    /// cursor from one order is never read silently as a bound of the other.
    public static func parse<Key: StringProtocol, Value: StringProtocol>(
        _ parameters: some Sequence<(key: Key, value: Value)>,
        maxLimit: Int,
        alertsOnly: Bool = false
    ) throws(Refusal) -> EventQuery {
        var first: [String: String] = [:]
        var fieldTexts: [String] = []
        for (key, value) in parameters {
            let name = String(key)
            guard parameterNames.contains(name) else {
                throw Refusal("unknown query parameter '\(name)'; known: \(parameterNames.joined(separator: ", "))")
            }
            if name == "field" {
                guard fieldTexts.count < maxFieldFilters else {
                    throw Refusal("field: at most \(maxFieldFilters) field filters in one query")
                }
                fieldTexts.append(String(value))
            } else if first[name] == nil {
                first[name] = String(value)
            }
        }
        var q = EventQuery()
        if alertsOnly {
            guard first["type"] == nil else {
                throw Refusal("type: this route returns alerts only; leave out type (other types: /v1/events?type=…)")
            }
            q.types = [.alert]
        }
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
        if let text = first["level"] {
            var levels: [AlertLevel] = []
            for name in text.split(separator: ",", omittingEmptySubsequences: false) {
                guard let level = AlertLevel(rawValue: String(name)) else {
                    throw Refusal("level: '\(name)' is not one of \(AlertLevel.names)")
                }
                levels.append(level)
            }
            q.levels = levels
        }
        if let text = first["min_level"] {
            guard let least = AlertLevel(rawValue: text) else {
                throw Refusal("min_level: '\(text)' is not one of \(AlertLevel.names)")
            }
            q.levels = (q.levels ?? AlertLevel.allCases).filter { $0 >= least }
        }
        if let levels = q.levels {
            q.levels = AlertLevel.allCases.filter(levels.contains)
        }
        for text in fieldTexts {
            q.fields.append(try FieldMatch.parse(text))
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
        if let text = first["order"] {
            guard let order = Order(rawValue: text) else { throw Refusal("order: '\(text)' is not asc or desc") }
            q.order = order
        }
        if let after = first["after"] {
            guard q.order == .asc else {
                throw Refusal("after: order=desc pages with before=, not after= (after pages order=asc)")
            }
            guard let v = Int64(after), v >= 0 else { throw Refusal("after: must be a non-negative integer cursor") }
            q.after = v
        }
        if let before = first["before"] {
            guard q.order == .desc else {
                throw Refusal("before: only with order=desc (an ascending query pages with after=)")
            }
            guard let v = Int64(before), v >= 0 else {
                throw Refusal("before: must be a non-negative integer cursor")
            }
            q.before = v
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

/// A Sigma rule level, lowest first: what `level=` and `min_level=` filter alerts on.
public enum AlertLevel: String, CaseIterable, Sendable, Codable, Comparable {
    case informational, low, medium, high, critical

    /// `informational, low, medium, high, critical`, for messages and help.
    public static let names = allCases.map(\.rawValue).joined(separator: ", ")

    private var rank: Int {
        switch self {
        case .informational: 0
        case .low: 1
        case .medium: 2
        case .high: 3
        case .critical: 4
        }
    }

    public static func < (lhs: AlertLevel, rhs: AlertLevel) -> Bool { lhs.rank < rhs.rank }
}

/// A field the query API can filter on by equality (`field=NAME:VALUE`): a fixed list, each name
/// mapped to where the value sits in an event's JSON form. Stores look values up by these paths
/// with bound parameters; no text from a query ever becomes SQL.
public struct EventField: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// A JSON string, compared exactly (case-sensitive).
        case text
        /// A JSON integer; the query's value must be a decimal integer.
        case integer
        /// A JSON array of strings that must contain the value.
        case tag
    }

    /// `type.Key`, where `Key` is the key in the event's JSON (`process.Image`, `flow.resp_p`).
    public let name: String
    public let kind: Kind
    /// Where to look, in order; the first present value counts. Fields of file, process and flow
    /// events are also looked up in the event an alert carries (`alert.event.…`), so an alert
    /// matches on the event that triggered it.
    public let paths: [[String]]

    init(_ type: EventType, _ key: String, _ kind: Kind = .text) {
        name = "\(type.rawValue).\(key)"
        self.kind = kind
        switch type {
        case .file, .process, .flow:
            paths = [[type.rawValue, key], ["alert", "event", type.rawValue, key]]
        case .alert, .health, .gap:
            paths = [[type.rawValue, key]]
        }
    }

    public var description: String { name }

    /// Every field the query API filters on.
    public static let all: [EventField] = [
        EventField(.process, "Image"), EventField(.process, "CommandLine"), EventField(.process, "ParentImage"),
        EventField(.process, "ParentCommandLine"), EventField(.process, "CurrentDirectory"),
        EventField(.process, "User"), EventField(.process, "action"), EventField(.process, "comm"),
        EventField(.process, "container_id"), EventField(.process, "tty"),
        EventField(.process, "ProcessId", .integer), EventField(.process, "ParentProcessId", .integer),
        EventField(.process, "uid", .integer), EventField(.process, "euid", .integer),
        EventField(.file, "TargetFilename"), EventField(.file, "SourceFilename"), EventField(.file, "action"),
        EventField(.file, "sha256"), EventField(.file, "Image"), EventField(.file, "User"),
        EventField(.file, "ProcessId", .integer),
        EventField(.flow, "proto"), EventField(.flow, "orig_h"), EventField(.flow, "orig_p", .integer),
        EventField(.flow, "resp_h"), EventField(.flow, "resp_p", .integer), EventField(.flow, "state"),
        EventField(.flow, "community_id"), EventField(.flow, "Image"), EventField(.flow, "ProcessId", .integer),
        EventField(.alert, "title"), EventField(.alert, "author"), EventField(.alert, "tags", .tag),
        EventField(.health, "kind"),
    ]

    /// The field with this name, compared without regard to case (`process.image` is
    /// `process.Image`).
    public static func named(_ name: some StringProtocol) -> EventField? {
        let lower = name.lowercased()
        return all.first { $0.name.lowercased() == lower }
    }

    /// The names of every field, comma-separated, for messages and help.
    public static let names = all.map(\.name).joined(separator: ", ")
}

/// One `field=NAME:VALUE` filter: the field's value equals `value` (for a `tag` field: the array
/// contains it).
public struct FieldMatch: Sendable, Hashable, CustomStringConvertible {
    public enum Value: Sendable, Hashable {
        case text(String)
        case integer(Int64)
    }

    public var field: EventField
    public var value: Value

    public init(field: EventField, value: Value) {
        self.field = field
        self.value = value
    }

    /// The longest value a field filter may compare with, in UTF-8 bytes.
    public static let maxValueBytes = 1024

    public var description: String {
        switch value {
        case .text(let text): "\(field.name):\(text)"
        case .integer(let n): "\(field.name):\(n)"
        }
    }

    /// Parses `NAME:VALUE` (split at the first colon; the value may contain colons). Refusals
    /// start with `field:` and name the field, listing the known ones when the name is unknown.
    public static func parse(_ text: String) throws(EventQuery.Refusal) -> FieldMatch {
        guard let colon = text.firstIndex(of: ":") else {
            throw EventQuery.Refusal("field: '\(text)' is not NAME:VALUE (e.g. process.Image:/usr/bin/curl)")
        }
        let name = text[..<colon]
        let value = String(text[text.index(after: colon)...])
        guard let field = EventField.named(name) else {
            throw EventQuery.Refusal("field: unknown field '\(name)'; known: \(EventField.names)")
        }
        guard !value.isEmpty, value.utf8.count <= maxValueBytes else {
            throw EventQuery.Refusal("field: the value of \(field.name) must be 1-\(maxValueBytes) bytes")
        }
        switch field.kind {
        case .text, .tag:
            return FieldMatch(field: field, value: .text(value))
        case .integer:
            guard let n = Int64(value) else {
                throw EventQuery.Refusal("field: \(field.name) is an integer field; '\(value)' is not an integer")
            }
            return FieldMatch(field: field, value: .integer(n))
        }
    }
}
