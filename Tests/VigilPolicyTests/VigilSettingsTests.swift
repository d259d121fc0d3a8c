import Testing
import VigilCore
import VigilPolicy

@Suite("vigil: settings (action, rate limit, suppression, exceptions)")
struct VigilSettingsTests {
    static let detection = """
            selection:
                Image|endswith: /nc
            condition: selection
        """

    func exec(_ image: String, _ cmd: String = "nc", at seconds: Int64) -> Event {
        Event(
            time: Timestamp(nanosecondsSinceEpoch: seconds * 1_000_000_000),
            payload: .process(ProcessEvent(action: .exec, processId: 1, image: image, commandLine: cmd))
        )
    }

    @Test func exceptionsDropHits() {
        let p = policy(
            rule(Self.detection, extra: "vigil:\n    exceptions:\n        CommandLine|contains: ['-l ', '--listen']")
        )
        #expect(p.evaluate(exec("/bin/nc", "nc 1.2.3.4 80", at: 1)).count == 1)
        #expect(p.evaluate(exec("/bin/nc", "nc -l 80", at: 2)).isEmpty)
        #expect(p.matchingRules(process(["Image": "/bin/nc", "CommandLine": "nc --listen"])).isEmpty)
    }

    @Test func logActionIsAHitButNotAnAlert() {
        let p = policy(rule(Self.detection, extra: "vigil:\n    action: log"))
        let event = exec("/bin/nc", at: 1)
        #expect(p.hits(event).map(\.action) == [.log])
        #expect(p.evaluate(exec("/bin/nc", at: 2)).isEmpty)
        #expect(!p.hasAlertingMatch(process(["Image": "/bin/nc"])))
        #expect(policy(rule(Self.detection)).hasAlertingMatch(process(["Image": "/bin/nc"])))
        #expect(!policy(rule(Self.detection)).hasAlertingMatch(process(["Image": "/bin/cat"])))
    }

    @Test func suppressionCountsSuppressedHits() {
        let p = policy(
            rule(Self.detection, extra: "vigil:\n    suppress:\n        window: 60s\n        by: [CommandLine]")
        )
        #expect(p.hits(exec("/bin/nc", "a", at: 0)).map(\.suppressedCount) == [0])
        #expect(p.hits(exec("/bin/nc", "a", at: 10)).isEmpty)
        #expect(p.hits(exec("/bin/nc", "a", at: 20)).isEmpty)
        #expect(p.hits(exec("/bin/nc", "b", at: 30)).map(\.suppressedCount) == [0])  // another key
        #expect(p.hits(exec("/bin/nc", "a", at: 61)).map(\.suppressedCount) == [2])
        // The count travels in the alert itself, which is what reaches the spool and the collector.
        #expect(p.evaluate(exec("/bin/nc", "a", at: 62)).isEmpty)
        #expect(p.evaluate(exec("/bin/nc", "a", at: 122)).map(\.suppressedCount) == [1])
    }

    @Test func rateLimitDropsAndCounts() {
        let p = policy(rule(Self.detection, extra: "vigil:\n    rate_limit: {max: 2, per: 1m}"))
        #expect(p.hits(exec("/bin/nc", at: 0)).count == 1)
        #expect(p.hits(exec("/bin/nc", at: 1)).count == 1)
        #expect(p.hits(exec("/bin/nc", at: 2)).isEmpty)
        #expect(p.hits(exec("/bin/nc", at: 3)).isEmpty)
        #expect(p.hits(exec("/bin/nc", at: 61)).map(\.suppressedCount) == [2])
        #expect(p.evaluate(exec("/bin/nc", at: 62)).map(\.suppressedCount) == [0])
    }

    @Test func settingsErrorsAreLocated() {
        let found = errors(rule(Self.detection, extra: "vigil:\n    action: block"))
        #expect(found.first?.hasPrefix("test.yml:14:13: vigil.action must be 'alert' or 'log'") == true, "\(found)")
        let window = errors(rule(Self.detection, extra: "vigil:\n    suppress: {window: forever}"))
        #expect(window.first?.contains("vigil.suppress.window must be a duration") == true, "\(window)")
        let unknown = errors(rule(Self.detection, extra: "vigil:\n    ratelimit: 5"))
        #expect(unknown.first?.contains("unknown key 'ratelimit' in vigil") == true, "\(unknown)")
    }

    @Test func alertsCarryRuleMetadata() throws {
        let p = policy(rule(Self.detection))
        let alert = try #require(p.evaluate(exec("/bin/nc", at: 1)).first)
        #expect(alert.ruleId == "r1" && alert.title == "Test rule r1" && alert.level == "high")
        #expect(alert.tags == ["attack.t1059.004"] && alert.author == "Tester" && alert.event != nil)
    }
}
