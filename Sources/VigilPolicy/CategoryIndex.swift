/// The compiled rules of one event category, laid out in flat arrays for evaluation.
///
/// Every distinct test (field + value matcher) of the category's rules is a *predicate*. String
/// tests are found by the per-field Aho–Corasick automata, which mark the predicates they satisfy
/// and make the rules using them *candidates*. Other tests (regular expressions, CIDR, numbers,
/// field references, ...) are *direct*: computed only when a candidate's condition asks for them,
/// once per event. A regular expression with a required literal is *gated*: the literal sits in
/// the field's automaton, and the expression runs only when it was seen. Only candidates, and the
/// rules whose condition could hold with no string test and no gate (e.g. `not filter`), have
/// their condition evaluated.
final class CategoryIndex: Sendable {
    /// How an automaton hit satisfies a test.
    enum Use: UInt8, Sendable {
        case exact, prefix, suffix, anywhere
        /// The hit is the glob's longest literal; the whole glob (`globs[glob]`) is then checked.
        case glob
        /// The hit is a regular expression's required literal: the gate opens.
        case gate
    }

    struct PatternUse: Sendable {
        var predicate: Int32
        var use: Use
        var glob: Int32
    }

    /// One automaton over the values of some fields. (Classes, not structs, from here on, so the
    /// hot loops do not copy and retain every array they hold.)
    final class Scanner: Sendable {
        let automaton: AhoCorasick
        /// The uses of pattern `k`: `uses[useStart[k]..<useStart[k + 1]]`.
        let useStart: [Int32]
        let uses: [PatternUse]

        init(automaton: AhoCorasick, useStart: [Int32], uses: [PatternUse]) {
            self.automaton = automaton
            self.useStart = useStart
            self.uses = uses
        }
    }

    /// The string tests on one field (or, for keywords, on every field of the category).
    final class FieldScan: Sendable {
        let slots: [Int32]
        let folded: Scanner?
        let cased: Scanner?
        /// Tests that hold whenever the field is present (`*`, empty contains/startswith/endswith).
        let whenPresent: [Int32]
        /// Tests that hold when the field is the empty string.
        let whenEmpty: [Int32]
        /// Gates of case-insensitive expressions, open on any non-ASCII value (ICU folds `ſ` to `s`).
        let openWhenNotASCII: [Int32]

        init(
            slots: [Int32],
            folded: Scanner?,
            cased: Scanner?,
            whenPresent: [Int32],
            whenEmpty: [Int32],
            openWhenNotASCII: [Int32]
        ) {
            self.slots = slots
            self.folded = folded
            self.cased = cased
            self.whenPresent = whenPresent
            self.whenEmpty = whenEmpty
            self.openWhenNotASCII = openWhenNotASCII
        }
    }

    enum DirectTest: Sendable {
        case regex(CompiledRegex)
        case cidr(IPNetwork)
        case numeric(NumericComparison, Double)
        case exists(Bool)
        case null
        case fieldReference(Int32, StringPattern.Anchor, cased: Bool)
        case glob(StringPattern)
    }

    /// A test computed on demand.
    final class Direct: Sendable {
        let slots: [Int32]
        let test: DirectTest
        /// The gate predicate that must be marked for the test to hold, or -1.
        let gate: Int32

        init(slots: [Int32], test: DirectTest, gate: Int32) {
            self.slots = slots
            self.test = test
            self.gate = gate
        }
    }

    /// A node of a rule's condition: `test` holds predicate `a`; `and`/`or` combine
    /// `children[a..<a + b]`; `not` negates node `a`.
    struct Node: Sendable {
        enum Kind: UInt8, Sendable { case test, and, or, not }
        var kind: Kind
        var a: Int32
        var b: Int32
    }

