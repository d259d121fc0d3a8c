import Foundation
import Testing
import VigilTestSupport

/// The self-sandbox of the real vigild, checked from outside (/proc of every thread) and from
/// inside: the debug build's `VIGIL_TEST_SANDBOX_PROBE` hook makes the running agent attempt
/// execve, ptrace, mount, init_module, an AF_PACKET socket and a write outside its state
/// directory, and ship the errno of each as a health event. Needs root (capabilities to drop);
/// skipped without it outside CI, failing in CI.
@Suite("Self-sandbox", .serialized)
struct SandboxTests {
    let dir = NSTemporaryDirectory() + "vigil-sandbox-\(UUID().uuidString)"

    @Test("the sandbox tests need root, and CI has it")
    func rootInCI() {
        #expect(TestEnvironment.isRoot || !TestEnvironment.isCI, "CI must run the sandbox tests as root")
    }

    /// `Name:\tvalue` lines of a /proc status file.
    func status(_ path: String) -> [String: String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return fields
    }

    @Test(
        "after start-up every thread is confined, forbidden calls are refused from inside, and the agent keeps sensing and shipping",
        .enabled(if: TestEnvironment.isRoot, "needs root"),
        .timeLimit(.minutes(3))
    )
    func confined() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for sub in ["watched", "outside"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        let target = try ChildProcess("/bin/sleep", ["120"])
        // The capture on lo is opened before the sandbox (CAP_NET_RAW) and must keep working after.
        let deployment = try LocalDeployment(
            in: dir,
            // Flow attribution (on by default as root) reads other processes' /proc/PID/fd, which
            // a Landlock domain forbids: off here, so that Landlock is checked.
            collection:
                "files:\n  watch: [\(dir)/watched]\nnetwork:\n  interface: lo\n  idle_timeout_s: 1\n"
                + "  attribute_processes: false\n",
            agentEnvironment: [
                "VIGIL_TEST_SANDBOX_PROBE": dir + "/outside",
                "VIGIL_TEST_PTRACE_TARGET": "\(target.process.processIdentifier)",
            ]
        )
        let agent = deployment.agent

        let probed = try await eventually(timeout: .seconds(60)) {
            try await !deployment.health(kind: "sandbox_probe").isEmpty
        }
        #expect(
            probed,
            "no sandbox_probe event; agent log:\n\(agent.stderr)\ncollector:\n\(deployment.collector.stderr)"
        )
        let probe = try await deployment.health(kind: "sandbox_probe").first?["counters"] as? [String: Any] ?? [:]
        func errno(_ name: String) -> Int? { probe[name] as? Int }
        #expect(errno("execve") == Int(EPERM), "execve of a missing path gives ENOENT unfiltered: \(probe)")
        #expect(errno("ptrace") == Int(EPERM), "\(probe)")
        #expect(errno("mount") == Int(EPERM), "\(probe)")
        #expect(errno("init_module") == Int(EPERM), "\(probe)")
        #expect(errno("socket_packet") == Int(EPERM), "\(probe)")
        #expect(
            errno("open_write_outside") == Int(EACCES),
            "Landlock refuses writes outside the state directory: \(probe)"
        )
        #expect(errno("open_write_state_dir") == 0, "the state directory stays writable: \(probe)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/outside/written-by-agent"))
        #expect(FileManager.default.fileExists(atPath: dir + "/state/sandbox-probe"))
        #expect(status("/proc/\(target.process.processIdentifier)/status")["TracerPid"] == "0")
        let installed = try await deployment.health(kind: "sandbox").first
        #expect((installed?["counters"] as? [String: Any])?["threads_at_install"] as? Int == 1, "\(installed ?? [:])")

        // Every thread, not only the main one.
        let pid = agent.process.processIdentifier
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        #expect(tasks.count > 3, "the agent runs its threads")
        var checked = 0
        for task in tasks {
            let s = status("/proc/\(pid)/task/\(task)/status")
            // A worker thread (libdispatch's come and go) may end between the listing and now.
            guard !s.isEmpty else { continue }
            checked += 1
            let name = s["Name"] ?? task
            #expect(s["Seccomp"] == "2", "\(name): \(s["Seccomp"] ?? "?")")
            #expect(s["NoNewPrivs"] == "1", "\(name)")
            // dac_read_search (2) and sys_ptrace (19) only.
            for set in ["CapEff", "CapPrm", "CapBnd"] {
                #expect(s[set] == "0000000000080004", "\(name) \(set) \(s[set] ?? "?")")
            }
            for set in ["CapInh", "CapAmb"] { #expect(s[set] == "0000000000000000", "\(name) \(set)") }
        }
        #expect(checked > 3, "\(checked) of \(tasks.count) threads still there to check")

        // Still sensing and shipping: a file change and a UDP flow on lo arrive at the collector.
        try Data("after\n".utf8).write(to: URL(fileURLWithPath: dir + "/watched/after-sandbox.txt"))
        let udpPort = UInt16(freeLoopbackPort())
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = udpPort.bigEndian
        for _ in 0..<3 {
            _ = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, "x", 1, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        close(fd)
        let sensed = try await eventually(timeout: .seconds(60)) {
            try await deployment.payloads(of: "file").contains {
                ($0["TargetFilename"] as? String) == dir + "/watched/after-sandbox.txt"
            }
        }
        #expect(sensed, "no file event after the sandbox; agent log:\n\(agent.stderr)")
        let flowed = try await eventually(timeout: .seconds(60)) {
            try await deployment.payloads(of: "flow").contains { ($0["resp_p"] as? Int) == Int(udpPort) }
        }
        #expect(flowed, "no flow event after the sandbox; agent log:\n\(agent.stderr)")
        #expect(await agent.stop() == 0, "SIGTERM drains normally inside the sandbox:\n\(agent.stderr)")
        await target.stop(signal: SIGKILL)
        #expect(await deployment.collector.stop() == 0)
    }

    @Test(
        "default_action: kill ends the agent with SIGSYS on a forbidden call; enabled: false leaves it unconfined",
        .enabled(if: TestEnvironment.isRoot, "needs root"),
        .timeLimit(.minutes(2))
    )
    func killAndDisabled() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for sub in ["watched", "outside"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        // Nothing listens: the agent spools and retries, which is all this test needs.
        let config = try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n",
            collectorURL: "http://127.0.0.1:\(freeLoopbackPort())"
        )
        let base = try String(contentsOfFile: config, encoding: .utf8)
        try (base + "sandbox:\n  default_action: kill\n").write(toFile: config, atomically: true, encoding: .utf8)
        let killed = try ChildProcess(
            BuiltProducts.path("vigild"),
            ["--config", config],
            environment: ["VIGIL_TEST_SANDBOX_PROBE": dir + "/outside"],
            directory: dir
        )
        _ = await killed.wait(timeout: .seconds(60))
        #expect(killed.process.terminationReason == .uncaughtSignal, "\(killed.stderr)")
        #expect(killed.process.terminationStatus == SIGSYS, "\(killed.stderr)")
        // It ran normally inside the sandbox until the probe's first forbidden call.
        #expect(
            killed.stderr.contains("agent started") && killed.stderr.contains("sandbox installed"),
            "\(killed.stderr)"
        )

        try (base + "sandbox:\n  enabled: false\n").write(toFile: config, atomically: true, encoding: .utf8)
        let open = try ChildProcess(BuiltProducts.path("vigild"), ["--config", config])
        let running = await eventually { open.stderr.contains("agent started") || !open.isRunning }
        #expect(running && open.isRunning, "\(open.stderr)")
        let s = status("/proc/\(open.process.processIdentifier)/status")
        #expect(s["Seccomp"] == "0")
        #expect(s["NoNewPrivs"] == "0")
        #expect(await open.stop() == 0)
    }
}
