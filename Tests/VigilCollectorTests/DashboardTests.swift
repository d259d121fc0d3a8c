import Foundation
import Testing
import VigilCore

@testable import VigilCollector

/// The dashboard's HTML, without a server: escaping, form decoding, rendering of hostile agent
/// data, and the session cookie. (`EndToEndTests/DashboardTests` loads the real page in Chromium.)
@Suite("Dashboard rendering")
struct DashboardRenderingTests {
    static let hostile = "<script>alert('x')</script><img src=x onerror=\"alert(1)\">&amp;"

    @Test("escape makes markup text, in text and in either kind of quoted attribute")
    func escape() {
        #expect(
            HTML.escape(Self.hostile)
                == "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;amp;"
        )
        #expect(HTML.escape("plain text, ünïcödé 🙂") == "plain text, ünïcödé 🙂")
        #expect(HTML.escape("a\u{0}b\u{1b}c\u{85}d\te\nf") == "a\u{FFFD}b\u{FFFD}c\u{FFFD}d\te\nf")
        #expect(HTML.escape("") == "")
    }

    @Test("form decoding: + is a space, percent-escapes decode, order kept, bad escapes refused")
    func formFields() throws {
        let fields = try HTML.formFields("rule=a+b%2Bc&type=&field=Image%3A%2Fbin%2Fsh&&agent")
        #expect(fields.map(\.key) == ["rule", "type", "field", "agent"])
        #expect(fields.map(\.value) == ["a b+c", "", "Image:/bin/sh", ""])
        #expect(throws: HTML.FormError.self) { try HTML.formFields("rule=%zz") }
        #expect(try HTML.formFields("").isEmpty)
    }

    @Test("links percent-encode keys and values")
    func links() {
        #expect(HTML.dashboardLink([]) == "/dashboard")
        #expect(
            HTML.dashboardLink([("rule", "a&b=c \"<x>\""), ("after", "7")])
                == "/dashboard?rule=a%26b%3Dc%20%22%3Cx%3E%22&after=7"
        )
    }

    func agent(hostname: String) -> AgentSummary {
        AgentSummary(
            agentId: "agent-1",
            hostname: hostname,
            keyId: "k",
            enrolledAt: Timestamp(nanosecondsSinceEpoch: 0),
            revoked: false,
            lastSeen: Timestamp(nanosecondsSinceEpoch: 1_764_336_000_000_000_000),
            lastBatchSeq: 3,
            events: 12,
            chainStatus: "whole",
            anomalies: [],
            declaredGaps: 1,
            droppedEvents: 40
        )
    }

    @Test("agent-controlled strings are text everywhere on the page")
    func hostileRendering() {
        let matched = Event(
            seq: 1,
            payload: .process(ProcessEvent(action: .exec, processId: 7, image: "/bin/sh", commandLine: Self.hostile))
        )
        let alert = Alert(
            ruleId: "rule\"><script>x</script>",
            title: Self.hostile,
            level: "high\" onmouseover=\"x",
            tags: ["attack.t1059.004", "<b>tag</b>"],
            event: matched
        )
        let stored = StoredEvent(id: 5, agentId: "agent-1", batchSeq: 1, event: Event(seq: 2, payload: .alert(alert)))
        let file = StoredEvent(
            id: 6,
            agentId: "agent-1",
            batchSeq: 1,
            event: Event(seq: 3, payload: .file(FileEvent(action: .create, targetFilename: "/tmp/" + Self.hostile)))
        )
        let html = DashboardPage.dashboard(
            .init(
                agents: [agent(hostname: Self.hostile)],
                alerts: [stored],
                search: .init(parameters: [("rule", "\"><script>")], results: [file], nextCursor: 6),
                loggedIn: true,
                generatedAt: .now()
            )
        )
        #expect(!html.contains("<script"), "\(html)")
        #expect(!html.contains("<img"))
        #expect(!html.contains("<b>"))
        #expect(!html.contains("onmouseover=\""))
        #expect(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"))
        #expect(html.contains("<span class=\"tag\">attack.t1059.004</span>"))
        #expect(html.contains("<span class=\"hostname\">&lt;script&gt;"), "the alert names its agent's host, escaped")
        #expect(html.contains("class=\"level-info\""), "an unknown level gets a fixed class")
        #expect(html.contains("value=\"&quot;&gt;&lt;script&gt;\""), "the form keeps the filter, escaped")
        #expect(html.contains("href=\"/dashboard?rule=%22%3E%3Cscript%3E&amp;after=6\""), "next page")
        #expect(html.contains("action=\"/dashboard/logout\""))
        #expect(html.contains("<td class=\"warn\">1</td><td class=\"warn\">40</td>"), "declared gaps, dropped")
    }

    @Test("a refused search shows its reason; the form offers every filter EventQuery knows")
    func refusedSearch() {
        let html = DashboardPage.dashboard(
            .init(
                agents: [],
                alerts: [],
                search: .init(parameters: [("type", "<bogus>")], error: "type: '<bogus>' is not one of file"),
                loggedIn: false,
                generatedAt: .now()
            )
        )
        #expect(
            html.contains("id=\"search-error\" role=\"alert\">type: &#39;&lt;bogus&gt;&#39; is not one of file</p>")
        )
        #expect(!html.contains("/dashboard/logout"))
        for name in EventQuery.parameterNames where name != "after" && name != "before" {
            #expect(html.contains("name=\"\(name)\""), "\(name)")
        }
    }

    @Test("the login page has the form only when there is a token to log in with")
    func loginPage() {
        let form = DashboardPage.login(message: "<b>no</b>", tokenConfigured: true)
        #expect(form.contains("<form method=\"post\" action=\"/dashboard/login\">"))
        #expect(form.contains("&lt;b&gt;no&lt;/b&gt;"))
        let none = DashboardPage.login(message: nil, tokenConfigured: false)
        #expect(!none.contains("<form"))
        #expect(none.contains("--api-token"))
    }

    @Test("session cookies: valid only for the same token, unexpired, untampered")
    func session() {
        let now = Timestamp.now()
        let token = "dashboard-token-0123456789"
        let value = Dashboard.Session(token: token).issue(now: now)
        #expect(!value.contains(token))
        #expect(value.hasPrefix("v1."))
        #expect(Dashboard.Session(token: token).isValid(value, now: now))
        #expect(!Dashboard.Session(token: token + "x").isValid(value, now: now))
        let later = Timestamp(nanosecondsSinceEpoch: now.nanosecondsSinceEpoch + 13 * 3600 * 1_000_000_000)
        #expect(!Dashboard.Session(token: token).isValid(value, now: later), "expired")

        // Another expiry with the same MAC, a flipped MAC character, and junk.
        let parts = value.split(separator: ".")
        let moved = "v1.\(Int64(parts[1])! + 1).\(parts[2])"
        #expect(!Dashboard.Session(token: token).isValid(moved, now: now))
        var mac = Array(parts[2])
        mac[0] = mac[0] == "A" ? "B" : "A"
        #expect(!Dashboard.Session(token: token).isValid("v1.\(parts[1]).\(String(mac))", now: now))
        for junk in ["", "v1", "v1..", "v2.\(parts[1]).\(parts[2])", "v1.x.\(parts[2])", "v1.\(parts[1]).!!"] {
            #expect(!Dashboard.Session(token: token).isValid(junk, now: now), "\(junk)")
        }
        // A far-future expiry is refused even when correctly signed (no everlasting sessions).
        let future = Timestamp(nanosecondsSinceEpoch: now.nanosecondsSinceEpoch + 365 * 86_400 * 1_000_000_000)
        let longLived = Dashboard.Session(token: token).issue(now: future)
        #expect(!Dashboard.Session(token: token).isValid(longLived, now: now))
    }
}
