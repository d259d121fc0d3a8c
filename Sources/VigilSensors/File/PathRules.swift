/// The normalised roots and exclusions of a configuration, and path arithmetic.
struct PathRules: Sendable {
    let roots: [String]
    let excludes: [String]

    init(_ configuration: FileSensorConfiguration) throws(FileSensorError) {
        var roots: [String] = []
        for path in configuration.paths {
            let normal = try Self.normalize(path, what: "watched path")
            if !roots.contains(normal) { roots.append(normal) }
        }
        var excludes: [String] = []
        for path in configuration.exclude {
            excludes.append(try Self.normalize(path, what: "excluded path"))
        }
        guard configuration.queueCapacity > 0 else {
            throw FileSensorError(
                code: .invalidConfiguration,
                message: "queueCapacity must be positive, not \(configuration.queueCapacity)"
            )
        }
        guard configuration.hashMaxBytes >= 0 else {
            throw FileSensorError(
                code: .invalidConfiguration,
                message: "hashMaxBytes must not be negative, not \(configuration.hashMaxBytes)"
            )
        }
        self.roots = roots
        self.excludes = excludes
    }

    /// `/a//b/./c/` → `/a/b/c`. Relative paths and `..` components are refused.
    static func normalize(_ path: String, what: String) throws(FileSensorError) -> String {
        guard path.hasPrefix("/") else {
            throw FileSensorError(code: .invalidConfiguration, message: "\(what) must be absolute", path: path)
        }
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                throw FileSensorError(code: .invalidConfiguration, message: "\(what) must not contain '..'", path: path)
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// `dir/name`, without doubling the slash of the root directory.
    static func join(_ directory: String, _ name: String) -> String {
        directory == "/" ? "/" + name : directory + "/" + name
    }

    /// Whether `path` is an excluded prefix or lies below one.
    func isExcluded(_ path: String) -> Bool {
        guard !excludes.isEmpty else { return false }
        let bytes = path.utf8
        for prefix in excludes {
            if prefix == "/" { return true }
            let p = prefix.utf8
            guard bytes.count >= p.count, bytes.starts(with: p) else { continue }
            if bytes.count == p.count { return true }
            if bytes[bytes.index(bytes.startIndex, offsetBy: p.count)] == UInt8(ascii: "/") { return true }
        }
        return false
    }
}
