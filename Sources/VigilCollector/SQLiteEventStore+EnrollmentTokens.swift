import Foundation
import GRDB
import VigilCore

/// Issued enrollment tokens in the SQLite store (`EnrollmentTokenStore`). The writer serializes
/// every write, so a redemption's check and count cannot interleave with another's.
extension SQLiteEventStore {
    /// Migration "v7-enroll-tokens": only the secret's SHA-256 is kept.
    static func enrollTokensMigration(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE enroll_tokens (
                    id TEXT PRIMARY KEY NOT NULL,
                    secret_sha256 BLOB NOT NULL,
                    label TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER,
                    once INTEGER NOT NULL,
                    uses INTEGER NOT NULL DEFAULT 0,
                    revoked_at INTEGER,
                    last_used_at INTEGER
                ) WITHOUT ROWID;
                """
        )
    }

    public func createEnrollmentToken(_ token: EnrollmentToken) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO enroll_tokens (id, secret_sha256, label, created_at, expires_at, once, uses)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    token.id, token.secretHash, token.label, token.createdAt.nanosecondsSinceEpoch,
                    token.expiresAt?.nanosecondsSinceEpoch, token.once, token.uses,
                ]
            )
        }
    }

    public func enrollmentToken(id: String) async throws -> EnrollmentToken? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM enroll_tokens WHERE id = ?", arguments: [id]).map(Self.token)
        }
    }

    public func enrollmentTokens() async throws -> [EnrollmentToken] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM enroll_tokens ORDER BY created_at, id").map(Self.token)
        }
    }

    public func revokeEnrollmentToken(id: String, at time: Timestamp) async throws -> EnrollmentToken? {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE enroll_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                arguments: [time.nanosecondsSinceEpoch, id]
            )
            return try Row.fetchOne(db, sql: "SELECT * FROM enroll_tokens WHERE id = ?", arguments: [id]).map(
                Self.token
            )
        }
    }

    public func redeemEnrollmentToken(id: String, at time: Timestamp) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE enroll_tokens SET uses = uses + 1, last_used_at = ?1
                    WHERE id = ?2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1)
                        AND (once = 0 OR uses = 0)
                    """,
                arguments: [time.nanosecondsSinceEpoch, id]
            )
            return db.changesCount == 1
        }
    }

    public func refundEnrollmentToken(id: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE enroll_tokens SET uses = uses - 1 WHERE id = ? AND uses > 0", arguments: [id])
        }
    }

    private static func token(_ row: Row) -> EnrollmentToken {
        func time(_ column: String) -> Timestamp? {
            (row[column] as Int64?).map { Timestamp(nanosecondsSinceEpoch: $0) }
        }
        return EnrollmentToken(
            id: row["id"],
            secretHash: row["secret_sha256"],
            label: row["label"],
            createdAt: Timestamp(nanosecondsSinceEpoch: row["created_at"]),
            expiresAt: time("expires_at"),
            once: row["once"],
            uses: row["uses"],
            revokedAt: time("revoked_at"),
            lastUsedAt: time("last_used_at")
        )
    }
}
