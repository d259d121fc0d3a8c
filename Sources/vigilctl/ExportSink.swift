import AsyncHTTPClient
import Foundation
import Glibc
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL

/// Where `vigilctl export` writes its lines: a file, standard output, or an HTTP endpoint that
/// takes them as POSTed newline-delimited bodies (Vector's `http_server` source, Fluent Bit's
/// `http` input, any log shipper's HTTP receiver).
enum ExportSink {
    case file(FileHandle, closeAtEnd: Bool)
    case http(HTTPExportEndpoint)

    /// Opens `output`: `-` is standard output, an `http://` or `https://` URL an endpoint,
    /// anything else a file appended to (created 0640).
    static func open(
        _ output: String,
        headers: [String],
        caFile: String?,
        contentType: String,
        retryForever: Bool
    ) throws -> ExportSink {
        if HTTPExportEndpoint.isURL(output) {
            return .http(
                try HTTPExportEndpoint(
                    url: output,
                    headers: headers,
                    caFile: caFile,
                    contentType: contentType,
                    retryForever: retryForever
                )
            )
        }
        guard headers.isEmpty, caFile == nil else {
            throw CommandFailure("--header and --output-ca-file apply to an http:// or https:// --output only")
        }
        guard output != "-" else { return .file(FileHandle.standardOutput, closeAtEnd: false) }
        let fd = Glibc.open(output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw CommandFailure("cannot open \(output): \(String(cString: strerror(errno)))")
        }
        return .file(FileHandle(fileDescriptor: fd, closeOnDealloc: true), closeAtEnd: true)
    }

    /// Writes one page of lines (each ending in a newline). Returns once they are on disk or
    /// the endpoint has answered 2xx: the caller moves its cursor on only then.
    func write(_ text: String) async throws {
        switch self {
        case .file(let handle, _): try handle.write(contentsOf: Data(text.utf8))
        case .http(let endpoint): try await endpoint.post(text)
        }
    }

    func close() async throws {
        switch self {
        case .file(let handle, let closeAtEnd): if closeAtEnd { try handle.close() }
        case .http(let endpoint): try await endpoint.shutdown()
        }
    }
}

/// An HTTP endpoint for exported lines. Each page goes as one POST; a page is sent again until
/// the endpoint accepts it, so nothing is skipped: connection failures, timeouts, 408, 429 and
/// 5xx are retried with exponential backoff (1 s doubling to 30 s, honouring Retry-After) —
/// forever with `--follow`, else up to `attempts` times. Any other answer (a 4xx: wrong URL,
/// credentials or format) stops the export at once, with the endpoint's reason.
final class HTTPExportEndpoint: Sendable {
    let url: String
    let headers: HTTPHeaders
    let retryForever: Bool
    let client: HTTPClient
    static let attempts = 5
    static let maxBackoff = 30.0

    static func isURL(_ text: String) -> Bool {
        let lower = text.lowercased()
        return lower.hasPrefix("http://") || lower.hasPrefix("https://")
    }

    init(url: String, headers: [String], caFile: String?, contentType: String, retryForever: Bool) throws {
        guard let parsed = URL(string: url), let host = parsed.host, !host.isEmpty else {
            throw CommandFailure("--output: '\(url)' is not a URL like https://siem.example:8080/vigil")
        }
        var fields = HTTPHeaders()
        fields.add(name: "Content-Type", value: contentType)
        for header in headers {
            guard let colon = header.firstIndex(of: ":") else {
                throw CommandFailure("--header: '\(header)' is not 'Name: value'")
            }
            let name = header[..<colon].trimmingCharacters(in: .whitespaces)
            let value = header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            let token = CharacterSet(charactersIn: "!#$%&'*+-.^_`|~").union(.alphanumerics)
            guard !name.isEmpty, name.unicodeScalars.allSatisfy({ token.contains($0) && $0.isASCII }) else {
                throw CommandFailure("--header: '\(name)' is not a header name")
            }
            guard !value.contains(where: { $0 == "\r" || $0 == "\n" }) else {
                throw CommandFailure("--header: the value of '\(name)' has a line break")
            }
            if name.lowercased() == "content-type" { fields.remove(name: "Content-Type") }
            fields.add(name: name, value: value)
        }
        var configuration = HTTPClient.Configuration()
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: .seconds(10), read: .seconds(60))
        if let caFile {
            guard parsed.scheme?.lowercased() == "https" else {
                throw CommandFailure("--output-ca-file is for an https:// --output")
            }
            var tls = TLSConfiguration.makeClientConfiguration()
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw CommandFailure("--output-ca-file \(caFile): not a readable PEM certificate file (\(error))")
            }
            configuration.tlsConfiguration = tls
        }
        self.url = url
        self.headers = fields
        self.retryForever = retryForever
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// What one POST of a page came to.
    enum Outcome {
        /// A 2xx: the page is delivered.
        case accepted
        /// No connection, a timeout, 408, 429 or 5xx: worth sending again, after the wait the
        /// endpoint asked for (Retry-After, seconds) if it did.
        case retry(reason: String, after: Double?)
        /// Any other answer: sending again would not help.
        case stop(reason: String)
    }

    /// Sends a page once and classifies the answer; a transport failure is a `.retry`.
    func send(_ text: String) async -> Outcome {
        do {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers = headers
            request.body = .bytes(ByteBuffer(string: text))
            let response = try await client.execute(request, timeout: .seconds(60))
            let body = try await response.body.collect(upTo: 64 << 10)
            let code = response.status.code
            if (200..<300).contains(code) { return .accepted }
            let reason = String(buffer: body).prefix(300).trimmingCharacters(in: .whitespacesAndNewlines)
            let failure =
                "\(url) answered \(code) \(response.status.reasonPhrase)" + (reason.isEmpty ? "" : ": \(reason)")
            guard code == 408 || code == 429 || code >= 500 else { return .stop(reason: failure) }
            let retryAfter = response.headers.first(name: "Retry-After").flatMap(Double.init)
            return .retry(reason: failure, after: retryAfter.flatMap { $0 >= 0 ? $0 : nil })
        } catch {
            return .retry(reason: "cannot reach \(url): \(error)", after: nil)
        }
    }

    /// Sends a page until the endpoint accepts it, or it refuses it for good, or the attempts
    /// run out (never with `retryForever`); says on standard error why it sends again.
    func post(_ text: String) async throws {
        var attempt = 0
        var backoff = 1.0
        while true {
            attempt += 1
            let failure: String
            let retryAfter: Double?
            switch await send(text) {
            case .accepted: return
            case .stop(let reason): throw CommandFailure("export stopped: \(reason)")
            case .retry(let reason, let after): (failure, retryAfter) = (reason, after)
            }
            guard retryForever || attempt < Self.attempts else {
                throw CommandFailure("export stopped after \(attempt) attempts: \(failure)")
            }
            let wait = retryAfter.map { min($0, Self.maxBackoff) } ?? backoff
            FileHandle.standardError.write(
                Data("vigilctl export: \(failure); sending again in \(Int(wait.rounded(.up))) s\n".utf8)
            )
            try await Task.sleep(for: .seconds(wait))
            backoff = min(backoff * 2, Self.maxBackoff)
        }
    }

    func shutdown() async throws {
        try await client.shutdown()
    }
}
