import Foundation
import Hummingbird
import NIOCore

/// Issued enrollment tokens (`EnrollmentTokens.swift`), behind the read authorization of the
/// other admin routes:
///
/// | route | |
/// | --- | --- |
/// | `POST /v1/tokens` | JSON `{label, expires_in \| expires_at, once}` (all optional) → 201 `{id, token, label, once, status, uses, created_at, expires_at}`; `token` is shown only here |
/// | `GET /v1/tokens` | `{tokens: [...]}`, oldest first: the same fields without `token`; never a secret or a hash |
/// | `POST /v1/tokens/ID/revoke` | the token enrolls no new agent from now on → the token's fields |
extension CollectorHTTP {
    static func addEnrollmentTokens(
        to router: Router<CollectorRequestContext>,
        collector: Collector,
        reader: ReadAuthorization
    ) {
        router.post("/v1/tokens") { request, context -> Response in
            try reader.check(request, context)
            let body = try await collectBody(request, limit: 16 << 10)
            let create: Collector.CreateTokenRequest
            do {
                create = try JSONDecoder().decode(Collector.CreateTokenRequest.self, from: Data(buffer: body))
            } catch let error as CollectorError {
                throw error
            } catch {
                throw CollectorError(
                    .badRequest,
                    "body must be a JSON object with optional label (string), expires_in (seconds) or expires_at (nanoseconds since the epoch), once (boolean): \(describe(error))"
                )
            }
            return try json(try await collector.createEnrollmentToken(create), status: .created)
        }

        router.get("/v1/tokens") { request, context -> Response in
            try reader.check(request, context)
            for (key, _) in request.uri.queryParameters {
                throw CollectorError(.badRequest, "unknown query parameter '\(key)'; this route takes none")
            }
            return try json(TokenList(tokens: try await collector.enrollmentTokens()))
        }

        router.post("/v1/tokens/:id/revoke") { request, context -> Response in
            try reader.check(request, context)
            return try json(try await collector.revokeEnrollmentToken(id: try context.parameters.require("id")))
        }
    }

    /// The token routes, for the 405 answers of `router(collector:)`.
    static let enrollmentTokenRoutes: [(path: RouterPath, methods: [HTTPRequest.Method])] = [
        ("/v1/tokens", [.get, .post]), ("/v1/tokens/:id/revoke", [.post]),
    ]

    struct TokenList: Codable {
        var tokens: [Collector.TokenInfo]
    }
}
