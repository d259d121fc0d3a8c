import Foundation
import Glibc
import Testing
import VigilTestSupport

/// File events that name their process, through the whole pipeline: a file written by a known
/// child reaches the collector with that child's `Image` and `ProcessId`, and a `file_event`
/// rule on `Image` fires. Without fanotify (no CAP_SYS_ADMIN) the agent runs on inotify alone
/// and says so. Needs root; outside CI it is skipped without it, in CI it fails.
@Suite("File attribution end to end", .serialized)
struct FileAttributionEndToEndTests {
    let dir = NSTemporaryDirectory() + "vigil-attribution-e2e-\(UUID().uuidString)"

    func vigilctl(_ args: [String]) async throws -> [[String: Any]] {
        let r = try await runCommand(BuiltProducts.path("vigilctl"), args + ["--json"])
        return r.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    func fileEvents(_ base: String, target: String) async throws -> [[String: Any]] {
        try await vigilctl(["events", "--collector", base, "--type", "file"]).compactMap {
            ($0["event"] as? [String: Any])?["file"] as? [String: Any]
        }.filter { $0["TargetFilename"] as? String == target }
    }

    func health(_ base: String, kind: String) async throws -> [[String: Any]] {
        try await vigilctl(["events", "--collector", base, "--type", "health"]).compactMap {
            ($0["event"] as? [String: Any])?["health"] as? [String: Any]
        }.filter { $0["kind"] as? String == kind }
    }

    static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    @Test("file attribution end to end needs root, and CI has it")
    func rootInCI() {
        #expect(TestEnvironment.isRoot || !TestEnvironment.isCI, "CI must run the attribution end-to-end test as root")
    }

    @Test(
        "a file written by a known child reaches the collector with its Image and pid, and a file_event rule on Image fires",
        .enabled(if: TestEnvironment.isRoot, "needs root (fanotify)"),
        .timeLimit(.minutes(3))
    )
    func writerToCollector() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/policies/rules", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        let marker = "vigil-attr-\(UInt32.random(in: 0...UInt32.max))"
        let ruleId = "44444444-4444-4444-8444-\(String(format: "%012x", UInt64.random(in: 0...0xffff_ffff_ffff)))"
        try """
        title: Python writes a marked file
        id: \(ruleId)
        status: test
        level: medium
        logsource: {product: linux, category: file_event}
        detection:
            selection:
                Image|contains: '/python3'
                TargetFilename|endswith: '/\(marker)'
            condition: selection
        """.write(toFile: dir + "/policies/rules/marker.yml", atomically: true, encoding: .utf8)
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\nprocesses:\n  max_processes: 4096\n",
            collectorURL: base,
            enrollToken: "t"
        )
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--enroll-token", "t"]
        )
        let agent = try ChildProcess(BuiltProducts.path("vigild"), ["--config", dir + "/vigild.yaml"])
        let started = try await eventually {
            try await !health(base, kind: "policy_loaded").isEmpty
        }
        #expect(started, "agent log:\n\(agent.stderr)\ncollector log:\n\(collector.stderr)")

        // In a directory made after the agent started (and sandboxed itself): its fanotify mark
        // is added then, as its inotify watch is.
        let later = dir + "/watched/later"
        try FileManager.default.createDirectory(atPath: later, withIntermediateDirectories: true)
        let watchedLater = try await eventually { try await !fileEvents(base, target: later).isEmpty }
        #expect(watchedLater, "no event for the new directory; agent log:\n\(agent.stderr)")
        let target = later + "/" + marker
        let python = try ChildProcess(
            "/usr/bin/python3",
            ["-c", "import sys\nwith open(sys.argv[1], 'w') as f: f.write('written by a known child')", target]
        )
        #expect(await python.wait(timeout: .seconds(30)) == 0, "\(python.stderr)")
        let pid = Int(python.process.processIdentifier)

        var written: [String: Any]?
        let arrived = try await eventually {
            written = try await fileEvents(base, target: target).first { $0["action"] as? String == "modify" }
            return written != nil
        }
        #expect(arrived, "no file event; agent log:\n\(agent.stderr)")
        #expect(written?["Image"] as? String == Self.realPath("/usr/bin/python3"), "\(written ?? [:])")
        #expect(written?["ProcessId"] as? Int == pid, "\(written ?? [:])")
        // The user is read from /proc while the writer lives; a writer gone by then has none.
        #expect(written?["User"] == nil || written?["User"] as? String == "root", "\(written ?? [:])")
        let created = try await fileEvents(base, target: target).first { $0["action"] as? String == "create" }
        #expect(created?["ProcessId"] as? Int == pid, "\(created ?? [:])")

        let alerted = try await eventually {
            try await !vigilctl(["events", "--collector", base, "--type", "alert", "--rule", ruleId]).isEmpty
        }
        #expect(alerted, "the file_event rule on Image did not fire; agent log:\n\(agent.stderr)")
        #expect(try await health(base, kind: "file_attribution_unavailable").isEmpty)

        #expect(await agent.stop() == 0, "\(agent.stderr)")
        #expect(await collector.stop() == 0)
    }

    @Test(
        "without CAP_SYS_ADMIN the agent says once that file events do not name their process, and still reports them",
        .enabled(if: TestEnvironment.isRoot, "needs root (to drop CAP_SYS_ADMIN from a root agent)"),
        .timeLimit(.minutes(3))
    )
    func inotifyFallback() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        let port = freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n",
            collectorURL: base,
            enrollToken: "t"
        )
        let collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--enroll-token", "t"]
        )
        let agent = try ChildProcess(
            "/usr/bin/setpriv",
            ["--bounding-set=-sys_admin", BuiltProducts.path("vigild"), "--config", dir + "/vigild.yaml"]
        )
        let started = try await eventually {
            try await !health(base, kind: "policy_loaded").isEmpty
        }
        #expect(started, "agent log:\n\(agent.stderr)\ncollector log:\n\(collector.stderr)")

        let target = dir + "/watched/plain"
        let touch = try ChildProcess("/usr/bin/touch", [target])
        #expect(await touch.wait(timeout: .seconds(30)) == 0)
        var created: [String: Any]?
        let arrived = try await eventually {
            created = try await fileEvents(base, target: target).first { $0["action"] as? String == "create" }
            return created != nil
        }
        #expect(arrived, "no file event; agent log:\n\(agent.stderr)")
        #expect(created?["Image"] == nil && created?["ProcessId"] == nil, "\(created ?? [:])")
        let said = try await health(base, kind: "file_attribution_unavailable")
        #expect(said.count == 1, "\(said)")
        #expect(agent.stderr.contains("file events do not name their process"), "\(agent.stderr)")

        #expect(await agent.stop() == 0, "\(agent.stderr)")
        #expect(await collector.stop() == 0)
    }
}
