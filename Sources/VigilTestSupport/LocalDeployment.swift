import Foundation

/// A real `vigil-collector` on a free loopback port (SQLite store in the test directory) and a
/// real `vigild` shipping to it, as the end-to-end tests run them.
///
/// ```swift
/// let deployment = try LocalDeployment(in: dir, collection: "files:\n  watch: [\(dir)/watched]\n")
/// #expect(try await deployment.waitForHealth(kind: "policy_loaded"), "\(deployment.logs)")
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
        collector = try Self.startCollector(
            port: port,
            store: dir + "/c.sqlite",
            enrollToken: enrollToken,
            arguments: collectorArguments
        )
        let command = agentLauncher + [BuiltProducts.path("vigild"), "--config", config] + agentArguments
        agent = try ChildProcess(command[0], Array(command.dropFirst()), environment: agentEnvironment)
    }

    /// Starts `vigil-collector --listen 127.0.0.1:PORT --store sqlite:STORE --enroll-token TOKEN
    /// ARGUMENTS`, the collector of every deployment; waits for nothing.
    public static func startCollector(
        port: Int,
        store: String,
        enrollToken: String,
        arguments: [String] = []
    ) throws -> ChildProcess {
        try ChildProcess(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:\(port)", "--store", "sqlite:" + store, "--enroll-token", enrollToken] + arguments
        )
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

    /// Waits until a health event of `kind` reaches the collector (`policy_loaded`: the policy's
    /// watches and rules are in place). Returns whether it did within `timeout`.
    public func waitForHealth(kind: String, timeout: Duration = .seconds(30)) async throws -> Bool {
        try await eventually(timeout: timeout) { try await !health(kind: kind).isEmpty }
    }

    /// The first stored payload of `type` that `matches`, polled for up to `timeout`; nil when
    /// none arrived by then.
    public func firstPayload(
        of type: String,
        timeout: Duration = .seconds(30),
        where matches: ([String: Any]) -> Bool
    ) async throws -> [String: Any]? {
        var found: [String: Any]? = nil
        _ = try await eventually(timeout: timeout) {
            found = try await payloads(of: type).first(where: matches)
            return found != nil
        }
        return found
    }

    /// Both processes' logs, for the message of a failed expectation.
    public var logs: String { "agent log:\n\(agent.stderr)\ncollector log:\n\(collector.stderr)" }

    /// SIGTERM to the agent, then to the collector; their exit statuses.
    public func stop() async -> (agent: Int32, collector: Int32) {
        let agentStatus = await agent.stop()
        let collectorStatus = await collector.stop()
        return (agentStatus, collectorStatus)
    }
}
