/// A Sigma string value after wildcard parsing and the `contains`/`startswith`/`endswith`
/// modifiers: a glob over the whole field value.
///
/// `*` matches any run of characters, `?` exactly one; `\*`, `\?` and `\\` are literal, and a
/// backslash before anything else is itself literal (Sigma specification, "Wildcards").
/// Matching is case-insensitive unless `cased` (the values are then stored lower-cased).
public struct StringPattern: Hashable, Sendable, CustomStringConvertible {
    /// One piece of a glob.
    public enum Token: Hashable, Sendable {
        case literal([UInt8])
        case anyString
        case anyCharacter
    }

    /// How a plain literal is anchored in the value; `nil` when the pattern needs a general glob.
    public enum Anchor: Hashable, Sendable {
        case exact, prefix, suffix, anywhere
    }

    public private(set) var tokens: [Token]
    public let cased: Bool

    /// Builds a pattern from a Sigma value. `wildcards: false` treats `*`, `?` and `\` literally
    /// (used for values produced by `base64`/`windash` and for field references).
    public init(sigma value: String, anchor: Anchor, cased: Bool, wildcards: Bool = true) {
        self.cased = cased
        let text = cased ? value : value.lowercased()
        var tokens: [Token] = []
        if anchor == .suffix || anchor == .anywhere { tokens.append(.anyString) }
        var literal: [UInt8] = []
        func flush() {
            if !literal.isEmpty {
                tokens.append(.literal(literal))
                literal = []
            }
        }
        if wildcards {
            let bytes = Array(text.utf8)
            var i = 0
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\\"), i + 1 < bytes.count,
                    [UInt8(ascii: "*"), UInt8(ascii: "?"), UInt8(ascii: "\\")].contains(bytes[i + 1])
                {
                    literal.append(bytes[i + 1])
                    i += 2
                    continue
                }
                if b == UInt8(ascii: "*") {
                    flush()
                    if tokens.last != .anyString { tokens.append(.anyString) }
                } else if b == UInt8(ascii: "?") {
                    flush()
                    tokens.append(.anyCharacter)
                } else {
                    literal.append(b)
                }
                i += 1
            }
        } else {
            literal = Array(text.utf8)
        }
        flush()
        if anchor == .prefix || anchor == .anywhere, tokens.last != .anyString { tokens.append(.anyString) }
        self.tokens = tokens
    }

    /// The literal and its anchor when the pattern is one literal with optional `*` at either end.
    public var simple: (literal: [UInt8], anchor: Anchor)? {
        switch tokens.count {
        case 0: return ([], .exact)
        case 1:
            if case .literal(let l) = tokens[0] { return (l, .exact) }
            if tokens[0] == .anyString { return ([], .anywhere) }
            return nil
        case 2:
            if case .literal(let l) = tokens[0], tokens[1] == .anyString { return (l, .prefix) }
            if case .literal(let l) = tokens[1], tokens[0] == .anyString { return (l, .suffix) }
            return nil
        case 3:
            if tokens[0] == .anyString, tokens[2] == .anyString, case .literal(let l) = tokens[1] {
                return (l, .anywhere)
            }
            return nil
        default: return nil
        }
    }

    /// The longest literal piece, which every matching value contains (a prefilter).
    public var longestLiteral: [UInt8] {
        var best: [UInt8] = []
        for case .literal(let l) in tokens where l.count > best.count { best = l }
        return best
    }

    /// Matches `value`, given as UTF-8 bytes already lower-cased when the pattern is not cased.
    /// `?` consumes one byte, or one whole UTF-8 sequence for non-ASCII characters.
    public func matches(_ value: some Collection<UInt8>) -> Bool {
        if let result = value.withContiguousStorageIfAvailable({ matches(bytes: $0) }) { return result }
        return Array(value).withUnsafeBufferPointer { matches(bytes: $0) }
    }

    func matches(bytes v: UnsafeBufferPointer<UInt8>) -> Bool {
        // Iterative glob matching with single-star backtracking (linear-ish, no recursion).
        var t = 0
        var i = 0
        var starToken = -1
        var starPos = 0
        func charLength(at p: Int) -> Int {
            let b = v[p]
            let n = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
            return min(n, v.count - p)
        }
        while true {
            if t < tokens.count {
                switch tokens[t] {
                case .anyString:
                    starToken = t
                    starPos = i
                    t += 1
                    continue
                case .anyCharacter:
                    if i < v.count {
                        i += charLength(at: i)
                        t += 1
                        continue
                    }
                case .literal(let l):
                    if i + l.count <= v.count, v[i..<(i + l.count)].elementsEqual(l) {
                        i += l.count
                        t += 1
                        continue
                    }
                }
            } else if i == v.count {
                return true
            }
            // Mismatch: let the last star absorb one more character.
            guard starToken >= 0, starPos < v.count else { return false }
            starPos += charLength(at: starPos)
            i = starPos
            t = starToken + 1
        }
    }

    public var description: String {
        var s = ""
        for token in tokens {
            switch token {
            case .anyString: s += "*"
            case .anyCharacter: s += "?"
            case .literal(let l): s += String(decoding: l, as: UTF8.self)
            }
        }
        return s
    }
}
