import Crypto
import Foundation
import VigilCore

/// An enrollment token the collector issued (`POST /v1/tokens`, `vigilctl tokens create`), as its
/// store keeps it: the SHA-256 of the secret, never the secret itself.
///
/// Agents present the whole token, `vgl_<id>_<secret>`: `id` is 12 lowercase hex digits and
/// public (listings, logs, `POST /v1/tokens/ID/revoke`); `secret` is 64 lowercase hex digits
/// (32 bytes from the system's CSPRNG), shown once when the token is created.
public struct EnrollmentToken: Sendable, Hashable {
    public var id: String
    /// SHA-256 of the secret's hex digits (UTF-8).
    public var secretHash: Data
    public var label: String
    public var createdAt: Timestamp
    /// Nil: never expires.
    public var expiresAt: Timestamp?
    /// A one-time token enrolls one agent; a reusable one any number.
    public var once: Bool
    /// Enrollments made with it (re-enrollments of an agent already enrolled do not count).
    public var uses: Int64
    public var revokedAt: Timestamp?
    public var lastUsedAt: Timestamp?

    public init(
        id: String,
        secretHash: Data,
        label: String,
        createdAt: Timestamp,
        expiresAt: Timestamp? = nil,
        once: Bool,
        uses: Int64 = 0,
        revokedAt: Timestamp? = nil,
        lastUsedAt: Timestamp? = nil
    ) {
        self.id = id
        self.secretHash = secretHash
        self.label = label
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.once = once
        self.uses = uses
        self.revokedAt = revokedAt
        self.lastUsedAt = lastUsedAt
    }

    /// What the token can do at `time`: `active`, or why not (`revoked`, `expired`, `spent`).
    public func status(at time: Timestamp) -> Status {
        if revokedAt != nil { return .revoked }
        if let expiresAt, expiresAt <= time { return .expired }
        if once, uses > 0 { return .spent }
        return .active
    }

    public enum Status: String, Sendable, Codable, Hashable {
        case active, revoked, expired, spent
    }

    /// Throws the refusal for a token that cannot enroll a new agent at `time`.
    func checkUsable(at time: Timestamp) throws(CollectorError) {
        switch status(at: time) {
        case .active: return
        case .revoked:
            throw CollectorError(
                .tokenRevoked,
                "enrollment token \(id) was revoked at \(revokedAt?.iso8601 ?? "?"); ask for a new one (vigilctl tokens create)"
            )
        case .expired:
            throw CollectorError(
                .tokenExpired,
                "enrollment token \(id) expired at \(expiresAt?.iso8601 ?? "?"); ask for a new one (vigilctl tokens create)"
            )
        case .spent:
            throw CollectorError(
                .tokenSpent,
                "enrollment token \(id) was for one enrollment and is spent; ask for a new one (vigilctl tokens create)"
            )
        }
    }

    /// The prefix of every issued token.
    public static let prefix = "vgl_"

    /// A new token: a random id and secret. Returns the record to store and the token text to
    /// show, once.
    public static func generate(
        label: String,
        expiresAt: Timestamp?,
        once: Bool,
        at time: Timestamp
    ) -> (record: EnrollmentToken, token: String) {
        var random = SystemRandomNumberGenerator()
        func hex(bytes: Int) -> String {
            var out = ""
            out.reserveCapacity(bytes * 2)
            for _ in 0..<bytes {
                let byte = UInt8.random(in: .min ... .max, using: &random)
                out += String(byte >> 4, radix: 16) + String(byte & 0xF, radix: 16)
            }
            return out
        }
        let id = hex(bytes: 6)
        let secret = hex(bytes: 32)
        let record = EnrollmentToken(
            id: id,
            secretHash: hash(secret: secret),
            label: label,
            createdAt: time,
            expiresAt: expiresAt,
            once: once
        )
        return (record, prefix + id + "_" + secret)
    }

    static func hash(secret: some StringProtocol) -> Data {
        Data(SHA256.hash(data: Data(secret.utf8)))
    }

    /// Whether `id` has the form of a token id (12 lowercase hex digits).
    public static func isValidId(_ id: some StringProtocol) -> Bool {
        id.utf8.count == 12 && id.utf8.allSatisfy(isLowerHex)
    }