    let category: EventCategory
    /// Global rule numbers of this category's rules; local rule `i` is `ruleIDs[i]`.
    let ruleIDs: [Int]
    /// The field names read from an event, by slot.
    let slotNames: [String]
    let slotFields: [EventFields.Field?]
    let nodes: [Node]
    let children: [Int32]
    /// Root node of each local rule's condition.
    let roots: [Int32]
    /// Number of predicates, gates included.
    let predicateCount: Int
    /// Local rules made candidates by each predicate: `predicateRules[ruleStart[p]..<ruleStart[p + 1]]`.
    let ruleStart: [Int32]
    let predicateRules: [Int32]
    /// The direct test of each predicate, or -1 for string tests and gates.
    let predicateDirect: [Int32]
    /// Local rules whose condition could hold when no test does (e.g. `not filter`).
    let alwaysEvaluated: [Int32]
    let scans: [FieldScan]
    let directs: [Direct]
    let globs: [StringPattern]

    struct Key: Hashable {
        var field: String?
        var matcher: ValueMatcher
    }

    init(category: EventCategory, ruleIDs: [Int], rules: [SigmaRule]) {
        self.category = category
        self.ruleIDs = ruleIDs
        var keys: [Key] = []
        var ids: [Key: Int32] = [:]
        var rulesOf: [[Int32]] = []
        var trees: [PredicateExpression] = []
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
                    rulesOf.append([])
                }
                if rulesOf[Int(id)].last != Int32(local) { rulesOf[Int(id)].append(Int32(local)) }
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
            trees.append(compile(rule.detection.condition))
        }

        // Field slots: every field a test reads.
        var slotNames: [String] = []
        var slotOf: [String: Int32] = [:]
        func slot(_ name: String) -> Int32 {
            if let s = slotOf[name] { return s }
            let s = Int32(slotNames.count)
            slotOf[name] = s
            slotNames.append(name)
            return s
        }

        // Sort the tests into automata and direct tests, field by field.
        var byField: [String?: [Int32]] = [:]
        var fieldOrder: [String?] = []
        func scanField(_ field: String?) {
            if byField[field] == nil {
                fieldOrder.append(field)
                byField[field] = []
            }
        }
        var directs: [Direct] = []
        var predicateDirect = [Int32](repeating: -1, count: keys.count)
        var cost = [Int](repeating: 1, count: keys.count)
        /// Gates to place in automata: (field, literal, cased, gate predicate, case-insensitive).
        var gates: [(field: String?, literals: [[UInt8]], cased: Bool, gate: Int32)] = []
        var gateCount = 0
        for (id, key) in keys.enumerated() {
            let slots = (key.field.map { [$0] } ?? category.fields).map(slot)
            func direct(_ test: DirectTest, gate: Int32 = -1, cost c: Int) {
                predicateDirect[id] = Int32(directs.count)
                cost[id] = c
                directs.append(Direct(slots: slots, test: test, gate: gate))
            }
            switch key.matcher {
            case .string:
                scanField(key.field)
                byField[key.field]!.append(Int32(id))
            case .regex(let pattern, let options):
                // Validated when parsed; a failure here cannot happen, and would only disable the test.
                guard let regex = try? CompiledRegex(pattern: pattern, options: options) else {
                    predicateDirect[id] = Int32(directs.count)
                    directs.append(Direct(slots: [], test: .null, gate: -1))
                    continue
                }
                let ignoreCase = options.contains(.ignoreCase)
                if let literals = RegexLiteral.required(pattern: pattern, ignoreCase: ignoreCase) {
                    let gate = Int32(keys.count + gateCount)
                    gateCount += 1
                    scanField(key.field)
                    gates.append((key.field, literals, !ignoreCase, gate))
                    direct(.regex(regex), gate: gate, cost: 50)
                } else {
                    direct(.regex(regex), cost: 100)
                }
            case .cidr(let network): direct(.cidr(network), cost: 10)
            case .numeric(let op, let bound): direct(.numeric(op, bound), cost: 5)
            case .exists(let flag): direct(.exists(flag), cost: 1)
            case .null: direct(.null, cost: 1)
            case .fieldReference(let other, let anchor, let cased):
                direct(.fieldReference(slot(other), anchor, cased: cased), cost: 20)
            }
        }

        var globs: [StringPattern] = []
        var scans: [FieldScan] = []
        /// A rough chance that a test holds on an event, to pick the rarest term of an `and`.
        var scanRarity: [(predicate: Int32, rarity: Double)] = []
        func chance(_ literal: [UInt8], _ use: Use) -> Double {
            let base = 1 / Double(1 << min(literal.count, 20))
            switch use {
            case .exact: return base * 0.05
            case .prefix, .suffix: return base * 0.3
            case .anywhere, .glob, .gate: return base
            }
        }
        for field in fieldOrder {
            var folded = ScannerBuilder()
            var cased = ScannerBuilder()
            var whenPresent: [Int32] = []
            var whenEmpty: [Int32] = []
            var openWhenNotASCII: [Int32] = []
            let names = field.map { [$0] } ?? category.fields
            let slots = names.map(slot)
            let spread = Double(names.count)
            for id in byField[field] ?? [] {
                guard case .string(let pattern) = keys[Int(id)].matcher else { continue }
                let literal: [UInt8]
                var use: PatternUse
                if let simple = pattern.simple {
                    if simple.literal.isEmpty {
                        if simple.anchor == .exact {
                            whenEmpty.append(id)
                            scanRarity.append((id, 0.01 * spread))
                        } else {
                            whenPresent.append(id)
                            scanRarity.append((id, spread))
                        }
                        continue
                    }
                    literal = simple.literal
                    let kind: Use =
                        switch simple.anchor {
                        case .exact: .exact
                        case .prefix: .prefix
                        case .suffix: .suffix
                        case .anywhere: .anywhere
                        }
                    use = PatternUse(predicate: id, use: kind, glob: -1)
                } else {
                    literal = pattern.longestLiteral
                    guard !literal.isEmpty else {
                        predicateDirect[Int(id)] = Int32(directs.count)
                        cost[Int(id)] = 10
                        directs.append(Direct(slots: slots, test: .glob(pattern), gate: -1))
                        continue
                    }
                    use = PatternUse(predicate: id, use: .glob, glob: Int32(globs.count))
                    globs.append(pattern)
                }
                scanRarity.append((id, chance(literal, use.use) * spread))
                if pattern.cased { cased.add(literal, use) } else { folded.add(literal, use) }
            }
            for gate in gates where gate.field == field {
                let use = PatternUse(predicate: gate.gate, use: .gate, glob: -1)
                scanRarity.append((gate.gate, gate.literals.reduce(0) { $0 + chance($1, .gate) } * spread))
                // In the folded automaton even for a case-sensitive expression: a weaker gate, but
                // the value is then scanned once, not twice.
                for literal in gate.literals {
                    folded.add(gate.cased ? literal.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 } : literal, use)
                }
                openWhenNotASCII.append(gate.gate)
            }
            scans.append(
                FieldScan(
                    slots: slots,
                    folded: folded.build(foldASCII: true),
                    cased: cased.build(foldASCII: false),
                    whenPresent: whenPresent,
                    whenEmpty: whenEmpty,
                    openWhenNotASCII: openWhenNotASCII
                )
            )
        }

        // Which predicates make a rule a candidate: a set of which at least one holds whenever
        // the condition does (for `and`, the rarest term's set; for `or`, the union), or nil
        // when there is none (a `not`, or a direct test that may hold on any event: such rules
        // are always evaluated). A gated test is false while its gate is shut, so its gate
        // stands in for it.
        var rarity = [Double](repeating: 1, count: keys.count + gateCount)
        for scan in scanRarity { rarity[Int(scan.predicate)] = min(rarity[Int(scan.predicate)], scan.rarity) }
        func trigger(_ e: PredicateExpression) -> (set: [Int32], rarity: Double)? {
            switch e {
            case .test(let p):
                let d = predicateDirect[Int(p)]
                if d < 0 { return ([p], rarity[Int(p)]) }
                let gate = directs[Int(d)].gate
                return gate >= 0 ? ([gate], rarity[Int(gate)]) : nil
            case .and(let terms):
                var best: (set: [Int32], rarity: Double)? = nil
                for t in terms {
                    if let candidate = trigger(t), best == nil || candidate.rarity < best!.rarity { best = candidate }
                }
                return best
            case .or(let terms):
                var union: [Int32] = []
                var sum = 0.0
                for t in terms {
                    guard let part = trigger(t) else { return nil }
                    union += part.set
                    sum += part.rarity
                }
                return (union, sum)
            case .not: return nil
            }
        }
        rulesOf = [[Int32]](repeating: [], count: keys.count + gateCount)
        var always: [Int32] = []
        for (local, tree) in trees.enumerated() {
            guard let found = trigger(tree) else {
                always.append(Int32(local))
                continue
            }
            for p in Set(found.set).sorted() { rulesOf[Int(p)].append(Int32(local)) }
        }
        alwaysEvaluated = always

        // Flatten the conditions, cheapest terms first (tests have no side effects, so the order
        // of `and`/`or` terms does not change the result).
        var nodes: [Node] = []
        var children: [Int32] = []
        func weight(_ e: PredicateExpression) -> Int {
            switch e {
            case .test(let p): cost[Int(p)]
            case .and(let terms), .or(let terms): terms.reduce(0) { $0 + weight($1) }
            case .not(let t): weight(t)
            }
        }
        func flatten(_ e: PredicateExpression) -> Int32 {
            switch e {
            case .test(let p):
                nodes.append(Node(kind: .test, a: p, b: 0))
            case .and(let terms), .or(let terms):
                let ordered = terms.enumerated().sorted {
                    (weight($0.element), $0.offset) < (weight($1.element), $1.offset)
                }
                let built = ordered.map { flatten($0.element) }
                let start = Int32(children.count)
                children += built
                let kind: Node.Kind
                if case .and = e { kind = .and } else { kind = .or }
                nodes.append(Node(kind: kind, a: start, b: Int32(built.count)))
            case .not(let t):
                let child = flatten(t)
                nodes.append(Node(kind: .not, a: child, b: 0))
            }
            return Int32(nodes.count - 1)
        }
        roots = trees.map(flatten)
        self.nodes = nodes
        self.children = children

        predicateCount = keys.count + gateCount
        var ruleStart: [Int32] = [0]
        var flat: [Int32] = []
        for list in rulesOf {
            flat += list
            ruleStart.append(Int32(flat.count))
        }
        self.ruleStart = ruleStart
        predicateRules = flat
        self.predicateDirect = predicateDirect
        self.slotNames = slotNames
        slotFields = slotNames.map(EventFields.Field.init(rawValue:))
        self.scans = scans
        self.directs = directs
        self.globs = globs
    }
}

/// Collects the literals of one automaton and what each hit means.
private struct ScannerBuilder {
    var index: [[UInt8]: Int] = [:]
    var patterns: [[UInt8]] = []
    var uses: [[CategoryIndex.PatternUse]] = []

    mutating func add(_ literal: [UInt8], _ use: CategoryIndex.PatternUse) {
        let n: Int
        if let existing = index[literal] {
            n = existing
        } else {
            n = patterns.count
            index[literal] = n
            patterns.append(literal)
            uses.append([])
        }
        uses[n].append(use)
    }

    func build(foldASCII: Bool) -> CategoryIndex.Scanner? {
        guard !patterns.isEmpty else { return nil }
        var start: [Int32] = [0]
        var flat: [CategoryIndex.PatternUse] = []
        for list in uses {
            flat += list
            start.append(Int32(flat.count))
        }
        return CategoryIndex.Scanner(
            automaton: AhoCorasick(patterns: patterns, foldASCII: foldASCII),
            useStart: start,
            uses: flat
        )
    }
}
