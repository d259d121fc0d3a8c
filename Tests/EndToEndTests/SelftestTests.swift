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
}
