/// The compiled rules of one event category.
struct CategoryIndex: Sendable {
    /// How an automaton hit satisfies a test.
    enum Use: Sendable {
        case exact, prefix, suffix, anywhere
        /// The hit is the glob's longest literal; the whole glob is then checked.
        case glob(StringPattern)
    }

    struct PatternUse: Sendable {
        var predicate: Int32
        var use: Use
    }

    /// One automaton over the values of some fields.
    struct Scanner: Sendable {
        var automaton: AhoCorasick
        var uses: [[PatternUse]]
        var cased: Bool
    }

    /// The string tests on one field (or, for keywords, on every field of the category).
    struct FieldScan: Sendable {
        var fields: [String]
        var folded: Scanner?
        var cased: Scanner?
        /// Tests that hold whenever the field is present (`*`, empty contains/startswith/endswith).
        var whenPresent: [Int32]
        /// Tests that hold when the field is the empty string.
        var whenEmpty: [Int32]
    }

    enum DirectTest: Sendable {
        case regex(CompiledRegex)
        case cidr(IPNetwork)
        case numeric(NumericComparison, Double)
        case exists(Bool)
        case null
        case fieldReference(String, StringPattern.Anchor, cased: Bool)
        case glob(StringPattern)
    }

    /// A test evaluated on its own for every event.
    struct Direct: Sendable {
        var predicate: Int32
        var fields: [String]
        var test: DirectTest
    }

    let category: EventCategory
    /// Global rule numbers of this category's rules; local rule `i` is `ruleIDs[i]`.
    let ruleIDs: [Int]
    let expressions: [PredicateExpression]
    /// Local rules using each test.
    let predicateRules: [[Int32]]
    /// Local rules whose condition holds when no test does (e.g. `not filter`).
    let alwaysEvaluated: [Int32]
    let scans: [FieldScan]
    let directs: [Direct]

    struct Key: Hashable {
        var field: String?
        var matcher: ValueMatcher
    }

