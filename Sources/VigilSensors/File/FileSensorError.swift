import SystemPackage

/// An error of the file sensor: what failed (`code`), a readable `message`, the `path`
/// involved and the system error behind it, when there are.
public struct FileSensorError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case invalidConfiguration
            case inotifyUnavailable
            case eventFDUnavailable
            case threadUnavailable
            case alreadyStarted
            case stopped
            case attributionUnavailable
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// A path is not absolute or a bound is not positive.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// `inotify_init1` failed (`EMFILE`: `fs.inotify.max_user_instances` reached).
        public static let inotifyUnavailable = Code(.inotifyUnavailable)
        /// `eventfd` failed.
        public static let eventFDUnavailable = Code(.eventFDUnavailable)
        /// The reader or hashing thread could not be started.
        public static let threadUnavailable = Code(.threadUnavailable)
        /// `start()` was called twice.
        public static let alreadyStarted = Code(.alreadyStarted)
        /// `start()` was called after `stop()`.
        public static let stopped = Code(.stopped)
        /// fanotify could not be opened or marked: file events do not name their process.
        public static let attributionUnavailable = Code(.attributionUnavailable)

        public var description: String {
            switch value {
            case .invalidConfiguration: "invalid_configuration"
            case .inotifyUnavailable: "inotify_unavailable"
            case .eventFDUnavailable: "eventfd_unavailable"
            case .threadUnavailable: "thread_unavailable"
            case .alreadyStarted: "already_started"
            case .stopped: "stopped"
            case .attributionUnavailable: "attribution_unavailable"
            }
        }
    }

    public var code: Code
    public var message: String
    public var path: String?
    public var errno: Errno?
    /// Where the error was raised (`#fileID:#line`).
    public var location: String

    public init(
        code: Code,
        message: String,
        path: String? = nil,
        errno: Errno? = nil,
        fileID: String = #fileID,
        line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.path = path
        self.errno = errno
        self.location = "\(fileID):\(line)"
    }

    public var description: String {
        var text = "FileSensorError(\(code)): \(message)"
        if let path { text += " [path: \(path)]" }
        if let errno { text += " [errno \(errno.rawValue): \(errno)]" }
        return text
    }
}
