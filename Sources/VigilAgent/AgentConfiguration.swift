import Foundation
import VigilCore
import VigilPolicy
import Yams

/// The agent's configuration file (`vigild --config FILE`), YAML:
///
/// ```yaml
/// collector:
///   url: https://collector.example:8443   # where batches go; or a list of collectors on one
///                                          # store, tried in turn when one is unreachable
///   enroll_token: "..."                    # presented once, at enrollment
///   tls:                                   # optional, for https:// collectors
///     ca_file: /etc/vigil/collector-ca.pem # trust only this CA (default: the system's roots)
///     client_cert: /etc/vigil/agent.crt    # mutual TLS: the agent's certificate chain (PEM)
///     client_key: /etc/vigil/agent.key.pem #   and its private key (PEM)
/// state_dir: /var/lib/vigil                # key, spool; created 0700
/// policies_dir: /etc/vigil/policies        # collection.yaml and rules
/// shipping:                                # optional
///   batch_max_events: 2000
///   batch_max_bytes: 1048576
///   batch_max_age_ms: 1000
///   revoked_retry_s: 600                   # how often a revoked agent asks again
///   batches_in_flight: 2                   # sent before the first is answered, under a backlog
/// spool:                                   # optional
///   max_bytes: 256MiB                      # bound on spooled event bytes; bytes or KiB/MiB/GiB.
///                                          # When hit, the oldest raw events are dropped (alerts
///                                          # last) and a signed gap record says which and how many
/// log_level: info                          # trace, debug, info, notice, warning, error
/// metrics_listen: 127.0.0.1:9477           # optional: serve Prometheus GET /metrics here
///                                          # (IP:PORT, [IPv6]:PORT; no authentication, so keep it
///                                          # on loopback or behind a firewall). Default: off
/// status_interval_s: 60                    # optional: how often the agent reports its status
///                                          # (spool backlog, shed and drop counters, version,
///                                          # policy hash) in its stream; 1 to 86400, default 60
/// sandbox:                                 # optional; the self-sandbox after start-up
///   enabled: true                          # false: no capability drop, Landlock or seccomp (debugging)
///   default_action: eperm                  # a call off the allowlist fails with EPERM; `kill`
///                                          # kills the agent with SIGSYS instead (debugging)
/// ```
public struct AgentConfiguration: Sendable, Hashable {
    public var collectorURL: String
    /// Further collectors (`collector.url` given as a list): the agent fails over to the next one
    /// when a collector cannot be reached or answers with a server error.
    public var collectorFallbackURLs: [String] = []
    /// `collectorURL` followed by `collectorFallbackURLs`.
    public var collectorURLs: [String] { [collectorURL] + collectorFallbackURLs }
    public var enrollToken: String?
    /// `collector.tls`: how the collector's certificate is checked, and the agent's own
    /// certificate for mutual TLS. Nil: https:// URLs are checked against the system's roots.
    public var collectorTLS: CollectorTLS?
    public var stateDirectory: String
    public var policiesDirectory: String
    public var shipping: Shipping
    /// `spool.max_bytes`: the bound on spooled event bytes (default 256 MiB, at least 1 MiB).
    public var spoolMaxBytes: Int = 256 << 20
    public var logLevel: String
    /// `sandbox:`: whether vigild sandboxes itself after start-up, and what a refused call does.
    public var sandbox = SandboxSettings()
    /// `metrics_listen:`: where the agent serves Prometheus metrics (`GET /metrics`); nil: nowhere.
    public var metricsListen: MetricsEndpoint?
    /// `status_interval_s:`: seconds between the agent's `status` health events (default 60).
    public var statusIntervalSeconds: Int = 60

