import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import VigilAgent
import VigilCollector
import VigilCore

/// `vigilctl selftest`: runs the drills against an agent and reports, drill by drill, whether
/// the expected alert reached the collector and how long it took.
public enum Selftest {
    public struct Options: Sendable {
        /// The collector an installed agent ships to; nil starts an agent and a collector on
        /// loopback, running the drill profile.
        public var collector: String?
        /// Bearer token for the collector's query API (`VIGIL_API_TOKEN`).
        public var apiToken: String?
        /// The policies directory the drill profile is made from (holding `rules/` and
        /// `drills/`); only without `collector`.
        public var policies: String?
        /// Drill ids or technique ids to run; empty runs all.
        public var only: [String] = []
        /// How long each drill's alert is waited for, from the drill's start.
        public var timeout: Duration = .seconds(15)
        /// The installed agent's control socket, where the results go (as an agent-health
        /// event, so the collector's inventory shows the agent's last selftest); only with
        /// `collector`. Without `collector`, the selftest's own agent's socket is used.
        public var agentSocket = "/var/lib/vigil/" + AgentControl.socketName
        public var logger: Logger
        /// Called with a line of progress (to print on standard error).
        public var progress: @Sendable (String) -> Void
        /// Called with a warning that does not fail the run (printed on standard error).
        public var warning: @Sendable (String) -> Void = { _ in }

        public init(logger: Logger, progress: @escaping @Sendable (String) -> Void = { _ in }) {
            self.logger = logger
            self.progress = progress
        }
    }

    /// The catalog's drills selected by id or technique (case-insensitive); all when `only` is empty.
    public static func drills(matching only: [String]) throws -> [Drill] {
        guard !only.isEmpty else { return DrillCatalog.all }
        let wanted = Set(only.map { $0.lowercased() })
        let selected = DrillCatalog.all.filter {
            wanted.contains($0.id.lowercased()) || wanted.contains($0.technique.lowercased())
        }
        let known = Set(DrillCatalog.all.flatMap { [$0.id.lowercased(), $0.technique.lowercased()] })
        if let unknown = wanted.subtracting(known).sorted().first {
            throw DrillError("no drill or technique '\(unknown)' (vigilctl selftest --list shows them)")
        }
        return selected
    }

