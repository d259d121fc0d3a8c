import Foundation
import Hummingbird
import Logging
import NIOCore
import VigilCore

extension CollectorHTTP {
    /// Query parameters of `GET /v1/events/stream` besides `EventQuery`'s filters.
    static let streamOnlyParameters = ["timeout"]

    /// The longest `timeout` a stream may ask for, in seconds (a day).
    static let maxStreamTimeout = 86_400

    /// `GET /v1/events/stream`: the live tail as server-sent events (`text/event-stream`).
    ///
    /// - Filters: those of `GET /v1/events` except `limit`; `after` is the cursor to start after
    ///   (without one the stream starts now: only events stored from now on). A `Last-Event-ID`
    ///   header (what an SSE client sends when it reconnects) wins over `after`.
    /// - `timeout=SECONDS` (1-86400) ends the stream cleanly after that long; without it the
    ///   stream runs until the client leaves or the collector shuts down (which ends it too).
    /// - Each event: `id: STORAGE_ID` and `data: ` the JSON of a `/v1/events` item, in increasing
    ///   id order (see `LiveTail` for why none is skipped, even with several collectors on one
    ///   PostgreSQL database). Comments (`: keepalive`) at least every 15 s; a comment may carry an
    ///   `id:` line when the cursor moved past events that did not match, so a reconnect resumes
    ///   after them.
    /// - At most `CollectorConfiguration.maxTailStreams` streams at a time: beyond that,
    ///   503 `too_many_streams` with `Retry-After`.
    static func addLiveTail(to router: Router<CollectorRequestContext>, collector: Collector, reader: ReadAuthorization)
    {
        router.get("/v1/events/stream") { request, context -> Response in
            try reader.check(request, context)
            let settings = try streamSettings(request)
            guard let store = collector.store as? any EventStore & CommitOrderProbing else {
                throw CollectorError(.storeFailure, "this collector's store cannot be tailed")
            }
            guard let slot = collector.liveTail.acquire(maximum: collector.configuration.maxTailStreams) else {
                var response = try json(
                    CollectorError.Body(
                        error: "too_many_streams",
                        message:
                            "this collector serves at most \(collector.configuration.maxTailStreams) live tails at a time; retry later"
                    ),
                    status: .serviceUnavailable
                )
                response.headers[.retryAfter] = "5"
                return response
            }
            let logger = context.logger
            var headers = HTTPFields()
            headers[.contentType] = "text/event-stream"
            headers[.cacheControl] = "no-cache"
            headers[.init("X-Accel-Buffering")!] = "no"
            return Response(
                status: .ok,
                headers: headers,
                body: ResponseBody { writer in
                    defer { slot.release() }
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    do {
                        try await collector.liveTail.run(store: store, settings: settings, logger: logger) { chunk in
                            try await writer.write(ByteBuffer(bytes: try LiveTail.encode(chunk, encoder: encoder)))
                        }
                    } catch {
                        // The client left (the write failed) or the store failed: either way the
                        // stream is over; a client resumes with Last-Event-ID.
                        logger.debug("live tail ended", metadata: ["error": "\(error)"])
                    }
                    try await writer.finish(nil)
                }
            )
        }
    }

    /// The stream's filters and settings from the query string and `Last-Event-ID`.
    static func streamSettings(_ request: Request) throws(CollectorError) -> LiveTail.StreamSettings {
        let params = request.uri.queryParameters
        let pageOnly = ["limit", "order", "before"]
        let known = EventQuery.parameterNames.filter { !pageOnly.contains($0) } + streamOnlyParameters
        for (key, _) in params where !known.contains(String(key)) {
            throw CollectorError(
                .badRequest,
                key == "limit"
                    ? "limit: a stream has no page size (use /v1/events for pages)"
                    : pageOnly.contains(String(key))
                        ? "\(key): a stream is always oldest first (use /v1/events for newest-first pages)"
                        : "unknown query parameter '\(key)'; known: \(known.sorted().joined(separator: ", "))"
            )
        }
        let query: EventQuery
        do {
            query = try EventQuery.parse(
                params.lazy.filter { !streamOnlyParameters.contains(String($0.key)) }.map {
                    (key: $0.key, value: $0.value)
                },
                maxLimit: 1
            )
        } catch {
            throw CollectorError(.badRequest, error.message)
        }
        var settings = LiveTail.StreamSettings(query: query, start: query.after)
        if let header = request.headers[.init("Last-Event-ID")!] {
            guard let id = Int64(header.trimmingCharacters(in: CharacterSet.whitespaces)), id >= 0 else {
                throw CollectorError(.badRequest, "Last-Event-ID: must be a storage id this stream sent")
            }
            settings.start = id
        }
        if let text = params.get("timeout") {
            guard let seconds = Int(text), (1...maxStreamTimeout).contains(seconds) else {
                throw CollectorError(
                    .badRequest,
                    "timeout: must be an integer number of seconds from 1 to \(maxStreamTimeout)"
                )
            }
            settings.duration = .seconds(seconds)
        }
        return settings
    }
}
