import Foundation
import Yams

/// What the agent collects, from `collection.yaml` in the policies directory.
///
/// ```yaml
/// files:
///   watch: [/etc, /root/.ssh, /tmp]   # trees watched recursively
///   exclude: [/etc/mtab]              # path prefixes not watched
///   hash_max_bytes: 16777216          # SHA-256 regular files up to this size; 0 disables
/// network:                            # packet metadata (flows); absent: no capture
///   interface: any                    # an interface name or `any`
///   filter: "not port 22"             # BPF (tcpdump syntax), run in the kernel
///   snap_length: 128                  # bytes kept per packet: headers only
///   max_flows: 262144                 # flows tracked at once (memory bound)
///   idle_timeout_s: 60                # a UDP/ICMP flow quiet this long is reported (TCP: 300)
/// ```
public struct CollectionSettings: Sendable, Hashable {
    public struct Files: Sendable, Hashable {
        public var watch: [String]
        public var exclude: [String]
        public var hashMaxBytes: Int64

        public init(watch: [String] = [], exclude: [String] = [], hashMaxBytes: Int64 = 16 << 20) {
            self.watch = watch
            self.exclude = exclude
            self.hashMaxBytes = hashMaxBytes
        }
    }

    /// Packet capture for flow metadata.
    public struct Network: Sendable, Hashable {
        public var interface: String
        public var filter: String?
        public var snapLength: Int
        public var maxFlows: Int
        public var idleTimeoutSeconds: Int

        public init(interface: String = "any", filter: String? = nil, snapLength: Int = 128, maxFlows: Int = 262_144, idleTimeoutSeconds: Int = 60) {
            self.interface = interface
            self.filter = filter
            self.snapLength = snapLength
            self.maxFlows = maxFlows
            self.idleTimeoutSeconds = idleTimeoutSeconds
        }
    }

    public var files: Files
    /// Nil: no packet capture.
    public var network: Network?

    public init(files: Files = Files(), network: Network? = nil) {
        self.files = files
        self.network = network
    }

    public static let fileName = "collection.yaml"

    /// Loads `DIR/collection.yaml`; a directory without one collects nothing from files.
    public static func load(policiesDirectory dir: String) throws(PolicyError) -> CollectionSettings {
        let path = (dir as NSString).appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: path) else { return CollectionSettings() }
        return try load(path: path)
    }

    public static func load(path: String) throws(PolicyError) -> CollectionSettings {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PolicyError(file: path, line: 1, column: 1, message: "cannot read: \(error.localizedDescription)")
        }
        return try parse(yaml: text, file: path)
    }

    public static func parse(yaml text: String, file: String) throws(PolicyError) -> CollectionSettings {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw PolicyError(file: file, yamlError: error)
        }
        guard let root else { return CollectionSettings() }
        let top = try YAMLMapping(file: file, node: root, what: "collection.yaml")
        try top.checkKeys(["files", "network"], context: "collection.yaml")
        var settings = CollectionSettings()
        if let files = try top.mapping("files", context: "files") {
            try files.checkKeys(["watch", "exclude", "hash_max_bytes"], context: "files")
            if let watch = try files.stringList("watch", context: "files") {
                for (i, path) in watch.enumerated() where !path.hasPrefix("/") {
                    let node = files.value("watch").flatMap { n -> Node? in
                        if case .sequence(let s) = n { return s[i] } else { return nil }
                    }
                    throw PolicyError(file: file, at: node, "files.watch: '\(path)' must be an absolute path")
                }
                settings.files.watch = watch
            }
            settings.files.exclude = try files.stringList("exclude", context: "files") ?? []
            if let max = try files.integer("hash_max_bytes", context: "files", range: 0...(1 << 40)) {
                settings.files.hashMaxBytes = max
            }
        }
        if let network = try top.mapping("network", context: "network") {
            try network.checkKeys(["interface", "filter", "snap_length", "max_flows", "idle_timeout_s"], context: "network")
            var n = Network()
            if let v = network.value("interface") {
                guard case .scalar(let s) = v, !s.string.isEmpty, s.string.utf8.count < 16 else {
                    throw PolicyError(file: file, at: v, "network.interface must be an interface name (at most 15 characters) or any")
                }
                n.interface = s.string
            }
            if let v = network.value("filter") {
                guard case .scalar(let s) = v else { throw PolicyError(file: file, at: v, "network.filter must be a BPF expression string") }
                n.filter = s.string.isEmpty ? nil : s.string
            }
            if let v = try network.integer("snap_length", context: "network", range: 64...65535) { n.snapLength = Int(v) }
            if let v = try network.integer("max_flows", context: "network", range: 16...(1 << 24)) { n.maxFlows = Int(v) }
            if let v = try network.integer("idle_timeout_s", context: "network", range: 1...86400) { n.idleTimeoutSeconds = Int(v) }
            settings.network = n
        }
        return settings
    }
}
