import SystemPackage

/// The sandbox could not be installed (or a step of it failed).
public struct SandboxError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case capabilities, noNewPrivileges, landlock, seccomp
        }
        private let value: Value
        /// `capget`/`capset` or the bounding set.
        public static let capabilities = Code(value: .capabilities)
        public static let noNewPrivileges = Code(value: .noNewPrivileges)
        public static let landlock = Code(value: .landlock)
        public static let seccomp = Code(value: .seccomp)
        public var description: String { "\(value)" }
    }

    public var code: Code
    public var message: String
    public var errno: Errno?

    public init(code: Code, message: String, errno: Errno? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        "sandbox (\(code)): \(message)" + (errno.map { " (\($0))" } ?? "")
    }
}
