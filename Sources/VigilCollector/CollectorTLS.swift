import NIOSSL

/// The collector's certificate files (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
public struct CollectorTLSFiles: Sendable, Hashable {
    /// PEM certificate chain, the collector's own certificate first.
    public var certificateChain: String
    /// PEM private key of that certificate.
    public var privateKey: String
    /// PEM CA certificates client certificates must chain to: set, every client (agents and
    /// readers alike) must present one — mutual TLS.
    public var clientCA: String?

    public init(certificateChain: String, privateKey: String, clientCA: String? = nil) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.clientCA = clientCA
    }

    /// A file that cannot be used, named with its option.
    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public var message: String
        public var description: String { message }
    }

    /// TLS 1.2 or later with the given certificate; with `clientCA`, a client certificate
    /// chaining to it is required. Reads and checks the files now (the key must match the
    /// certificate), so a mistake stops the collector at start with the file named.
    public func makeServerConfiguration() throws(LoadError) -> TLSConfiguration {
        let chain = try Self.certificates(certificateChain, "--tls-cert")
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: privateKey, format: .pem)
        } catch {
            throw LoadError(message: "--tls-key: cannot read a PEM private key from \(privateKey): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        if let clientCA {
            configuration.trustRoots = .certificates(try Self.certificates(clientCA, "--tls-client-ca"))
            // Client certificates name agents, not hosts: the chain is checked, not a host name.
            configuration.certificateVerification = .noHostnameVerification
        }
        do {
            // Building the context checks that the key belongs to the certificate.
            _ = try NIOSSLContext(configuration: configuration)
        } catch {
            throw LoadError(
                message: "--tls-cert/--tls-key: \(certificateChain) and \(privateKey) cannot be used together: \(error)"
            )
        }
        return configuration
    }

    static func certificates(_ path: String, _ option: String) throws(LoadError) -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw LoadError(message: "\(option): cannot read PEM certificates from \(path): \(error)")
        }
        guard !certificates.isEmpty else { throw LoadError(message: "\(option): \(path) holds no PEM certificate") }
        return certificates
    }
}
