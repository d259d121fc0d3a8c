import Yams

/// A problem in a policy file, located to the line and column: `file:line:column: message`.
public struct PolicyError: Error, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    init(file: String, at node: Node?, _ message: String) {
        self.init(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, message: message)
    }

    /// Converts a Yams parse error into a located error.
    public init(file: String, yamlError error: any Error) {
        switch error {
        case YamlError.scanner(_, let problem, let mark, _), YamlError.parser(_, let problem, let mark, _),
            YamlError.composer(_, let problem, let mark, _):
            self.init(file: file, line: mark.line, column: mark.column, message: "YAML syntax: \(problem)")
        default:
            self.init(file: file, line: 1, column: 1, message: "YAML: \(error)")
        }
    }

    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// Typed access to a composed YAML mapping that reports every mistake with its location.
struct YAMLMapping {
    let file: String
    let node: Node
    let mapping: Node.Mapping

    init(file: String, node: Node, what: String) throws(PolicyError) {
        guard case .mapping(let m) = node else {
            throw PolicyError(file: file, at: node, "\(what) must be a mapping (key: value)")
        }
        self.file = file
        self.node = node
        self.mapping = m
    }

    /// Refuses keys outside `known`, suggesting the list (typos are the usual cause).
    func checkKeys(_ known: [String], context: String) throws(PolicyError) {
        for (key, _) in mapping {
            guard let name = key.string, known.contains(name) else {
                throw PolicyError(
                    file: file,
                    at: key,
                    "unknown key '\(key.string ?? "?")' in \(context); expected one of: \(known.joined(separator: ", "))"
                )
            }
        }
    }

    func value(_ key: String) -> Node? { mapping[key] }

    func mapping(_ key: String, context: String) throws(PolicyError) -> YAMLMapping? {
        guard let v = mapping[key] else { return nil }
        return try YAMLMapping(file: file, node: v, what: "\(context).\(key)")
    }

    func stringList(_ key: String, context: String) throws(PolicyError) -> [String]? {
        guard let v = mapping[key] else { return nil }
        guard case .sequence(let seq) = v else {
            throw PolicyError(file: file, at: v, "\(context).\(key) must be a list")
        }
        var out: [String] = []
        for item in seq {
            guard case .scalar(let s) = item, !s.string.isEmpty else {
                throw PolicyError(file: file, at: item, "\(context).\(key) entries must be non-empty strings")
            }
            out.append(s.string)
        }
        return out
    }

    func integer(_ key: String, context: String, range: ClosedRange<Int64>) throws(PolicyError) -> Int64? {
        guard let v = mapping[key] else { return nil }
        guard case .scalar(let s) = v, let n = Int64(s.string.replacingUnderscores) else {
            throw PolicyError(file: file, at: v, "\(context).\(key) must be an integer")
        }
        guard range.contains(n) else {
            throw PolicyError(
                file: file,
                at: v,
                "\(context).\(key) must be between \(range.lowerBound) and \(range.upperBound), got \(n)"
            )
        }
        return n
    }
}

extension String {
    var replacingUnderscores: String { String(filter { $0 != "_" }) }
}
