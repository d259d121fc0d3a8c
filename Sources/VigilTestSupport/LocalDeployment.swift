import Foundation

/// A real `vigil-collector` on a free loopback port (SQLite store in the test directory) and a
/// real `vigild` shipping to it, as the end-to-end tests run them.
///
/// ```swift
/// let deployment = try LocalDeployment(in: dir, collection: "files:\n  watch: [\(dir)/watched]\n")
/// #expect(try await deployment.waitForStart(), "agent log:\n\(deployment.agent.stderr)")
/// let files = try await deployment.payloads(of: "file")
/// let (agentStatus, collectorStatus) = await deployment.stop()
/// ```
public final class LocalDeployment: Sendable {
    /// The collector's base URL, `http://127.0.0.1:PORT`.
    public let base: String
    public let collector: ChildProcess
    public let agent: ChildProcess

    /// Writes the agent's configuration with `AgentFixture.write`, then starts the collector
    /// (`--store sqlite:DIR/c.sqlite`) and the agent (`--config DIR/vigild.yaml`). Waits for
    /// neither: see `waitForStart(timeout:)`.
    /// - Parameters:
    ///   - dir: the test directory (the caller creates and removes it).
    ///   - collection: the body of collection.yaml.
    ///   - enrollToken: the token both sides are given.
    ///   - collectorArguments: appended to the collector's command line.
    ///   - agentArguments: appended to the agent's command line.
    ///   - agentLauncher: a command the agent runs under (`["/usr/bin/setpriv", "--bounding-set=-sys_admin"]`,
    ///     say); empty runs vigild directly.
    ///   - agentEnvironment: added to the agent's environment.
    ///   - agentConfiguration: top-level YAML appended to vigild.yaml (`status_interval_s: 1\n`, say).
    public init(
        in dir: String,
        collection: String,
        enrollToken: String = "t",
        collectorArguments: [String] = [],
        agentArguments: [String] = [],
        agentLauncher: [String] = [],
        agentEnvironment: [String: String]? = nil,
        agentConfiguration: String = ""
    ) throws {
        let port = freeLoopbackPort()
        base = "http://127.0.0.1:\(port)"
        let config = try AgentFixture.write(
            in: dir,
            collection: collection,
            collectorURL: base,
            enrollToken: enrollToken,
            extraConfiguration: agentConfiguration
        )
        collector = try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:\(dir)/c.sqlite", "--enroll-token", enrollToken]
                + collectorArguments
        )
        let command = agentLauncher + [BuiltProducts.path("vigild"), "--config", config] + agentArguments
        agent = try ChildProcess(command[0], Array(command.dropFirst()), environment: agentEnvironment)
    }

    /// The stored events `vigilctl events --collector BASE --json --limit 100000 ARGS` prints,
    /// one JSON object a line.
    public func events(_ args: [String] = []) async throws -> [[String: Any]] {
        let result = try await runCommand(
            BuiltProducts.path("vigilctl"),
            ["events", "--collector", base, "--json", "--limit", "100000"] + args
        )
        return result.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// The payloads (`event.TYPE`) of the stored events of one type, `--type TYPE` plus `args`.
    public func payloads(of type: String, _ args: [String] = []) async throws -> [[String: Any]] {
        try await events(["--type", type] + args).compactMap {
            ($0["event"] as? [String: Any])?[type] as? [String: Any]
        }
    }

    /// The agent's health events of one kind.
    public func health(kind: String) async throws -> [[String: Any]] {
        try await payloads(of: "health").filter { $0["kind"] as? String == kind }
    }

    /// Waits until the agent's start-up health events (`started`, `policy_loaded`) reach the
    /// collector. Returns whether they did within `timeout`.
    public func waitForStart(timeout: Duration = .seconds(30)) async throws -> Bool {
        try await eventually(timeout: timeout) {
            try await payloads(of: "health").contains {
                ["started", "policy_loaded"].contains($0["kind"] as? String ?? "")
            }
        }
    }

    /// SIGTERM to the agent, then to the collector; their exit statuses.
    public func stop() async -> (agent: Int32, collector: Int32) {
        let agentStatus = await agent.stop()
        let collectorStatus = await collector.stop()
        return (agentStatus, collectorStatus)
    }
}
