import VigilLinux

/// An error of the flow sensor or offline flow reader: what failed (`code`), a readable
/// `message`, the capture `source` (file or interface) and the packet index when reading.
public struct FlowSensorError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case invalidConfiguration
            case captureUnavailable
            case invalidFilter
            case unsupportedLinkType
            case readFailed
            case threadUnavailable
            case alreadyStarted
            case stopped
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// A bound or timeout is not positive.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// The capture file or interface cannot be opened or activated (permission: `CAP_NET_RAW`).
        public static let captureUnavailable = Code(.captureUnavailable)
        /// The BPF filter does not compile; the message quotes it.
        public static let invalidFilter = Code(.invalidFilter)
        /// The capture's link-layer type is not one the decoder reads.
        public static let unsupportedLinkType = Code(.unsupportedLinkType)
        /// Reading packets failed (truncated file, interface gone).
        public static let readFailed = Code(.readFailed)
        /// The capture thread could not be started.
        public static let threadUnavailable = Code(.threadUnavailable)
        /// `start()` was called twice.
        public static let alreadyStarted = Code(.alreadyStarted)
        /// `start()` was called after `stop()`.
        public static let stopped = Code(.stopped)

        public var description: String {
            switch value {
            case .invalidConfiguration: "invalid_configuration"
            case .captureUnavailable: "capture_unavailable"
            case .invalidFilter: "invalid_filter"
            case .unsupportedLinkType: "unsupported_link_type"
            case .readFailed: "read_failed"
            case .threadUnavailable: "thread_unavailable"
            case .alreadyStarted: "already_started"
            case .stopped: "stopped"
            }
        }
    }

    public var code: Code
    public var message: String
    /// The capture file or interface.
    public var source: String?
    /// The 0-based index of the packet being read.
    public var packetIndex: Int?
    /// Where the error was raised (`#fileID:#line`).
    public var location: String

    public init(
        code: Code,
        message: String,
        source: String? = nil,
        packetIndex: Int? = nil,
        fileID: String = #fileID,
        line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.source = source
        self.packetIndex = packetIndex
        self.location = "\(fileID):\(line)"
    }

    /// The flow-level error for a libpcap failure.
    public init(_ error: PcapError, fileID: String = #fileID, line: Int = #line) {
        let code: Code =
            switch error.code {
            case .invalidFilter: .invalidFilter
            case .readFailed: .readFailed
            default: .captureUnavailable
            }
        self.init(
            code: code,
            message: error.message,
            source: error.source,
            packetIndex: error.packetIndex,
            fileID: fileID,
            line: line
        )
    }

    public var description: String {
        var text = "FlowSensorError(\(code)): \(message)"
        if let source { text += " [source: \(source)]" }
        if let packetIndex { text += " [packet: \(packetIndex)]" }
        return text
    }
}
