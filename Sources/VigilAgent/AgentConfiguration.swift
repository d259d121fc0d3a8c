import Foundation
import VigilPolicy
import Yams

/// The agent's configuration file (`vigild --config FILE`), YAML:
///
/// ```yaml
/// collector:
///   url: https://collector.example:8443   # where batches go
///   enroll_token: "..."                    # presented once, at enrollment
/// state_dir: /var/lib/vigil                # key, spool; created 0700
/// policies_dir: /etc/vigil/policies        # collection.yaml and rules
/// shipping:                                # optional
///   batch_max_events: 2000
///   batch_max_bytes: 1048576
///   batch_max_age_ms: 1000
/// log_level: info                          # trace, debug, info, notice, warning, error
/// ```
public struct AgentConfiguration: Sendable, Hashable {
    public var collectorURL: String
    public var enrollToken: String?
    public var stateDirectory: String
    public var policiesDirectory: String
    public var shipping: Shipping
    public var logLevel: String
    /// Trees watched in addition to those of collection.yaml (set by `vigild --demo`, not read from the file).
    public var additionalWatchPaths: [String] = []
    /// Path prefixes left unwatched in addition to collection.yaml's (the state directory is always left out).
    public var additionalExcludePaths: [String] = []

    public struct Shipping: Sendable, Hashable {
        /// Most events in one batch.
        public var batchMaxEvents: Int
        /// Most serialized event bytes in one batch (before compression).
        public var batchMaxBytes: Int
        /// A batch is sent once its oldest event is this old, even if not full.
        public var batchMaxAgeMilliseconds: Int

        public init(batchMaxEvents: Int = 2000, batchMaxBytes: Int = 1 << 20, batchMaxAgeMilliseconds: Int = 1000) {
            self.batchMaxEvents = batchMaxEvents
            self.batchMaxBytes = batchMaxBytes
            self.batchMaxAgeMilliseconds = batchMaxAgeMilliseconds
        }
    }

    public init(
        collectorURL: String,
        enrollToken: String? = nil,
        stateDirectory: String,
        policiesDirectory: String,
        shipping: Shipping = Shipping(),
        logLevel: String = "info"
    ) {
        self.collectorURL = collectorURL
        self.enrollToken = enrollToken
        self.stateDirectory = stateDirectory
        self.policiesDirectory = policiesDirectory
        self.shipping = shipping
        self.logLevel = logLevel
    }

    public var keyPath: String { (stateDirectory as NSString).appendingPathComponent("agent.key") }
    public var spoolPath: String { (stateDirectory as NSString).appendingPathComponent("spool.sqlite") }

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    public static func load(path: String) throws(PolicyError) -> AgentConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PolicyError(file: path, line: 1, column: 1, message: "cannot read: \(error.localizedDescription)")
        }
        return try parse(yaml: text, file: path)
    }

    public static func parse(yaml text: String, file: String) throws(PolicyError) -> AgentConfiguration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw PolicyError(file: file, yamlError: error)
        }
        guard let root, case .mapping(let top) = root else {
            throw PolicyError(file: file, line: root?.mark?.line ?? 1, column: 1, message: "the configuration must be a YAML mapping")
        }
        func fail(_ node: Node?, _ message: String) -> PolicyError {
            PolicyError(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, message: message)
        }
        func string(_ node: Node?, _ name: String) throws(PolicyError) -> String? {
            guard let node else { return nil }
            guard case .scalar(let s) = node, !s.string.isEmpty else { throw fail(node, "\(name) must be a non-empty string") }
            return s.string
        }
        func int(_ node: Node?, _ name: String, _ range: ClosedRange<Int>) throws(PolicyError) -> Int? {
            guard let node else { return nil }
            guard case .scalar(let s) = node, let v = Int(s.string), range.contains(v) else {
                throw fail(node, "\(name) must be an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return v
        }
        let known = ["collector", "state_dir", "policies_dir", "shipping", "log_level"]
        for (key, _) in top where !known.contains(key.string ?? "") {
            throw fail(key, "unknown key '\(key.string ?? "?")'; expected one of: \(known.joined(separator: ", "))")
        }
        guard let collectorNode = top["collector"] else {
            throw fail(root, "missing 'collector:' with at least 'url:'")
        }
        guard case .mapping(let collector) = collectorNode else { throw fail(collectorNode, "collector must be a mapping") }
        for (key, _) in collector where !["url", "enroll_token"].contains(key.string ?? "") {
            throw fail(key, "unknown key '\(key.string ?? "?")' in collector; expected url, enroll_token")
        }
        guard let url = try string(collector["url"], "collector.url") else {
            throw fail(collectorNode, "collector.url is required, e.g. https://collector.example:8443")
        }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw fail(collector["url"], "collector.url must start with http:// or https://")
        }
        guard let stateDir = try string(top["state_dir"], "state_dir") else {
            throw fail(root, "state_dir is required, e.g. /var/lib/vigil")
        }
        guard let policiesDir = try string(top["policies_dir"], "policies_dir") else {
            throw fail(root, "policies_dir is required, e.g. /etc/vigil/policies")
        }
        var config = AgentConfiguration(
            collectorURL: url.hasSuffix("/") ? String(url.dropLast()) : url,
            enrollToken: try string(collector["enroll_token"], "collector.enroll_token"),
            stateDirectory: Self.resolve(stateDir, relativeTo: file),
            policiesDirectory: Self.resolve(policiesDir, relativeTo: file)
        )
        if let level = try string(top["log_level"], "log_level") {
            guard logLevels.contains(level) else { throw fail(top["log_level"], "log_level must be one of \(logLevels.joined(separator: ", "))") }
            config.logLevel = level
        }
        if let shippingNode = top["shipping"] {
            guard case .mapping(let shipping) = shippingNode else { throw fail(shippingNode, "shipping must be a mapping") }
            let keys = ["batch_max_events", "batch_max_bytes", "batch_max_age_ms"]
            for (key, _) in shipping where !keys.contains(key.string ?? "") {
                throw fail(key, "unknown key '\(key.string ?? "?")' in shipping; expected one of: \(keys.joined(separator: ", "))")
            }
            if let v = try int(shipping["batch_max_events"], "shipping.batch_max_events", 1...100_000) { config.shipping.batchMaxEvents = v }
            if let v = try int(shipping["batch_max_bytes"], "shipping.batch_max_bytes", 1024...(32 << 20)) { config.shipping.batchMaxBytes = v }
            if let v = try int(shipping["batch_max_age_ms"], "shipping.batch_max_age_ms", 10...600_000) { config.shipping.batchMaxAgeMilliseconds = v }
        }
        return config
    }

    /// Paths in the file are relative to the file's directory; the result is always absolute.
    static func resolve(_ path: String, relativeTo file: String) -> String {
        if path.hasPrefix("/") { return (path as NSString).standardizingPath }
        var base = (file as NSString).deletingLastPathComponent
        if !base.hasPrefix("/") {
            base = (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(base)
        }
        return ((base as NSString).appendingPathComponent(path) as NSString).standardizingPath
    }
}
