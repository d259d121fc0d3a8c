import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import VigilCore
import VigilWire

/// The collector's HTTP API.
///
/// | route | |
/// | --- | --- |
/// | `POST /v1/enroll` | JSON `{token, agent_id, public_key, hostname, machine_id}` → `{agent_id, key_id, status}` |
/// | `POST /v1/batches` | a serialized `vigil.v1.Batch` → `{status, batch_seq, events, chain, detail}` |
/// | `GET /v1/events` | `?agent=&type=file,process&rule=&level=&min_level=&field=NAME:VALUE&since=&until=&order=asc&after=&limit=` (or `order=desc&before=`) → `{events, next_cursor}` (`Collector.page`) |
/// | `GET /v1/events/stream` | live tail, `text/event-stream` (`addLiveTail`): the same filters but `limit`, `order`, `before`; `Last-Event-ID`, `timeout=` |
/// | `GET /v1/alerts` | alerts only (`StoredAlert`), the same filters but `type` → `{alerts, next_cursor}` |
/// | `GET /v1/agents` | inventory: chain status, declared gaps, last selftest (`last_selftest`, `selftest_passed_at`) |
/// | `POST /v1/agents/ID/revoke` | revokes the agent: its batches and re-enrollment are refused → `{agent_id, revoked_at}` |
/// | `POST /v1/agents/ID/keys` | a key rotation statement (`KeyRotation`) signed by the agent's current key → `{agent_id, status, key_id, retired_key_id, rotated_at, first_batch_seq}` |
/// | `POST /v1/tokens`, `GET /v1/tokens`, `POST /v1/tokens/ID/revoke` | issued enrollment tokens (`addEnrollmentTokens`) |
/// | `GET /healthz` | `ok` |
/// | `GET /dashboard` | the web dashboard (`Dashboard`): HTML, with a token login form |
/// | `GET /metrics` | Prometheus text format (`CollectorMetrics`); read authorization like `GET /v1/…` |
///
/// Every refusal is `{"error": CODE, "message": MESSAGE}` with a 4xx status, or a 5xx one when
/// resending later can succeed (`store_failure`, `predecessor_pending`).
///
/// Agents authenticate by enrollment token and then by signature; the read routes (`GET /v1/…`)
/// and revocation need `Authorization: Bearer TOKEN` when the collector has an API token, and
/// otherwise answer loopback clients only. The whole API is described in `openapi.yaml` at the repository root.
public enum CollectorHTTP {
    static let previousBatchHeader = HTTPField.Name(BatchTransport.previousBatchHeader)!

