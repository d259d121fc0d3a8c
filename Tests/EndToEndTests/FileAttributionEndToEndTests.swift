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

    func fileEvents(_ deployment: LocalDeployment, target: String) async throws -> [[String: Any]] {
        try await deployment.payloads(of: "file").filter { $0["TargetFilename"] as? String == target }
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
        let deployment = try LocalDeployment(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\nprocesses:\n  max_processes: 4096\n"
        )
        let agent = deployment.agent
        let started = try await deployment.waitForStart()
        #expect(started, "agent log:\n\(agent.stderr)\ncollector log:\n\(deployment.collector.stderr)")

        // In a directory made after the agent started (and sandboxed itself): its fanotify mark
        // is added then, as its inotify watch is.
        let later = dir + "/watched/later"
        try FileManager.default.createDirectory(atPath: later, withIntermediateDirectories: true)
        let watchedLater = try await eventually { try await !fileEvents(deployment, target: later).isEmpty }
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
            written = try await fileEvents(deployment, target: target).first { $0["action"] as? String == "modify" }
            return written != nil
        }
        #expect(arrived, "no file event; agent log:\n\(agent.stderr)")
        #expect(written?["Image"] as? String == Self.realPath("/usr/bin/python3"), "\(written ?? [:])")
        #expect(written?["ProcessId"] as? Int == pid, "\(written ?? [:])")
        // The user is read from /proc while the writer lives; a writer gone by then has none.
        #expect(written?["User"] == nil || written?["User"] as? String == "root", "\(written ?? [:])")
        let created = try await fileEvents(deployment, target: target).first { $0["action"] as? String == "create" }
        #expect(created?["ProcessId"] as? Int == pid, "\(created ?? [:])")

        let alerted = try await eventually {
            try await !deployment.events(["--type", "alert", "--rule", ruleId]).isEmpty
        }
        #expect(alerted, "the file_event rule on Image did not fire; agent log:\n\(agent.stderr)")
        #expect(try await deployment.health(kind: "file_attribution_unavailable").isEmpty)

        let stopped = await deployment.stop()
        #expect(stopped.agent == 0, "\(agent.stderr)")
        #expect(stopped.collector == 0)
    }

    @Test(
        "without CAP_SYS_ADMIN the agent says once that file events do not name their process, and still reports them",
        .enabled(if: TestEnvironment.isRoot, "needs root (to drop CAP_SYS_ADMIN from a root agent)"),
        .timeLimit(.minutes(3))
    )
    func inotifyFallback() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
        let deployment = try LocalDeployment(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n",
            agentLauncher: ["/usr/bin/setpriv", "--bounding-set=-sys_admin"]
        )
        let agent = deployment.agent
        let started = try await deployment.waitForStart()
        #expect(started, "agent log:\n\(agent.stderr)\ncollector log:\n\(deployment.collector.stderr)")

        let target = dir + "/watched/plain"
        let touch = try ChildProcess("/usr/bin/touch", [target])
        #expect(await touch.wait(timeout: .seconds(30)) == 0)
        var created: [String: Any]?
        let arrived = try await eventually {
            created = try await fileEvents(deployment, target: target).first { $0["action"] as? String == "create" }
            return created != nil
        }
        #expect(arrived, "no file event; agent log:\n\(agent.stderr)")
        #expect(created?["Image"] == nil && created?["ProcessId"] == nil, "\(created ?? [:])")
        let said = try await deployment.health(kind: "file_attribution_unavailable")
        #expect(said.count == 1, "\(said)")
        #expect(agent.stderr.contains("file events do not name their process"), "\(agent.stderr)")

        let stopped = await deployment.stop()
        #expect(stopped.agent == 0, "\(agent.stderr)")
        #expect(stopped.collector == 0)
    }
}
