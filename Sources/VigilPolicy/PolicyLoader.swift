import Yams

/// The status of one rule after loading.
public struct RuleStatus: Sendable, Hashable {
    public var id: String
    public var title: String
    public var file: String
    public var line: Int
    /// The category it is evaluated on, nil when not applicable.
    public var category: EventCategory?
    /// Why the rule is not applicable, nil when it is.
    public var notApplicableReason: String?
}

/// Everything `vigilctl policy check` reports: files read, rules loaded (applicable or not,
/// with the reason) and errors with their location.
public struct PolicyReport: Sendable {
    public var files: [String] = []
    public var rules: [RuleStatus] = []
    public var errors: [PolicyError] = []

    public init() {}

    public var applicable: [RuleStatus] { rules.filter { $0.notApplicableReason == nil } }
    public var notApplicable: [RuleStatus] { rules.filter { $0.notApplicableReason != nil } }
}

/// Reads and validates rule files.
public enum PolicyLoader {
    /// Loads every rule under `paths` (files or directories). Errors do not stop the loading:
    /// the report lists them all, and `rules` holds the valid rules.
    public static func load(paths: [String]) -> (rules: [SigmaRule], report: PolicyReport) {
        var report = PolicyReport()
        let (files, errors) = PolicySource.ruleFiles(in: paths)
        report.files = files
        report.errors = errors
        var rules: [SigmaRule] = []
        var seen: [String: String] = [:]
        for file in files {
            add(
                file: file,
                read: { () throws(PolicyError) in try PolicySource.documents(file: file) },
                to: &rules,
                &report,
                &seen
            )
        }
        return (rules, report)
    }

    /// Loads rules from YAML text (one or more documents) as if read from `file`.
    public static func load(yaml: String, file: String) -> (rules: [SigmaRule], report: PolicyReport) {
        var report = PolicyReport()
        report.files = [file]
        var rules: [SigmaRule] = []
        var seen: [String: String] = [:]
        add(
            file: file,
            read: { () throws(PolicyError) in try PolicySource.documents(bytes: Array(yaml.utf8), file: file) },
            to: &rules,
            &report,
            &seen
        )
        return (rules, report)
    }

    private static func add(
        file: String,
        read: () throws(PolicyError) -> [Node],
        to rules: inout [SigmaRule],
        _ report: inout PolicyReport,
        _ seen: inout [String: String]
    ) {
        let documents: [Node]
        do {
            documents = try read()
        } catch {
            report.errors.append(error)
            return
        }
        if documents.isEmpty {
            report.errors.append(PolicyError(file: file, line: 1, column: 1, message: "file holds no rule"))
        }
        for document in documents {
            do {
                let status: RuleStatus
                switch try RuleParser(file: file).parse(document) {
                case .rule(let rule):
                    switch Applicability.of(rule) {
                    case .applicable(let category):
                        status = RuleStatus(
                            id: rule.id,
                            title: rule.title,
                            file: file,
                            line: rule.line,
                            category: category
                        )
                        rules.append(rule)
                    case .notApplicable(let reason):
                        status = RuleStatus(
                            id: rule.id,
                            title: rule.title,
                            file: file,
                            line: rule.line,
                            notApplicableReason: reason
                        )
                    }
                case .unsupported(let id, let title, let line, let reason):
                    status = RuleStatus(id: id, title: title, file: file, line: line, notApplicableReason: reason)
                }
                if let first = seen[status.id] {
                    report.errors.append(
                        PolicyError(
                            file: file,
                            line: status.line,
                            column: 1,
                            message: "rule id '\(status.id)' is already used in \(first)"
                        )
                    )
                    rules.removeAll { $0.id == status.id && $0.file == file }
                    continue
                }
                seen[status.id] = "\(file):\(status.line)"
                report.rules.append(status)
            } catch let error as PolicyError {
                report.errors.append(error)
            } catch {
                report.errors.append(PolicyError(file: file, line: 1, column: 1, message: "\(error)"))
            }
        }
    }
}
