/// Whether Vigil can evaluate a rule: its log source must be one Vigil produces and every field
/// it tests must be one Vigil fills, so a loaded rule never silently fails to match.
public enum Applicability: Sendable, Hashable {
    case applicable(EventCategory)
    case notApplicable(reason: String)

    static let supportedList = EventCategory.allCases.map(\.rawValue).joined(separator: ", ")

    public static func of(_ rule: SigmaRule) -> Applicability {
        let source = rule.logsource
        if let product = source.product, product.lowercased() != "linux" {
            return .notApplicable(reason: "product '\(product)' is not linux")
        }
        if let service = source.service {
            return .notApplicable(
                reason:
                    "service '\(service)' is not a source Vigil produces (Vigil provides categories \(supportedList))"
            )
        }
        guard let name = source.category else {
            return .notApplicable(
                reason: "no category: a generic log source (syslog/journal text) that Vigil does not collect"
            )
        }
        guard let category = EventCategory(rawValue: name) else {
            return .notApplicable(reason: "category '\(name)' is not produced by Vigil (it provides \(supportedList))")
        }
        let known = Set(category.fields)
        var tests = rule.detection.selections.flatMap { $0.selection.groups.flatMap { $0 } }
        tests += rule.vigil.exceptions
        for test in tests {
            if let field = test.field, !known.contains(field) {
                let harmless = test.values.allSatisfy { variants in
                    variants.allSatisfy { $0 == .null || $0 == .exists(false) }
                }
                if !harmless {
                    return .notApplicable(reason: "field '\(field)' is not provided for \(name) events")
                }
            }
            for variants in test.values {
                for case .fieldReference(let other, _, _) in variants where !known.contains(other) {
                    return .notApplicable(reason: "field '\(other)' (fieldref) is not provided for \(name) events")
                }
            }
        }
        return .applicable(category)
    }
}
