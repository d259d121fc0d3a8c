import Foundation
import Testing
import VigilTestSupport

/// `vigilctl export` against a real collector fed by a real agent: a file event and the alert a
/// tiny Sigma rule raises on it come out as OCSF NDJSON and as RFC 5424 syslog lines.
@Suite("SIEM export end to end", .serialized)
struct SIEMExportEndToEndTests {
    let dir = NSTemporaryDirectory() + "vigil-export-e2e-\(UUID().uuidString)"
    let ruleId = "33333333-3333-4333-8333-333333333333"

    func export(_ base: String, _ args: [String]) async throws -> (status: Int32, lines: [String], stderr: String) {
        let r = try await runCommand(BuiltProducts.path("vigilctl"), ["export", "--collector", base] + args)
        return (r.status, r.stdout.split(separator: "\n").map(String.init), r.stderr)
    }

    /// A collector and an agent watching DIR/watched (`LocalDeployment`), once the policy is
    /// loaded: its watches and rules are in place.
    func startWatching() async throws -> (base: String, agent: ChildProcess, collector: ChildProcess) {
        let deployment = try LocalDeployment(in: dir, collection: "files:\n  watch: [\(dir)/watched]\n")
        #expect(try await deployment.waitForHealth(kind: "policy_loaded"), "\(deployment.logs)")
        return (deployment.base, deployment.agent, deployment.collector)
    }

    func json(_ line: String) -> [String: Any]? {
        try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    }

    func object(_ value: Any?, _ path: String...) -> [String: Any]? {
        var current = value as? [String: Any]
        for key in path { current = current?[key] as? [String: Any] }
        return current
    }

    @Test("a file event and its alert export as OCSF and syslog, once and with --follow")
    func exportOCSFAndSyslog() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for sub in ["watched", "policies/rules"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        try """
        title: Exported file
        id: \(ruleId)
        status: test
        level: high
        tags: [attack.execution, attack.t1059.004]
        logsource: {product: linux, category: file_event}
        detection:
            selection:
                TargetFilename|endswith: '/evil.sh'
            condition: selection
        """.write(toFile: dir + "/policies/rules/evil.yml", atomically: true, encoding: .utf8)
        let (base, agent, collector) = try await startWatching()

        let evil = dir + "/watched/evil.sh"
        try Data("#!/bin/sh\n".utf8).write(to: URL(fileURLWithPath: evil))
        let alerted = try await eventually { try await !export(base, ["--format", "syslog"]).lines.isEmpty }
        #expect(alerted, "no alert; agent log:\n\(agent.stderr)")

        // OCSF: every line parses; the file event and the finding carry their class and fields.
        let ocsf = try await export(base, ["--format", "ocsf"])
        #expect(ocsf.status == 0, "\(ocsf.stderr)")
        let records = ocsf.lines.compactMap(json)
        #expect(
            records.count == ocsf.lines.count,
            "every line is a JSON object:\n\(ocsf.lines.joined(separator: "\n"))"
        )
        for r in records {
            let classUID = r["class_uid"] as? Int ?? -1
            #expect([0, 1001, 1007, 4001, 2004].contains(classUID))
            #expect(r["type_uid"] as? Int == classUID * 100 + (r["activity_id"] as? Int ?? -1))
            #expect(object(r, "metadata")?["version"] as? String == "1.1.0")
            #expect((object(r, "device")?["hostname"] as? String)?.isEmpty == false, "the enrolled host name")
        }
        let fileEvent = records.first {
            $0["class_uid"] as? Int == 1001 && object($0, "file")?["path"] as? String == evil
        }
        #expect(fileEvent != nil, "no File System Activity for \(evil):\n\(ocsf.lines.joined(separator: "\n"))")
        #expect([1, 3].contains(fileEvent?["activity_id"] as? Int ?? -1), "Create or Update")
        #expect(object(fileEvent, "file")?["name"] as? String == "evil.sh")
        let finding = records.first { $0["class_uid"] as? Int == 2004 }
        #expect(object(finding, "finding_info", "analytic")?["uid"] as? String == ruleId)
        #expect(object(finding, "finding_info")?["title"] as? String == "Exported file")
        #expect(finding?["severity_id"] as? Int == 4)
        let attacks = object(finding, "finding_info")?["attacks"] as? [[String: Any]]
        #expect(attacks?.compactMap { object($0, "technique")?["uid"] as? String } == ["T1059.004"])
        let evidence = (finding?["evidences"] as? [[String: Any]])?.first
        #expect(object(evidence, "file")?["path"] as? String == evil)

        // The same filters as `vigilctl events`: only alerts of the rule.
        let onlyAlerts = try await export(base, ["--type", "alert", "--rule", ruleId]).lines.compactMap(json)
        #expect(!onlyAlerts.isEmpty && onlyAlerts.allSatisfy { $0["class_uid"] as? Int == 2004 })

