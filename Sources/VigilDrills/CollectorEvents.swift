import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import VigilCollector
import VigilCore

/// Reads newly stored events from a collector's query API (`GET /v1/events`), page by page,
/// remembering the cursor so each call returns only what arrived since the last.
final class CollectorEvents: @unchecked Sendable {
    let base: String
    let client: HTTPClient
    let apiToken: String?
    let since: Timestamp
    let types: [EventType]
    /// Only touched by the one task that polls.
    private var cursor: Int64?

    init(base: String, client: HTTPClient, apiToken: String?, since: Timestamp, types: [EventType]) {
        self.base = base
        self.client = client
        self.apiToken = apiToken
        self.since = since
        self.types = types
    }

    struct Page: Decodable {
        var events: [StoredEvent]
        var next_cursor: Int64?
    }

    /// Events stored since the previous call (all of them on the first).
    func next() async throws -> [StoredEvent] {
        var all: [StoredEvent] = []
        while true {
            var query = [
                "type=" + types.map(\.rawValue).joined(separator: ","),
                "since=" + String(format: "%.6f", since.secondsSinceEpoch),
                "limit=1000",
            ]
            if let cursor { query.append("after=\(cursor)") }
            var request = HTTPClientRequest(url: base + "/v1/events?" + query.joined(separator: "&"))
            if let apiToken, !apiToken.isEmpty {
                request.headers.add(name: "Authorization", value: "Bearer \(apiToken)")
            }
            let response: HTTPClientResponse
            let body: Data
            do {
                response = try await client.execute(request, timeout: .seconds(10))
                body = Data(buffer: try await response.body.collect(upTo: 64 << 20))
            } catch {
                throw DrillError("cannot reach the collector at \(base): \(error)")
            }
            guard response.status.code == 200 else {
                let json = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
                let message = json?["message"] as? String ?? String(decoding: body.prefix(300), as: UTF8.self)
                let hint = response.status.code == 401 ? " (set VIGIL_API_TOKEN)" : ""
                throw DrillError("the collector at \(base) answered \(response.status.code): \(message)\(hint)")
            }
            let page: Page
            do {
                page = try JSONDecoder().decode(Page.self, from: body)
            } catch {
                throw DrillError("the collector at \(base) sent an unreadable event page: \(error)")
            }
            all += page.events
            if let last = page.events.last?.id { cursor = last }
            guard page.events.count == 1000 else { return all }
        }
    }
}

extension Event {
    /// The texts a drill's evidence is looked for in: paths, command lines, directories.
    var drillTexts: [String] {
        switch payload {
        case .file(let f): [f.targetFilename, f.sourceFilename].compactMap { $0 }
        case .process(let p): [p.image, p.commandLine, p.currentDirectory].compactMap { $0 }
        case .flow(let f): [f.image].compactMap { $0 }
        case .alert, .health, .gap: []
        }
    }
}
