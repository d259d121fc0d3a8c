import Foundation
import Yams

/// Turns a detection key (`Field|mod|mod`) and its value node into a `FieldTest`.
struct ModifierParser {
    let file: String

    /// Modifiers that are valid Sigma but meaningless for Linux events: a rule using them is not
    /// applicable rather than wrong.
    static let unsupported: Set<String> = ["expand", "wide", "utf16", "utf16le", "utf16be"]
    static let known: Set<String> = [
        "contains", "startswith", "endswith", "all", "re", "i", "m", "s", "cidr", "exists", "fieldref",
        "base64", "base64offset", "windash", "lt", "lte", "gt", "gte", "cased",
    ]
    /// The longest regular expression accepted (a guard against hostile policy files).
    static let maximumRegexLength = 4096
    static let maximumValueLength = 65536

    struct Unsupported: Error {
        var reason: String
    }

    func fieldTest(key: String, keyNode: Node, value: Node) throws -> FieldTest {
        var parts = key.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        let field = parts.removeFirst()
        var seen: [String] = []
        for modifier in parts {
            if Self.unsupported.contains(modifier) {
                throw Unsupported(reason: "modifier '\(modifier)' is not supported on Linux events")
            }
            guard Self.known.contains(modifier) else {
                throw PolicyError(file: file, at: keyNode, "unknown modifier '\(modifier)' in '\(key)'")
            }
            guard !seen.contains(modifier) else {
                throw PolicyError(file: file, at: keyNode, "modifier '\(modifier)' repeated in '\(key)'")
            }
            seen.append(modifier)
        }
        let has = Set(seen)
        try check(has, keyNode: keyNode, key: key)

        let valueNodes: [Node]
        switch value {
        case .sequence(let seq):
            guard !seq.isEmpty else { throw PolicyError(file: file, at: value, "'\(key)' has an empty list of values") }
            valueNodes = Array(seq)
        case .scalar:
            valueNodes = [value]
        case .mapping, .alias:
            throw PolicyError(file: file, at: value, "'\(key)' must have a value or a list of values, not a mapping")
        }
        var values: [[ValueMatcher]] = []
        for node in valueNodes {
            guard case .scalar(let scalar) = node else {
                throw PolicyError(file: file, at: node, "values of '\(key)' must be scalars, not lists or mappings")
            }
            values.append(try matchers(for: scalar, node: node, modifiers: has, key: key, keyword: field.isEmpty))
        }
        return FieldTest(field: field.isEmpty ? nil : field, values: values, requireAll: has.contains("all"))
    }

    private func check(_ has: Set<String>, keyNode: Node, key: String) throws {
        func fail(_ message: String) -> PolicyError { PolicyError(file: file, at: keyNode, "\(message) in '\(key)'") }
        let anchors = has.intersection(["contains", "startswith", "endswith"])
        if anchors.count > 1 { throw fail("'contains', 'startswith' and 'endswith' exclude each other") }
        let kinds = has.intersection(["re", "cidr", "exists", "lt", "lte", "gt", "gte"])
        if kinds.count > 1 { throw fail("'\(kinds.sorted().joined(separator: "' and '"))' exclude each other") }
        if !has.isDisjoint(with: ["i", "m", "s"]), !has.contains("re") {
            throw fail("'i', 'm' and 's' apply only to 're'")
        }
        if let kind = kinds.first, !anchors.isEmpty {
            throw fail("'\(kind)' cannot be combined with '\(anchors.first!)'")
        }
        if let kind = kinds.first, !has.isDisjoint(with: ["base64", "base64offset", "windash", "fieldref"]) {
            throw fail("'\(kind)' cannot be combined with value transformations")
        }
        if has.contains("base64"), has.contains("base64offset") {
            throw fail("'base64' and 'base64offset' exclude each other")
        }
        if has.contains("base64offset"), !has.contains("contains") { throw fail("'base64offset' requires 'contains'") }
        if has.contains("fieldref"), !has.isDisjoint(with: ["base64", "base64offset", "windash"]) {
            throw fail("'fieldref' cannot be combined with value transformations")
        }
    }

