import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import VigilAgent

/// An HTTP client for the collector: with `VIGIL_CA_FILE` the collector's certificate must chain
/// to that CA; with `VIGIL_CLIENT_CERT` and `VIGIL_CLIENT_KEY` vigilctl presents that certificate
/// (a collector started with --tls-client-ca requires one).
func makeCollectorHTTPClient() throws -> HTTPClient {
    let environment = ProcessInfo.processInfo.environment
    func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
    let tls = AgentConfiguration.CollectorTLS(
        caFile: value("VIGIL_CA_FILE"),
        clientCertificate: value("VIGIL_CLIENT_CERT"),
        clientKey: value("VIGIL_CLIENT_KEY")
    )
    guard tls != AgentConfiguration.CollectorTLS() else { return HTTPClient(eventLoopGroupProvider: .singleton) }
    guard (tls.clientCertificate == nil) == (tls.clientKey == nil) else {
        throw CommandFailure("VIGIL_CLIENT_CERT and VIGIL_CLIENT_KEY go together")
    }
    var configuration = HTTPClient.Configuration()
    do {
        configuration.tlsConfiguration = try tls.makeClientConfiguration(
            names: ("VIGIL_CA_FILE", "VIGIL_CLIENT_CERT", "VIGIL_CLIENT_KEY")
        )
    } catch {
        throw CommandFailure(error.message)
    }
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
}

/// GETs a collector URL and returns the JSON body, turning refusals into readable errors.
/// Sends `VIGIL_API_TOKEN` from the environment as a bearer token when set.
func getJSON(_ url: String) async throws -> Data {
    try await requestJSON(url, method: .GET)
}

/// Sends a request (bodiless, or with a JSON `body`) to a collector URL and returns the JSON
/// body of a 2xx answer, as `getJSON`.
func requestJSON(_ url: String, method: HTTPMethod, body: Data? = nil) async throws -> Data {
    let client = try makeCollectorHTTPClient()
    do {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        if let token = ProcessInfo.processInfo.environment["VIGIL_API_TOKEN"], !token.isEmpty {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        let response = try await client.execute(request, timeout: .seconds(30))
        let body = Data(buffer: try await response.body.collect(upTo: 256 << 20))
        try await client.shutdown()
        guard (200..<300).contains(response.status.code) else {
            let json = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
            let message = json?["message"] as? String ?? String(decoding: body.prefix(500), as: UTF8.self)
            throw CommandFailure("collector answered \(response.status.code): \(message)")
        }
        return body
    } catch let error as CommandFailure {
        throw error
    } catch {
        try? await client.shutdown()
        throw CommandFailure("cannot reach \(url): \(error)")
    }
}

/// An error printed as `vigilctl: MESSAGE` with exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func percentEncode(_ s: String) -> String {
    s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
}

func collectorBase(_ url: String) throws -> String {
    guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
        throw ValidationError("--collector: '\(url)' must start with http:// or https://")
    }
    return url.hasSuffix("/") ? String(url.dropLast()) : url
}
