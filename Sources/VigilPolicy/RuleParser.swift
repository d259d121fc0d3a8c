import Yams

/// What reading one rule document gave.
enum ParsedRule {
    case rule(SigmaRule)
    /// Valid Sigma that uses a feature Vigil does not evaluate.
    case unsupported(id: String, title: String, line: Int, reason: String)
}

/// Reads Sigma rule documents from composed YAML, reporting mistakes as `PolicyError`s.
struct RuleParser {
    let file: String

    static let levels = ["informational", "low", "medium", "high", "critical"]
    static let statuses = ["stable", "test", "experimental", "deprecated", "unsupported"]
    static let maximumSelections = 1024
    static let maximumValues = 100_000

    func parse(_ root: Node) throws -> ParsedRule {
        let top = try YAMLMapping(file: file, node: root, what: "a Sigma rule")
        let line = root.mark?.line ?? 1
        let title = try requiredString(top, "title")
        guard title.count <= 256 else {
            throw PolicyError(file: file, at: top.value("title"), "title is longer than 256 characters")
        }
        let id = try requiredString(top, "id")
        guard id.count <= 128, id.allSatisfy({ !$0.isWhitespace && !$0.isNewline }) else {
            throw PolicyError(file: file, at: top.value("id"), "id must be at most 128 characters without spaces")
        }
        if top.value("action") != nil {
            return .unsupported(
                id: id,
                title: title,
                line: line,
                reason: "multi-document rule collections ('action') are not supported"
            )
        }
        if top.value("correlation") != nil {
            return .unsupported(id: id, title: title, line: line, reason: "correlation rules are not supported")
        }
        let level = try optionalString(top, "level") ?? "medium"
        guard Self.levels.contains(level) else {
            throw PolicyError(
                file: file,
                at: top.value("level"),
                "level must be one of \(Self.levels.joined(separator: ", ")), got '\(level)'"
            )
        }
        let status = try optionalString(top, "status")
        if let status, !Self.statuses.contains(status) {
            throw PolicyError(
                file: file,
                at: top.value("status"),
                "status must be one of \(Self.statuses.joined(separator: ", ")), got '\(status)'"
            )
        }
        let logsourceNode = try required(top, "logsource")
        let logsourceMap = try YAMLMapping(file: file, node: logsourceNode, what: "logsource")
        let logsource = LogSource(
            product: try optionalString(logsourceMap, "product"),
            category: try optionalString(logsourceMap, "category"),
            service: try optionalString(logsourceMap, "service")
        )
        let modifiers = ModifierParser(file: file)
        let vigil =
            try top.value("vigil").map { try VigilSettings.parse($0, file: file, modifiers: modifiers) }
            ?? VigilSettings()

        let detection: Detection
        do {
            detection = try parseDetection(try required(top, "detection"), modifiers: modifiers)
        } catch let u as ModifierParser.Unsupported {
            return .unsupported(id: id, title: title, line: line, reason: u.reason)
        } catch let u as ConditionParser.Unsupported {
            return .unsupported(id: id, title: title, line: line, reason: u.reason)
        }
        return .rule(
            SigmaRule(
                title: title,
                id: id,
                status: status,
                description: try optionalString(top, "description"),
                level: level,
                tags: try top.stringList("tags", context: "rule") ?? [],
                author: try optionalString(top, "author"),
                references: try top.stringList("references", context: "rule") ?? [],
                falsepositives: try top.stringList("falsepositives", context: "rule") ?? [],
                logsource: logsource,
                detection: detection,
                vigil: vigil,
                file: file,
                line: line
            )
        )
    }

