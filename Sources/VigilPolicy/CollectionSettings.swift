import Foundation
import Yams

/// What the agent collects, from `collection.yaml` in the policies directory.
///
/// ```yaml
/// files:
///   watch: [/etc, /root/.ssh, /tmp]   # trees watched recursively
///   exclude: [/etc/mtab]              # path prefixes not watched
///   hash_max_bytes: 16777216          # SHA-256 regular files up to this size; 0 disables
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

    public var files: Files

    public init(files: Files = Files()) {
        self.files = files
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
        try top.checkKeys(["files"], context: "collection.yaml")
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
        return settings
    }
}
