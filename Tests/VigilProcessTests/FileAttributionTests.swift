import Foundation
import Glibc
import Logging
import Synchronization
import Testing
import VigilCore
import VigilSensors
import VigilTestSupport

/// File events that name their process: the file sensor's fanotify group on the real kernel,
/// with real writers. Needs root (CAP_SYS_ADMIN for fanotify); outside CI the tests are
/// skipped without it, in CI they fail.
@Suite("File events name their process (fanotify)", .serialized)
struct FileAttributionTests {
    @Test("the file attribution tests need root, and CI has it")
    func rootInCI() {
        #expect(TestEnvironment.isRoot || !TestEnvironment.isCI, "CI must run the file attribution tests as root")
    }

    /// Collects a sensor's events on a child task.
    final class Recorder: Sendable {
        private let events = Mutex<[FileEvent]>([])
        private let health = Mutex<[AgentHealth]>([])

        init(_ stream: some AsyncSequence<Event, Never> & Sendable) {
            Task { [self] in
                for await event in stream {
                    switch event.payload {
                    case .file(let f): self.events.withLock { $0.append(f) }
                    case .health(let h): self.health.withLock { $0.append(h) }
                    default: break
                    }
                }
            }
        }

        var files: [FileEvent] { events.withLock { $0 } }
        var healthEvents: [AgentHealth] { health.withLock { $0 } }

        func first(
            _ action: FileEvent.Action,
            _ path: String,
            timeout: Duration = .seconds(15)
        ) async throws -> FileEvent? {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if let found = files.first(where: { $0.action == action && $0.targetFilename == path }) {
                    return found
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            return nil
        }
    }

    /// A started file sensor on `path` with attribution on, and a recorder of its events (the
    /// caller stops the sensor).
    static func startedSensor(watching path: String) throws -> (FileSensor, Recorder) {
        let sensor = try FileSensor(
            configuration: FileSensorConfiguration(paths: [path], attributeProcesses: true),
            logger: Logger(label: "test")
        )
        let recorder = Recorder(sensor.events)
        try sensor.start()
        return (sensor, recorder)
    }

    static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    @Test(
        "a file written, renamed and deleted by known children names each child's Image and pid",
        .enabled(if: TestEnvironment.isRoot, "needs root (fanotify)"),
        .timeLimit(.minutes(2))
    )
    func knownWriters() async throws {
        let directory = try TemporaryDirectory()
        let (sensor, recorder) = try Self.startedSensor(watching: directory.path)
        defer { sensor.stop() }
        #expect(sensor.attributesProcesses, "root on a kernel with fanotify")

        let path = directory.path + "/written-by-python"
        let python = try ChildProcess(
            "/usr/bin/python3",
            ["-c", "import sys\nwith open(sys.argv[1], 'w') as f: f.write('vigil')", path]
        )
        #expect(await python.wait(timeout: .seconds(30)) == 0, "\(python.stderr)")
        let pythonPid = UInt32(python.process.processIdentifier)
        let pythonImage = Self.realPath("/usr/bin/python3")

        let created = try #require(try await recorder.first(.create, path), "\(recorder.files)")
        #expect(created.processId == pythonPid, "\(created)")
        #expect(created.image == pythonImage, "\(created)")
        // The user is read from /proc while the writer lives (a writer gone by then has none).
        #expect(created.user == nil || created.user == "root", "\(created)")
        let modified = try #require(try await recorder.first(.modify, path), "\(recorder.files)")
        #expect(modified.processId == pythonPid, "\(modified)")
        #expect(modified.image == pythonImage, "\(modified)")

        // Another process, another name: never the previous writer's.
        let renamed = directory.path + "/renamed-by-mv"
        let mv = try ChildProcess("/bin/mv", [path, renamed])
        #expect(await mv.wait(timeout: .seconds(30)) == 0, "\(mv.stderr)")
        let rename = try #require(try await recorder.first(.rename, renamed), "\(recorder.files)")
        #expect(rename.processId == UInt32(mv.process.processIdentifier), "\(rename)")
        #expect(rename.image == Self.realPath("/bin/mv"), "\(rename)")

        let rm = try ChildProcess("/bin/rm", [renamed])
        #expect(await rm.wait(timeout: .seconds(30)) == 0, "\(rm.stderr)")
        let deleted = try #require(try await recorder.first(.delete, renamed), "\(recorder.files)")
        #expect(deleted.processId == UInt32(rm.process.processIdentifier), "\(deleted)")
        #expect(deleted.image == Self.realPath("/bin/rm"), "\(deleted)")

        // A change by another user names that user.
        let other = directory.path + "/written-by-nobody"
        chmod(directory.path, 0o777)
        let nobody = try ChildProcess(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/touch", other]
        )
        #expect(await nobody.wait(timeout: .seconds(30)) == 0, "\(nobody.stderr)")
        let touched = try #require(try await recorder.first(.create, other), "\(recorder.files)")
        #expect(touched.processId == UInt32(nobody.process.processIdentifier), "\(touched)")
        #expect(touched.image == Self.realPath("/usr/bin/touch"), "\(touched)")
        #expect(touched.user == nil || touched.user == "nobody", "\(touched)")

        #expect(!recorder.healthEvents.contains { $0.kind == "file_attribution_unavailable" })
        #expect(sensor.statistics.attributionRecords > 0)
    }

