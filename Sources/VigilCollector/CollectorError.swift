import Hummingbird
import VigilWire

/// A refusal from the collector: a stable machine-readable code, an HTTP status and a message
/// that says what was wrong. Renders itself as `{"error": CODE, "message": MESSAGE}`.
public struct CollectorError: Error, HTTPResponseError, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public let status: HTTPResponse.Status
        private init(_ rawValue: String, _ status: HTTPResponse.Status) {
            self.rawValue = rawValue
            self.status = status
        }
        public static let badRequest = Code("bad_request", .badRequest)
        public static let badToken = Code("bad_token", .unauthorized)
        /// An issued enrollment token that was revoked, has expired, or was one-time and is used.
        public static let tokenRevoked = Code("token_revoked", .forbidden)
        public static let tokenExpired = Code("token_expired", .forbidden)
        public static let tokenSpent = Code("token_spent", .forbidden)
        public static let unknownToken = Code("unknown_token", .notFound)
        public static let unauthorized = Code("unauthorized", .unauthorized)
        public static let unknownAgent = Code("unknown_agent", .unauthorized)
        public static let revokedAgent = Code("revoked_agent", .forbidden)
        public static let unknownKey = Code("unknown_key", .unauthorized)
        /// A batch signed with, or a rotation statement from, a key the agent rotated away from.
        public static let keyRetired = Code("key_retired", .forbidden)
        /// A rotation to a key the agent used before.
        public static let keyReused = Code("key_reused", .conflict)
        public static let badSignature = Code("bad_signature", .unauthorized)
        public static let enrollConflict = Code("enroll_conflict", .conflict)
        public static let fork = Code("chain_fork", .conflict)
        public static let tooLarge = Code("too_large", .contentTooLarge)
        public static let unsupportedMediaType = Code("unsupported_media_type", .unsupportedMediaType)
        public static let storeFailure = Code("store_failure", .internalServerError)
        /// Over `--max-batch-rate` for this agent: resend after `Retry-After`.
        public static let rateLimited = Code("rate_limited", .tooManyRequests)
        /// A batch sent while its predecessor was in flight (`Vigil-Previous-Batch`) whose
        /// predecessor did not arrive in time: nothing stored; resend the predecessor first.
        public static let predecessorPending = Code("predecessor_pending", .serviceUnavailable)

        /// A wire-format refusal keeps the wire code so clients can tell the reasons apart.
        static func wire(_ error: WireError) -> Code {
            switch error.code {
            case .badSignature: Code(error.code.description, .unauthorized)
            case .tooLarge: Code(error.code.description, .contentTooLarge)
            default: Code(error.code.description, .badRequest)
            }
        }

        public var description: String { rawValue }
    }

    public var code: Code
    public var message: String
    /// Sent as `Retry-After` (seconds) when set.
    public var retryAfterSeconds: Int?
    public var status: HTTPResponse.Status { code.status }

    public init(_ code: Code, _ message: String, retryAfterSeconds: Int? = nil) {
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    public init(wire error: WireError) {
        self.init(.wire(error), error.message)
    }

    public var description: String { "\(code): \(message)" }

    struct Body: Encodable {
        var error: String
        var message: String
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = try context.responseEncoder.encode(
            Body(error: code.rawValue, message: message),
            from: request,
            context: context
        )
        response.status = status
        if let retryAfterSeconds { response.headers[.retryAfter] = String(retryAfterSeconds) }
        return response
    }
}