    static func isLowerHex(_ c: UInt8) -> Bool { (0x30...0x39).contains(c) || (0x61...0x66).contains(c) }
}

/// A presented token of the issued form, `vgl_<id>_<secret>`: the id to look up and the hash of
/// the secret to compare with the stored one.
public struct EnrollmentTokenClaim: Sendable, Hashable {
    public var id: String
    public var secretHash: Data

    /// Nil when `text` is not of the issued form.
    public init?(parsing text: String) {
        guard text.hasPrefix(EnrollmentToken.prefix) else { return nil }
        let rest = text.utf8.dropFirst(EnrollmentToken.prefix.utf8.count)
        guard rest.count == 12 + 1 + 64, rest[rest.index(rest.startIndex, offsetBy: 12)] == UInt8(ascii: "_") else {
            return nil
        }
        let id = rest.prefix(12)
        let secret = rest.suffix(64)
        guard id.allSatisfy(EnrollmentToken.isLowerHex), secret.allSatisfy(EnrollmentToken.isLowerHex) else {
            return nil
        }
        self.id = String(decoding: id, as: UTF8.self)
        self.secretHash = EnrollmentToken.hash(secret: String(decoding: secret, as: UTF8.self))
    }

    /// Whether `token` is the one this claim names and its secret hash matches, compared in
    /// constant time. An unknown id costs the same comparison against zeros.
    func matches(_ token: EnrollmentToken?) -> Bool {
        let stored = token?.secretHash ?? Data(repeating: 0, count: 32)
        var difference: UInt8 = stored.count == secretHash.count ? 0 : 1
        for (a, b) in zip(stored, secretHash) { difference |= a ^ b }
        return token != nil && difference == 0
    }
}

/// Where issued enrollment tokens live: the collector's store (migration 7, `enroll_tokens`).
/// Every `EventStore` is one.
public protocol EnrollmentTokenStore: Sendable {
    /// Stores a new token; its id is new (ids are random: a clash is an error).
    func createEnrollmentToken(_ token: EnrollmentToken) async throws
    func enrollmentToken(id: String) async throws -> EnrollmentToken?
    /// All tokens, oldest first.
    func enrollmentTokens() async throws -> [EnrollmentToken]
    /// Marks the token revoked at `time`; revoking twice keeps the first time. Nil for an unknown id.
    func revokeEnrollmentToken(id: String, at time: Timestamp) async throws -> EnrollmentToken?
    /// Counts one enrollment with the token if it is usable at `time` (not revoked, not expired,
    /// not a one-time token used before) and sets `lastUsedAt`; returns whether it was. Atomic (a
    /// conditional UPDATE): of concurrent redemptions of a one-time token, on any number of
    /// collectors sharing the store, exactly one returns true.
    func redeemEnrollmentToken(id: String, at time: Timestamp) async throws -> Bool
    /// Gives back a use `redeemEnrollmentToken` counted for an enrollment that did not happen.
    func refundEnrollmentToken(id: String) async throws
}

// MARK: the collector's side

extension Collector {
    /// Which token an enrollment presented.
    enum EnrollmentCredential: Sendable {
        /// The collector's `--enroll-token`: reusable, never expires, never stored.
        case commandLine
        /// A token from `POST /v1/tokens`, still to be checked against the store.
        case issued(EnrollmentTokenClaim)

        var logName: String {
            switch self {
            case .commandLine: "command-line"
            case .issued(let claim): claim.id
            }
        }
    }

    /// Sorts a presented token: the command-line token (compared as digests), or one of the
    /// issued form. Anything else is refused as `bad_token` without a store lookup.
    func enrollmentCredential(_ presented: String) throws(CollectorError) -> EnrollmentCredential {
        if let expected = configuration.enrollToken, Self.tokenMatches(presented, expected) {
            return .commandLine
        }
        if let claim = EnrollmentTokenClaim(parsing: presented) {
            return .issued(claim)
        }
        throw CollectorError(.badToken, "enrollment token is not valid")
    }

