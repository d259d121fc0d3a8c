import SystemPackage

/// An error of the process sensor: what failed (`code`), a readable `message`, the `errno`.
public struct ProcessSensorError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case invalidConfiguration, connectorUnavailable, threadUnavailable, alreadyStarted, stopped
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// A bound is not positive.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// The proc connector cannot be opened: no `CAP_NET_ADMIN`, not in the initial
        /// namespaces, or a kernel without `CONFIG_PROC_EVENTS`.
        public static let connectorUnavailable = Code(.connectorUnavailable)
        /// The reader thread could not be started.
        public static let threadUnavailable = Code(.threadUnavailable)
        /// `start()` was called twice.
        public static let alreadyStarted = Code(.alreadyStarted)
        /// `start()` was called after `stop()`.
        public static let stopped = Code(.stopped)

        public var description: String {
            switch value {
            case .invalidConfiguration: "invalid_configuration"
            case .connectorUnavailable: "connector_unavailable"
            case .threadUnavailable: "thread_unavailable"
            case .alreadyStarted: "already_started"
            case .stopped: "stopped"
            }
        }
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
        "\(code): \(message)" + (errno.map { " (\($0))" } ?? "")
    }
}
