import Foundation
import Glibc
import Testing
import VigilLinux
import VigilTestSupport

/// The proc connector's per-socket event filter (Linux 6.6+) on the real kernel.
@Suite("Proc connector event filter", .serialized)
struct ProcConnectorTests {
    @Test("kernel releases that filter event types per socket: 6.6 and later")
    func releases() {
        for release in ["6.6.0-1-amd64", "6.18.44-fc-v657", "6.10", "7.0.1", "10.2.3-rc1"] {
            #expect(ProcConnector.filtersEventTypes(kernelRelease: release), "\(release)")
        }
        for release in ["6.5.13-generic", "6.1.0-27-amd64", "5.15.0", "4.19.0", "6", "", "linux-6.6", "abc"] {
            #expect(!ProcConnector.filtersEventTypes(kernelRelease: release), "\(release)")
        }
    }

    @Test("CI runs the filter tests as root on a kernel that filters")
    func kernelInCI() {
        #expect(
            !TestEnvironment.isCI || (TestEnvironment.isRoot && ProcConnector.kernelFiltersEventTypes),
            "CI must run as root on Linux 6.6 or later"
        )
    }

    /// Messages of `connector` until `until` holds for the ones read so far (or the deadline).
    static func read(
        _ connector: ProcConnector,
        deadline: ContinuousClock.Instant,
        until done: ([ProcConnectorMessage]) -> Bool
    ) throws -> [ProcConnectorMessage] {
        var messages: [ProcConnectorMessage] = []
        while !done(messages), ContinuousClock.now < deadline {
            guard try connector.wait(wakeup: nil, timeoutMilliseconds: 100) == .readable else { continue }
            _ = try connector.receive { messages.append($0) }
        }
        return messages
    }

    @Test(
        "an exec-only socket gets the exec of a child and not its fork or exit; the other socket the reverse",
        .enabled(if: TestEnvironment.isRoot && ProcConnector.kernelFiltersEventTypes, "needs root and Linux 6.6+"),
        .timeLimit(.minutes(1))
    )
    func splitSockets() async throws {
        let execs = try ProcConnector(receiveBufferBytes: 1 << 20, eventTypes: .exec)
        let rest = try ProcConnector(
            receiveBufferBytes: 1 << 20,
            eventTypes: ProcConnector.EventTypes.all.subtracting(.exec)
        )
        let all = try ProcConnector(receiveBufferBytes: 1 << 20)
        #expect(execs.eventTypes == .exec)
        let child = try ChildProcess("/bin/true", ["vigil-filter"])
        #expect(await child.wait(timeout: .seconds(30)) == 0)
        let pid = UInt32(child.process.processIdentifier)
        func mine(_ message: ProcConnectorMessage) -> String? {
            switch message.event {
            case .fork(_, _, let childPid, let childTgid) where childPid == pid && childTgid == pid: "fork"
            case .exec(_, let tgid) where tgid == pid: "exec"
            case .exit(let p, let tgid, _, _, _, _) where p == pid && tgid == pid: "exit"
            default: nil
            }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        let unfiltered = try Self.read(all, deadline: deadline) { $0.contains { mine($0) == "exit" } }.compactMap(mine)
        #expect(unfiltered == ["fork", "exec", "exit"])
        // Everything of the child is queued by now (the unfiltered socket saw its exit).
        let onExec = try Self.read(execs, deadline: .now + .milliseconds(200)) { _ in false }
        let onRest = try Self.read(rest, deadline: .now + .milliseconds(200)) { _ in false }
        #expect(onExec.compactMap(mine) == ["exec"])
        #expect(onRest.compactMap(mine) == ["fork", "exit"])
        #expect(onExec.allSatisfy { if case .exec = $0.event { true } else { false } }, "\(onExec)")
        #expect(!onRest.contains { if case .exec = $0.event { true } else { false } })
    }
}
