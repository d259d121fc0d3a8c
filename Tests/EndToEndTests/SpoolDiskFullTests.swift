import Foundation
import Testing
import VigilTestSupport

/// The disk under the spool fills up (a 2 MiB tmpfs as the state directory, the collector
/// down): the agent cannot commit what it reads. It must stop and say why, so that its
/// supervisor (systemd's `Restart=on-failure`) starts it again, and never stay up doing
/// nothing: when one of the agent's loops fails, the others are cancelled, and a loop that
/// slept with `try? await Task.sleep` in a cancelled task returned at once and went round
/// again, spinning on a core with the agent never exiting.
@Suite("Spool on a full disk", .serialized)
struct SpoolDiskFullTests {
    let dir = NSTemporaryDirectory() + "vigil-diskfull-\(UUID().uuidString)"

    @Test(
        "a spool the disk cannot hold ends the agent with the error instead of leaving it running",
        .enabled(if: TestEnvironment.isRoot || TestEnvironment.isCI, "mounts a tmpfs: needs root"),
        .timeLimit(.minutes(3))
    )
    func diskFull() async throws {
        #expect(TestEnvironment.isRoot, "CI must run this test as root")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for sub in ["watched", "state"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        let mount = try await runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", dir + "/state"])
        try #require(mount.status == 0, "mount: \(mount.stderr)")
        defer { _ = try? Process.run(URL(fileURLWithPath: "/bin/umount"), arguments: ["-l", dir + "/state"]) }
        // The collector is down (nothing listens there): every event stays in the spool.
        let config = try AgentFixture.write(
            in: dir,
            collection: "files:\n  watch: [\(dir)/watched]\n  hash_max_bytes: 0\n",
            collectorURL: "http://127.0.0.1:\(freeLoopbackPort())"
        )
        let agent = try ChildProcess(BuiltProducts.path("vigild"), ["--config", config, "--log-level", "warning"])
        let spool = dir + "/state/spool.sqlite"
        let spooling = await eventually(timeout: .seconds(60)) {
            let next = try? await sqliteRows(spool, "SELECT value FROM state WHERE key = 'next_seq'").first?.first
            return (next.flatMap { Int($0) } ?? 0) > 1
        }
        try #require(spooling, "the agent did not start spooling: \(agent.stderr.suffix(2000))")

        // Long names: each event takes a few hundred bytes of the 2 MiB.
        let stem = String(repeating: "f", count: 200)
        let writer = Task.detached {
            var i = 0
            while agent.isRunning, i < 200_000 {
                _ = FileManager.default.createFile(atPath: "\(dir)/watched/\(stem)-\(i)", contents: Data("x".utf8))
                i += 1
                if i % 500 == 0 { usleep(10_000) }
            }
            return i
        }
        let exited = await eventually(timeout: .seconds(90)) { !agent.isRunning }
        let status = await agent.wait(timeout: .seconds(1))
        let written = await writer.value
        #expect(exited, "the agent was still running 90 s later, after \(written) files")
        #expect(status != 0, "the agent exited with status 0; its log:\n\(agent.stderr.suffix(2000))")
        // SQLite's SQLITE_FULL: "database or disk is full".
        #expect(
            agent.stderr.contains("full"),
            "the agent's log does not say the disk is full:\n\(agent.stderr.suffix(2000))"
        )
    }
}
