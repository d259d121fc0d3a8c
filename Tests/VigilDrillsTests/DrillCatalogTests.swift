import Foundation
import Testing
import VigilCore
import VigilDrills
import VigilPolicy

/// The drill catalog against the shipped policy: every drill names a real rule that carries its
/// technique, the drill-profile copies are the real rules with only a path prefix added, and
/// the copies fire on the scratch paths and not on the real ones.
@Suite("Drill catalog and profile")
struct DrillCatalogTests {
    static let policies: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path + "/Policies"
    }()

    func shippedRules() throws -> [String: SigmaRule] {
        let (rules, report) = PolicyLoader.load(paths: [Self.policies + "/rules"])
        #expect(report.errors.isEmpty, "\(report.errors)")
        return Dictionary(uniqueKeysWithValues: rules.map { ($0.id, $0) })
    }

    @Test func atLeastFifteenDrillsWithUniqueIdsCoveringTheIssueList() {
        let drills = DrillCatalog.all
        #expect(drills.count >= 15)
        #expect(Set(drills.map(\.id)).count == drills.count, "drill ids must be unique")
        let required = [
            "T1098.004", "T1053.003", "T1543.002", "T1548.001", "T1059.004", "T1105", "T1003.008", "T1070.003",
            "T1070.004", "T1222.002", "T1564.001", "T1136.001", "T1046",
        ]
        let covered = Set(drills.map(\.technique))
        #expect(Set(required).subtracting(covered).isEmpty, "missing: \(Set(required).subtracting(covered))")
        for drill in drills {
            #expect(drill.id.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "-" }, "\(drill.id)")
        }
    }

    @Test func everyDrillExpectsAShippedRuleTaggedWithItsTechnique() throws {
        let rules = try shippedRules()
        for drill in DrillCatalog.all {
            guard let rule = rules[drill.rule] else {
                Issue.record("\(drill.id): rule \(drill.rule) is not in Policies/rules")
                continue
            }
            // The technique or its parent (T1059.004 → T1059) is among the rule's tags.
            let tags = Set(rule.attackTechniques.map { $0.lowercased() })
            let technique = "attack." + drill.technique.lowercased()
            let parent = String(technique.split(separator: ".").prefix(2).joined(separator: "."))
            #expect(
                tags.contains(technique) || tags.contains(parent),
                "\(drill.id): rule '\(rule.title)' has tags \(tags.sorted()), not \(technique)"
            )
        }
    }

    @Test func drillProfileTemplatesAreTheRealRulesWithAPathPrefix() throws {
        let templates = DrillProfile.templates(policies: Self.policies)
        #expect(templates.count >= 4)
        let profileRules = Set(DrillCatalog.all.filter(\.needsProfile).map(\.rule))
        var copied: Set<String> = []
        for (template, rulePath) in templates {
            let text = try String(contentsOfFile: template, encoding: .utf8)
            let real = try String(contentsOfFile: rulePath, encoding: .utf8)
            #expect(text.contains(DrillProfile.placeholder), "\(template) has no \(DrillProfile.placeholder)")
            #expect(
                DrillProfile.render(text, root: "") == real,
                "\(template) differs from \(rulePath) beyond the prefix"
            )
            let (rules, report) = PolicyLoader.load(yaml: DrillProfile.render(text, root: "/tmp/x"), file: template)
            #expect(report.errors.isEmpty, "\(report.errors)")
            copied.formUnion(rules.map(\.id))
        }
        #expect(profileRules.isSubset(of: copied), "drills need profile copies of \(profileRules.subtracting(copied))")
    }

    @Test func drillProfileCopiesFireOnTheScratchPathOnly() throws {
        let root = "/tmp/vigil-drill.0123456789"
        let cases: [(String, String)] = [
            ("cron_persistence.yml.in", "/etc/cron.d/vigil-drill-cron-job"),
            ("systemd_unit_persistence.yml.in", "/etc/systemd/system/vigil-drill-systemd-service.service"),
            ("sudoers_change.yml.in", "/etc/sudoers.d/vigil-drill"),
            ("ld_preload_persistence.yml.in", "/etc/ld.so.preload"),
        ]
        for (name, path) in cases {
            let text = try String(contentsOfFile: Self.policies + "/drills/" + name, encoding: .utf8)
            let (rules, report) = PolicyLoader.load(yaml: DrillProfile.render(text, root: root), file: name)
            #expect(report.errors.isEmpty, "\(report.errors)")
            let set = PolicySet(rules: rules, report: report)
            func alerts(_ target: String) -> [Alert] {
                set.evaluate(
                    Event(
                        seq: 1,
                        time: .now(),
                        payload: .file(FileEvent(action: .create, targetFilename: target, isDirectory: false))
                    )
                )
            }
            #expect(alerts(root + path).count == 1, "\(name) does not fire on \(root + path)")
            #expect(alerts(path).isEmpty, "\(name) still fires on the real path \(path)")
        }
    }

    @Test func selectionByIdOrTechniqueAndUnknownNamesRefused() throws {
        #expect(try Selftest.drills(matching: ["T1070.003"]).map(\.id) == ["history-deleted"])
        #expect(try Selftest.drills(matching: ["port-scan-netns"]).map(\.technique) == ["T1046"])
        #expect(try Selftest.drills(matching: []).count == DrillCatalog.all.count)
        #expect(throws: DrillError.self) { try Selftest.drills(matching: ["T9999"]) }
    }

    @Test func resultsAsJSONCarryTheContractFields() throws {
        let drill = DrillCatalog.all[0]
        var detected = DrillResult(drill: drill, outcome: .detected)
        detected.latencyMilliseconds = 420
        let missed = DrillResult(drill: drill, outcome: .missed)
        let lines = SelftestReport.jsonLines([detected, missed]).split(separator: "\n")
        #expect(lines.count == 2)
        let first = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(first["technique"] as? String == drill.technique)
        #expect(first["rule"] as? String == drill.rule)
        #expect(first["detected"] as? Bool == true)
        #expect(first["latency_ms"] as? Int == 420)
        let second = try #require(try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any])
        #expect(second["detected"] as? Bool == false)
        #expect(second["latency_ms"] is NSNull)
        let table = SelftestReport.table([detected, missed])
        #expect(table.contains("MISSED") && table.contains("420 ms"))
        #expect(table.hasSuffix("2 drills: 1 detected, 1 missed, 0 failed\n"))
    }

    @Test func scratchAreaRefusesPathsOutsideIt() throws {
        let scratch = try ScratchArea.create()
        defer { scratch.remove() }
        #expect(throws: DrillError.self) { try scratch.checkInside("/etc/passwd") }
        #expect(throws: DrillError.self) { try scratch.checkInside(scratch.root + "/../etc/passwd") }
        #expect(throws: DrillError.self) { try scratch.checkInside(scratch.root + "-evil/x") }
        try scratch.checkInside(scratch.root + "/a/b")
        try scratch.checkInside(scratch.sharedMemoryRoot + "/a")
        scratch.remove()
        #expect(!FileManager.default.fileExists(atPath: scratch.root))
        #expect(!FileManager.default.fileExists(atPath: scratch.sharedMemoryRoot))
    }
}
