import Yams

/// Vigil's per-rule settings, under a `vigil:` key that other Sigma tools ignore.
///
/// ```yaml
/// vigil:
///   action: alert              # alert (default) or log: a `log` hit is recorded, not raised
///   rate_limit:                # at most `max` hits per `per`; further hits are dropped and counted
///     max: 10
///     per: 1m                  # s, m, h or d; a bare number is seconds
///   suppress:                  # after a hit, identical hits (same values of `by`) within
///     window: 10m              # `window` are suppressed; the next reported hit carries the count
///     by: [Image, CommandLine]
///   exceptions:                # field tests (Sigma keys, modifiers allowed); a hit matching
///     Image: /usr/bin/apt      # any one of them is dropped
///     CommandLine|contains: [--dry-run]
/// ```
public struct VigilSettings: Sendable, Hashable {
    /// What a hit does.
    public enum Action: String, Sendable, Hashable {
        case alert, log
    }

    public struct RateLimit: Sendable, Hashable {
        public var max: Int
        public var perNanoseconds: Int64
    }

    public struct Suppression: Sendable, Hashable {
        public var windowNanoseconds: Int64
        /// Fields whose values identify "the same" hit; empty means any hit of the rule.
        public var by: [String]
    }

    public var action: Action = .alert
    public var rateLimit: RateLimit?
    public var suppression: Suppression?
    /// Any matching test drops the hit.
    public var exceptions: [FieldTest] = []

    public init() {}

    static func parse(_ node: Node, file: String, modifiers: ModifierParser) throws -> VigilSettings {
        let map = try YAMLMapping(file: file, node: node, what: "vigil")
        try map.checkKeys(["action", "rate_limit", "suppress", "exceptions"], context: "vigil")
        var settings = VigilSettings()
        if let action = map.value("action") {
            guard let text = action.string, let value = Action(rawValue: text) else {
                throw PolicyError(file: file, at: action, "vigil.action must be 'alert' or 'log'")
            }
            settings.action = value
        }
        if let rate = try map.mapping("rate_limit", context: "vigil") {
            try rate.checkKeys(["max", "per"], context: "vigil.rate_limit")
            guard let max = try rate.integer("max", context: "vigil.rate_limit", range: 1...1_000_000) else {
                throw PolicyError(file: file, at: rate.node, "vigil.rate_limit needs 'max'")
            }
            guard let per = rate.value("per") else {
                throw PolicyError(file: file, at: rate.node, "vigil.rate_limit needs 'per'")
            }
            settings.rateLimit = RateLimit(
                max: Int(max),
                perNanoseconds: try duration(per, file: file, what: "vigil.rate_limit.per")
            )
        }
        if let suppress = try map.mapping("suppress", context: "vigil") {
            try suppress.checkKeys(["window", "by"], context: "vigil.suppress")
            guard let window = suppress.value("window") else {
                throw PolicyError(file: file, at: suppress.node, "vigil.suppress needs 'window'")
            }
            settings.suppression = Suppression(
                windowNanoseconds: try duration(window, file: file, what: "vigil.suppress.window"),
                by: try suppress.stringList("by", context: "vigil.suppress") ?? []
            )
        }
        if let exceptions = try map.mapping("exceptions", context: "vigil") {
            for (key, value) in exceptions.mapping {
                guard let name = key.string, !name.isEmpty else {
                    throw PolicyError(file: file, at: key, "vigil.exceptions keys must be field names")
                }
                do {
                    let test = try modifiers.fieldTest(key: name, keyNode: key, value: value)
                    guard test.field != nil else {
                        throw PolicyError(file: file, at: key, "vigil.exceptions keys must be field names")
                    }
                    settings.exceptions.append(test)
                } catch let unsupported as ModifierParser.Unsupported {
                    throw PolicyError(file: file, at: key, "vigil.exceptions: \(unsupported.reason)")
                }
            }
        }
        return settings
    }

    /// `30s`, `5m`, `2h`, `1d` or a bare number of seconds, up to 30 days.
    static func duration(_ node: Node, file: String, what: String) throws(PolicyError) -> Int64 {
        let text = node.string ?? ""
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var digits = Substring(text)
        var unit: Int64 = 1
        if let last = text.last, let u = units[last] {
            unit = u
            digits = digits.dropLast()
        }
        guard let n = Int64(digits), n > 0, n * unit <= 30 * 86400 else {
            throw PolicyError(
                file: file,
                at: node,
                "\(what) must be a duration like 30s, 5m, 2h or 1d (at most 30d), got '\(text)'"
            )
        }
        return n * unit * 1_000_000_000
    }
}
