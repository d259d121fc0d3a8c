import SystemPackage

/// An error of the sock_diag client: what failed (`code`), a readable `message` and, when the
/// kernel or a system call said why, its `errno`.
public struct SockDiagError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case socketUnavailable
            case sendFailed
            case receiveFailed
            case timedOut
            case kernelError
            case malformedReply
            case dumpInterrupted
            case invalidQuery
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// `socket(AF_NETLINK, …, NETLINK_SOCK_DIAG)` failed (no `CONFIG_INET_DIAG`, a sandbox).
        public static let socketUnavailable = Code(.socketUnavailable)
        /// Sending the request failed.
        public static let sendFailed = Code(.sendFailed)
        /// Reading the reply failed.
        public static let receiveFailed = Code(.receiveFailed)
        /// No reply within the socket's receive timeout.
        public static let timedOut = Code(.timedOut)
        /// The kernel answered with an error other than "no such socket" (`NLMSG_ERROR`):
        /// e.g. `EINVAL` for a protocol whose diag module is not loaded.
        public static let kernelError = Code(.kernelError)
        /// A reply too short for its header or its `inet_diag_msg`, or with a length past the datagram.
        public static let malformedReply = Code(.malformedReply)
        /// The socket table changed during a dump (`NLM_F_DUMP_INTR`) every time it was tried.
        public static let dumpInterrupted = Code(.dumpInterrupted)
        /// The query names a family other than 4 or 6.
        public static let invalidQuery = Code(.invalidQuery)

        public var description: String {
            switch value {
            case .socketUnavailable: "socket_unavailable"
            case .sendFailed: "send_failed"
            case .receiveFailed: "receive_failed"
            case .timedOut: "timed_out"
            case .kernelError: "kernel_error"
            case .malformedReply: "malformed_reply"
            case .dumpInterrupted: "dump_interrupted"
            case .invalidQuery: "invalid_query"
            }
        }
    }

    public var code: Code
    public var message: String
    public var errno: Errno?
    /// Where the error was raised (`#fileID:#line`).
    public var location: String

    public init(code: Code, message: String, errno: Errno? = nil, fileID: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.errno = errno
        self.location = "\(fileID):\(line)"
    }

    public var description: String {
        var text = "SockDiagError(\(code)): \(message)"
        if let errno { text += " [errno: \(errno)]" }
        return text
    }
}
