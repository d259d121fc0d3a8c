import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import VigilLinux

/// The agent's Prometheus endpoint: `GET /metrics` (and `HEAD`) on the socket `metrics_listen`
/// names, 404 for other paths, 405 for other methods. One request per connection, answered
/// with `Connection: close`; a connection that sends no complete request within
/// `requestTimeout` is closed.
///
/// The socket is bound and listening before the sandbox (`Agent.prepare`); the sandbox allows
/// `listen` on it only, which swift-nio repeats when it adopts the descriptor. Serving needs
/// nothing else the sandbox refuses (`accept4`, `epoll`, `read`/`write` are allowed).
enum MetricsServer {
    static let requestTimeout: Duration = .seconds(10)

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    /// Serves until graceful shutdown; logs and returns if the socket cannot be adopted.
    static func serve(listener: TCPListener, metrics: AgentMetrics, logger: Logger) async {
        guard let fd = listener.take() else { return }
        do {
            let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(fd) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        return try Connection(wrappingChannelSynchronously: channel)
                    }
                }
            logger.info("serving metrics", metadata: ["port": "\(listener.port)"])
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { connections in
                    for try await connection in connections.cancelOnGracefulShutdown() {
                        group.addTask { await handle(connection, metrics: metrics) }
                    }
                }
            }
        } catch {
            logger.error("metrics endpoint stopped", metadata: ["error": "\(error)"])
        }
    }

    /// Answers one request, or gives up after `requestTimeout`.
    private static func handle(_ connection: Connection, metrics: AgentMetrics) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await answer(connection, metrics: metrics) }
            group.addTask { try? await Task.sleep(for: requestTimeout) }
            await group.next()
            group.cancelAll()
        }
    }

    private static func answer(_ connection: Connection, metrics: AgentMetrics) async throws {
        try await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            for try await part in inbound {
                switch part {
                case .head(let h): head = h
                case .body: continue
                case .end:
                    guard let head else { return }
                    let (status, contentType, body, extra) = response(to: head, metrics: metrics)
                    var headers = HTTPHeaders([
                        ("Content-Type", contentType), ("Content-Length", String(body.count)), ("Connection", "close"),
                    ])
                    headers.add(contentsOf: extra)
                    try await outbound.write(
                        .head(HTTPResponseHead(version: head.version, status: status, headers: headers))
                    )
                    if head.method != .HEAD, !body.isEmpty {
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                    }
                    try await outbound.write(.end(nil))
                    return
                }
            }
        }
    }

    static func response(
        to head: HTTPRequestHead,
        metrics: AgentMetrics
    ) -> (HTTPResponseStatus, String, [UInt8], [(String, String)]) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/metrics" else {
            return (
                .notFound, "text/plain; charset=utf-8", Array("not found: the agent serves GET /metrics\n".utf8), []
            )
        }
        guard head.method == .GET || head.method == .HEAD else {
            return (
                .methodNotAllowed, "text/plain; charset=utf-8", Array("only GET and HEAD\n".utf8),
                [("Allow", "GET, HEAD")]
            )
        }
        return (.ok, AgentMetrics.contentType, metrics.exposition(), [])
    }
}
