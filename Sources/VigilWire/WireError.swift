/// Why a batch, event or key could not be encoded, decoded or verified.
///
/// `code` is stable and machine-readable (the collector maps it to an HTTP status and returns it
/// in refusals); `message` says what exactly was wrong.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case malformedBatch = "malformed_batch"
            case unsupportedVersion = "unsupported_version"
            case badSignature = "bad_signature"
            case bodyHashMismatch = "body_hash_mismatch"
            case decompressionFailed = "decompression_failed"
            case tooLarge = "too_large"
            case malformedEvent = "malformed_event"
            case countMismatch = "count_mismatch"
            case badKey = "bad_key"
            case compressionFailed = "compression_failed"
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The batch bytes are not a `vigil.v1.Batch` or its header is not a `BatchHeader`.
        public static let malformedBatch = Code(.malformedBatch)
        public static let unsupportedVersion = Code(.unsupportedVersion)
        /// The Ed25519 signature does not verify against the agent's key.
        public static let badSignature = Code(.badSignature)
        /// The body is not the one the signed header describes.
        public static let bodyHashMismatch = Code(.bodyHashMismatch)
        public static let decompressionFailed = Code(.decompressionFailed)
        /// A size limit (compressed or decompressed) was exceeded.
        public static let tooLarge = Code(.tooLarge)
        public static let malformedEvent = Code(.malformedEvent)
        /// The body's events do not match the header's count or sequence range.
        public static let countMismatch = Code(.countMismatch)
        public static let badKey = Code(.badKey)
        public static let compressionFailed = Code(.compressionFailed)

        public var description: String { value.rawValue }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
