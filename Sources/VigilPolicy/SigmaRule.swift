/// A parsed Sigma rule (https://sigmahq.io/docs/basics/rules.html) with Vigil's own settings.
public struct SigmaRule: Sendable, Hashable {
    public var title: String
    public var id: String
    public var status: String?
    public var description: String?
    public var level: String
    public var tags: [String]
    public var author: String?
    public var references: [String]
    public var falsepositives: [String]
    public var logsource: LogSource
    public var detection: Detection
    public var vigil: VigilSettings
    /// The file the rule came from, and the line of its first key.
    public var file: String
    public var line: Int

    /// The `attack.tNNNN[.NNN]` technique tags.
    public var attackTechniques: [String] { tags.filter { $0.lowercased().hasPrefix("attack.t") } }
}

/// The `logsource` of a rule.
public struct LogSource: Sendable, Hashable {
    public var product: String?
    public var category: String?
    public var service: String?

    public init(product: String? = nil, category: String? = nil, service: String? = nil) {
        self.product = product
        self.category = category
        self.service = service
    }
}

/// The `detection` section: named selections and the condition combining them.
public struct Detection: Sendable, Hashable {
    /// Selections by name, in file order.
    public var selections: [(name: String, selection: Selection)] {
        get { zip(names, values).map { ($0, $1) } }
        set {
            names = newValue.map(\.name)
            values = newValue.map(\.selection)
        }
    }
    private var names: [String] = []
    private var values: [Selection] = []
    public var condition: Condition

    public init(selections: [(name: String, selection: Selection)], condition: Condition) {
        self.condition = condition
        self.selections = selections
    }

    public func selection(named name: String) -> Selection? {
        names.firstIndex(of: name).map { values[$0] }
    }
}

/// One selection (or filter): an OR of groups, each group an AND of field tests.
/// A mapping is one group; a list of mappings is several; a keyword list is one group holding
/// one field-less test.
public struct Selection: Sendable, Hashable {
    public var groups: [[FieldTest]]

    public init(groups: [[FieldTest]]) {
        self.groups = groups
    }
}

/// A test of one field (or, with `field == nil`, a keyword search over all fields).
public struct FieldTest: Sendable, Hashable {
    public var field: String?
    /// One entry per Sigma value; each holds the value's variants (from `windash`, `base64offset`),
    /// any of which may match.
    public var values: [[ValueMatcher]]
    /// `|all`: every value must match; otherwise any one.
    public var requireAll: Bool

    public init(field: String?, values: [[ValueMatcher]], requireAll: Bool) {
        self.field = field
        self.values = values
        self.requireAll = requireAll
    }
}

/// A test of one value, after modifiers were applied.
public enum ValueMatcher: Sendable, Hashable {
    /// String equality, containment or prefix/suffix, with wildcards.
    case string(StringPattern)
    /// `|re`; `options` are the `i`, `m`, `s` sub-modifiers.
    case regex(String, RegexOptions)
    /// `|cidr`: the field is an IP address in one of the networks.
    case cidr(IPNetwork)
    /// `|lt`, `|lte`, `|gt`, `|gte`.
    case numeric(NumericComparison, Double)
    /// `|exists: true|false`.
    case exists(Bool)
    /// `null`: the field is absent or empty.
    case null
    /// `|fieldref`: compares with another field's value of the same event.
    case fieldReference(String, StringPattern.Anchor, cased: Bool)
}

/// Sub-modifiers of `|re`.
public struct RegexOptions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let ignoreCase = RegexOptions(rawValue: 1)
    public static let multiline = RegexOptions(rawValue: 2)
    public static let dotAll = RegexOptions(rawValue: 4)
}

/// A numeric comparison modifier.
public enum NumericComparison: String, Sendable, Hashable {
    case lt, lte, gt, gte

    func holds(_ value: Double, _ bound: Double) -> Bool {
        switch self {
        case .lt: value < bound
        case .lte: value <= bound
        case .gt: value > bound
        case .gte: value >= bound
        }
    }
}

/// A parsed `condition`, with `x of` patterns already resolved against the selection names.
public indirect enum Condition: Sendable, Hashable {
    case selection(String)
    case and([Condition])
    case or([Condition])
    case not(Condition)
}
