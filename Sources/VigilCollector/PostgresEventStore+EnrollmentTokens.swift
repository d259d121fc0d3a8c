import Foundation
import PostgresNIO
import VigilCore

/// Issued enrollment tokens in the PostgreSQL store (`EnrollmentTokenStore`), shared by every
/// collector on the database. A redemption is one conditional UPDATE: PostgreSQL re-checks its
/// WHERE on the row as the previous writer left it, so of concurrent redemptions of a one-time
/// token exactly one matches.
extension PostgresEventStore {
    /// Migration 7: only the secret's SHA-256 is kept.
    static let enrollTokensMigration = [
        """
        CREATE TABLE enroll_tokens (
            id TEXT PRIMARY KEY,
            secret_sha256 BYTEA NOT NULL,
            label TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT,
            once BOOLEAN NOT NULL,
            uses BIGINT NOT NULL DEFAULT 0,
            revoked_at BIGINT,
            last_used_at BIGINT
        )
        """
    ]

    private static let tokenColumns =
        "id, secret_sha256, label, created_at, expires_at, once, uses, revoked_at, last_used_at"

    public func createEnrollmentToken(_ token: EnrollmentToken) async throws {
        try await client.query(
            """
            INSERT INTO enroll_tokens (id, secret_sha256, label, created_at, expires_at, once, uses)
            VALUES (\(token.id), \(token.secretHash), \(token.label), \(token.createdAt.nanosecondsSinceEpoch),
                \(token.expiresAt?.nanosecondsSinceEpoch), \(token.once), \(token.uses))
            """,
            logger: logger
        )
    }

    public func enrollmentToken(id: String) async throws -> EnrollmentToken? {
        try await tokens("SELECT \(unescaped: Self.tokenColumns) FROM enroll_tokens WHERE id = \(id)").first
    }

    public func enrollmentTokens() async throws -> [EnrollmentToken] {
        try await tokens("SELECT \(unescaped: Self.tokenColumns) FROM enroll_tokens ORDER BY created_at, id")
    }

    public func revokeEnrollmentToken(id: String, at time: Timestamp) async throws -> EnrollmentToken? {
        try await tokens(
            """
            UPDATE enroll_tokens SET revoked_at = COALESCE(revoked_at, \(time.nanosecondsSinceEpoch)) WHERE id = \(id)
            RETURNING \(unescaped: Self.tokenColumns)
            """
        ).first
    }

    public func redeemEnrollmentToken(id: String, at time: Timestamp) async throws -> Bool {
        let now = time.nanosecondsSinceEpoch
        let rows = try await client.query(
            """
            UPDATE enroll_tokens SET uses = uses + 1, last_used_at = \(now)
            WHERE id = \(id) AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > \(now))
                AND (NOT once OR uses = 0)
            RETURNING id
            """,
            logger: logger
        ).collect()
        return rows.count == 1
    }

    public func refundEnrollmentToken(id: String) async throws {
        try await client.query(
            "UPDATE enroll_tokens SET uses = uses - 1 WHERE id = \(id) AND uses > 0",
            logger: logger
        )
    }

    private func tokens(_ query: PostgresQuery) async throws -> [EnrollmentToken] {
        var tokens: [EnrollmentToken] = []
        let rows = try await client.query(query, logger: logger)
        for try await (id, hash, label, createdAt, expiresAt, once, uses, revokedAt, lastUsedAt) in rows.decode(
            (String, Data, String, Int64, Int64?, Bool, Int64, Int64?, Int64?).self
        ) {
            func time(_ ns: Int64?) -> Timestamp? { ns.map { Timestamp(nanosecondsSinceEpoch: $0) } }
            tokens.append(
                EnrollmentToken(
                    id: id,
                    secretHash: hash,
                    label: label,
                    createdAt: Timestamp(nanosecondsSinceEpoch: createdAt),
                    expiresAt: time(expiresAt),
                    once: once,
                    uses: uses,
                    revokedAt: time(revokedAt),
                    lastUsedAt: time(lastUsedAt)
                )
            )
        }
        return tokens
    }
}
