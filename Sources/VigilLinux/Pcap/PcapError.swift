/// An error of the libpcap layer: what failed (`code`), libpcap's or our `message`, the capture
/// `source` (file path or interface) and, for read errors, the index of the packet.
public struct PcapError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case openFailed
            case activateFailed
            case optionRejected
            case invalidFilter
            case readFailed
            case statisticsUnavailable
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// `pcap_open_offline` or `pcap_create` failed (missing file, not a capture, no such
        /// interface).
        public static let openFailed = Code(.openFailed)
        /// `pcap_activate` failed (no permission: `CAP_NET_RAW` is needed, interface down...).
        public static let activateFailed = Code(.activateFailed)
        /// libpcap refused a capture option (snap length, buffer size, timeout...).
        public static let optionRejected = Code(.optionRejected)
        /// The BPF filter expression does not compile or cannot be installed.
        public static let invalidFilter = Code(.invalidFilter)
        /// Reading a packet failed (a truncated or corrupt file, an interface gone).
        public static let readFailed = Code(.readFailed)
        /// `pcap_stats` failed.
        public static let statisticsUnavailable = Code(.statisticsUnavailable)

        public var description: String {
            switch value {
            case .openFailed: "open_failed"
            case .activateFailed: "activate_failed"
            case .optionRejected: "option_rejected"
            case .invalidFilter: "invalid_filter"
            case .readFailed: "read_failed"
            case .statisticsUnavailable: "statistics_unavailable"
            }
        }
    }

    public var code: Code
    public var message: String
    /// The capture file or interface.
    public var source: String
    /// The 0-based index of the packet being read when the error happened.
    public var packetIndex: Int?
    /// Where the error was raised (`#fileID:#line`).
    public var location: String

    public init(
        code: Code,
        message: String,
        source: String,
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

    public var description: String {
        var text = "PcapError(\(code)): \(message) [source: \(source)]"
        if let packetIndex { text += " [packet: \(packetIndex)]" }
        return text
    }
}

extension PcapError {
    /// The NUL-terminated message libpcap wrote into `errbuf`.
    static func message(fromErrorBuffer errbuf: [CChar]) -> String {
        let bytes = errbuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
