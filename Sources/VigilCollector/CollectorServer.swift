import Hummingbird
import Logging
import NIOCore

/// Builds the collector's HTTP application (a swift-service-lifecycle `Service`).
public enum CollectorServer {
    /// - Parameter onListening: called with the bound port once the server accepts connections
    ///   (useful with port 0).
    public static func makeApplication(
        collector: Collector,
        logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let config = collector.configuration
        return Application(
            router: CollectorHTTP.router(collector: collector),
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
