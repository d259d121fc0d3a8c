import Foundation

/// One safe simulation of an attack technique.
///
/// A drill is a value: what it imitates (`technique`, an ATT&CK id), the rule that must see it
/// (`rule`, the id of a rule in `Policies/rules/`), a `run` step and an `undo` step. Both steps
/// work only inside the scratch area of a `DrillContext` (temporary directories the selftest
/// creates, a private mount namespace, a network namespace), so a drill is safe by
/// construction: nothing outside the scratch area changes. `undo` runs after the alert arrived
/// or the wait timed out, and also when the selftest is interrupted (SIGINT, SIGTERM); the
/// scratch area itself is removed last.
public struct Drill: Sendable {
    /// A short stable name, unique in the catalog, used in paths and with `--drill`.
    public var id: String
    /// The MITRE ATT&CK technique imitated, e.g. `T1098.004`.
    public var technique: String
    /// What the drill does, in a few words.
    public var name: String
    /// The id of the rule expected to fire.
    public var rule: String
    /// True when the rule's real paths are outside any scratch area (`/etc/cron.d/`, say): the
    /// drill then needs the drill profile (`Policies/drills/`), which the selftest's own agent
    /// runs, and is skipped against an installed agent.
    public var needsProfile: Bool
    /// Directories (relative to the drill's own directory, or, with a leading `/`, to the
    /// scratch root) made before any sensor starts, so that files written into them at once are
    /// seen even by an agent that adds inotify watches as directories appear.
    public var directories: [String]
    /// Text that the event the rule matches must contain (a path, a command line fragment), so
    /// that an alert is attributed to this drill of this run and not to anything else.
    public var evidence: @Sendable (DrillContext) -> String
    public var run: @Sendable (DrillContext) async throws -> Void
    public var undo: @Sendable (DrillContext) -> Void

    public init(
        id: String,
        technique: String,
        name: String,
        rule: String,
        needsProfile: Bool = false,
        directories: [String] = [],
        evidence: (@Sendable (DrillContext) -> String)? = nil,
        run: @escaping @Sendable (DrillContext) async throws -> Void,
        undo: @escaping @Sendable (DrillContext) -> Void = { _ in }
    ) {
        self.id = id
        self.technique = technique
        self.name = name
        self.rule = rule
        self.needsProfile = needsProfile
        self.directories = directories
        self.evidence = evidence ?? { $0.directory }
        self.run = run
        self.undo = undo
    }
}

/// What a drill may touch: its own directory under the scratch root, the shared scratch root
/// (for drill-profile paths), a scratch directory in `/dev/shm`, and a loopback server.
public struct DrillContext: Sendable {
    /// The run's scratch area.
    public let scratch: ScratchArea
    /// The drill being run.
    public let drillID: String
    /// The port of the selftest's loopback server (serves `GET /...` with a harmless script,
    /// accepts and closes anything else).
    public let serverPort: Int

    /// The drill's own directory: `SCRATCH/<drill id>`. Commands run with it as their current
    /// directory, so every process event of the drill names it.
    public var directory: String { scratch.root + "/" + drillID }
    /// The drill's directory in `/dev/shm`.
    public var sharedMemoryDirectory: String { scratch.sharedMemoryRoot + "/" + drillID }

    /// A path in the drill's directory.
    public func path(_ relative: String) -> String { directory + "/" + relative }

    /// Writes `contents` to `path` (absolute, inside the scratch area) with `mode`.
    public func write(_ path: String, _ contents: String, mode: mode_t = 0o644) throws {
        try scratch.checkInside(path)
        let parent = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: path, contents: Data(contents.utf8)) else {
            throw DrillError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        guard chmod(path, mode) == 0 else { throw DrillError("chmod \(path): \(String(cString: strerror(errno)))") }
    }

    /// Copies the executable `source` (a system program such as /bin/true) to `path`.
    public func copyExecutable(_ source: String, to path: String) throws {
        try scratch.checkInside(path)
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: source, toPath: path)
        guard chmod(path, 0o755) == 0 else { throw DrillError("chmod \(path): \(String(cString: strerror(errno)))") }
    }

    /// Removes `path` (inside the scratch area) if present.
    public func remove(_ path: String) {
        guard (try? scratch.checkInside(path)) != nil else { return }
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Runs a program to completion in the drill's directory, with no input and its output
    /// discarded; throws when it fails or outlives `timeout` (it is killed then, and when the
    /// selftest is interrupted).
    ///
    /// The program is held at its first write to standard output for `hold`: a command that
    /// lives a millisecond can end before the agent reads its command line from /proc (a
    /// real limit of exec monitoring, which an attacker's interactive commands rarely hit),
    /// and a drill is there to test the rules and the pipeline, not that race. Drills whose
    /// command prints nothing add output (`chmod -v`, `; echo done`) so the hold applies.
    public func exec(
        _ executable: String,
        _ arguments: [String],
        timeout: Duration = .seconds(10),
        hold: Duration? = .milliseconds(500)
    ) async throws {
        try await ChildCommand.run(executable, arguments, directory: directory, timeout: timeout, hold: hold)
    }

    /// Runs `script` with `/bin/sh -c` (see `exec`); ` ; echo done` is appended, so the shell
    /// is held alive (see `exec`) after the script.
    public func shell(_ script: String, timeout: Duration = .seconds(10)) async throws {
        try await exec("/bin/sh", ["-c", script + "; echo done"], timeout: timeout)
    }
}

/// Why a drill could not run.
public struct DrillError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
