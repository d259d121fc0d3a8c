import FuzzSupport
import VigilCore
import VigilPolicy

/// A Sigma rule file (YAML, one or more documents): the parser, the condition compiler and the
/// compiled matcher.
///
/// Invariants: loading never crashes and every problem is reported against the file it came
/// from; and for every rule that loads, the compiled policy (Aho–Corasick, shared automata)
/// matches exactly the sample events that the rule-by-rule reference evaluator matches.
enum SigmaTarget: FuzzTarget {
    static let file = "fuzz.yml"
    static let events = SampleEvents.all

    static func seeds() throws -> [[UInt8]] {
        let paths =
            FuzzPaths.files(under: FuzzPaths.repository + "/Policies/rules", extensions: [".yml", ".yaml"])
            + FuzzPaths.files(
                under: FuzzPaths.corpora + "/sigma-linux/rules",
                extensions: [".yml", ".yaml"],
                limit: 300
            )
        return paths.compactMap(FuzzPaths.contents)
    }

    static func test(_ input: [UInt8]) {
        let text = String(decoding: input, as: UTF8.self)
        let (rules, report) = PolicyLoader.load(yaml: text, file: file)
        for error in report.errors {
            FuzzCheck.require("\(error)".contains(file), "error does not name the file: \(error)")
        }
        guard !rules.isEmpty else { return }
        let policy = CompiledPolicy(rules: rules)
        let reference = policy.rules.map { DirectMatcher(rule: $0) }
        var scratch = policy.makeScratch()
        for event in events {
            let compiled = policy.matches(event, scratch: &scratch)
            let direct = reference.indices.filter { reference[$0]?.matchesWithoutException(event) == true }
            FuzzCheck.require(
                compiled == direct,
                "compiled matched \(compiled), reference \(direct) on \(event.payload)\n\(text)"
            )
        }
    }
}

@_cdecl("FuzzSigma_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.main(SigmaTarget.self, argc, argv)
}
