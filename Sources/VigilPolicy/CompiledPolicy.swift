import VigilCore

/// Applicable rules compiled for speed: per event category, every string test of every rule on a
/// field is folded into one Aho–Corasick automaton (one for case-insensitive tests, one for
/// `cased`), so an event's field is scanned once whatever the number of rules. Regular
/// expressions are compiled once. Only rules with a satisfied test (or whose condition holds
/// with none, like `not filter`) have their condition evaluated.
public final class CompiledPolicy: Sendable {
    /// The compiled rules, in load order; hits are indices into this array.
    public let rules: [SigmaRule]
    let exceptionMatchers: [DirectMatcher?]
    let indexes: [CategoryIndex?]
    let maximumPredicates: Int
    let maximumRules: Int
    let maximumDirects: Int
    let maximumSlots: Int

    /// Compiles `rules`; rules that are not applicable are left out.
    public init(rules: [SigmaRule]) {
        var kept: [SigmaRule] = []
        var byCategory: [EventCategory: [Int]] = [:]
        for rule in rules {
            guard case .applicable(let category) = Applicability.of(rule) else { continue }
            byCategory[category, default: []].append(kept.count)
            kept.append(rule)
        }
        self.rules = kept
        exceptionMatchers = kept.map { $0.vigil.exceptions.isEmpty ? nil : DirectMatcher(rule: $0) }
        let indexes = EventCategory.allCases.map { category in
            byCategory[category].map { CategoryIndex(category: category, ruleIDs: $0, rules: kept) }
        }
        self.indexes = indexes
        maximumPredicates = indexes.map { $0?.predicateCount ?? 0 }.max() ?? 0
        maximumRules = indexes.map { $0?.ruleIDs.count ?? 0 }.max() ?? 0
        maximumDirects = indexes.map { $0?.directs.count ?? 0 }.max() ?? 0
        maximumSlots = indexes.map { $0?.slotNames.count ?? 0 }.max() ?? 0
    }

    /// Scratch space sized for this policy; reuse one per thread of evaluation.
    public func makeScratch() -> MatchScratch {
        MatchScratch(predicates: maximumPredicates, rules: maximumRules, directs: maximumDirects, slots: maximumSlots)
    }

    /// The indices (into `rules`) of the rules matching `event`, exceptions applied, ascending.
    /// (Concrete, so callers in other modules get the specialized evaluation.)
    public func matches(_ event: Event, localAddresses: Set<String>? = nil, scratch: inout MatchScratch) -> [Int] {
        matches(EventFields(event, localAddresses: localAddresses), scratch: &scratch)
    }

    /// The indices (into `rules`) of the rules matching `fields`, exceptions applied, ascending.
    public func matches(_ fields: some SigmaFields, scratch: inout MatchScratch) -> [Int] {
        var hits: [Int] = []
        for category in fields.categories {
            guard let index = indexes[category.position] else { continue }
            index.evaluate(fields, scratch: &scratch) { rule in
                if let exceptions = exceptionMatchers[rule], exceptions.isException(fields) { return }
                hits.append(rule)
            }
        }
        if hits.count > 1 {
            if fields.categories.count > 1 { hits = Array(Set(hits)) }
            hits.sort()
        }
        return hits
    }
}

extension EventCategory {
    var position: Int {
        switch self {
        case .processCreation: 0
        case .fileEvent: 1
        case .fileChange: 2
        case .fileDelete: 3
        case .fileRename: 4
        case .networkConnection: 5
        case .dnsQuery: 6
        }
    }
}

/// Per-evaluation state, so a `CompiledPolicy` itself stays immutable and shareable. Tests that
/// held are marked with the current generation number, so nothing is cleared between events.
public struct MatchScratch {
    /// Generation marks in fixed-size buffers (owned by `storage`): written for every test that
    /// holds, so they avoid the uniqueness check and bounds check of an array on each write.
    let predicateGeneration: UnsafeMutableBufferPointer<UInt32>
    let ruleGeneration: UnsafeMutableBufferPointer<UInt32>
    /// Direct tests computed for this event, and their results.
    let directGeneration: UnsafeMutableBufferPointer<UInt32>
    let directValue: UnsafeMutableBufferPointer<Bool>
    private let storage: Storage
    var generation: UInt32 = 0
    var candidates: [Int32] = []
    var lowered: [UInt8] = []
    /// The event's field values, by the category index's slots.
    var values: [String?]

    /// Owns the buffers; they live as long as any copy of the scratch.
    private final class Storage {
        let buffers: [UnsafeMutableRawBufferPointer]
        init(_ buffers: [UnsafeMutableRawBufferPointer]) { self.buffers = buffers }
        deinit { for b in buffers { b.deallocate() } }
    }

    init(predicates: Int, rules: Int, directs: Int, slots: Int) {
        func buffer<T>(_ count: Int, _ value: T) -> UnsafeMutableBufferPointer<T> {
            let b = UnsafeMutableBufferPointer<T>.allocate(capacity: max(1, count))
            b.initialize(repeating: value)
            return b
        }
        predicateGeneration = buffer(predicates, 0)
        ruleGeneration = buffer(rules, 0)
        directGeneration = buffer(directs, 0)
        directValue = buffer(directs, false)
        storage = Storage(
            [
                UnsafeMutableRawBufferPointer(predicateGeneration), UnsafeMutableRawBufferPointer(ruleGeneration),
                UnsafeMutableRawBufferPointer(directGeneration), UnsafeMutableRawBufferPointer(directValue),
            ]
        )
        values = [String?](repeating: nil, count: slots)
        candidates.reserveCapacity(rules)
    }

    mutating func nextGeneration() {
        generation &+= 1
        if generation == 0 {
            predicateGeneration.update(repeating: 0)
            ruleGeneration.update(repeating: 0)
            directGeneration.update(repeating: 0)
            generation = 1
        }
        candidates.removeAll(keepingCapacity: true)
    }
}

@available(*, unavailable)
extension MatchScratch: Sendable {}

/// A boolean expression over test (predicate) numbers.
indirect enum PredicateExpression: Sendable {
    case test(Int32)
    case and([PredicateExpression])
    case or([PredicateExpression])
    case not(PredicateExpression)

    @inline(__always)
    func evaluate(_ holds: (Int32) -> Bool) -> Bool {
        switch self {
        case .test(let p): holds(p)
        case .and(let terms): terms.allSatisfy { $0.evaluate(holds) }
        case .or(let terms): terms.contains { $0.evaluate(holds) }
        case .not(let term): !term.evaluate(holds)
        }
    }
}
