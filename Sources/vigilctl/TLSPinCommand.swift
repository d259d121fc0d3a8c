import ArgumentParser
import Foundation
import NIOSSL
import VigilAgent

struct TLSPinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls-pin",
        abstract: "Print the pin of a collector certificate, for collector.tls.pin_sha256 in vigild.yaml.",
        discussion: """
            The pin is the SHA-256 of the certificate's DER SubjectPublicKeyInfo, in curl's
            sha256//BASE64 form: the same as
              openssl x509 -in CERT -pubkey -noout | openssl pkey -pubin -outform der \\
                | openssl dgst -sha256 -binary | base64
            It stays the same when the certificate is renewed with the same key. With several
            certificates in the file (a chain), one line each, the leaf first.
            Example: vigilctl tls-pin /etc/vigil/collector.crt
            """
    )

    @Argument(help: ArgumentHelp("A PEM (or DER) certificate file.", valueName: "cert"))
    var certificate: String

    func run() throws {
        var certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(certificate)
        } catch {
            certificates = []
        }
        if certificates.isEmpty, let der = try? NIOSSLCertificate.fromDERFile(certificate) {
            certificates = [der]
        }
        guard !certificates.isEmpty else { throw CommandFailure("\(certificate): no PEM or DER certificate in it") }
        for cert in certificates {
            do {
                print(AgentConfiguration.CollectorTLS.describePin(try AgentConfiguration.CollectorTLS.pin(of: cert)))
            } catch {
                throw CommandFailure("\(certificate): cannot read the certificate's public key: \(error)")
            }
        }
    }
}
