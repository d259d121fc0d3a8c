/// Parses a Sigma `condition`: `and`, `or`, `not`, parentheses, `1 of X*`, `all of X*`,
/// `1 of them`, `all of them` (the specification's precedence: not > and > or).
struct ConditionParser {
    /// A condition problem at a character offset within the condition text.
    struct Failure: Error {
        var offset: Int
        var message: String
    }

    /// A condition feature Vigil does not evaluate (aggregations, `near`): the rule is valid
    /// Sigma, but not applicable.
    struct Unsupported: Error {
        var reason: String
    }

    static let maximumDepth = 64

    private enum Token: Equatable {
        case word(String)
        case open, close, pipe
    }

    private let tokens: [(token: Token, offset: Int)]
    private let selectionNames: [String]
    private let textLength: Int
    private var position = 0
    private var depth = 0

    private init(tokens: [(Token, Int)], selectionNames: [String], textLength: Int) {
        self.tokens = tokens.map { (token: $0.0, offset: $0.1) }
        self.textLength = textLength
        self.selectionNames = selectionNames
    }

    static func parse(_ text: String, selections: [String]) throws -> Condition {
        var parser = ConditionParser(
            tokens: try tokenize(text),
            selectionNames: selections,
            textLength: text.unicodeScalars.count
        )
        guard !parser.tokens.isEmpty else { throw Failure(offset: 0, message: "condition is empty") }
        let result = try parser.parseOr()
        if parser.position < parser.tokens.count {
            let (token, offset) = parser.tokens[parser.position]
            if token == .pipe {
                throw Unsupported(reason: "aggregation conditions ('| count()' etc.) are not supported")
            }
            throw Failure(offset: offset, message: "unexpected '\(describe(token))' in condition")
        }
        return result
    }

    private static func describe(_ token: Token) -> String {
        switch token {
        case .word(let w): w
        case .open: "("
        case .close: ")"
        case .pipe: "|"
        }
    }

    private static func tokenize(_ text: String) throws -> [(Token, Int)] {
        var out: [(Token, Int)] = []
        let chars = Array(text.unicodeScalars)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == " " || c == "\t" || c == "\n" || c == "\r" {
                i += 1
            } else if c == "(" {
                out.append((.open, i))
                i += 1
            } else if c == ")" {
                out.append((.close, i))
                i += 1
            } else if c == "|" {
                // An aggregation follows; the parser reports it as unsupported.
                out.append((.pipe, i))
                break
            } else if c.properties.isAlphabetic || ("0"..."9").contains(c) || "_*.-?".unicodeScalars.contains(c) {
                let start = i
                while i < chars.count,
                    chars[i].properties.isAlphabetic || ("0"..."9").contains(chars[i])
                        || "_*.-?".unicodeScalars.contains(chars[i])
                {
                    i += 1
                }
                var word = String.UnicodeScalarView()
                word.append(contentsOf: chars[start..<i])
                out.append((.word(String(word)), start))
            } else {
                throw Failure(offset: i, message: "unexpected character '\(c)' in condition")
            }
        }
        return out
    }

    private var current: Token? { position < tokens.count ? tokens[position].token : nil }
    private var currentOffset: Int { position < tokens.count ? tokens[position].offset : textLength }

    private func isKeyword(_ token: Token?, _ keyword: String) -> Bool {
        if case .word(let w)? = token { return w.lowercased() == keyword }
        return false
    }

    private mutating func parseOr() throws -> Condition {
        var terms = [try parseAnd()]
        while isKeyword(current, "or") {
            position += 1
            terms.append(try parseAnd())
        }
        return terms.count == 1 ? terms[0] : .or(terms)
    }

    private mutating func parseAnd() throws -> Condition {
        var terms = [try parseNot()]
        while isKeyword(current, "and") {
            position += 1
            terms.append(try parseNot())
        }
        return terms.count == 1 ? terms[0] : .and(terms)
    }

    private mutating func parseNot() throws -> Condition {
        if isKeyword(current, "not") {
            position += 1
            return .not(try nested { try $0.parseNot() })
        }
        return try parsePrimary()
    }

    private mutating func nested(_ body: (inout ConditionParser) throws -> Condition) throws -> Condition {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maximumDepth else {
            throw Failure(offset: currentOffset, message: "condition nests deeper than \(Self.maximumDepth) levels")
        }
        return try body(&self)
    }

    private mutating func parsePrimary() throws -> Condition {
        let offset = currentOffset
        switch current {
        case nil:
            throw Failure(offset: offset, message: "condition ends where a selection name was expected")
        case .open:
            position += 1
            let inner = try nested { try $0.parseOr() }
            guard current == .close else { throw Failure(offset: currentOffset, message: "missing ')' in condition") }
            position += 1
            return inner
        case .close, .pipe:
            throw Failure(offset: offset, message: "unexpected '\(Self.describe(current!))' in condition")
        case .word(let word):
            position += 1
            let lower = word.lowercased()
            if ["and", "or"].contains(lower) {
                throw Failure(offset: offset, message: "'\(word)' needs a selection before it")
            }
            if lower == "near" { throw Unsupported(reason: "'near' conditions are not supported") }
            if ["1", "all", "any"].contains(lower), isKeyword(current, "of") {
                position += 1
                return try parseQuantifier(all: lower == "all", offset: offset)
            }
            if word.contains("*") {
                throw Failure(offset: offset, message: "'\(word)': a wildcard is only allowed after '1 of' or 'all of'")
            }
            guard selectionNames.contains(word) else {
                throw Failure(offset: offset, message: "condition names undefined selection '\(word)'")
            }
            return .selection(word)
        }
    }

    private mutating func parseQuantifier(all: Bool, offset: Int) throws -> Condition {
        guard case .word(let target)? = current else {
            throw Failure(offset: currentOffset, message: "'of' must be followed by a selection pattern or 'them'")
        }
        let targetOffset = currentOffset
        position += 1
        let names: [String]
        if target.lowercased() == "them" {
            names = selectionNames.filter { !$0.hasPrefix("_") }
        } else {
            let pattern = StringPattern(sigma: target, anchor: .exact, cased: true)
            names = selectionNames.filter { pattern.matches(Array($0.utf8)) }
        }
        guard !names.isEmpty else {
            throw Failure(offset: targetOffset, message: "'\(target)' matches no selection")
        }
        let terms = names.map { Condition.selection($0) }
        if terms.count == 1 { return terms[0] }
        return all ? .and(terms) : .or(terms)
    }
}