    init(category: EventCategory, ruleIDs: [Int], rules: [SigmaRule]) {
        self.category = category
        self.ruleIDs = ruleIDs
        var keys: [Key] = []
        var ids: [Key: Int32] = [:]
        var predicateRules: [[Int32]] = []
        var expressions: [PredicateExpression] = []
        for (local, global) in ruleIDs.enumerated() {
            let rule = rules[global]
            func predicate(_ key: Key) -> Int32 {
                let id: Int32
                if let existing = ids[key] {
                    id = existing
                } else {
                    id = Int32(keys.count)
                    ids[key] = id
                    keys.append(key)
                    predicateRules.append([])
                }
                if predicateRules[Int(id)].last != Int32(local) { predicateRules[Int(id)].append(Int32(local)) }
                return id
            }
            func compile(_ test: FieldTest) -> PredicateExpression {
                let values = test.values.map { variants in
                    let terms = variants.map {
                        PredicateExpression.test(predicate(Key(field: test.field, matcher: $0)))
                    }
                    return terms.count == 1 ? terms[0] : .or(terms)
                }
                if values.count == 1 { return values[0] }
                return test.requireAll ? .and(values) : .or(values)
            }
            func compile(_ condition: Condition) -> PredicateExpression {
                switch condition {
                case .selection(let name):
                    let groups = (rule.detection.selection(named: name)?.groups ?? []).map { group in
                        let tests = group.map(compile)
                        return tests.count == 1 ? tests[0] : .and(tests)
                    }
                    return groups.count == 1 ? groups[0] : .or(groups)
                case .and(let terms): return .and(terms.map(compile))
                case .or(let terms): return .or(terms.map(compile))
                case .not(let term): return .not(compile(term))
                }
            }
            expressions.append(compile(rule.detection.condition))
        }
        self.expressions = expressions
        self.predicateRules = predicateRules
        alwaysEvaluated = expressions.indices.filter { expressions[$0].evaluate { _ in false } }.map(Int32.init)

        // Sort the tests into automata and direct tests, field by field.
        var byField: [String?: [Int32]] = [:]
        var fieldOrder: [String?] = []
        var directs: [Direct] = []
        for (id, key) in keys.enumerated() {
            let fields = key.field.map { [$0] } ?? category.fields
            switch key.matcher {
            case .string:
                if byField[key.field] == nil { fieldOrder.append(key.field) }
                byField[key.field, default: []].append(Int32(id))
            case .regex(let pattern, let options):
                // Validated when parsed; a failure here cannot happen, and would only disable the test.
                if let regex = try? CompiledRegex(pattern: pattern, options: options) {
                    directs.append(Direct(predicate: Int32(id), fields: fields, test: .regex(regex)))
                }
            case .cidr(let network): directs.append(Direct(predicate: Int32(id), fields: fields, test: .cidr(network)))
            case .numeric(let op, let bound):
                directs.append(Direct(predicate: Int32(id), fields: fields, test: .numeric(op, bound)))
            case .exists(let flag): directs.append(Direct(predicate: Int32(id), fields: fields, test: .exists(flag)))
            case .null: directs.append(Direct(predicate: Int32(id), fields: fields, test: .null))
            case .fieldReference(let other, let anchor, let cased):
                directs.append(
                    Direct(predicate: Int32(id), fields: fields, test: .fieldReference(other, anchor, cased: cased))
                )
            }
        }
        var scans: [FieldScan] = []
        for field in fieldOrder {
            var folded: [[UInt8]: Int] = [:]
            var cased: [[UInt8]: Int] = [:]
            var foldedPatterns: [[UInt8]] = []
            var casedPatterns: [[UInt8]] = []
            var foldedUses: [[PatternUse]] = []
            var casedUses: [[PatternUse]] = []
            var whenPresent: [Int32] = []
            var whenEmpty: [Int32] = []
            let fields = field.map { [$0] } ?? category.fields
            for id in byField[field] ?? [] {
                guard case .string(let pattern) = keys[Int(id)].matcher else { continue }
                let literal: [UInt8]
                let use: Use
                if let simple = pattern.simple {
                    if simple.literal.isEmpty {
                        if simple.anchor == .exact { whenEmpty.append(id) } else { whenPresent.append(id) }
                        continue
                    }
                    literal = simple.literal
                    switch simple.anchor {
                    case .exact: use = .exact
                    case .prefix: use = .prefix
                    case .suffix: use = .suffix
                    case .anywhere: use = .anywhere
                    }
                } else {
                    literal = pattern.longestLiteral
                    guard !literal.isEmpty else {
                        directs.append(Direct(predicate: id, fields: fields, test: .glob(pattern)))
                        continue
                    }
                    use = .glob(pattern)
                }
                if pattern.cased {
                    let n =
                        cased[literal]
                        ?? {
                            casedPatterns.append(literal)
                            casedUses.append([])
                            return casedPatterns.count - 1
                        }()
                    cased[literal] = n
                    casedUses[n].append(PatternUse(predicate: id, use: use))
                } else {
                    let n =
                        folded[literal]
                        ?? {
                            foldedPatterns.append(literal)
                            foldedUses.append([])
                            return foldedPatterns.count - 1
                        }()
                    folded[literal] = n
                    foldedUses[n].append(PatternUse(predicate: id, use: use))
                }
            }
            scans.append(
                FieldScan(
                    fields: fields,
                    folded: foldedPatterns.isEmpty
                        ? nil
                        : Scanner(
                            automaton: AhoCorasick(patterns: foldedPatterns, foldASCII: true),
                            uses: foldedUses,
                            cased: false
                        ),
                    cased: casedPatterns.isEmpty
                        ? nil
                        : Scanner(
                            automaton: AhoCorasick(patterns: casedPatterns, foldASCII: false),
                            uses: casedUses,
                            cased: true
                        ),
                    whenPresent: whenPresent,
                    whenEmpty: whenEmpty
                )
            )
        }
        self.scans = scans
        self.directs = directs
    }
}
