import Glibc
import Logging
import Synchronization
import Testing
import VigilCore
import VigilLinux
import VigilSensors
import VigilTestSupport

/// Deadline for anything a test waits for. Generous: the machine may be loaded; a passing
/// run never waits this long.
let eventDeadline: Duration = .seconds(10)

/// SHA-256 of known contents.
enum KnownDigest {
    static let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    static let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
}

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var seen: [Event]
    var description: String {
        "timed out waiting for \(what); saw \(seen.count) events:\n"
            + seen.suffix(40).map { "  \($0.payload)" }.joined(separator: "\n")
    }
}

/// Consumes a sensor's stream on a child task and lets the test wait for events.
final class EventRecorder: Sendable {
    private final class Storage: Sendable {
        let events = Mutex<[Event]>([])
        let finished = Atomic<Bool>(false)
    }

    private let storage: Storage
    private let task: Task<Void, Never>

    init(_ stream: some AsyncSequence<Event, Never> & Sendable) {
        let storage = Storage()
        self.storage = storage
        task = Task {
            for await event in stream {
                storage.events.withLock { $0.append(event) }
            }
            storage.finished.store(true, ordering: .releasing)
        }
    }

    var all: [Event] { storage.events.withLock { $0 } }
    var isFinished: Bool { storage.finished.load(ordering: .acquiring) }

    var fileEvents: [FileEvent] {
        all.compactMap { if case .file(let f) = $0.payload { f } else { nil } }
    }

    var healthEvents: [AgentHealth] {
        all.compactMap { if case .health(let h) = $0.payload { h } else { nil } }
    }

    /// Polls until `condition` holds on what was recorded, or the deadline passes.
    func waitUntil(_ what: String, timeout: Duration = eventDeadline, _ condition: ([Event]) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            if condition(all) { return }
            guard ContinuousClock.now < deadline else { throw TimedOut(what: what, seen: all) }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// The first file event with this action and target, once it arrives.
    @discardableResult
    func file(_ action: FileEvent.Action, _ path: String, timeout: Duration = eventDeadline) async throws -> FileEvent {
        var found: FileEvent?
        try await waitUntil("\(action) \(path)", timeout: timeout) { _ in
            found = fileEvents.first { $0.action == action && $0.targetFilename == path }
            return found != nil
        }
        return found!
    }

    /// The first health event of this kind, once it arrives.
    @discardableResult
    func health(_ kind: String, timeout: Duration = eventDeadline) async throws -> AgentHealth {
        var found: AgentHealth?
        try await waitUntil("health \(kind)", timeout: timeout) { _ in
            found = healthEvents.first { $0.kind == kind }
            return found != nil
        }
        return found!
    }

    /// File events about `path` (as target or source).
    func fileEvents(about path: String) -> [FileEvent] {
        fileEvents.filter { $0.targetFilename == path || $0.sourceFilename == path }
    }

    /// Creates `marker` and waits for its create: every event the kernel queued before it has
    /// then been delivered (unpaired moves are given time to expire first).
    func settle(marker: String) async throws {
        try await Task.sleep(for: .milliseconds(60))
        try FS.touch(marker)
        try await file(.create, marker)
    }

    func waitForFinish(timeout: Duration = eventDeadline) async throws {
        try await waitUntil("end of stream", timeout: timeout) { _ in isFinished }
    }

    func cancel() {
        task.cancel()
    }
}

let quietLogger = Logger(label: "vigil.test.file-sensor") { _ in SwiftLogNoOpLogHandler() }

/// Runs `body` with a started sensor on `paths` and a recorder on its stream; stops both.
func withSensor(
    paths: [String],
    exclude: [String] = [],
    hashMaxBytes: Int64 = 16 << 20,
    queueCapacity: Int = 65_536,
    _ body: (FileSensor, EventRecorder) async throws -> Void
) async throws {
    let sensor = try FileSensor(
        configuration: FileSensorConfiguration(
            paths: paths,
            exclude: exclude,
            hashMaxBytes: hashMaxBytes,
            queueCapacity: queueCapacity
        ),
        logger: quietLogger
    )
    try sensor.start()
    let recorder = EventRecorder(sensor.events)
    defer {
        sensor.stop()
        recorder.cancel()
    }
    try await body(sensor, recorder)
}

struct SystemCallFailed: Error, CustomStringConvertible {
    var call: String
    var path: String
    var errno: Int32
    var description: String { "\(call)(\(path)) failed: \(String(cString: strerror(errno)))" }
}

/// File operations as single, plain system calls, so a test knows exactly what the kernel saw.
enum FS {
    private static func check(_ result: Int32, _ call: String, _ path: String) throws {
        if result != 0 { throw SystemCallFailed(call: call, path: path, errno: errno) }
    }

    /// `open(O_CREAT|O_WRONLY)` + `close`: IN_CREATE (if new) then IN_CLOSE_WRITE.
    static func touch(_ path: String) throws {
        let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemCallFailed(call: "open", path: path, errno: errno) }
        close(fd)
    }

    /// Creates or truncates `path` and writes `content` in one `write`, then closes.
    static func write(_ path: String, _ content: String) throws {
        try write(path, Array(content.utf8))
    }

    static func write(_ path: String, _ bytes: [UInt8]) throws {
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemCallFailed(call: "open", path: path, errno: errno) }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw SystemCallFailed(call: "write", path: path, errno: errno) }
    }

    static func mkdir(_ path: String) throws { try check(Glibc.mkdir(path, 0o755), "mkdir", path) }

    /// Like `mkdir -p`.
    static func mkdirs(_ path: String) throws {
        var current = ""
        for part in path.split(separator: "/") {
            current += "/" + part
            if Glibc.mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw SystemCallFailed(call: "mkdir", path: current, errno: errno)
            }
        }
    }

    static func chmod(_ path: String, _ mode: mode_t) throws { try check(Glibc.chmod(path, mode), "chmod", path) }
    static func chown(_ path: String, _ uid: uid_t, _ gid: gid_t) throws {
        try check(Glibc.chown(path, uid, gid), "chown", path)
    }
    static func rename(_ from: String, _ to: String) throws { try check(Glibc.rename(from, to), "rename", from) }
    static func unlink(_ path: String) throws { try check(Glibc.unlink(path), "unlink", path) }
    static func rmdir(_ path: String) throws { try check(Glibc.rmdir(path), "rmdir", path) }
    static func symlink(_ target: String, _ path: String) throws {
        try check(Glibc.symlink(target, path), "symlink", path)
    }

    static func lstat(_ path: String) throws -> FileMetadata {
        try FileStatus.lstat(path)
    }
}
