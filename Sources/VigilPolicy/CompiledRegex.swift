import Foundation

/// A `|re` regular expression compiled once (ICU through `NSRegularExpression`, which is
/// immutable and documented thread-safe).
final class CompiledRegex: @unchecked Sendable {
    struct Failure: Error {
        var message: String
    }

    let regex: NSRegularExpression

    init(pattern: String, options: RegexOptions) throws(Failure) {
        var flags: NSRegularExpression.Options = []
        if options.contains(.ignoreCase) { flags.insert(.caseInsensitive) }
        if options.contains(.multiline) { flags.insert(.anchorsMatchLines) }
        if options.contains(.dotAll) { flags.insert(.dotMatchesLineSeparators) }
        do {
            regex = try NSRegularExpression(pattern: pattern, options: flags)
        } catch {
            throw Failure(message: "not a valid regular expression (ICU syntax)")
        }
    }

    /// Whether the expression matches anywhere in `value` (Sigma `re` is a search, not a full match).
    func matches(_ value: String) -> Bool {
        let ns = value as NSString
        return regex.firstMatch(in: value, options: [], range: NSRange(location: 0, length: ns.length)) != nil
    }
}