    /// An IP address literal and a TCP port.
    public struct MetricsEndpoint: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `127.0.0.1:9477`, `[::1]:9477`; nil for anything else (names are not resolved).
        public init?(parsing text: String) {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
                (1...65535).contains(port)
            else { return nil }
            var host = String(text[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") {
                host = String(host.dropFirst().dropLast())
                guard host.contains(":") else { return nil }
            } else if host.contains(":") {
                return nil  // an IPv6 address needs brackets
            }
            guard !host.isEmpty, host.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == ":" }) else { return nil }
            self.init(host: host, port: port)
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public struct SandboxSettings: Sendable, Hashable {
        public var enabled = true
        /// `eperm` or `kill`.
        public var defaultAction = "eperm"
        public init(enabled: Bool = true, defaultAction: String = "eperm") {
            self.enabled = enabled
            self.defaultAction = defaultAction
        }
    }
    /// `collector.tls`; paths are absolute (resolved against the configuration file).
    public struct CollectorTLS: Sendable, Hashable {
        /// PEM file of the CA certificates the collector's certificate must chain to; nil: the
        /// system's trust roots.
        public var caFile: String?
        /// PEM files of the agent's certificate chain and private key (mutual TLS); both or neither.
        public var clientCertificate: String?
        public var clientKey: String?
        /// `pin_sha256`: SHA-256 digests (32 bytes each) of the DER SubjectPublicKeyInfo of the
        /// collector certificates to accept; the leaf's key must be one of them. Without `caFile`
        /// the chain is then not checked against any CA (the pin is the trust); with it, both must
        /// hold. Several pins let the collector's key change without a gap.
        public var pinnedKeys: [[UInt8]]

        public init(
            caFile: String? = nil,
            clientCertificate: String? = nil,
            clientKey: String? = nil,
            pinnedKeys: [[UInt8]] = []
        ) {
            self.caFile = caFile
            self.clientCertificate = clientCertificate
            self.clientKey = clientKey
            self.pinnedKeys = pinnedKeys
        }

        /// A pin as `pin_sha256` takes it: curl's `sha256//BASE64`, bare base64 (what `openssl
        /// dgst -sha256 -binary | base64` prints), or 64 hex digits (colons allowed). Nil when it
        /// is none of these or not 32 bytes.
        public static func parsePin(_ text: String) -> [UInt8]? {
            var t = text.trimmingCharacters(in: .whitespaces)
            if t.lowercased().hasPrefix("sha256//") { t = String(t.dropFirst(8)) }
            let hex = t.replacingOccurrences(of: ":", with: "")
            if hex.count == 64, hex.allSatisfy(\.isHexDigit), let bytes = Hex.decode(hex.lowercased()) {
                return bytes
            }
            if let data = Data(base64Encoded: t), data.count == 32 { return Array(data) }
            return nil
        }

