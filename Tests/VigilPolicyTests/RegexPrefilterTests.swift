import Foundation
import Testing

@testable import VigilPolicy

/// The compiled policy runs a `|re` expression only on values containing one of its required
/// literals (found by the field's automaton). These tests pin the literal extraction and check,
/// against the rule-by-rule evaluator, that the prefilter never hides a match.
@Suite("Regular expression prefilter")
struct RegexPrefilterTests {
    static let cases: [(pattern: String, ignoreCase: Bool, literals: [String]?)] = [
        (#"-(W|R)\s?(\s|"|')([0-9a-fA-F]{2}\s?){2,20}(\s|"|')"#, false, ["-W", "-R"]),
        (#"\s-[FTd]\s"#, false, ["-F", "-T", "-d"]),
        (#"/\.[^/]+$"#, false, ["/."]),
        (#"^/(usr/)?lib(64)?/(x86_64-linux-gnu/)?security/pam_[^/]+\.so$"#, false, ["security/pam_"]),
        (#"\.(gz|xz|bz2|zst|old|[0-9]+)$"#, false, ["."]),
        (#"http\.server\s+([0-9]{4,5})"#, false, ["http.server"]),
        ("abc+d", false, ["abc"]),
        ("ab*cd", false, ["cd"]),
        ("x{2}yz", false, ["yz"]),
        ("ABC", true, ["abc"]),
        ("(?:Gz|XZ)", true, ["gz", "xz"]),
        // Nothing every match must contain, or nothing understood: no prefilter.
        ("(.){200,}", false, nil),
        ("a|bcd", false, nil),
        ("(?i)abc", false, nil),
        (#"\Qa|b\E"#, false, nil),
        (#"\x41BC"#, false, nil),
        (#"\p{L}xyz"#, false, nil),
        ("[]a]", false, nil),
        ("(?:a|)", false, nil),
    ]

    @Test(arguments: cases.indices)
    func requiredLiterals(_ index: Int) {
        let c = Self.cases[index]
        let literals = RegexLiteral.required(pattern: c.pattern, ignoreCase: c.ignoreCase)
        #expect(literals.map { $0.map { String(decoding: $0, as: UTF8.self) } } == c.literals, "\(c.pattern)")
    }

    /// Every pattern above and some harder ones, over values that match, nearly match, differ in
    /// case or hold characters ICU folds to ASCII letters (`ſ` is `s`, `K` is `k` to a
    /// case-insensitive expression): the compiled policy agrees with the rule-by-rule evaluator.
    @Test func compiledAgreesWithReference() throws {
        let patterns =
            Self.cases.map(\.pattern) + [
                "stop", "kill", #"\bdo\b"#, "-D", #"\s-O\s"#, "(?:ab|cd)ef", "[abc]x", "a+b+c+",
            ]
        let values = [
            "", "stop", "STOP", "ſtop", "Kill", "\u{212A}ill", "while x; do y; done", "auditctl -D",
            "wget -O /tmp/x", "wget -o /tmp/x", "abef", "cdef", "ABEF", "bx", "aabbcc", "ac",
            "pnscan -W 'de ad be ef' x", "pnscan -R \"0a 0b\" x", "curl -F a -T b -d c ", "/x/.hidden",
            "/usr/lib64/security/pam_evil.so", "/var/log/syslog.1", "python3 -m http.server 8080", "abbbcd",
            "abd", "xxyz", "ABC", "Gz", "xZ", "é/.x", String(repeating: "a", count: 210),
        ]
        for ignoreCase in [false, true] {
            for (n, pattern) in patterns.enumerated() {
                let modifier = ignoreCase ? "|re|i" : "|re"
                let escaped = pattern.replacingOccurrences(of: "'", with: "''")
                let yaml = rule(
                    id: "r\(n)",
                    """
                        selection:
                            CommandLine\(modifier): '\(escaped)'
                        condition: selection
                    """
                )
                let (rules, report) = PolicyLoader.load(yaml: yaml, file: "re.yml")
                guard report.errors.isEmpty, let sigma = rules.first else { continue }  // not valid ICU
                let compiled = CompiledPolicy(rules: rules)
                var scratch = compiled.makeScratch()
                let reference = try #require(DirectMatcher(rule: sigma))
                for value in values {
                    let fields = process(["CommandLine": value, "Image": "/usr/bin/x"])
                    let expected = reference.matches(fields)
                    let got = !compiled.matches(fields, scratch: &scratch).isEmpty
                    #expect(got == expected, "\(pattern) i=\(ignoreCase) on \(value.debugDescription)")
                }
            }
        }
        // The non-ASCII paths are exercised: ICU folds these, a byte search would miss them.
        let fold = try #require(
            DirectMatcher(
                rule: PolicyLoader.load(
                    yaml: rule(
                        """
                            selection:
                                CommandLine|re|i: 'stop'
                            condition: selection
                        """
                    ),
                    file: "f.yml"
                ).0[0]
            )
        )
        #expect(fold.matches(process(["CommandLine": "ſtop"])))
    }
}