        // Syslog: alerts only, PRI 13 * 8 + 3 (high), the rule in the structured data.
        let syslog = try await export(base, ["--format", "syslog"])
        #expect(syslog.status == 0, "\(syslog.stderr)")
        #expect(!syslog.lines.isEmpty)
        for line in syslog.lines {
            #expect(line.hasPrefix("<107>1 "), "\(line)")
            #expect(line.contains(" vigil - ALERT [vigil@32473 rule=\"\(ruleId)\" level=\"high\" agent=\""), "\(line)")
            #expect(line.contains("] Exported file: "), "\(line)")
            #expect(line.contains(evil), "\(line)")
        }
        let refused = try await export(base, ["--format", "syslog", "--type", "file"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("alerts only"), "\(refused.stderr)")

        // --follow --output: appends new alerts as they arrive.
        let output = dir + "/alerts.ndjson"
        let follower = try ChildProcess(
            BuiltProducts.path("vigilctl"),
            ["export", "--collector", base, "--type", "alert", "--follow", "--output", output]
        )
        func exported() -> [[String: Any]] {
            ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                json(String($0))
            }
        }
        let before = onlyAlerts.count
        let caughtUp = await eventually { exported().count >= before }
        #expect(caughtUp, "follower log:\n\(follower.stderr)")
        try FileManager.default.createDirectory(atPath: dir + "/watched/sub", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/watched/sub/evil.sh"))
        let followed = await eventually {
            exported().contains { evidencePath($0) == dir + "/watched/sub/evil.sh" }
        }
        #expect(followed, "the follower did not append the new alert; its log:\n\(follower.stderr)")
        #expect(follower.isRunning, "--follow keeps running")
        await follower.stop()

        #expect(await agent.stop() == 0, "\(agent.stderr)")
        #expect(await collector.stop() == 0)
    }

    /// A small HTTP receiver standing in for Vector's `http_server` source: it appends each
    /// POST body to `bodies`, records the headers, refuses the first POST to /ingest with 503
    /// (the export must send that page again) and every POST to /denied with 401.
    static let receiver = #"""
        import http.server, sys
        port, bodies, headers = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        seen = {"ingest": 0}
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/denied":
                    self.send_response(401); self.end_headers(); self.wfile.write(b"bad API key"); return
                seen["ingest"] += 1
                if seen["ingest"] == 1:
                    self.send_response(503); self.send_header("Retry-After", "1"); self.end_headers(); return
                with open(headers, "a") as f:
                    f.write("%s|%s\n" % (self.headers.get("Authorization"), self.headers.get("Content-Type")))
                with open(bodies, "ab") as f:
                    f.write(body)
                self.send_response(204); self.end_headers()
            def log_message(self, *args): pass
        http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
        """#

    @Test("export POSTs pages to an HTTP endpoint, sends a refused page again, stops on a 4xx")
    func exportToHTTPEndpoint() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        let (base, agent, collector) = try await startWatching()
        for name in ["a", "b", "c"] {
            try Data(name.utf8).write(to: URL(fileURLWithPath: dir + "/watched/" + name))
        }
        let stored = try await eventually {
            try await export(base, ["--type", "file"]).lines.count >= 3
        }
        #expect(stored, "agent log:\n\(agent.stderr)\ncollector log:\n\(collector.stderr)")
        #expect(await agent.stop() == 0, "\(agent.stderr)")
        let expected = try await export(base, ["--type", "file,health"]).lines

        let receiverPort = freeLoopbackPort()
        let bodies = dir + "/bodies.ndjson"
        let headers = dir + "/headers.txt"
        let receiver = try ChildProcess(
            "/usr/bin/python3",
            ["-c", Self.receiver, String(receiverPort), bodies, headers]
        )
        let listening = await eventually {
            (try? await runCommand("/usr/bin/curl", ["-s", "-o", "/dev/null", "http://127.0.0.1:\(receiverPort)/"]))?
                .status == 0
        }
        #expect(listening, "receiver log:\n\(receiver.stderr)")

        let endpoint = "http://127.0.0.1:\(receiverPort)"
        let sent = try await export(
            base,
            ["--type", "file,health", "--output", endpoint + "/ingest", "--header", "Authorization: Bearer s3cret"]
        )
        #expect(sent.status == 0, "\(sent.stderr)")
        #expect(sent.stderr.contains("answered 503"), "the refused first POST is reported: \(sent.stderr)")
        #expect(sent.stderr.contains("sending again"), "\(sent.stderr)")
        let received = ((try? String(contentsOfFile: bodies, encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(received.map(String.init) == expected, "every line exactly once, in order")
        let seenHeaders = ((try? String(contentsOfFile: headers, encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(!seenHeaders.isEmpty && seenHeaders.allSatisfy { $0 == "Bearer s3cret|application/x-ndjson" })

        let denied = try await export(base, ["--type", "file,health", "--output", endpoint + "/denied"])
        #expect(denied.status != 0)
        #expect(denied.stderr.contains("export stopped: \(endpoint)/denied answered 401"), "\(denied.stderr)")
        #expect(denied.stderr.contains("bad API key"), "the endpoint's reason: \(denied.stderr)")

        let badHeader = try await export(base, ["--output", endpoint + "/ingest", "--header", "no colon"])
        #expect(badHeader.status != 0 && badHeader.stderr.contains("is not 'Name: value'"), "\(badHeader.stderr)")
        let headerToFile = try await export(base, ["--output", dir + "/x.ndjson", "--header", "A: b"])
        #expect(headerToFile.status != 0 && headerToFile.stderr.contains("http:// or https://"))

        await receiver.stop()
        #expect(await collector.stop() == 0)
    }

    func evidencePath(_ record: [String: Any]) -> String? {
        object((record["evidences"] as? [[String: Any]])?.first, "file")?["path"] as? String
    }
}
