import Foundation
import Testing
import VigilPolicy

@Suite("Rule parsing and validation errors")
struct RuleParserTests {
    @Test func parsesMetadataAndKeepsAuthor() throws {
        let (rules, report) = PolicyLoader.load(
            yaml: rule(
                """
                    selection:
                        Image|endswith: /nc
                    condition: selection
                """,
                extra: "falsepositives: [admins]\nstatus: test"
            ),
            file: "a.yml"
        )
        #expect(report.errors.isEmpty)
        let r = try #require(rules.first)
        #expect(r.id == "r1" && r.level == "high" && r.author == "Tester" && r.status == "test")
        #expect(r.tags == ["attack.t1059.004"] && r.falsepositives == ["admins"])
        #expect(r.logsource == LogSource(product: "linux", category: "process_creation"))
    }

    @Test(arguments: [
        (
            "    selection:\n        Image|foo: x\n    condition: selection",
            "test.yml:11:9: unknown modifier 'foo' in 'Image|foo'"
        ),
        (
            "    selection:\n        Image|re: '(unclosed'\n    condition: selection",
            "test.yml:11:19: bad regular expression"
        ),
        (
            "    selection:\n        Image: x\n    condition: selection and filter",
            "test.yml:12:30: condition names undefined selection 'filter'"
        ),
        (
            "    selection:\n        Image: x\n    condition: 1 of filter_*",
            "test.yml:12:21: 'filter_*' matches no selection"
        ),
        ("    selection:\n        Image: x\n    condition: (selection", "test.yml:12:26: missing ')' in condition"),
        (
            "    selection:\n        Image:\n            a: b\n    condition: selection",
            "test.yml:12:13: 'Image' must have a value or a list of values, not a mapping"
        ),
        (
            "    selection:\n        DestinationIp|cidr: 10.0.0.300/8\n    condition: selection",
            "test.yml:11:29: '10.0.0.300/8' is not a CIDR"
        ),
        (
            "    selection:\n        Image|contains|endswith: x\n    condition: selection",
            "test.yml:11:9: 'contains', 'startswith' and 'endswith' exclude each other"
        ),
        ("    selection:\n        Image|gt: many\n    condition: selection", "test.yml:11:19: 'gt' needs a number"),
        ("    selection:\n        Image: x", "test.yml:10:5: detection needs a 'condition'"),
    ])
    func semanticErrorsAreLocated(detection: String, expected: String) {
        let found = errors(rule(detection))
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix(expected) == true, "\(found)")
    }

    @Test func yamlSyntaxErrorsAreLocated() {
        let found = errors("title: x\nid: [unclosed\n")
        #expect(found.count == 1 && found[0].hasPrefix("test.yml:3:"), "\(found)")
    }

    @Test func missingAndMistypedKeys() {
        #expect(
            errors("id: a\nlogsource: {}\ndetection: {}\n").first?.hasPrefix("test.yml:1:1: rule needs 'title'") == true
        )
        let badLevel = rule("    s:\n        Image: x\n    condition: s").replacingOccurrences(
            of: "level: high",
            with: "level: severe"
        )
        #expect(errors(badLevel).first?.contains("level must be one of") == true)
    }

    @Test func duplicateIdsAreErrors() {
        let one = rule("    s:\n        Image: x\n    condition: s")
        let found = errors(one + "\n---\n" + one)
        #expect(found.count == 1 && found[0].contains("rule id 'r1' is already used"), "\(found)")
    }

    @Test func hostileInputsGiveErrorsNotCrashes() {
        let deep = "title: x\nid: y\nreferences: " + String(repeating: "[", count: 100_000) + "\n"
        #expect(errors(deep).first?.contains("nesting deeper than") == true)

        var bytes = Array("title: ok\nid: x\ndescription: bad \u{FF}".utf8)
        bytes[bytes.count - 2] = 0xFF
        bytes[bytes.count - 1] = 0xFE
        let dir = NSTemporaryDirectory() + "vigil-policy-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(FileManager.default.createFile(atPath: dir + "/bad.yml", contents: Data(bytes)))
        let report = PolicyLoader.load(paths: [dir]).report
        #expect(report.errors.map(\.description) == ["\(dir)/bad.yml:3:18: not valid UTF-8"])

        let hugeRegex = rule("    s:\n        Image|re: '\(String(repeating: "a", count: 5000))'\n    condition: s")
        #expect(errors(hugeRegex).first?.contains("regular expression longer than") == true)

        let deepCondition = rule(
            "    s:\n        Image: x\n    condition: " + String(repeating: "(", count: 200) + "s"
                + String(repeating: ")", count: 200)
        )
        #expect(errors(deepCondition).first?.contains("nests deeper than") == true)
    }

    @Test func unsupportedFeaturesAreNotApplicable() {
        let report = PolicyLoader.load(
            yaml: rule("    s:\n        Image|wide|base64offset|contains: x\n    condition: s") + "\n---\n"
                + rule(id: "r2", "    s:\n        Image: x\n    condition: s | count() > 5") + "\n---\n"
                + rule(id: "r3", "    s:\n        ParentUser: root\n    condition: s") + "\n---\n"
                + rule(id: "r4", category: "image_load", "    s:\n        ImageLoaded: x\n    condition: s"),
            file: "t.yml"
        ).report
        #expect(report.errors.isEmpty)
        #expect(report.applicable.isEmpty)
        let reasons = report.notApplicable.map { $0.notApplicableReason ?? "" }
        #expect(reasons[0].contains("modifier 'wide'"))
        #expect(reasons[1].contains("aggregation"))
        #expect(reasons[2] == "field 'ParentUser' is not provided for process_creation events")
        #expect(reasons[3].contains("category 'image_load' is not produced"))
    }

    @Test func collectionSettingsFileIsSkipped() throws {
        let dir = NSTemporaryDirectory() + "vigil-policy-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/rules", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "files:\n  watch: [/etc]\n".write(toFile: dir + "/collection.yaml", atomically: true, encoding: .utf8)
        try rule("    s:\n        Image: x\n    condition: s").write(
            toFile: dir + "/rules/a.yml",
            atomically: true,
            encoding: .utf8
        )
        let (policy, notes) = try PolicySet.load(directory: dir)
        #expect(policy.report.files == [dir + "/rules/a.yml"])
        #expect(policy.compiled.rules.map(\.id) == ["r1"] && notes.isEmpty)
    }
}
