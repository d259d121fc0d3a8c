import AsyncHTTPClient
import NIOCore
import NIOSSL

/// A `collector.tls` setting that cannot be used: names the setting and the file.
public struct CollectorTLSError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension AgentConfiguration.CollectorTLS {
    /// The TLS client configuration: TLS 1.2 or later, the collector's certificate checked
    /// against `caFile` only (or the system's roots) and for the URL's host name, the agent's
    /// certificate presented when set. Files are read now, so a missing or unreadable file is
    /// an error at start-up that names it, not a handshake failure later.
    /// - Parameter names: how errors name the three settings (vigilctl reads them from its
    ///   environment).
    public func makeClientConfiguration(
        names: (ca: String, certificate: String, key: String) = (
            "collector.tls.ca_file", "collector.tls.client_cert", "collector.tls.client_key"
        )
    ) throws(CollectorTLSError) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .fullVerification
        if let caFile {
            let roots = try Self.certificates(caFile, names.ca)
            configuration.trustRoots = .certificates(roots)
        }
        if let clientCertificate, let clientKey {
            configuration.certificateChain = try Self.certificates(clientCertificate, names.certificate)
                .map { .certificate($0) }
            do {
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: clientKey, format: .pem))
            } catch {
                throw CollectorTLSError("\(names.key): cannot read a PEM private key from \(clientKey): \(error)")
            }
        }
        return configuration
    }

    static func certificates(_ path: String, _ setting: String) throws(CollectorTLSError) -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw CollectorTLSError("\(setting): cannot read PEM certificates from \(path): \(error)")
        }
        guard !certificates.isEmpty else { throw CollectorTLSError("\(setting): \(path) holds no PEM certificate") }
        return certificates
    }
}

extension CollectorClient {
    /// `makeHTTPClient()` with the agent's `collector.tls` settings.
    public static func makeHTTPClient(tls: AgentConfiguration.CollectorTLS?) throws(CollectorTLSError) -> HTTPClient {
        guard let tls else { return makeHTTPClient() }
        var configuration = baseHTTPConfiguration()
        configuration.tlsConfiguration = try tls.makeClientConfiguration()
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// Says what a TLS failure means for the operator, keeping the library's words.
    static func describe(_ error: any Error) -> String {
        if let ssl = error as? NIOSSLError {
            return
                "TLS handshake with the collector failed (check collector.tls and the collector's certificate): \(ssl)"
        }
        if let ssl = error as? NIOSSLExtraError {
            return
                "TLS handshake with the collector failed (check collector.tls and the collector's certificate): \(ssl)"
        }
        if let ssl = error as? BoringSSLError {
            return "TLS with the collector failed (check collector.tls and the collector's certificate): \(ssl)"
        }
        return "\(error)"
    }
}
