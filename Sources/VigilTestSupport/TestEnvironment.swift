import Glibc

/// Facts about where the tests run.
public enum TestEnvironment {
    /// The effective user is root.
    public static var isRoot: Bool { geteuid() == 0 }

    /// `CI=true`: tests that need privileges must fail rather than skip.
    public static var isCI: Bool {
        guard let value = getenv("CI") else { return false }
        return String(cString: value) == "true"
    }
}

/// A kernel parameter under `/proc/sys` set for a test and put back.
///
/// ```swift
/// let limit = try KernelParameter.override("fs/inotify/max_queued_events", to: "64")
/// defer { limit.restore() }
/// ```
public final class KernelParameter: Sendable {
    public let path: String
    /// The value before the override.
    public let original: String

    private init(path: String, original: String) {
        self.path = path
        self.original = original
    }

    /// The current value of `/proc/sys/<name>` (trimmed), or nil.
    public static func read(_ name: String) -> String? {
        guard let file = fopen("/proc/sys/" + name, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 256)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: " \n\t")
    }

    /// Writes `value` to `/proc/sys/<name>` (root only); `restore()` writes the old value back.
    public static func override(_ name: String, to value: String) throws -> KernelParameter {
        guard let original = read(name) else { throw KernelParameterError(name: name, message: "cannot read") }
        let parameter = KernelParameter(path: "/proc/sys/" + name, original: original)
        try parameter.write(value)
        return parameter
    }

    /// Puts the original value back. Idempotent.
    public func restore() {
        try? write(original)
    }

    private func write(_ value: String) throws {
        guard let file = fopen(path, "w") else {
            throw KernelParameterError(name: path, message: "cannot open for writing (errno \(errno))")
        }
        let ok = fputs(value + "\n", file) >= 0
        let closed = fclose(file) == 0
        guard ok && closed else {
            throw KernelParameterError(name: path, message: "cannot write \(value) (errno \(errno))")
        }
    }
}

public struct KernelParameterError: Error, CustomStringConvertible {
    public var name: String
    public var message: String
    public var description: String { "\(name): \(message)" }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let drop = Set(set)
        var slice = Substring(self)
        while let first = slice.first, drop.contains(first) { slice.removeFirst() }
        while let last = slice.last, drop.contains(last) { slice.removeLast() }
        return String(slice)
    }
}
