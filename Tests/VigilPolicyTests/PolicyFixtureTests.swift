import Foundation
import Testing
import VigilPolicy

@Suite("Shipped policies and the SigmaHQ Linux corpus")
struct PolicyFixtureTests {
    /// Checks every fixture line against `policy`: the named rule matches the positive event and
    /// not the negative one, and each rule has both.
    func check(_ fixtures: [RuleFixture], _ policy: PolicySet, file: String) {
        var positive: Set<String> = []
        var negative: Set<String> = []
        for fixture in fixtures {
            #expect(
                policy.compiled.rules.contains { $0.id == fixture.rule },
                "\(file):\(fixture.line): rule \(fixture.rule) not loaded"
            )
            let ids = policy.matchingRules(fixture.fields).map(\.id)
            #expect(
                ids.contains(fixture.rule) == fixture.match,
                "\(file):\(fixture.line): rule \(fixture.rule) match should be \(fixture.match)"
            )
            // The compiled matcher agrees with the rule-by-rule reference evaluator on every rule.
            let direct = policy.compiled.rules.filter { DirectMatcher(rule: $0)!.matches(fixture.fields) }.map(\.id)
            #expect(Set(ids) == Set(direct), "\(file):\(fixture.line): compiled \(ids) vs direct \(direct)")
            if fixture.match { positive.insert(fixture.rule) } else { negative.insert(fixture.rule) }
        }
        #expect(positive == negative, "\(file): rules missing a positive or a negative event")
    }

    @Test func defaultPoliciesLoadAndEachRuleHasPositiveAndNegativeEvents() throws {
        let (policy, notApplicable) = try PolicySet.load(directory: repositoryRoot + "/Policies")
        #expect(notApplicable.isEmpty)
        #expect(policy.compiled.rules.count >= 25)
        for rule in policy.compiled.rules {
            #expect(rule.attackTechniques.count >= 1, "\(rule.id) has no ATT&CK technique tag")
        }
        let fixtures = try RuleFixture.load("default-rules.jsonl")
        #expect(Set(fixtures.map(\.rule)) == Set(policy.compiled.rules.map(\.id)), "every default rule needs fixtures")
        check(fixtures, policy, file: "default-rules.jsonl")
    }

    @Test func corpusLoadsWithoutErrorsAndEveryEventCategoryRuleIsApplicable() throws {
        guard let corpus = corpusDirectory() else { return }
        let report = PolicyLoader.load(paths: [corpus + "/rules/linux"]).report
        #expect(report.errors.isEmpty, "\(report.errors.prefix(5))")
        #expect(report.files.count == 210 && report.rules.count == 210)
        // Every process_creation, file_event and network_connection rule, by folder.
        let expected = report.rules.filter {
            ["/process_creation/", "/file_event/", "/network_connection/"].contains(where: $0.file.contains)
        }
        #expect(expected.count == 135)
        #expect(Set(report.applicable.map(\.id)) == Set(expected.map(\.id)))
        #expect(report.notApplicable.count == 75)
        #expect(report.notApplicable.allSatisfy { !($0.notApplicableReason ?? "").isEmpty })
    }

    @Test func corpusRulesBehaveOnHandWrittenEvents() throws {
        guard let corpus = corpusDirectory() else { return }
        let (policy, _) = try PolicySet.load(directory: corpus + "/rules/linux")
        let fixtures = try RuleFixture.load("corpus-rules.jsonl")
        #expect(Set(fixtures.map(\.rule)).count >= 40)
        check(fixtures, policy, file: "corpus-rules.jsonl")
    }
}