    public static func router(collector: Collector) -> Router<CollectorRequestContext> {
        let router = Router(context: CollectorRequestContext.self)
        let reader = ReadAuthorization(token: collector.configuration.apiToken)
        let maxBatch = collector.configuration.batchLimits.maxBatchBytes
        router.add(middleware: CollectorMetrics.Middleware(metrics: collector.metrics))

        router.get("/healthz") { _, _ in "ok\n" }
        Dashboard.register(on: router, collector: collector)

        // Prometheus text format; a scrape job sets `authorization: {credentials: TOKEN}` when
        // the collector has an API token.
        router.get("/metrics") { request, context -> Response in
            try reader.check(request, context)
            var headers = HTTPFields()
            headers[.contentType] = CollectorMetrics.contentType
            return Response(
                status: .ok,
                headers: headers,
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: collector.metrics.exposition()))
            )
        }

        router.post("/v1/enroll") { request, context -> Response in
            let body = try await collectBody(request, limit: 64 << 10)
            let enroll: Collector.EnrollRequest
            do {
                enroll = try JSONDecoder().decode(Collector.EnrollRequest.self, from: Data(buffer: body))
            } catch {
                throw CollectorError(
                    .badRequest,
                    "enrollment body must be JSON with token, agent_id, public_key, hostname, machine_id: \(describe(error))"
                )
            }
            return try json(try await collector.enroll(enroll))
        }

        router.post("/v1/batches") { request, context -> Response in
            let body: ByteBuffer
            var previousInFlight: UInt64? = nil
            do {
                body = try await collectBody(request, limit: maxBatch)
                if let value = request.headers[previousBatchHeader] {
                    guard let number = UInt64(value) else {
                        throw CollectorError(
                            .badRequest,
                            "\(previousBatchHeader) must be a batch number (decimal), not '\(value.prefix(40))'"
                        )
                    }
                    previousInFlight = number
                }
            } catch let error as CollectorError {
                collector.metrics.batchReceived()
                collector.metrics.batchRefused(error.code)
                throw error
            }
            let response = try await collector.receive(batch: Array(buffer: body), previousInFlight: previousInFlight)
            return try json(response)
        }

        router.get("/v1/events") { request, context -> Response in
            try reader.check(request, context)
            let query = try eventQuery(request.uri.queryParameters, maxLimit: collector.configuration.maxQueryLimit)
            let page = try await collector.page(query)
            return try json(EventPage(events: page.events, nextCursor: page.nextCursor))
        }

        addLiveTail(to: router, collector: collector, reader: reader)
        addEnrollmentTokens(to: router, collector: collector, reader: reader)

        router.get("/v1/alerts") { request, context -> Response in
            try reader.check(request, context)
            let query = try eventQuery(
                request.uri.queryParameters,
                maxLimit: collector.configuration.maxQueryLimit,
                alertsOnly: true
            )
            // Paged like /v1/events, with the same storage-id cursor (`Collector.page`).
            let page = try await collector.page(query)
            return try json(AlertPage(alerts: page.events.compactMap(StoredAlert.init), nextCursor: page.nextCursor))
        }

        router.get("/v1/agents") { request, context -> Response in
            try reader.check(request, context)
            return try json(AgentList(agents: try await collector.store.agents()))
        }

        router.post("/v1/agents/:id/revoke") { request, context -> Response in
            try reader.check(request, context)
            return try json(try await collector.revoke(agentId: try context.parameters.require("id")))
        }

        // Key rotation: the agent authenticates by the statement's signature (by its current
        // key), like its batches, so no API token.
        router.post("/v1/agents/:id/keys") { request, context -> Response in
            let body = try await collectBody(request, limit: 16 << 10)
            let statement: KeyRotation
            do {
                statement = try JSONDecoder().decode(KeyRotation.self, from: Data(buffer: body))
            } catch {
                throw CollectorError(
                    .badRequest,
                    "key rotation body must be JSON with agent_id, old_key_id, new_public_key, new_key_id, time, signature, new_key_signature: \(describe(error))"
                )
            }
            return try json(
                try await collector.rotateKey(agentId: try context.parameters.require("id"), statement: statement)
            )
        }

        router.get("/v1/agents/:id/batches") { request, context -> Response in
            try reader.check(request, context)
            let id = try context.parameters.require("id")
            guard Collector.isValidAgentId(id), let agent = try await collector.store.agent(id: id) else {
                throw CollectorError(.unknownAgent, "agent \(id) is not enrolled")
            }
            let params = request.uri.queryParameters
            for (key, _) in params where !["after", "limit"].contains(String(key)) {
                throw CollectorError(.badRequest, "unknown query parameter '\(key)'; known: after, limit")
            }
            var after: UInt64 = 0
            if let text = params.get("after") {
                guard let v = UInt64(text) else {
                    throw CollectorError(.badRequest, "after: must be a batch sequence number")
                }
                after = v
            }
            var limit = 500
            if let text = params.get("limit") {
                guard let v = Int(text), (1...5000).contains(v) else {
                    throw CollectorError(.badRequest, "limit: must be an integer from 1 to 5000")
                }
                limit = v
            }
            let batches = try await collector.store.batches(agentId: id, afterBatchSeq: after, limit: limit)
            return try json(
                BatchPage(
                    agentId: id,
                    publicKey: agent.publicKey,
                    keyId: agent.keyId,
                    keys: try await collector.store.keys(agentId: id),
                    batches: batches.map {
                        .init(
                            batchSeq: $0.batchSeq,
                            header: Data($0.headerBytes).base64EncodedString(),
                            signature: Data($0.signature).base64EncodedString(),
                            body: Data($0.body).base64EncodedString(),
                            pruned: $0.pruned ? true : nil
                        )
                    }
                )
            )
        }

        // A known path with a method it does not serve: 405 with Allow, not 404.
        let served: [(path: RouterPath, methods: [HTTPRequest.Method])] = [
            ("/healthz", [.get]), ("/metrics", [.get]), ("/v1/enroll", [.post]), ("/v1/batches", [.post]),
            ("/v1/events", [.get]),
            ("/v1/alerts", [.get]), ("/v1/agents", [.get]), ("/v1/agents/:id/batches", [.get]),
            ("/v1/agents/:id/revoke", [.post]), ("/v1/agents/:id/keys", [.post]), ("/v1/events/stream", [.get]),
        ]
        let methods: [HTTPRequest.Method] =
            [.get, .head, .post, .put, .delete, .patch, .options, .trace]
            + [HTTPRequest.Method("QUERY")].compactMap { $0 }
        for (path, allowed) in served + Dashboard.served + enrollmentTokenRoutes {
            let allow = allowed.map(\.rawValue).joined(separator: ", ")
            for method in methods where !allowed.contains(method) {
                router.on(path, method: method) { _, _ -> Response in
                    var response = try json(
                        CollectorError.Body(
                            error: "method_not_allowed",
                            message: "\(method.rawValue) is not served here; allowed: \(allow)"
                        ),
                        status: .methodNotAllowed
                    )
                    response.headers[.allow] = allow
                    return response
                }
            }
        }
        return router
    }

    /// Who may use the read routes: holders of the API token, or, without one, loopback clients.
    struct ReadAuthorization: Sendable {
        let token: String?

        func check(_ request: Request, _ context: CollectorRequestContext) throws {
            if let token {
                let header = request.headers[.authorization] ?? ""
                guard header.hasPrefix("Bearer "), Collector.tokenMatches(header.dropFirst(7), token) else {
                    throw CollectorError(
                        .unauthorized,
                        "this route needs Authorization: Bearer with the collector's API token (vigilctl: set VIGIL_API_TOKEN)"
                    )
                }
            } else {
                guard context.isLoopbackClient else {
                    throw CollectorError(
                        .unauthorized,
                        "reads from other hosts need an API token: start the collector with --api-token (or VIGIL_API_TOKEN)"
                    )
                }
            }
        }
    }

    /// Stored batches exactly as received, for independent re-verification (`vigilctl verify`).
    public struct BatchPage: Codable, Sendable {
        public struct Item: Codable, Sendable {
            public var batchSeq: UInt64
            public var header: String
            public var signature: String
            /// Empty when `pruned`.
            public var body: String
            /// True when retention deleted the batch's events (its body is empty); absent otherwise.
            public var pruned: Bool?
            enum CodingKeys: String, CodingKey {
                case batchSeq = "batch_seq"
                case header, signature, body, pruned
            }
        }
        public var agentId: String
        /// The current key.
        public var publicKey: String
        public var keyId: String
        /// Every key the agent signed with, oldest first (the current one last), with the batches
        /// each may sign and the rotation statements between them; absent from older collectors.
        public var keys: [AgentKeyRecord]?
        public var batches: [Item]
        enum CodingKeys: String, CodingKey {
            case agentId = "agent_id"
            case publicKey = "public_key"
            case keyId = "key_id"
            case keys
            case batches
        }
    }

    struct EventPage: Encodable {
        var events: [StoredEvent]
        var nextCursor: Int64?
        enum CodingKeys: String, CodingKey {
            case events
            case nextCursor = "next_cursor"
        }
    }

    struct AlertPage: Encodable {
        var alerts: [StoredAlert]
        var nextCursor: Int64?
        enum CodingKeys: String, CodingKey {
            case alerts
            case nextCursor = "next_cursor"
        }
    }

    struct AgentList: Encodable {
        var agents: [AgentSummary]
    }

    static func collectBody(_ request: Request, limit: Int) async throws -> ByteBuffer {
        var request = request
        do {
            return try await request.collectBody(upTo: limit)
        } catch let error as NIOTooManyBytesError {
            _ = error
            throw CollectorError(.tooLarge, "request body exceeds the limit of \(limit) bytes")
        }
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing field \(key.stringValue)"
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
            "wrong type for \(ctx.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.dataCorrupted: "not valid JSON"
        default: "\(error)"
        }
    }

    /// Parses query parameters into an `EventQuery`, naming the parameter in every error.
    /// The query string of `GET /v1/events` (`GET /v1/alerts` with `alertsOnly`); a refusal is a
    /// 400 that names the parameter.
    static func eventQuery(
        _ params: Parameters,
        maxLimit: Int,
        alertsOnly: Bool = false
    ) throws(CollectorError) -> EventQuery {
        do {
            return try EventQuery.parse(
                params.lazy.map { (key: $0.key, value: $0.value) },
                maxLimit: maxLimit,
                alertsOnly: alertsOnly
            )
        } catch {
            throw CollectorError(.badRequest, error.message)
        }
    }
}