    @Test(
        "a writer that execs another program right after its change is named for the change, not by the later program",
        .enabled(if: TestEnvironment.isRoot, "needs root (fanotify)"),
        .timeLimit(.minutes(2))
    )
    func writerThatExecsAfterwards() async throws {
        let directory = try TemporaryDirectory()
        let (sensor, recorder) = try Self.startedSensor(watching: directory.path)
        defer { sensor.stop() }
        let shell = Self.realPath("/bin/sh")
        let sleep = Self.realPath("/bin/sleep")
        // The shell writes, then becomes `sleep` at once (same pid), usually before the agent
        // reads /proc; sleep keeps the pid alive, so /proc names sleep when it is read.
        var children: [(path: String, child: ChildProcess)] = []
        for index in 0..<5 {
            let path = directory.path + "/written-then-exec-\(index)"
            let child = try ChildProcess("/bin/sh", ["-c", "echo vigil > \"$1\"; exec /bin/sleep 1", "sh", path])
            children.append((path, child))
        }
        for (path, child) in children {
            let created = try #require(try await recorder.first(.create, path), "\(recorder.files)")
            #expect(created.processId == UInt32(child.process.processIdentifier), "\(created)")
            #expect(created.image == shell, "the shell wrote \(path), \(sleep) did not: \(created)")
            #expect(await child.wait(timeout: .seconds(30)) == 0, "\(child.stderr)")
        }
        // Afterwards the pid is named by what it runs now.
        let later = directory.path + "/written-by-exec-target"
        let python = try ChildProcess(
            "/bin/sh",
            ["-c", "exec /usr/bin/python3 -c \"open('$1', 'w').write('x')\"", "sh", later]
        )
        #expect(await python.wait(timeout: .seconds(30)) == 0, "\(python.stderr)")
        let written = try #require(try await recorder.first(.create, later), "\(recorder.files)")
        #expect(written.processId == UInt32(python.process.processIdentifier), "\(written)")
        #expect(written.image == Self.realPath("/usr/bin/python3"), "\(written)")
    }

    @Test(
        "changes outside the watched trees are not attributed to files inside them",
        .enabled(if: TestEnvironment.isRoot, "needs root (fanotify)"),
        .timeLimit(.minutes(2))
    )
    func onlyWatchedTrees() async throws {
        let watched = try TemporaryDirectory()
        let outside = try TemporaryDirectory()
        let (sensor, recorder) = try Self.startedSensor(watching: watched.path)
        defer { sensor.stop() }
        // The same name in both trees, written by two processes: each event names its own.
        let inside = watched.path + "/same-name"
        let writer = try ChildProcess("/bin/sh", ["-c", "echo a > \(outside.path)/same-name; echo b > \(inside)"])
        #expect(await writer.wait(timeout: .seconds(30)) == 0)
        let late = try ChildProcess("/usr/bin/touch", [outside.path + "/same-name"])
        #expect(await late.wait(timeout: .seconds(30)) == 0)
        let event = try #require(try await recorder.first(.modify, inside), "\(recorder.files)")
        #expect(event.processId == UInt32(writer.process.processIdentifier), "\(event)")
        #expect(event.image == Self.realPath("/bin/sh"), "\(event)")
        #expect(!recorder.files.contains { $0.targetFilename.hasPrefix(outside.path) })
    }

    @Test(
        "directories made after start are marked as they are watched; writes next door cost no records",
        .enabled(if: TestEnvironment.isRoot, "needs root (fanotify)"),
        .timeLimit(.minutes(2))
    )
    func marksFollowTheTree() async throws {
        let watched = try TemporaryDirectory()
        let outside = try TemporaryDirectory()
        let (sensor, recorder) = try Self.startedSensor(watching: watched.path)
        defer { sensor.stop() }

        // A new subtree: its directories get their marks as the reader watches them, so a file
        // written deep inside names its writer.
        let deep = watched.path + "/new/deeper"
        let mkdir = try ChildProcess("/bin/mkdir", ["-p", deep])
        #expect(await mkdir.wait(timeout: .seconds(30)) == 0)
        _ = try #require(try await recorder.first(.create, deep), "\(recorder.files)")
        let path = deep + "/written-by-python"
        let python = try ChildProcess(
            "/usr/bin/python3",
            ["-c", "import sys\nwith open(sys.argv[1], 'w') as f: f.write('vigil')", path]
        )
        #expect(await python.wait(timeout: .seconds(30)) == 0, "\(python.stderr)")
        let modified = try #require(try await recorder.first(.modify, path), "\(recorder.files)")
        #expect(modified.processId == UInt32(python.process.processIdentifier), "\(modified)")
        #expect(modified.image == Self.realPath("/usr/bin/python3"), "\(modified)")

        // 500 files churned in a directory on the same filesystem but outside the trees: a
        // filesystem-wide mark would read 1,500 records (create, close, delete); the directory
        // marks read none of them. Exec records are left out: the exec mark is filesystem-wide, so
        // every exec on the machine (other tests spawn thousands meanwhile) is one.
        func changeRecords() -> UInt64 {
            let statistics = sensor.statistics
            return statistics.attributionRecords - statistics.attributionExecRecords
        }
        let before = changeRecords()
        let churn = try ChildProcess(
            "/usr/bin/python3",
            [
                "-c",
                "import os, sys\nfor i in range(500):\n p = f'{sys.argv[1]}/f{i}'\n open(p, 'w').close()\n os.unlink(p)",
                outside.path,
            ]
        )
        #expect(await churn.wait(timeout: .seconds(30)) == 0, "\(churn.stderr)")
        // A change inside afterwards: once it is seen, every record before it was read.
        let marker = watched.path + "/marker"
        try Data("m".utf8).write(to: URL(fileURLWithPath: marker))
        _ = try #require(try await recorder.first(.modify, marker), "\(recorder.files)")
        let records = changeRecords() - before
        #expect(records < 50, "\(records) fanotify records for writes outside the watched trees")
        #expect(sensor.statistics.attributionMarkLimitHits == 0)
    }
}
