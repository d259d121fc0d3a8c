import VigilCore

/// Evaluates rules straight from their parsed form, one test after another: the reference the
/// compiled matcher is checked against, the naive baseline of the benchmark, and the evaluator
/// of `vigil.exceptions` (which only runs on hits).
public struct DirectMatcher: Sendable {
    let rule: SigmaRule
    let category: EventCategory
    let regexes: [RegexKey: CompiledRegex]

    struct RegexKey: Hashable {
        var pattern: String
        var options: RegexOptions
    }

    /// Nil when the rule is not applicable.
    public init?(rule: SigmaRule) {
        guard case .applicable(let category) = Applicability.of(rule) else { return nil }
        self.rule = rule
        self.category = category
        var regexes: [RegexKey: CompiledRegex] = [:]
        let tests = rule.detection.selections.flatMap { $0.selection.groups.flatMap { $0 } } + rule.vigil.exceptions
        for test in tests {
            for variants in test.values {
                for case .regex(let pattern, let options) in variants {
                    regexes[RegexKey(pattern: pattern, options: options)] = try? CompiledRegex(
                        pattern: pattern,
                        options: options
                    )
                }
            }
        }
        self.regexes = regexes
    }

    /// Whether the rule's detection and none of its exceptions match `event` (concrete, so
    /// callers in other modules get the specialized evaluation).
    public func matchesWithoutException(_ event: Event) -> Bool {
        let fields = EventFields(event)
        return matches(fields) && !isException(fields)
    }

    /// Whether the rule's detection matches (exceptions not applied).
    public func matches(_ fields: some SigmaFields) -> Bool {
        guard fields.categories.contains(category) else { return false }
        return evaluate(rule.detection.condition, fields)
    }

    /// Whether any of the rule's `vigil.exceptions` matches.
    public func isException(_ fields: some SigmaFields) -> Bool {
        rule.vigil.exceptions.contains { test($0, fields) }
    }

    private func evaluate(_ condition: Condition, _ fields: some SigmaFields) -> Bool {
        switch condition {
        case .selection(let name):
            guard let selection = rule.detection.selection(named: name) else { return false }
            return selection.groups.contains { group in group.allSatisfy { test($0, fields) } }
        case .and(let terms): return terms.allSatisfy { evaluate($0, fields) }
        case .or(let terms): return terms.contains { evaluate($0, fields) }
        case .not(let term): return !evaluate(term, fields)
        }
    }

    func test(_ test: FieldTest, _ fields: some SigmaFields) -> Bool {
        let one = { (variants: [ValueMatcher]) in variants.contains { self.matches($0, field: test.field, fields) } }
        return test.requireAll ? test.values.allSatisfy(one) : test.values.contains(where: one)
    }

    private func matches(_ matcher: ValueMatcher, field: String?, _ fields: some SigmaFields) -> Bool {
        guard let field else {
            // Keyword: any field of the event.
            return category.fields.contains { matches(matcher, field: $0, fields) }
        }
        let value = fields.value(of: field)
        switch matcher {
        case .null: return value == nil || value == ""
        case .exists(let flag): return (value != nil) == flag
        default: break
        }
        guard let value else { return false }
        switch matcher {
        case .string(let pattern):
            return pattern.matches(Array((pattern.cased ? value : value.lowercased()).utf8))
        case .regex(let pattern, let options):
            return regexes[RegexKey(pattern: pattern, options: options)]?.matches(value) ?? false
        case .cidr(let network):
            return network.contains(value)
        case .numeric(let op, let bound):
            guard let number = Double(value) else { return false }
            return op.holds(number, bound)
        case .fieldReference(let other, let anchor, let cased):
            guard let otherValue = fields.value(of: other) else { return false }
            return StringPattern(sigma: otherValue, anchor: anchor, cased: cased, wildcards: false)
                .matches(Array((cased ? value : value.lowercased()).utf8))
        case .null, .exists:
            return false
        }
    }
}
