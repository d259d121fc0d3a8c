/// ASCII strings at least one of which every match of an ICU regular expression contains, used
/// as a cheap prefilter: the expression only runs on values containing one of them. A run of
/// literal characters gives one string; a small class (`[FTd]`) or a group of plain
/// alternatives (`(W|R)`) inside the run multiplies them.
///
/// Conservative by construction: anything not understood (top-level alternation, inline flags,
/// escapes such as `\Q`, `\x`, `\p`, back-references, unbalanced brackets) yields nil, and any
/// atom that is not a plain ASCII literal ends the current run. With `ignoreCase` the literal is
/// lower-cased; a case-insensitive expression can then still match non-ASCII text (`ſ` for `s`,
/// the Kelvin sign for `k`), so callers must run it on any non-ASCII value.
enum RegexLiteral {
    static func required(pattern: String, ignoreCase: Bool) -> [[UInt8]]? {
        // `\Q...\E` quotes brackets and bars, which the scan below would misread.
        guard !pattern.contains("\\Q") else { return nil }
        let s = Array(pattern.unicodeScalars)
        let n = s.count
        var best: [[UInt8]] = []
        var run: [[UInt8]] = [[]]
        func shortest(_ set: [[UInt8]]) -> Int { set.map(\.count).min() ?? 0 }
        func commit() {
            let length = shortest(run)
            if length > 0, length > shortest(best) || (length == shortest(best) && run.count < best.count) {
                best = run
            }
            run = [[]]
        }
        func fold(_ b: UInt8) -> UInt8 { ignoreCase && b >= 65 && b <= 90 ? b + 32 : b }
        var i = 0
        while i < n {
            let c = s[i]
            var literal: [[UInt8]]? = nil
            switch c {
            case "\\":
                guard i + 1 < n else { return nil }
                let e = s[i + 1]
                if e.isASCII && !isAlphanumeric(e) {
                    literal = [[fold(UInt8(e.value))]]
                } else if e.isASCII, "sSdDwWbBAzZG".unicodeScalars.contains(e) {
                    literal = nil
                } else {
                    return nil
                }
                i += 2
            case "(":
                if i + 2 < n, s[i + 1] == "?", !":=!<>".unicodeScalars.contains(s[i + 2]) { return nil }
                guard let end = skipGroup(s, from: i) else { return nil }
                literal = alternatives(Array(s[(i + 1)..<(end - 1)])).map { $0.map { $0.map(fold) } }
                i = end
            case "[":
                guard let end = skipClass(s, from: i) else { return nil }
                literal = members(Array(s[(i + 1)..<(end - 1)])).map { $0.map { [fold($0)] } }
                i = end
            case "|", ")", "*", "+", "?", "{":
                return nil
            default:
                if c.isASCII && c != "." && c != "^" && c != "$" && c != "]" && c != "}" {
                    literal = [[fold(UInt8(c.value))]]
                }
                i += 1
            }
            // A quantifier after the atom.
            var optional = false
            var repeated = false
            if i < n {
                switch s[i] {
                case "*", "?":
                    optional = true
                    i += 1
                case "+":
                    repeated = true
                    i += 1
                case "{":
                    guard let (minimum, end) = interval(s, from: i) else { return nil }
                    if minimum == 0 { optional = true } else { repeated = true }
                    i = end
                default: break
                }
                if optional || repeated, i < n, s[i] == "?" || s[i] == "+" { i += 1 }
            }
            if let literal, !optional {
                if run.count * literal.count > 16 { commit() }
                run = run.flatMap { prefix in literal.map { prefix + $0 } }
                if repeated { commit() }
            } else {
                commit()
            }
        }
        commit()
        return best.isEmpty ? nil : best
    }

    /// The alternatives of a group's content when each is a non-empty run of plain ASCII
    /// characters (`W|R`, `?:gz|xz`), at most 16 of them; nil otherwise.
    private static func alternatives(_ content: [Unicode.Scalar]) -> [[UInt8]]? {
        var body = content[...]
        if body.starts(with: ["?", ":"]) { body = body.dropFirst(2) }
        var out: [[UInt8]] = [[]]
        var i = body.startIndex
        while i < body.endIndex {
            let c = body[i]
            if c == "|" {
                out.append([])
            } else if c == "\\" {
                guard i + 1 < body.endIndex, body[i + 1].isASCII, !isAlphanumeric(body[i + 1]) else { return nil }
                out[out.count - 1].append(UInt8(body[i + 1].value))
                i += 1
            } else if c.isASCII, !"^$.?*+()[]{}".unicodeScalars.contains(c) {
                out[out.count - 1].append(UInt8(c.value))
            } else {
                return nil
            }
            i += 1
        }
        guard out.count <= 16, !out.contains(where: \.isEmpty) else { return nil }
        return out
    }

    /// The members of a class's content when it lists at most 8 plain ASCII characters
    /// (`FTd`); nil for ranges, negation, escapes, nested classes.
    private static func members(_ content: [Unicode.Scalar]) -> [UInt8]? {
        guard !content.isEmpty, content.count <= 8 else { return nil }
        var out: [UInt8] = []
        for c in content {
            guard c.isASCII, c.properties.isWhitespace == false, !"\\^-[]&:$".unicodeScalars.contains(c) else {
                return nil
            }
            out.append(UInt8(c.value))
        }
        return out
    }

    private static func isAlphanumeric(_ c: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c)
    }

    /// The index after the `)` closing the group opened at `start`, nil when unbalanced.
    private static func skipGroup(_ s: [Unicode.Scalar], from start: Int) -> Int? {
        var depth = 0
        var i = start
        while i < s.count {
            switch s[i] {
            case "\\": i += 1
            case "[":
                guard let end = skipClass(s, from: i) else { return nil }
                i = end
                continue
            case "(": depth += 1
            case ")":
                depth -= 1
                if depth == 0 { return i + 1 }
            default: break
            }
            i += 1
        }
        return nil
    }

    /// The index after the `]` closing the class opened at `start` (nested classes allowed), nil
    /// when unbalanced or when a `]` comes first (whose meaning differs between engines).
    private static func skipClass(_ s: [Unicode.Scalar], from start: Int) -> Int? {
        var depth = 0
        var i = start
        while i < s.count {
            switch s[i] {
            case "\\": i += 1
            case "[":
                depth += 1
                var j = i + 1
                if j < s.count, s[j] == "^" { j += 1 }
                if j < s.count, s[j] == "]" { return nil }
            case "]":
                depth -= 1
                if depth == 0 { return i + 1 }
            default: break
            }
            i += 1
        }
        return nil
    }

    /// `{n}`, `{n,}` or `{n,m}` at `start`: the minimum and the index after `}`.
    private static func interval(_ s: [Unicode.Scalar], from start: Int) -> (Int, Int)? {
        var i = start + 1
        var minimum = 0
        var digits = 0
        while i < s.count, ("0"..."9").contains(s[i]) {
            minimum = min(minimum * 10 + Int(s[i].value - 48), 1_000_000)
            digits += 1
            i += 1
        }
        guard digits > 0 else { return nil }
        while i < s.count, s[i] != "}" {
            guard s[i] == "," || ("0"..."9").contains(s[i]) else { return nil }
            i += 1
        }
        guard i < s.count else { return nil }
        return (minimum, i + 1)
    }
}
