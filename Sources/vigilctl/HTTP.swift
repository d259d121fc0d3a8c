import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat

/// GETs a collector URL and returns the JSON body, turning refusals into readable errors.
/// Sends `VIGIL_API_TOKEN` from the environment as a bearer token when set.
func getJSON(_ url: String) async throws -> Data {
    let client = HTTPClient(eventLoopGroupProvider: .singleton)
    do {
        var request = HTTPClientRequest(url: url)
        if let token = ProcessInfo.processInfo.environment["VIGIL_API_TOKEN"], !token.isEmpty {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        let response = try await client.execute(request, timeout: .seconds(30))
        let body = Data(buffer: try await response.body.collect(upTo: 256 << 20))
        try await client.shutdown()
        guard response.status.code == 200 else {
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
