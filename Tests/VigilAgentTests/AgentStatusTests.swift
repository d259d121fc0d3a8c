import Foundation
import Testing
import VigilCore
import VigilPolicy

@testable import VigilAgent

/// What the agent says about itself in its stream: the policy hash it reports and how often it
/// sends its `status` health event.
@Suite("Agent status reports")
struct AgentStatusTests {
    static let base = "collector:\n  url: http://127.0.0.1:8443\nstate_dir: s\npolicies_dir: p\n"

    func parse(_ extra: String) throws(PolicyError) -> AgentConfiguration {
        try AgentConfiguration.parse(yaml: Self.base + extra, file: "/etc/vigil/vigild.yaml")
    }

    @Test("status_interval_s defaults to 60 s and takes 1 to 86400")
    func interval() throws {
        #expect(try parse("").statusIntervalSeconds == 60)
        #expect(try parse("status_interval_s: 5\n").statusIntervalSeconds == 5)
        for bad in ["0", "86401", "-1", "soon"] {
            do {
                _ = try parse("status_interval_s: \(bad)\n")
                Issue.record("\(bad) was accepted")
            } catch {
                #expect(error.line == 5 && error.message.contains("status_interval_s"), "\(error)")
            }
        }
    }

    /// Writes `files` (relative path → content) under a new directory; returns it.
    func policies(_ files: [String: String]) throws -> String {
        let dir = NSTemporaryDirectory() + "vigil-policy-digest-\(UUID().uuidString)"
        for (name, content) in files {
            let path = dir + "/" + name
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true
            )
            try content.write(toFile: path, atomically: true, encoding: .utf8)
        }
        return dir
    }

    @Test("the policy hash covers each file's name and bytes, in name order, wherever the directory is")
    func policyDigest() throws {
        let files = ["sub/a.yml": "rule a\n", "b.yml": "rule b\n"]
        let one = try policies(files)
        let two = try policies(files)
        defer {
            try? FileManager.default.removeItem(atPath: one)
            try? FileManager.default.removeItem(atPath: two)
        }
        // SHA-256 of "b.yml\0" + be64(7) + "rule b\n" + "sub/a.yml\0" + be64(7) + "rule a\n" (Python hashlib).
        let expected = "0ae8f7fe6551ab0f4e022bc9c72328cbd2c09eadcee3c3c8470ce969676a1faa"
        #expect(Agent.policyDigest(files: [one + "/sub/a.yml", one + "/b.yml"], directory: one) == expected)
        #expect(Agent.policyDigest(files: [two + "/b.yml", two + "/sub/a.yml"], directory: two + "/") == expected)
        #expect(
            Agent.policyDigest(files: [], directory: one)
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        // A changed byte, or the same bytes under another name, is another policy.
        try "rule b!\n".write(toFile: two + "/b.yml", atomically: true, encoding: .utf8)
        #expect(Agent.policyDigest(files: [two + "/b.yml", two + "/sub/a.yml"], directory: two) != expected)
        #expect(Agent.policyDigest(files: [one + "/b.yml"], directory: one + "/sub") != expected)
    }

    @Test("policy_loaded carries the hash of the rules it loaded")
    func policyLoaded() throws {
        let dir = try policies([
            "r.yml": """
            title: Test rule
            id: 5f0c3e1a-0000-4000-8000-000000000001
            logsource: {product: linux, category: file_event}
            detection:
              selection: {TargetFilename|endswith: .x}
              condition: selection
            level: low
            """
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (set, notApplicable) = try PolicySet.load(directory: dir)
        let event = Agent.policyLoaded(set, notApplicable: notApplicable.count, directory: dir)
        guard case .health(let health) = event.payload else {
            Issue.record("not a health event: \(event)")
            return
        }
        #expect(health.counters["rules"] == 1)
        let hash = try #require(health.attributes[Agent.policyHashAttribute])
        #expect(hash == Agent.policyDigest(files: [dir + "/r.yml"], directory: dir))
        #expect(hash.count == 64 && hash.allSatisfy(\.isHexDigit))
    }
}
