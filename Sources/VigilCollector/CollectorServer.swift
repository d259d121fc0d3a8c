import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore

/// Builds the collector's HTTP application (a swift-service-lifecycle `Service`).
/// The request context of every collector route: Hummingbird's basics plus the client's address
/// (read routes without an API token answer loopback clients only).
public struct CollectorRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// 127.0.0.0/8, ::1 and IPv4-mapped loopback; Unix sockets count as local.
    public var isLoopbackClient: Bool {
        guard let remoteAddress else { return false }
        switch remoteAddress {
        case .unixDomainSocket: return true
        case .v4(let address): return UInt32(bigEndian: address.address.sin_addr.s_addr) >> 24 == 127
        case .v6:
            let ip = remoteAddress.ipAddress ?? ""
            return ip == "::1" || ip.hasPrefix("::ffff:127.")
        }
    }
}

public enum CollectorServer {
    /// - Parameter onListening: called with the bound port once the server accepts connections
    ///   (useful with port 0).
    public static func makeApplication(
        collector: Collector,
        logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        let config = collector.configuration
        let server: HTTPServerBuilder =
            if let tls = config.tls { try .tls(.http1(), tlsConfiguration: tls) } else { .http1() }
        return Application(
            router: CollectorHTTP.router(collector: collector),
            server: server,
            configuration: ApplicationConfiguration(
                address: .hostname(config.host, port: config.port),
                serverName: "vigil-collector"
            ),
            onServerRunning: { channel in
                await onListening(channel.localAddress?.port ?? config.port)
            },
            logger: logger
        )
    }
}
