import Foundation

/// `vigilctl policy test`: recorded events (JSON lines) run through a policy, compared with
/// expected matches.
///
/// An event line is an object of Sigma field names plus `"category"`, e.g.
/// `{"category":"process_creation","Image":"/usr/bin/curl","CommandLine":"curl -o /tmp/x http://..."}`.
/// Strings, numbers and booleans are field values; `null` means the field is absent. Blank lines
/// are skipped but counted, so event numbers are line numbers.
public enum PolicyTest {
    /// One test event and its 1-based line number.
    public struct TestEvent: Sendable {
        public var line: Int
        public var fields: DictionaryFields
    }

    /// A rule matching an event: `{"event": N, "rule": "ID", "title": "..."}`.
    public struct Match: Sendable, Hashable, Codable {
        public var event: Int
        public var rule: String
        public var title: String?

        public init(event: Int, rule: String, title: String?) {
            self.event = event
            self.rule = rule
            self.title = title
        }
    }

    /// What differs between expected and actual matches (titles are not compared).
    public struct Difference: Sendable, Hashable {
        public var missing: [Match]
        public var unexpected: [Match]
        public var isEmpty: Bool { missing.isEmpty && unexpected.isEmpty }
    }

    public static func parseEvents(_ text: String, file: String) throws(PolicyError) -> [TestEvent] {
        var events: [TestEvent] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            guard !line.allSatisfy(\.isWhitespace) else { continue }
            let object = try jsonObject(line, file: file, line: number)
            guard let name = object["category"] as? String else {
                throw PolicyError(file: file, line: number, column: 1, message: "event needs a \"category\" string")
            }
            guard let category = EventCategory(rawValue: name) else {
                throw PolicyError(
                    file: file,
                    line: number,
                    column: 1,
                    message:
                        "unknown category '\(name)'; expected one of \(EventCategory.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            var values: [String: String] = [:]
            for (key, value) in object where key != "category" {
                switch value {
                case is NSNull: continue
                case let s as String: values[key] = s
                case let b as Bool where type(of: value) == Bool.self: values[key] = b ? "true" : "false"
                case let n as NSNumber:
                    if let i = Int64(exactly: n.doubleValue) {
                        values[key] = String(i)
                    } else {
                        values[key] = n.stringValue
                    }
                default:
                    throw PolicyError(
                        file: file,
                        line: number,
                        column: 1,
                        message: "field '\(key)' must be a string, number, boolean or null"
                    )
                }
            }
            events.append(TestEvent(line: number, fields: DictionaryFields(category: category, values: values)))
        }
        return events
    }

    public static func parseMatches(_ text: String, file: String) throws(PolicyError) -> [Match] {
        var matches: [Match] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard !line.allSatisfy(\.isWhitespace) else { continue }
            let object = try jsonObject(line, file: file, line: index + 1)
            guard let event = (object["event"] as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) }), event > 0,
                let rule = object["rule"] as? String
            else {
                throw PolicyError(
                    file: file,
                    line: index + 1,
                    column: 1,
                    message: "expected {\"event\": N, \"rule\": \"ID\"}"
                )
            }
            matches.append(Match(event: event, rule: rule, title: object["title"] as? String))
        }
        return matches
    }

    /// Runs every event through `policy` (exceptions apply; rate limits and suppression do not).
    public static func run(_ policy: PolicySet, events: [TestEvent]) -> [Match] {
        events.flatMap { event in
            policy.matchingRules(event.fields).map { Match(event: event.line, rule: $0.id, title: $0.title) }
        }
    }

    public static func compare(expected: [Match], actual: [Match]) -> Difference {
        func key(_ m: Match) -> String { "\(m.event)\u{1F}\(m.rule)" }
        let expectedKeys = Set(expected.map(key))
        let actualKeys = Set(actual.map(key))
        return Difference(
            missing: expected.filter { !actualKeys.contains(key($0)) },
            unexpected: actual.filter { !expectedKeys.contains(key($0)) }
        )
    }

    private static func jsonObject(
        _ line: Substring,
        file: String,
        line number: Int
    ) throws(PolicyError) -> [String: Any] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw PolicyError(file: file, line: number, column: 1, message: "not a JSON object")
        }
        return object
    }
}