    /// Enrolls `record` with `credential`.
    ///
    /// An issued token must be one the collector issued, with the right secret (else `bad_token`,
    /// whichever part was wrong). Then:
    /// - an agent already enrolled under this id with this key is answered `already_enrolled`
    ///   whatever the token's state, and nothing is counted: agents enroll again at every start,
    ///   and an enrolled agent no longer needs its token (one-time tokens are spent by then);
    /// - the same id with another key is a conflict, again without counting a use;
    /// - otherwise the token must be usable (`token_revoked`, `token_expired`, `token_spent`), and
    ///   one use is counted atomically before the agent is stored: of agents racing with one
    ///   one-time token, on one collector or several on one PostgreSQL, exactly one enrolls.
    ///   When storing the agent then fails (a store error, or another enrollment of the same id
    ///   won in between), the use is given back.
    func enroll(_ record: AgentRecord, with credential: EnrollmentCredential) async throws -> EnrollOutcome {
        guard case .issued(let claim) = credential else {
            return try await store.enroll(record)
        }
        let now = record.enrolledAt
        let token = try await store.enrollmentToken(id: claim.id)
        guard claim.matches(token), let token else {
            throw CollectorError(.badToken, "enrollment token is not valid")
        }
        if let existing = try await store.agent(id: record.agentId) {
            return existing.publicKey == record.publicKey ? .alreadyEnrolled : .conflict
        }
        try token.checkUsable(at: now)
        guard try await store.redeemEnrollmentToken(id: claim.id, at: now) else {
            // Another enrollment changed the token since it was read: perhaps this very agent's
            // (a retry through a second collector).
            if let existing = try await store.agent(id: record.agentId), existing.publicKey == record.publicKey {
                return .alreadyEnrolled
            }
            try await store.enrollmentToken(id: claim.id)?.checkUsable(at: now)
            throw CollectorError(.tokenSpent, "enrollment token \(claim.id) was used up by another enrollment")
        }
        let outcome: EnrollOutcome
        do {
            outcome = try await store.enroll(record)
        } catch {
            try? await store.refundEnrollmentToken(id: claim.id)
            throw error
        }
        if outcome != .enrolled {
            try await store.refundEnrollmentToken(id: claim.id)
        }
        return outcome
    }

    // MARK: managing tokens (POST/GET /v1/tokens)

    /// The body of `POST /v1/tokens`: every field optional, unknown fields refused.
    public struct CreateTokenRequest: Decodable, Sendable {
        public var label: String
        /// Seconds from now; at most ten years.
        public var expiresIn: Int64?
        /// Nanoseconds since the epoch; in the future.
        public var expiresAt: Timestamp?
        public var once: Bool