        /// How a pin is written in messages: curl's form.
        public static func describePin(_ pin: [UInt8]) -> String { "sha256//" + Data(pin).base64EncodedString() }
    }

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
        /// How often a revoked agent asks the collector again (`refused_retry_s`): rarely, it
        /// only learns whether the revocation was lifted.
        public var revokedRetrySeconds: Int = 600
        /// Batches sent and not yet answered at most (`batches_in_flight`). With a backlog the
        /// next batch is sealed and sent while the collector stores the one before (it stores
        /// them in order: `BatchTransport.previousBatchHeader`), so one agent is not bound by
        /// one round trip per batch. 1 sends one batch at a time.
        public var batchesInFlight: Int = 2

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
            throw PolicyError(
                file: file,
                line: root?.mark?.line ?? 1,
                column: 1,
                message: "the configuration must be a YAML mapping"
            )
        }
        func fail(_ node: Node?, _ message: String) -> PolicyError {
            PolicyError(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, message: message)
        }
        func string(_ node: Node?, _ name: String) throws(PolicyError) -> String? {
            guard let node else { return nil }
            guard case .scalar(let s) = node, !s.string.isEmpty else {
                throw fail(node, "\(name) must be a non-empty string")
            }
            return s.string
        }
        func int(_ node: Node?, _ name: String, _ range: ClosedRange<Int>) throws(PolicyError) -> Int? {
            guard let node else { return nil }
            guard case .scalar(let s) = node, let v = Int(s.string), range.contains(v) else {
                throw fail(node, "\(name) must be an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return v
        }
        let known = [
            "collector", "state_dir", "policies_dir", "shipping", "spool", "log_level", "sandbox", "metrics_listen",
            "status_interval_s",
        ]
        for (key, _) in top where !known.contains(key.string ?? "") {
            throw fail(key, "unknown key '\(key.string ?? "?")'; expected one of: \(known.joined(separator: ", "))")
        }
        guard let collectorNode = top["collector"] else {
            throw fail(root, "missing 'collector:' with at least 'url:'")
        }
        guard case .mapping(let collector) = collectorNode else {
            throw fail(collectorNode, "collector must be a mapping")
        }
        for (key, _) in collector where !["url", "enroll_token", "tls"].contains(key.string ?? "") {
            throw fail(key, "unknown key '\(key.string ?? "?")' in collector; expected url, enroll_token, tls")
        }
        // One URL, or a list of collectors sharing one store (failover in order).
        var urls: [String] = []
        if let node = collector["url"], case .sequence(let list) = node {
            guard !list.isEmpty else { throw fail(node, "collector.url is an empty list") }
            for item in list {
                guard case .scalar(let scalar) = item else {
                    throw fail(item, "collector.url: each entry must be a URL")
                }
                urls.append(scalar.string)
            }
        } else if let url = try string(collector["url"], "collector.url") {
            urls = [url]
        } else {
            throw fail(collectorNode, "collector.url is required, e.g. https://collector.example:8443")
        }
        for url in urls where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
            throw fail(collector["url"], "collector.url must start with http:// or https://")
        }
        for url in urls where (URLComponents(string: url)?.host ?? "").isEmpty {
            throw fail(collector["url"], "collector.url \(url) names no host, e.g. https://collector.example:8443")
        }
        urls = urls.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        let url = urls[0]
        guard let stateDir = try string(top["state_dir"], "state_dir") else {
            throw fail(root, "state_dir is required, e.g. /var/lib/vigil")
        }
        guard let policiesDir = try string(top["policies_dir"], "policies_dir") else {
            throw fail(root, "policies_dir is required, e.g. /etc/vigil/policies")
        }
        var config = AgentConfiguration(
            collectorURL: url,
            enrollToken: try string(collector["enroll_token"], "collector.enroll_token"),
            stateDirectory: Self.resolve(stateDir, relativeTo: file),
            policiesDirectory: Self.resolve(policiesDir, relativeTo: file)
        )
        config.collectorFallbackURLs = Array(urls.dropFirst())
        if let tlsNode = collector["tls"] {
            guard case .mapping(let tls) = tlsNode else {
                throw fail(tlsNode, "collector.tls must be a mapping with ca_file, client_cert, client_key, pin_sha256")
            }
            let keys = ["ca_file", "client_cert", "client_key", "pin_sha256"]
            for (key, _) in tls where !keys.contains(key.string ?? "") {
                throw fail(
                    key,
                    "unknown key '\(key.string ?? "?")' in collector.tls; expected one of: \(keys.joined(separator: ", "))"
                )
            }
            var settings = CollectorTLS()
            settings.caFile = try string(tls["ca_file"], "collector.tls.ca_file").map {
                Self.resolve($0, relativeTo: file)
            }
            settings.clientCertificate = try string(tls["client_cert"], "collector.tls.client_cert").map {
                Self.resolve($0, relativeTo: file)
            }
            settings.clientKey = try string(tls["client_key"], "collector.tls.client_key").map {
                Self.resolve($0, relativeTo: file)
            }
            if let pinNode = tls["pin_sha256"] {
                var items: [Node] = []
                switch pinNode {
                case .sequence(let list): items = Array(list)
                case .scalar: items = [pinNode]
                default: break
                }
                guard !items.isEmpty else {
                    throw fail(
                        pinNode,
                        "collector.tls.pin_sha256 must be a pin or a list of pins (sha256//BASE64 or hex)"
                    )
                }
                for item in items {
                    guard case .scalar(let scalar) = item, let pin = CollectorTLS.parsePin(scalar.string) else {
                        throw fail(
                            item,
                            "collector.tls.pin_sha256: each pin must be the SHA-256 of the collector's public key (SubjectPublicKeyInfo) as sha256//BASE64 or 64 hex digits; `vigilctl tls-pin CERT` prints it"
                        )
                    }
                    settings.pinnedKeys.append(pin)
                }
            }
            guard (settings.clientCertificate == nil) == (settings.clientKey == nil) else {
                throw fail(tlsNode, "collector.tls: client_cert and client_key go together (mutual TLS)")
            }
            // TLS settings with a plain-HTTP collector would be silently unused: refuse instead.
            if let plain = urls.first(where: { $0.hasPrefix("http://") }) {
                throw fail(tlsNode, "collector.tls is set but collector.url \(plain) is http://; use https://")
            }
            config.collectorTLS = settings
        }
        if let level = try string(top["log_level"], "log_level") {
            guard logLevels.contains(level) else {
                throw fail(top["log_level"], "log_level must be one of \(logLevels.joined(separator: ", "))")
            }
            config.logLevel = level
        }
        if let node = top["metrics_listen"] {
            guard case .scalar(let text) = node, let endpoint = MetricsEndpoint(parsing: text.string) else {
                throw fail(node, "metrics_listen must be IP:PORT, e.g. 127.0.0.1:9477 or [::1]:9477")
            }
            config.metricsListen = endpoint
        }
        if let v = try int(top["status_interval_s"], "status_interval_s", 1...86_400) {
            config.statusIntervalSeconds = v
        }
        if let shippingNode = top["shipping"] {
            guard case .mapping(let shipping) = shippingNode else {
                throw fail(shippingNode, "shipping must be a mapping")
            }
            let keys = [
                "batch_max_events", "batch_max_bytes", "batch_max_age_ms", "revoked_retry_s", "batches_in_flight",
            ]
            for (key, _) in shipping where !keys.contains(key.string ?? "") {
                throw fail(
                    key,
                    "unknown key '\(key.string ?? "?")' in shipping; expected one of: \(keys.joined(separator: ", "))"
                )
            }
            if let v = try int(shipping["batch_max_events"], "shipping.batch_max_events", 1...100_000) {
                config.shipping.batchMaxEvents = v
            }
            if let v = try int(shipping["batch_max_bytes"], "shipping.batch_max_bytes", 1024...(32 << 20)) {
                config.shipping.batchMaxBytes = v
            }
            if let v = try int(shipping["batch_max_age_ms"], "shipping.batch_max_age_ms", 10...600_000) {
                config.shipping.batchMaxAgeMilliseconds = v
            }
            if let v = try int(shipping["batches_in_flight"], "shipping.batches_in_flight", 1...8) {
                config.shipping.batchesInFlight = v
            }
            if let v = try int(shipping["revoked_retry_s"], "shipping.revoked_retry_s", 1...86_400) {
                config.shipping.revokedRetrySeconds = v
            }
        }
        if let sandboxNode = top["sandbox"] {
            guard case .mapping(let sandbox) = sandboxNode else { throw fail(sandboxNode, "sandbox must be a mapping") }
            for (key, _) in sandbox where !["enabled", "default_action"].contains(key.string ?? "") {
                throw fail(key, "unknown key '\(key.string ?? "?")' in sandbox; expected enabled, default_action")
            }
            if let node = sandbox["enabled"] {
                guard case .scalar(let s) = node, let v = Bool(s.string) else {
                    throw fail(node, "sandbox.enabled must be true or false")
                }
                config.sandbox.enabled = v
            }
            if let node = sandbox["default_action"] {
                guard case .scalar(let s) = node, ["eperm", "kill"].contains(s.string) else {
                    throw fail(node, "sandbox.default_action must be eperm or kill")
                }
                config.sandbox.defaultAction = s.string
            }
        }
        if let spoolNode = top["spool"] {
            guard case .mapping(let spool) = spoolNode else { throw fail(spoolNode, "spool must be a mapping") }
            for (key, _) in spool where key.string != "max_bytes" {
                throw fail(key, "unknown key '\(key.string ?? "?")' in spool; expected max_bytes")
            }
            if let node = spool["max_bytes"] {
                guard case .scalar(let text) = node, let bytes = Self.byteCount(text.string),
                    (1 << 20...(1 << 40)).contains(bytes)
                else {
                    throw fail(
                        node,
                        "spool.max_bytes must be a size from 1MiB to 1TiB: bytes, or a number with KiB, MiB or GiB"
                    )
                }
                config.spoolMaxBytes = bytes
            }
        }
        return config
    }

    /// `1048576`, `512KiB`, `256MiB`, `2GiB` (also KB/MB/GB, read as powers of 1024).
    static func byteCount(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Int)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30),
            ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30),
        ]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            guard let n = Int(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)) else { return nil }
            let (v, overflow) = n.multipliedReportingOverflow(by: factor)
            return overflow ? nil : v
        }
        return Int(t)
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