    private func parseDetection(_ node: Node, modifiers: ModifierParser) throws -> Detection {
        let map = try YAMLMapping(file: file, node: node, what: "detection")
        var selections: [(name: String, selection: Selection)] = []
        var conditionNode: Node?
        var valueCount = 0
        for (key, value) in map.mapping {
            guard let name = key.string, !name.isEmpty else {
                throw PolicyError(file: file, at: key, "detection keys must be selection names")
            }
            switch name {
            case "condition": conditionNode = value
            case "timeframe": continue
            default:
                guard !selections.contains(where: { $0.name == name }) else {
                    throw PolicyError(file: file, at: key, "selection '\(name)' is defined twice")
                }
                guard selections.count < Self.maximumSelections else {
                    throw PolicyError(file: file, at: key, "more than \(Self.maximumSelections) selections")
                }
                let selection = try parseSelection(name: name, value, modifiers: modifiers)
                valueCount += selection.groups.reduce(0) { $0 + $1.reduce(0) { $0 + $1.values.count } }
                guard valueCount <= Self.maximumValues else {
                    throw PolicyError(file: file, at: key, "detection holds more than \(Self.maximumValues) values")
                }
                selections.append((name, selection))
            }
        }
        guard let conditionNode else { throw PolicyError(file: file, at: node, "detection needs a 'condition'") }
        guard !selections.isEmpty else { throw PolicyError(file: file, at: node, "detection has no selections") }
        let names = selections.map(\.name)
        var conditions: [Condition] = []
        let conditionNodes: [Node]
        if case .sequence(let seq) = conditionNode, !seq.isEmpty {
            conditionNodes = Array(seq)
        } else {
            conditionNodes = [conditionNode]
        }
        for cnode in conditionNodes {
            guard case .scalar(let scalar) = cnode else {
                throw PolicyError(file: file, at: cnode, "condition must be a string (or a list of strings)")
            }
            do {
                conditions.append(try ConditionParser.parse(scalar.string, selections: names))
            } catch let failure as ConditionParser.Failure {
                let quote = scalar.style == .singleQuoted || scalar.style == .doubleQuoted ? 1 : 0
                throw PolicyError(
                    file: file,
                    line: cnode.mark?.line ?? 1,
                    column: (cnode.mark?.column ?? 1) + quote + failure.offset,
                    message: failure.message
                )
            }
        }
        return Detection(selections: selections, condition: conditions.count == 1 ? conditions[0] : .or(conditions))
    }

    private func parseSelection(name: String, _ node: Node, modifiers: ModifierParser) throws -> Selection {
        switch node {
        case .mapping(let m):
            return Selection(groups: [try parseGroup(m, node: node, modifiers: modifiers)])
        case .sequence(let seq):
            guard !seq.isEmpty else { throw PolicyError(file: file, at: node, "selection '\(name)' is an empty list") }
            if seq.allSatisfy({ if case .mapping = $0 { true } else { false } }) {
                var groups: [[FieldTest]] = []
                for item in seq {
                    guard case .mapping(let m) = item else { continue }
                    groups.append(try parseGroup(m, node: item, modifiers: modifiers))
                }
                return Selection(groups: groups)
            }
            if let bad = seq.first(where: { if case .scalar = $0 { false } else { true } }) {
                throw PolicyError(
                    file: file,
                    at: bad,
                    "selection '\(name)' mixes keywords and field mappings, or nests lists"
                )
            }
            return Selection(groups: [[try modifiers.fieldTest(key: "", keyNode: node, value: node)]])
        case .scalar:
            return Selection(groups: [[try modifiers.fieldTest(key: "", keyNode: node, value: node)]])
        case .alias:
            throw PolicyError(file: file, at: node, "selection '\(name)' must be a mapping or a list")
        }
    }

    private func parseGroup(_ mapping: Node.Mapping, node: Node, modifiers: ModifierParser) throws -> [FieldTest] {
        guard !mapping.isEmpty else { throw PolicyError(file: file, at: node, "empty mapping in a selection") }
        var tests: [FieldTest] = []
        for (key, value) in mapping {
            guard case .scalar(let k) = key else {
                throw PolicyError(file: file, at: key, "selection keys must be field names")
            }
            if k.string.hasPrefix("|") {
                // `'|all'` on a keyword list: a field-less key with modifiers.
                tests.append(try modifiers.fieldTest(key: k.string, keyNode: key, value: value))
                continue
            }
            guard !k.string.isEmpty else { throw PolicyError(file: file, at: key, "empty field name") }
            tests.append(try modifiers.fieldTest(key: k.string, keyNode: key, value: value))
        }
        return tests
    }

    private func required(_ map: YAMLMapping, _ key: String) throws(PolicyError) -> Node {
        guard let node = map.value(key) else { throw PolicyError(file: file, at: map.node, "rule needs '\(key)'") }
        return node
    }

    private func requiredString(_ map: YAMLMapping, _ key: String) throws(PolicyError) -> String {
        let node = try required(map, key)
        guard case .scalar(let s) = node, !s.string.isEmpty else {
            throw PolicyError(file: file, at: node, "'\(key)' must be a non-empty string")
        }
        return s.string
    }

    private func optionalString(_ map: YAMLMapping, _ key: String) throws(PolicyError) -> String? {
        guard let node = map.value(key) else { return nil }
        guard case .scalar(let s) = node else { throw PolicyError(file: file, at: node, "'\(key)' must be a string") }
        return s.string
    }
}