    private func matchers(
        for scalar: Node.Scalar,
        node: Node,
        modifiers has: Set<String>,
        key: String,
        keyword: Bool
    ) throws -> [ValueMatcher] {
        let text = scalar.string
        guard text.utf8.count <= Self.maximumValueLength else {
            throw PolicyError(file: file, at: node, "value of '\(key)' is longer than \(Self.maximumValueLength) bytes")
        }
        let isNull = scalar.style == .plain && node.null != nil
        if isNull {
            guard has.isEmpty || has == ["all"] else {
                throw PolicyError(file: file, at: node, "null cannot be combined with modifiers in '\(key)'")
            }
            return [.null]
        }
        if has.contains("exists") {
            guard let flag = node.bool else { throw PolicyError(file: file, at: node, "'exists' takes true or false") }
            return [.exists(flag)]
        }
        for op in ["lt", "lte", "gt", "gte"] where has.contains(op) {
            guard let number = Double(text), number.isFinite else {
                throw PolicyError(file: file, at: node, "'\(op)' needs a number, got '\(text)'")
            }
            return [.numeric(NumericComparison(rawValue: op)!, number)]
        }
        if has.contains("re") {
            guard text.utf8.count <= Self.maximumRegexLength else {
                throw PolicyError(
                    file: file,
                    at: node,
                    "regular expression longer than \(Self.maximumRegexLength) bytes"
                )
            }
            var options: RegexOptions = []
            if has.contains("i") { options.insert(.ignoreCase) }
            if has.contains("m") { options.insert(.multiline) }
            if has.contains("s") { options.insert(.dotAll) }
            do {
                _ = try CompiledRegex(pattern: text, options: options)
            } catch {
                throw PolicyError(file: file, at: node, "bad regular expression '\(text)': \(error.message)")
            }
            return [.regex(text, options)]
        }
        if has.contains("cidr") {
            guard let network = IPNetwork(text) else {
                throw PolicyError(file: file, at: node, "'\(text)' is not a CIDR network (e.g. 10.0.0.0/8, fd00::/8)")
            }
            return [.cidr(network)]
        }
        // Keywords (no field) are searched for anywhere in the event's values.
        let anchor: StringPattern.Anchor =
            has.contains("contains") || keyword
            ? .anywhere
            : has.contains("startswith") ? .prefix : has.contains("endswith") ? .suffix : .exact
        let cased = has.contains("cased")
        if has.contains("fieldref") {
            guard !text.isEmpty else { throw PolicyError(file: file, at: node, "'fieldref' needs a field name") }
            return [.fieldReference(text, anchor, cased: cased)]
        }
        var variants = [text]
        if has.contains("windash") { variants = variants.flatMap(Self.windashVariants) }
        if has.contains("base64") {
            variants = variants.map { Data($0.utf8).base64EncodedString() }
        } else if has.contains("base64offset") {
            variants = variants.flatMap(Self.base64OffsetVariants)
        }
        // base64 output is case-sensitive and has no wildcards.
        let encoded = has.contains("base64") || has.contains("base64offset")
        return variants.map {
            .string(StringPattern(sigma: $0, anchor: anchor, cased: cased || encoded, wildcards: !encoded))
        }
    }

    /// The `windash` variants: every dash or slash that starts a word, replaced in turn by each
    /// of `-`, `/`, en dash, em dash and horizontal bar.
    static func windashVariants(_ value: String) -> [String] {
        let scalars = Array(value.unicodeScalars)
        func isWord(_ c: Unicode.Scalar) -> Bool {
            c.properties.isAlphabetic || c.properties.numericType != nil || c == "_"
        }
        var positions: [Int] = []
        for (i, c) in scalars.enumerated() where c == "-" || c == "/" {
            let before = i == 0 || !isWord(scalars[i - 1])
            let after = i + 1 < scalars.count && isWord(scalars[i + 1])
            if before && after { positions.append(i) }
        }
        guard !positions.isEmpty else { return [value] }
        return ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"].map { (dash: Unicode.Scalar) in
            var copy = scalars
            for p in positions { copy[p] = dash }
            var view = String.UnicodeScalarView()
            view.append(contentsOf: copy)
            return String(view)
        }
    }

    /// The three `base64offset` encodings of `value`, trimmed to the characters that do not
    /// depend on the surrounding bytes (as pySigma does).
    static func base64OffsetVariants(_ value: String) -> [String] {
        let bytes = Array(value.utf8)
        let starts = [0, 2, 3]
        let ends = [0, 3, 2]  // characters dropped from the end, by (length + offset) % 3
        return (0..<3).map { i in
            let encoded = Array(Data([UInt8](repeating: 0x20, count: i) + bytes).base64EncodedString().utf8)
            let end = encoded.count - ends[(bytes.count + i) % 3]
            guard starts[i] < end else { return "" }
            return String(decoding: encoded[starts[i]..<end], as: UTF8.self)
        }.filter { !$0.isEmpty }
    }
}
