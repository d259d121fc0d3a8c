import Crypto
import Foundation
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilCollector

/// Issued enrollment tokens (`POST /v1/tokens`) as the collector carries them out, on both
/// stores: one-time and reusable tokens, expiry, revocation, re-enrollment of enrolled agents,
/// the race for a one-time token, and that no secret is ever kept or listed.
@Suite("Enrollment tokens")
struct EnrollmentTokenTests {
    func enroll(_ f: CollectorFixture, _ identity: AgentIdentity, token: String) async throws -> String {
        try await f.collector.enroll(
            .init(
                token: token,
                agentId: identity.agentId,
                publicKey: identity.publicKeyBase64,
                hostname: "h",
                machineId: "m"
            )
        ).status
    }

    @Test(
        "a one-time token enrolls one agent; that agent re-enrolls, a second one is refused",
        arguments: Backend.allCases
    )
    func oneTime(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let created = try await f.collector.createEnrollmentToken(.init(label: "web-1", once: true))
            #expect(created.token.hasPrefix("vgl_\(created.info.id)_"))
            #expect(created.info.status == .active && created.info.once && created.info.uses == 0)

            let first = AgentIdentity.generate()
            #expect(try await enroll(f, first, token: created.token) == "enrolled")
            // Agents enroll again at every start: the same key is answered, nothing is counted.
            #expect(try await enroll(f, first, token: created.token) == "already_enrolled")
            #expect(
                await refusal { _ = try await enroll(f, AgentIdentity.generate(), token: created.token) } == .tokenSpent
            )
            // Another key under the enrolled id is still a conflict, not a token refusal.
            let impostor = AgentIdentity.generate()
            #expect(
                await refusal {
                    _ = try await f.collector.enroll(
                        .init(
                            token: created.token,
                            agentId: first.agentId,
                            publicKey: impostor.publicKeyBase64,
                            hostname: "h",
                            machineId: "m"
                        )
                    )
                } == .enrollConflict
            )
            let listed = try #require(try await f.collector.enrollmentTokens().first)
            #expect(listed.status == .spent && listed.uses == 1 && listed.lastUsedAt != nil)

            // The enrolled agent's batches are stored; it re-enrolls even after the token is revoked.
            _ = try await f.collector.revokeEnrollmentToken(id: created.info.id)
            #expect(try await enroll(f, first, token: created.token) == "already_enrolled")
            #expect(try await f.store.agents().map(\.agentId) == [first.agentId])
        }
    }

    @Test("forged, unknown and malformed tokens are refused as bad_token", arguments: Backend.allCases)
    func forged(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let created = try await f.collector.createEnrollmentToken(.init())
            let id = created.info.id
            let wrongSecret = "vgl_\(id)_" + String(repeating: "0", count: 64)
            let unknownId = "vgl_000000000000_" + created.token.suffix(64)
            for token in [
                wrongSecret, unknownId, created.token.uppercased(), String(created.token.dropLast()), "", "t",
            ] {
                #expect(await refusal { _ = try await enroll(f, AgentIdentity.generate(), token: token) } == .badToken)
            }
            // An enrolled agent presenting a forged token learns nothing either.
            let agent = AgentIdentity.generate()
            #expect(try await enroll(f, agent, token: created.token) == "enrolled")
            #expect(await refusal { _ = try await enroll(f, agent, token: wrongSecret) } == .badToken)
            #expect(try await f.collector.enrollmentTokens().first?.uses == 1, "refusals count nothing")
        }
    }

    @Test("a reusable token enrolls many agents until it is revoked", arguments: Backend.allCases)
    func reusableAndRevoke(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let created = try await f.collector.createEnrollmentToken(.init(label: "fleet"))
            for _ in 0..<3 {
                #expect(try await enroll(f, AgentIdentity.generate(), token: created.token) == "enrolled")
            }
            let revoked = try await f.collector.revokeEnrollmentToken(id: created.info.id)
            #expect(revoked.status == .revoked && revoked.uses == 3)
            let again = try await f.collector.revokeEnrollmentToken(id: created.info.id)
            #expect(again.revokedAt == revoked.revokedAt, "revoking again keeps the first time")
            #expect(
                await refusal { _ = try await enroll(f, AgentIdentity.generate(), token: created.token) }
                    == .tokenRevoked
            )
            #expect(
                await refusal { _ = try await f.collector.revokeEnrollmentToken(id: "000000000000") } == .unknownToken
            )
            #expect(await refusal { _ = try await f.collector.revokeEnrollmentToken(id: "../etc") } == .unknownToken)
            // Other tokens are untouched.
            let other = try await f.collector.createEnrollmentToken(.init())
            #expect(try await enroll(f, AgentIdentity.generate(), token: other.token) == "enrolled")
        }
    }

    @Test("an expired token enrolls nobody; expiry is checked against the clock", arguments: Backend.allCases)
    func expiry(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let hour: Int64 = 3_600_000_000_000
            let now = Timestamp.now()
            // Created two hours ago (an injected clock), valid for one hour: expired now.
            let old = try await f.collector.createEnrollmentToken(
                .init(expiresIn: 3600, once: true),
                now: Timestamp(nanosecondsSinceEpoch: now.nanosecondsSinceEpoch - 2 * hour)
            )
            #expect(
                await refusal { _ = try await enroll(f, AgentIdentity.generate(), token: old.token) } == .tokenExpired
            )
            #expect(try await f.collector.enrollmentTokens().first { $0.id == old.info.id }?.status == .expired)

            let fresh = try await f.collector.createEnrollmentToken(.init(expiresIn: 3600))
            #expect(fresh.info.expiresAt.map { $0 > now } == true)
            #expect(try await enroll(f, AgentIdentity.generate(), token: fresh.token) == "enrolled")

            // The store's redemption honours the expiry to the nanosecond.
            let expiresAt = try #require(fresh.info.expiresAt)
            let before = Timestamp(nanosecondsSinceEpoch: expiresAt.nanosecondsSinceEpoch - 1)
            #expect(try await f.store.redeemEnrollmentToken(id: fresh.info.id, at: before))
            #expect(try await f.store.redeemEnrollmentToken(id: fresh.info.id, at: expiresAt) == false)

            // Bad expiries are refused at creation.
            let past = Timestamp(nanosecondsSinceEpoch: now.nanosecondsSinceEpoch - hour)
            #expect(
                await refusal { _ = try await f.collector.createEnrollmentToken(.init(expiresAt: past)) } == .badRequest
            )
            #expect(
                await refusal { _ = try await f.collector.createEnrollmentToken(.init(expiresIn: 0)) } == .badRequest
            )
            #expect(
                await refusal {
                    _ = try await f.collector.createEnrollmentToken(
                        .init(
                            expiresIn: 60,
                            expiresAt: Timestamp(nanosecondsSinceEpoch: now.nanosecondsSinceEpoch + hour)
                        )
                    )
                } == .badRequest
            )
            #expect(
                await refusal { _ = try await f.collector.createEnrollmentToken(.init(label: "a\nb")) } == .badRequest
            )
        }
    }

    @Test("the store keeps the secret's hash only, and listings show neither", arguments: Backend.allCases)
    func hashedOnly(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let created = try await f.collector.createEnrollmentToken(.init(label: "l", once: true))
            let secret = String(created.token.suffix(64))
            let stored = try #require(try await f.store.enrollmentToken(id: created.info.id))
            #expect(stored.secretHash == Data(SHA256.hash(data: Data(secret.utf8))))
            #expect(!"\(stored)".contains(secret))

            let json = String(
                decoding: try JSONEncoder().encode(
                    CollectorHTTP.TokenList(tokens: try await f.collector.enrollmentTokens())
                ),
                as: UTF8.self
            )
            #expect(json.contains(created.info.id))
            #expect(!json.contains(secret) && !json.contains("\"token\""), "\(json)")
            let hashHex = stored.secretHash.map { String(format: "%02x", $0) }.joined()
            let hashBase64 = stored.secretHash.base64EncodedString()
            #expect(!json.contains(hashHex) && !json.contains(hashBase64), "\(json)")

            // Nor does the database file hold the secret (SQLite: the whole file).
            if case .sqlite(let path) = f.location {
                let rows = try await sqliteRows(path, "SELECT id, hex(secret_sha256) FROM enroll_tokens")
                #expect(rows == [[created.info.id, hashHex.uppercased()]])
                let bytes =
                    try Data(contentsOf: URL(fileURLWithPath: path))
                    + ((try? Data(contentsOf: URL(fileURLWithPath: path + "-wal"))) ?? Data())
                #expect(bytes.range(of: Data(secret.utf8)) == nil)
            }
            // Two tokens never share id or secret.
            let second = try await f.collector.createEnrollmentToken(.init())
            #expect(second.info.id != created.info.id && second.token.suffix(64) != created.token.suffix(64))
        }
    }

    @Test("the --enroll-token keeps working and is not stored", arguments: Backend.allCases)
    func commandLineToken(backend: Backend) async throws {
        try await withCollector(backend) { f in
            let agent = AgentIdentity.generate()
            let first = try await enroll(f, agent, token: f.token)
            #expect(first == "enrolled")
            #expect(try await enroll(f, agent, token: f.token) == "already_enrolled")
            #expect(try await f.store.enrollmentTokens().isEmpty, "the command-line token is not stored")
        }
    }

    @Test(
        "agents racing with one one-time token: exactly one enrolls (PostgreSQL: through two collectors)",
        arguments: Backend.allCases
    )
    func race(backend: Backend) async throws {
        try await withCollector(backend) { f in
            try await f.withSecondCollector { g in
                for round in 0..<5 {
                    let created = try await f.collector.createEnrollmentToken(.init(label: "race \(round)", once: true))
                    let agents = (0..<12).map { _ in AgentIdentity.generate() }
                    let outcomes = await withTaskGroup(of: String.self, returning: [String].self) { group in
                        for (i, agent) in agents.enumerated() {
                            let fixture = i.isMultiple(of: 2) ? f : g
                            group.addTask {
                                do {
                                    return try await enroll(fixture, agent, token: created.token)
                                } catch let error as CollectorError {
                                    return error.code.rawValue
                                } catch {
                                    return "\(error)"
                                }
                            }
                        }
                        return await group.reduce(into: []) { $0.append($1) }
                    }
                    #expect(outcomes.filter { $0 == "enrolled" }.count == 1, "round \(round): \(outcomes)")
                    #expect(
                        outcomes.filter { $0 == "token_spent" }.count == agents.count - 1,
                        "round \(round): \(outcomes)"
                    )
                    let enrolled = Set(try await f.store.agents().map(\.agentId))
                    #expect(enrolled.intersection(agents.map(\.agentId)).count == 1)
                    #expect(try await f.store.enrollmentToken(id: created.info.id)?.uses == 1)
                }
            }
        }
    }

    @Test("the token format: prefix, public id, 256-bit secret")
    func format() throws {
        let (record, token) = EnrollmentToken.generate(label: "", expiresAt: nil, once: true, at: .now())
        let claim = try #require(EnrollmentTokenClaim(parsing: token))
        #expect(claim.id == record.id && EnrollmentToken.isValidId(record.id))
        #expect(claim.matches(record))
        #expect(token.count == 4 + 12 + 1 + 64)
        #expect(EnrollmentTokenClaim(parsing: "vgl_" + record.id + "-" + token.suffix(64)) == nil)
        #expect(EnrollmentTokenClaim(parsing: token + "0") == nil)
        var other = record
        other.secretHash[31] ^= 1
        #expect(!claim.matches(other))
        #expect(!claim.matches(nil))
    }
}
