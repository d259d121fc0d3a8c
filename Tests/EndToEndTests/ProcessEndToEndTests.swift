import Foundation
import Testing
import VigilTestSupport

/// The process sensor in the agent: an exec on this host reaches the collector as a process
/// event with its context, and a `process_creation` rule fires on it. Needs root (proc
/// connector); outside CI it is skipped without it, in CI it fails.
@Suite("Process events end to end", .serialized)
struct ProcessEndToEndTests {
    let dir = NSTemporaryDirectory() + "vigil-process-e2e-\(UUID().uuidString)"

    @Test("process events end to end need root, and CI has it")
    func rootInCI() {
        #expect(TestEnvironment.isRoot || !TestEnvironment.isCI, "CI must run the process end-to-end test as root")
    }

    @Test(
        "an exec reaches the collector with its context and a process_creation rule fires",
        .enabled(if: TestEnvironment.isRoot, "needs root (proc connector)"),
        .timeLimit(.minutes(3))
    )
    func execToCollector() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/policies/rules", withIntermediateDirectories: true)
        let marker = "vigil-e2e-\(UInt32.random(in: 0...UInt32.max))"
        let ruleId = "33333333-3333-4333-8333-\(String(format: "%012x", UInt64.random(in: 0...0xffff_ffff_ffff)))"
        try """
        title: Test shell with marker
        id: \(ruleId)
        status: test
        level: high
        tags: [attack.t1059.004]
        logsource: {product: linux, category: process_creation}
        detection:
            selection:
                Image|endswith: '/dash'
                CommandLine|contains: '\(marker)'
                ParentImage|endswith: '/bash'
            condition: selection
        """.write(toFile: dir + "/policies/rules/marker.yml", atomically: true, encoding: .utf8)
        let deployment = try LocalDeployment(
            in: dir,
            collection: "files:\n  watch: []\nprocesses:\n  max_processes: 4096\n"
        )
        let agent = deployment.agent
        let started = try await deployment.waitForStart()
        #expect(started, "agent log:\n\(agent.stderr)\ncollector log:\n\(deployment.collector.stderr)")

        let workload = try await runCommand("/bin/bash", ["-c", "/bin/sh -c 'sleep 0.2; true' \(marker); true"])
        #expect(workload.status == 0)

        var exec: [String: Any]?
        let arrived = try await eventually {
            exec = try await deployment.payloads(of: "process").first {
                ($0["CommandLine"] as? String)?.hasPrefix("/bin/sh -c sleep 0.2; true \(marker)") == true
                    && $0["action"] as? String == "exec"
            }
            return exec != nil
        }
        #expect(arrived, "no process event; agent log:\n\(agent.stderr)")
        #expect(exec?["Image"] as? String == "/usr/bin/dash")
        #expect(exec?["CommandLine"] as? String == "/bin/sh -c sleep 0.2; true \(marker)")
        #expect(exec?["ParentImage"] as? String == "/usr/bin/bash")
        #expect(exec?["CurrentDirectory"] as? String == FileManager.default.currentDirectoryPath)

        let alerted = try await eventually {
            try await !deployment.events(["--type", "alert", "--rule", ruleId]).isEmpty
        }
        #expect(alerted, "the process_creation rule did not fire; agent log:\n\(agent.stderr)")

        let stopped = await deployment.stop()
        #expect(stopped.agent == 0, "\(agent.stderr)")
        #expect(stopped.collector == 0)
    }
}
