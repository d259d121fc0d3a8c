import Foundation
import Testing
import VigilTestSupport

/// `vigilctl selftest` with the real binary: its own agent and collector on loopback, every
/// drill detected, and nothing left behind — no files, users, mounts, namespaces, interfaces
/// or processes — after a full run and after an interrupted one.
@Suite("Selftest drills", .serialized)
struct SelftestTests {
    static let policies: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path + "/Policies"
    }()

    /// Needs root: the agent's process and packet sensors, `unshare` and `ip netns`.
    func privileged() -> Bool {
        if TestEnvironment.isRoot { return true }
        if runningInCI { Issue.record("selftest needs root; CI runs the suite as root") }
        return false
    }

    /// Everything a drill could leave behind, as comparable text.
    struct Traces: Equatable, CustomStringConvertible {
        var scratch: [String]
        var namespaces: [String]
        var links: [String]
        var mounts: [String]
        var processes: [String]
        var accounts: [String]

        var description: String {
            "scratch \(scratch), netns \(namespaces), links \(links), mounts \(mounts), processes \(processes), accounts \(accounts)"
        }

        static func take() async throws -> Traces {
            func list(_ dir: String, _ prefix: String) -> [String] {
                ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix(prefix) }
                    .map { dir + "/" + $0 }
            }
            let scratch =
                list("/tmp", "vigil-drill.") + list("/dev/shm", "vigil-drill.") + list("/tmp", "vigil-selftest.")
            let namespaces = try await runCommand("/usr/sbin/ip", ["netns", "list"]).stdout.split(separator: "\n")
                .map(String.init).filter { $0.hasPrefix("vigil-drill-") }
            let links = try await runCommand("/usr/sbin/ip", ["-o", "link", "show"]).stdout.split(separator: "\n")
                .compactMap { $0.split(separator: ":").dropFirst().first?.trimmingCharacters(in: .whitespaces) }
                .filter { $0.hasPrefix("vd") }
            let mounts = ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "")
                .split(separator: "\n").map(String.init).filter { $0.contains("vigil-drill") }
            var processes: [String] = []
            for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
                guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
                let line = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
                if line.contains("vigil-drill") { processes.append("\(pid): \(line)") }
            }
            var accounts: [String] = []
            for file in ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"] {
                let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
                accounts.append("\(file): \(text.utf8.count) bytes, vigildrill \(text.contains("vigildrill"))")
            }
            return Traces(
                scratch: scratch,
                namespaces: namespaces,
                links: links,
                mounts: mounts,
                processes: processes,
                accounts: accounts
            )
        }
    }

    @Test("every drill is detected by its rule, end to end, and leaves no trace")
    func allDrillsDetected() async throws {
        guard privileged() else { return }
        let before = try await Traces.take()
        let started = ContinuousClock.now
        let run = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["selftest", "--json", "--policies", Self.policies, "--timeout", "20"],
            timeout: .seconds(180)
        )
        let elapsed = ContinuousClock.now - started
        let results = run.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(run.status == 0, "exit \(run.status)\nstdout:\n\(run.stdout)\nstderr:\n\(run.stderr)")
        #expect(results.count >= 15, "\(run.stdout)\n\(run.stderr)")
        // The results went to the selftest's own agent and on to its collector as a health event.
        #expect(!run.stderr.contains("warning"), "\(run.stderr)")
        for result in results {
            let drill = result["drill"] as? String ?? "?"
            #expect(result["detected"] as? Bool == true, "\(drill) not detected: \(result)")
            #expect((result["technique"] as? String)?.hasPrefix("T") == true, "\(result)")
            #expect((result["rule"] as? String)?.count == 36, "\(result)")
            #expect((result["latency_ms"] as? Int).map { $0 >= 0 } == true, "\(drill): \(result)")
        }
        let after = try await Traces.take()
        #expect(after == before, "left behind:\nbefore: \(before)\nafter:  \(after)")
        // Recorded, not asserted: the run's length is the suite's concern, not a speed test.
        print("selftest: \(results.count) drills in \(elapsed)")
    }

    @Test("the table names each technique and a missing expectation fails the run")
    func tableAndExitStatus() async throws {
        guard privileged() else { return }
        let run = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["selftest", "--policies", Self.policies, "--drill", "T1098.004", "--drill", "T1046"],
            timeout: .seconds(120)
        )
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
        let lines = run.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("TECHNIQUE") == true, "\(run.stdout)")
        #expect(lines.filter { $0.hasPrefix("T1098.004") && $0.contains("detected") }.count == 2, "\(run.stdout)")
        #expect(lines.contains { $0.hasPrefix("T1046") && $0.contains("detected") && $0.contains(" ms") })
        #expect(lines.last == "3 drills: 3 detected, 0 missed, 0 failed", "\(run.stdout)")

        // A profile whose shell-history rule was removed: that drill must be reported missed
        // and the exit status must say so.
        let policies = NSTemporaryDirectory() + "vigil-selftest-policies-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: policies) }
        try FileManager.default.copyItem(atPath: Self.policies, toPath: policies)
        try FileManager.default.removeItem(atPath: policies + "/rules/history_file_deleted.yml")
        let missing = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["selftest", "--json", "--policies", policies, "--drill", "history-deleted", "--timeout", "3"],
            timeout: .seconds(120)
        )
        #expect(missing.status == 1, "\(missing.stdout)\n\(missing.stderr)")
        let result = missing.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.first
        #expect(result?["detected"] as? Bool == false, "\(missing.stdout)")
        #expect(result?["technique"] as? String == "T1070.003")
    }

    @Test("SIGINT mid-run undoes the drills that ran and removes the scratch area")
    func interruptedRunLeavesNoTrace() async throws {
        guard privileged() else { return }
        let before = try await Traces.take()
        // Without the shell-history rule one drill is never detected, so the run is surely
        // still waiting, every drill's traces in place, when the signal comes.
        let policies = NSTemporaryDirectory() + "vigil-selftest-policies-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: policies) }
        try FileManager.default.copyItem(atPath: Self.policies, toPath: policies)
        try FileManager.default.removeItem(atPath: policies + "/rules/history_file_deleted.yml")
        let child = try ChildProcess(
            BuiltProducts.path("vigilctl"),
            ["selftest", "--verbose", "--policies", policies, "--timeout", "120"]
        )
        let reached = try await eventually(timeout: .seconds(90), every: .milliseconds(100)) {
            let traces = try await Traces.take()
            return child.stderr.contains("running port-scan-netns")
                && traces.namespaces.count > before.namespaces.count && traces.scratch.count > before.scratch.count
        }
        #expect(reached, "the port scan drill never started:\n\(child.stderr)")
        try await Task.sleep(for: .milliseconds(500))
        child.send(SIGINT)
        let status = await child.wait(timeout: .seconds(60))
        #expect(status == 130, "exit \(status)\n\(child.stdout)\n\(child.stderr)")
        #expect(child.stderr.contains("interrupted"), "\(child.stderr)")
        let after = try await Traces.take()
        #expect(after == before, "left behind:\nbefore: \(before)\nafter:  \(after)")
    }

    @Test(
        "--collector drills an installed agent; the result goes through its control socket into its signed stream",
        .timeLimit(.minutes(4))
    )
    func installedAgent() async throws {
        guard privileged() else { return }
        let dir = NSTemporaryDirectory() + "vigil-selftest-installed-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/policies", withIntermediateDirectories: true)
        // The installed agent: the shipped rules, watching where the drills work.
        try FileManager.default.copyItem(atPath: Self.policies + "/rules", toPath: dir + "/policies/rules")
        let deployment = try LocalDeployment(
            in: dir,
            collection: "files:\n  watch: [/dev/shm]\nprocesses:\n  max_processes: 4096\n"
        )
        let base = deployment.base
        let agent = deployment.agent
        let socket = dir + "/state/control.sock"
        let started = await eventually(timeout: .seconds(60)) { FileManager.default.fileExists(atPath: socket) }
        #expect(
            started,
            "no control socket; agent log:\n\(agent.stderr)\ncollector log:\n\(deployment.collector.stderr)"
        )
        let mode = (try? FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? Int) ?? -1
        #expect(mode == 0o600, "control socket mode \(String(mode, radix: 8))")

        // Two drills the shipped rules catch where they are, and one that needs the drill
        // profile (skipped against an installed agent). This agent watches /dev/shm, not /tmp
        // (where the other suites' bursts run at the same time), and the two drills are named
        // by the executable (fanotify), not by the command line of a process that lives a
        // millisecond.
        let run = try await runCommand(
            BuiltProducts.path("vigilctl"),
            [
                "selftest", "--json", "--collector", base, "--agent-socket", socket, "--timeout", "20",
                "--drill", "exec-from-dev-shm", "--drill", "exec-from-tmp", "--drill", "cron-job",
            ],
            timeout: .seconds(150)
        )
        #expect(run.status == 0, "exit \(run.status)\n\(run.stdout)\n\(run.stderr)\nagent log:\n\(agent.stderr)")
        let results = run.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let outcomes = Dictionary(results.map { ($0["drill"] as? String ?? "?", $0["outcome"] as? String ?? "?") }) {
            a,
            _ in a
        }
        #expect(
            outcomes == ["exec-from-dev-shm": "detected", "exec-from-tmp": "detected", "cron-job": "skipped"],
            "\(run.stdout)\n\(run.stderr)"
        )
        #expect(!run.stderr.contains("warning"), "\(run.stderr)")

        // The agent sent the result on as a selftest health event, signed and chained with the
        // rest of its stream.
        var counters: [String: Int] = [:]
        let reported = try await eventually(timeout: .seconds(30)) {
            guard let selftest = try await deployment.health(kind: "selftest").first else { return false }
            counters = (selftest["counters"] as? [String: Any] ?? [:]).compactMapValues { $0 as? Int }
            return true
        }
        #expect(reported, "no selftest health event; agent log:\n\(agent.stderr)")
        #expect(counters["drills"] == 3 && counters["detected"] == 2 && counters["skipped"] == 1, "\(counters)")
        #expect(counters["missed"] == 0, "\(counters)")
        // ... and the collector's inventory says when this agent last passed.
        let inventory = try await runCommand(BuiltProducts.path("vigilctl"), ["agents", "--collector", base, "--json"])
        let agents =
            (try? JSONSerialization.jsonObject(with: Data(inventory.stdout.utf8)) as? [String: Any])?["agents"]
            as? [[String: Any]] ?? []
        let lastSelftest = agents.first?["last_selftest"] as? [String: Any]
        #expect(agents.count == 1 && lastSelftest?["passed"] as? Bool == true, "\(inventory.stdout)\(inventory.stderr)")
        #expect(lastSelftest?["detected"] as? Int == 2 && lastSelftest?["drills"] as? Int == 3, "\(inventory.stdout)")
        #expect(agents.first?["selftest_passed_at"] != nil, "\(inventory.stdout)")
        let table = try await runCommand(BuiltProducts.path("vigilctl"), ["agents", "--collector", base])
        #expect(table.stdout.contains("SELFTEST") && table.stdout.contains("passed "), "\(table.stdout)")

        // The socket takes nothing else: a malformed or inconsistent request is refused with
        // a reason, and a user other than root cannot connect at all.
        let client = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX)
            s.connect(sys.argv[1])
            s.sendall(sys.argv[2].encode() + b'\\n')
            print(s.makefile().readline().strip())
            """
        for (request, reason) in [
            ("not json", "expected one JSON line"),
            (
                #"{"selftest":{"drills":1,"detected":5,"missed":0,"skipped":0,"latency_ms_max":1,"missed_drills":[]}}"#,
                "must equal drills"
            ),
        ] {
            let reply = try await runCommand("/usr/bin/python3", ["-c", client, socket, request])
            #expect(
                reply.stdout.contains(#""ok":false"#) && reply.stdout.contains(reason),
                "\(reply.stdout)\(reply.stderr)"
            )
        }
        let nobody = try await runCommand(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", client, socket, "{}"]
        )
        #expect(nobody.status != 0 && nobody.stderr.contains("PermissionError"), "\(nobody.stdout)\(nobody.stderr)")

        // No socket where --agent-socket points: the drills still count, the report is a warning.
        let unreported = try await runCommand(
            BuiltProducts.path("vigilctl"),
            [
                "selftest", "--collector", base, "--agent-socket", dir + "/nowhere.sock", "--timeout", "20",
                "--drill", "exec-from-tmp",
            ],
            timeout: .seconds(120)
        )
        #expect(unreported.status == 0, "\(unreported.stdout)\n\(unreported.stderr)")
        #expect(unreported.stderr.contains("not reported to the agent"), "\(unreported.stderr)")

        #expect(await agent.stop() == 0, "\(agent.stderr)")
        #expect(!FileManager.default.fileExists(atPath: socket), "the agent left its control socket behind")
        #expect(await deployment.collector.stop() == 0)
    }
}
