import AsyncHTTPClient
import Crypto
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
        if !pinnedKeys.isEmpty, caFile == nil {
            // The pin is the trust: no CA vouches for the certificate, so the chain and name are
            // not checked, and `PinnedKeyCheck` refuses every connection whose leaf key is not
            // pinned before anything is sent on it.
            configuration.certificateVerification = .none
        }
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

    /// A certificate's pin: SHA-256 of its DER SubjectPublicKeyInfo (`vigilctl tls-pin`).
    public static func pin(of certificate: NIOSSLCertificate) throws -> [UInt8] {
        Array(SHA256.hash(data: try certificate.extractPublicKey().toSPKIBytes()))
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

/// The collector's certificate does not carry a pinned key (`collector.tls.pin_sha256`).
public struct CollectorPinMismatch: Error, CustomStringConvertible, Sendable {
    /// Pins of the configuration, in curl's `sha256//BASE64` form.
    public var expected: [String]
    /// The pin of the key the collector presented; nil when it presented no certificate.
    public var got: String?
    public var description: String {
        "the collector's certificate key is \(got ?? "absent (no certificate)"), not a pinned key (collector.tls.pin_sha256: \(expected.joined(separator: ", "))); nothing was sent"
    }
}

/// Public-key pinning on AsyncHTTPClient's connections.
///
/// AsyncHTTPClient builds the TLS handler itself and takes no verification callback, but it runs
/// `http1_1ConnectionDebugInitializer` / `http2ConnectionDebugInitializer` on every new
/// connection after the handshake and before the pool hands the connection to any request; a
/// failed future fails the connection. The check therefore reads the certificate of the very
/// connection that would carry the request (no second connection, no time-of-check gap), and a
/// mismatch means not a byte of any request is written.
enum PinnedKeyCheck {
    static func install(pins: [[UInt8]], on configuration: inout HTTPClient.Configuration) {
        let check: @Sendable (any Channel) -> EventLoopFuture<Void> = { channel in
            channel.nioSSL_peerCertificate().flatMapThrowing { certificate in
                try verify(certificate, pins: pins)
            }
        }
        configuration.http1_1ConnectionDebugInitializer = check
        configuration.http2ConnectionDebugInitializer = check
        // A refused connection fails its request at once (the shipper retries with backoff)
        // instead of the pool trying again until the request's deadline.
        configuration.connectionPool.retryConnectionEstablishment = false
    }

    static func verify(_ certificate: NIOSSLCertificate?, pins: [[UInt8]]) throws {
        let got = try certificate.map(AgentConfiguration.CollectorTLS.pin(of:))
        guard let got, pins.contains(got) else {
            throw CollectorPinMismatch(
                expected: pins.map(AgentConfiguration.CollectorTLS.describePin),
                got: got.map(AgentConfiguration.CollectorTLS.describePin)
            )
        }
    }
}

extension CollectorClient {
    /// `makeHTTPClient()` with the agent's `collector.tls` settings.
    public static func makeHTTPClient(tls: AgentConfiguration.CollectorTLS?) throws(CollectorTLSError) -> HTTPClient {
        guard let tls else { return makeHTTPClient() }
        var configuration = baseHTTPConfiguration()
        configuration.tlsConfiguration = try tls.makeClientConfiguration()
        if !tls.pinnedKeys.isEmpty { PinnedKeyCheck.install(pins: tls.pinnedKeys, on: &configuration) }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// Says what a TLS failure means for the operator, keeping the library's words.
    static func describe(_ error: any Error) -> String {
        if let pin = error as? CollectorPinMismatch {
            return "TLS with the collector refused: \(pin)"
        }
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
