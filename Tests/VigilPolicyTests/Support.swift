import Foundation
import Testing
import VigilPolicy

/// A rule document around `detection` (indented YAML), for matcher tests.
func rule(id: String = "r1", category: String = "process_creation", _ detection: String, extra: String = "") -> String {
    """
    title: Test rule \(id)
    id: \(id)
    level: high
    tags: [attack.t1059.004]
    author: Tester
    logsource:
        product: linux
        category: \(category)
    detection:
    \(detection)
    \(extra)
    """
}

/// Compiles YAML text, failing the test on any error.
func policy(_ yaml: String, sourceLocation: SourceLocation = #_sourceLocation) -> PolicySet {
    let (rules, report) = PolicyLoader.load(yaml: yaml, file: "test.yml")
    #expect(report.errors.isEmpty, "\(report.errors)", sourceLocation: sourceLocation)
    return PolicySet(rules: rules, report: report)
}

/// The errors of YAML text, as `file:line:column: message`.
func errors(_ yaml: String) -> [String] {
    PolicyLoader.load(yaml: yaml, file: "test.yml").report.errors.map(\.description)
}

func process(_ values: [String: String]) -> DictionaryFields {
    DictionaryFields(category: .processCreation, values: values)
}

/// Whether the policy's rules match, checked with both the compiled and the direct evaluator
/// (which must agree).
func matches(_ policy: PolicySet, _ fields: DictionaryFields, sourceLocation: SourceLocation = #_sourceLocation) -> Bool
{
    let compiled = !policy.matchingRules(fields).isEmpty
    let direct = policy.compiled.rules.contains { rule in
        guard let m = DirectMatcher(rule: rule) else { return false }
        return m.matches(fields) && !m.isException(fields)
    }
    #expect(
        compiled == direct,
        "compiled and direct evaluators disagree on \(fields.values)",
        sourceLocation: sourceLocation
    )
    return compiled
}

/// The repository root, from this file's path.
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The SigmaHQ Linux corpus beside the repository, nil (or a failure in CI) when missing.
func corpusDirectory() -> String? {
    let path = URL(fileURLWithPath: repositoryRoot).appendingPathComponent("../shared/corpora/sigma-linux").standardized
        .path
    if FileManager.default.fileExists(atPath: path + "/rules/linux") { return path }
    if ProcessInfo.processInfo.environment["CI"] == "true" {
        Issue.record("the SigmaHQ corpus is missing at \(path); CI must have it")
    }
    return nil
}

/// A fixture line: an event and whether `rule` must match it.
struct RuleFixture: Decodable {
    var rule: String
    var match: Bool
    var event: [String: JSONScalar]
    var line = 0

    enum CodingKeys: String, CodingKey { case rule, match, event }

    var fields: DictionaryFields {
        var values = event.compactMapValues(\.text)
        let category = EventCategory(rawValue: values.removeValue(forKey: "category") ?? "") ?? .processCreation
        return DictionaryFields(category: category, values: values)
    }

    static func load(_ name: String) throws -> [RuleFixture] {
        let path = repositoryRoot + "/Tests/VigilPolicyTests/Fixtures/" + name
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var out: [RuleFixture] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty
        {
            var fixture = try JSONDecoder().decode(RuleFixture.self, from: Data(line.utf8))
            fixture.line = n + 1
            out.append(fixture)
        }
        return out
    }
}

enum JSONScalar: Decodable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else {
            self = .string(try c.decode(String.self))
        }
    }

    var text: String? {
        switch self {
        case .string(let s): s
        case .number(let n): n == n.rounded() ? String(Int64(n)) : String(n)
        case .bool(let b): b ? "true" : "false"
        case .null: nil
        }
    }
}