    /// Runs the selected drills; SIGINT and SIGTERM stop the run, undo what ran and remove the
    /// scratch area before `SelftestInterrupted` is thrown.
    public static func run(_ options: Options) async throws -> [DrillResult] {
        let selected = try drills(matching: options.only)
        guard geteuid() == 0 else {
            throw DrillError(
                "selftest needs root: the agent's process and packet sensors, and the drills' private mount and network namespaces"
            )
        }
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        let scratch = try ScratchArea.create()
        defer { scratch.remove() }
        let server = try LoopbackServer()
        defer { server.stop() }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try scratch.prepare(selected)
            for root in [scratch.root, scratch.sharedMemoryRoot] {
                try FileManager.default.createDirectory(atPath: root + "/probe", withIntermediateDirectories: true)
            }
            let results: [DrillResult]
            if let collector = options.collector {
                results = try await interruptible(signals) {
                    try await drillInstalledAgent(
                        collector: collector,
                        selected: selected,
                        scratch: scratch,
                        server: server,
                        client: client,
                        options: options
                    )
                }
                report(results, to: options.agentSocket, options: options)
            } else {
                // Only the drilling is interrupted (cancelled, which undoes what ran); the
                // agent and collector then stop gracefully.
                let policies = try options.policies ?? defaultPolicies()
                results = try await LoopbackRig.with(
                    policies: policies,
                    scratch: scratch,
                    logger: options.logger
                ) { base, agentSocket in
                    let results = try await interruptible(signals) {
                        try await drillOwnAgent(
                            base: base,
                            selected: selected,
                            scratch: scratch,
                            server: server,
                            client: client,
                            options: options
                        )
                    }
                    if report(results, to: agentSocket, options: options) {
                        try await awaitReport(base: base, client: client, options: options)
                    }
                    return results
                }
            }
            try await client.shutdown()
            return results
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    static func drillOwnAgent(
        base: String,
        selected: [Drill],
        scratch: ScratchArea,
        server: LoopbackServer,
        client: HTTPClient,
        options: Options
    ) async throws -> [DrillResult] {
        options.progress("agent and collector on loopback: \(base)")
        let since = Timestamp(nanosecondsSinceEpoch: Timestamp.now().nanosecondsSinceEpoch - 60_000_000_000)
        let ready = try await probe(
            base: base,
            client: client,
            options: options,
            scratch: scratch,
            since: since,
            timeout: .seconds(30)
        )
        guard ready else {
            throw DrillError(
                "the selftest's own agent reported no file or process event from \(scratch.root) within 30 s"
            )
        }
        return try await DrillRunner(
            drills: selected,
            scratch: scratch,
            server: server,
            events: CollectorEvents(base: base, client: client, apiToken: nil, since: since, types: [.alert]),
            timeout: options.timeout,
            progress: options.progress
        ).run()
    }

    static func drillInstalledAgent(
        collector: String,
        selected: [Drill],
        scratch: ScratchArea,
        server: LoopbackServer,
        client: HTTPClient,
        options: Options
    ) async throws -> [DrillResult] {
        let base = collector.hasSuffix("/") ? String(collector.dropLast()) : collector
        // Alerts are matched on this run's scratch paths, so a little clock skew is harmless.
        let since = Timestamp(nanosecondsSinceEpoch: Timestamp.now().nanosecondsSinceEpoch - 60_000_000_000)
        let seen = try await probe(
            base: base,
            client: client,
            options: options,
            scratch: scratch,
            since: since,
            timeout: .seconds(10)
        )
        if !seen {
            options.warning(
                "no file or process event from \(scratch.root) or \(scratch.sharedMemoryRoot) reached \(base) within"
                    + " 10 s; the agent may watch neither /tmp nor /dev/shm, or may ship alerts only; drilling anyway"
            )
        }
        let runnable = selected.filter { !$0.needsProfile }
        var results = try await DrillRunner(
            drills: runnable,
            scratch: scratch,
            server: server,
            events: CollectorEvents(
                base: base,
                client: client,
                apiToken: options.apiToken,
                since: since,
                types: [.alert]
            ),
            timeout: options.timeout,
            progress: options.progress
        ).run()
        for drill in selected where drill.needsProfile {
            results.append(
                DrillResult(
                    drill: drill,
                    outcome: .skipped,
                    error: "needs the drill profile (Policies/drills/); run selftest without --collector"
                )
            )
        }
        let order = Dictionary(uniqueKeysWithValues: selected.enumerated().map { ($1.id, $0) })
        return results.sorted { order[$0.drill, default: 0] < order[$1.drill, default: 0] }
    }

    /// The run's outcome as the agent reports it (health event `selftest`).
    public static func summary(_ results: [DrillResult]) -> AgentControl.SelftestReport {
        let missed = results.filter(\.isFailure)
        return AgentControl.SelftestReport(
            drills: results.count,
            detected: results.filter(\.detected).count,
            missed: missed.count,
            skipped: results.filter { $0.outcome == .skipped }.count,
            latencyMillisecondsMax: results.compactMap(\.latencyMilliseconds).max() ?? 0,
            missedDrills: missed.map(\.drill)
        )
    }

    /// Sends the results to the agent at `socket`; a failure is a warning, not a failed run.
    @discardableResult
    static func report(_ results: [DrillResult], to socket: String, options: Options) -> Bool {
        do {
            try AgentControl.send(summary(results), to: socket)
            options.progress("results reported to the agent (\(socket)): a selftest health event follows")
            return true
        } catch {
            options.warning("the results were not reported to the agent: \(error)")
            return false
        }
    }

    /// Waits until the selftest health event reached the collector.
    static func awaitReport(base: String, client: HTTPClient, options: Options) async throws {
        let since = Timestamp(nanosecondsSinceEpoch: Timestamp.now().nanosecondsSinceEpoch - 60_000_000_000)
        let events = CollectorEvents(base: base, client: client, apiToken: nil, since: since, types: [.health])
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            for stored in try await events.next() {
                if case .health(let health) = stored.event.payload, health.kind == "selftest" {
                    options.progress("the collector stored the selftest health event: \(health.message)")
                    return
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        options.warning("the selftest health event did not reach the collector within 15 s")
    }

    /// Makes a file and a process event in the scratch area until both are seen at the
    /// collector: the sensors, the pipeline and delivery are up. Files are made in both scratch
    /// roots (`/tmp`, `/dev/shm`): an agent watching either is ready.
    static func probe(
        base: String,
        client: HTTPClient,
        options: Options,
        scratch: ScratchArea,
        since: Timestamp,
        timeout: Duration
    ) async throws -> Bool {
        let dir = scratch.root + "/probe"
        let sharedMemoryDir = scratch.sharedMemoryRoot + "/probe"
        let events = CollectorEvents(
            base: base,
            client: client,
            apiToken: options.apiToken,
            since: since,
            types: [.file, .process]
        )
        var sawFile = false
        var sawProcess = false
        let deadline = ContinuousClock.now + timeout
        var attempt = 0
        var lastPoke = ContinuousClock.now - .seconds(10)
        while ContinuousClock.now < deadline {
            if ContinuousClock.now - lastPoke >= .seconds(1) {
                attempt += 1
                lastPoke = .now
                for d in [dir, sharedMemoryDir] {
                    _ = FileManager.default.createFile(atPath: d + "/ready-\(attempt)", contents: Data("probe\n".utf8))
                }
                try? await ChildCommand.run("/bin/true", [], directory: dir, timeout: .seconds(5))
            }
            for stored in try await events.next() {
                switch stored.event.payload {
                case .file(let f)
                where f.targetFilename.hasPrefix(dir + "/") || f.targetFilename.hasPrefix(sharedMemoryDir + "/"):
                    sawFile = true
                case .process(let p) where p.currentDirectory == dir: sawProcess = true
                default: break
                }
            }
            if sawFile && sawProcess { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// Runs `body`, stopping it (cancellation) when SIGINT or SIGTERM arrives.
    static func interruptible<T: Sendable>(
        _ signals: UnixSignalsSequence,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                for await signal in signals {
                    throw SelftestInterrupted(signal: "\(signal)")
                }
                return nil
            }
            while let next = try await group.next() {
                if let value = next {
                    group.cancelAll()
                    return value
                }
            }
            throw CancellationError()
        }
    }

    /// `./Policies`, then `/etc/vigil/policies`, then `/usr/share/vigil/policies`: the first
    /// holding `rules/`.
    static func defaultPolicies() throws -> String {
        for candidate in ["Policies", "/etc/vigil/policies", "/usr/share/vigil/policies"] {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate + "/rules", isDirectory: &isDirectory),
                isDirectory.boolValue
            {
                return candidate.hasPrefix("/") ? candidate : FileManager.default.currentDirectoryPath + "/" + candidate
            }
        }
        throw DrillError(
            "no policies directory found (./Policies, /etc/vigil/policies, /usr/share/vigil/policies): pass --policies DIR"
        )
    }
}

/// The selftest was stopped by a signal; what ran was undone and the scratch area removed.
public struct SelftestInterrupted: Error, CustomStringConvertible {
    public var signal: String
    public var description: String { "interrupted by \(signal); the drills that ran were undone" }
}