        public init(label: String = "", expiresIn: Int64? = nil, expiresAt: Timestamp? = nil, once: Bool = false) {
            self.label = label
            self.expiresIn = expiresIn
            self.expiresAt = expiresAt
            self.once = once
        }

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        static let fields = ["label", "expires_in", "expires_at", "once"]

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Key.self)
            for key in c.allKeys {
                guard Self.fields.contains(key.stringValue) else {
                    throw CollectorError(
                        .badRequest,
                        "unknown field '\(key.stringValue)'; known: \(Self.fields.joined(separator: ", "))"
                    )
                }
                if try c.decodeNil(forKey: key) {
                    throw CollectorError(.badRequest, "\(key.stringValue): null is not allowed; leave the field out")
                }
            }
            label = try c.decodeIfPresent(String.self, forKey: Key(stringValue: "label")) ?? ""
            expiresIn = try c.decodeIfPresent(Int64.self, forKey: Key(stringValue: "expires_in"))
            expiresAt = try c.decodeIfPresent(Int64.self, forKey: Key(stringValue: "expires_at")).map {
                Timestamp(nanosecondsSinceEpoch: $0)
            }
            once = try c.decodeIfPresent(Bool.self, forKey: Key(stringValue: "once")) ?? false
        }
    }

    /// A token as `GET /v1/tokens` lists it: never its secret or hash.
    public struct TokenInfo: Codable, Sendable, Hashable {
        public var id: String
        public var label: String
        public var once: Bool
        public var status: EnrollmentToken.Status
        public var uses: Int64
        public var createdAt: Timestamp
        public var expiresAt: Timestamp?
        public var revokedAt: Timestamp?
        public var lastUsedAt: Timestamp?

        public init(_ token: EnrollmentToken, at time: Timestamp) {
            id = token.id
            label = token.label
            once = token.once
            status = token.status(at: time)
            uses = token.uses
            createdAt = token.createdAt
            expiresAt = token.expiresAt
            revokedAt = token.revokedAt
            lastUsedAt = token.lastUsedAt
        }

        enum CodingKeys: String, CodingKey {
            case id, label, once, status, uses
            case createdAt = "created_at"
            case expiresAt = "expires_at"
            case revokedAt = "revoked_at"
            case lastUsedAt = "last_used_at"
        }
    }

    /// What `POST /v1/tokens` answers: the new token's `TokenInfo` fields plus `token`, the only
    /// time the secret is shown.
    public struct CreatedToken: Codable, Sendable, Hashable {
        public var token: String
        public var info: TokenInfo

        enum CodingKeys: String, CodingKey { case token }

        public init(token: String, info: TokenInfo) {
            self.token = token
            self.info = info
        }

        public init(from decoder: any Decoder) throws {
            info = try TokenInfo(from: decoder)
            token = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .token)
        }

        public func encode(to encoder: any Encoder) throws {
            try info.encode(to: encoder)
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(token, forKey: .token)
        }
    }

    /// Ten years, the longest `expires_in`.
    static let longestTokenLifetime: Int64 = 10 * 366 * 86_400

    /// Issues a token. `now` is the clock (tests pass their own).
    public func createEnrollmentToken(
        _ request: CreateTokenRequest,
        now: Timestamp = .now()
    ) async throws -> CreatedToken {
        guard request.label.unicodeScalars.count <= 200 else {
            throw CollectorError(.badRequest, "label: at most 200 characters")
        }
        guard !request.label.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw CollectorError(.badRequest, "label: control characters are not allowed")
        }
        var expiresAt: Timestamp? = nil
        switch (request.expiresIn, request.expiresAt) {
        case (.some, .some):
            throw CollectorError(.badRequest, "give expires_in or expires_at, not both")
        case (let seconds?, nil):
            guard (1...Self.longestTokenLifetime).contains(seconds) else {
                throw CollectorError(
                    .badRequest,
                    "expires_in: seconds from 1 to \(Self.longestTokenLifetime) (ten years)"
                )
            }
            expiresAt = Timestamp(nanosecondsSinceEpoch: now.nanosecondsSinceEpoch + seconds * 1_000_000_000)
        case (nil, let at?):
            guard at > now else {
                throw CollectorError(.badRequest, "expires_at: \(at.iso8601) is not in the future")
            }
            guard at.nanosecondsSinceEpoch - now.nanosecondsSinceEpoch <= Self.longestTokenLifetime * 1_000_000_000
            else {
                throw CollectorError(.badRequest, "expires_at: at most ten years from now")
            }
            expiresAt = at
        case (nil, nil):
            break
        }
        let (record, token) = EnrollmentToken.generate(
            label: request.label,
            expiresAt: expiresAt,
            once: request.once,
            at: now
        )
        try await store.createEnrollmentToken(record)
        logger.notice(
            "enrollment token created",
            metadata: [
                "token_id": "\(record.id)", "label": "\(record.label)", "once": "\(record.once)",
                "expires_at": "\(expiresAt?.iso8601 ?? "never")",
            ]
        )
        return CreatedToken(token: token, info: TokenInfo(record, at: now))
    }

    /// Every issued token, oldest first, with its status at `now`.
    public func enrollmentTokens(now: Timestamp = .now()) async throws -> [TokenInfo] {
        try await store.enrollmentTokens().map { TokenInfo($0, at: now) }
    }

    /// Revokes an issued token: it enrolls no new agent from now on; agents enrolled with it stay
    /// enrolled (revoke those with `revoke(agentId:)`). Revoking again keeps the first time.
    public func revokeEnrollmentToken(id: String, now: Timestamp = .now()) async throws -> TokenInfo {
        guard EnrollmentToken.isValidId(id), let token = try await store.revokeEnrollmentToken(id: id, at: now) else {
            throw CollectorError(.unknownToken, "no enrollment token has the id \(id)")
        }
        logger.notice("enrollment token revoked", metadata: ["token_id": "\(id)"])
        return TokenInfo(token, at: now)
    }
}
