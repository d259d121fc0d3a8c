import ArgumentParser
import AsyncHTTPClient
import Dispatch
import Foundation
import NIOCore
import Synchronization
import VigilCollector
import VigilCore

struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Follow events as a collector stores them (GET /v1/events/stream).",
        discussion: """
            Prints each new event that matches the filters, as `vigilctl events` does, until \
            interrupted (SIGINT or SIGTERM: exit status 0). Events stored through other \
            collectors on the same PostgreSQL database are included. When the connection drops, \
            vigilctl says so on stderr and reconnects with backoff, resuming after the last event \
            it printed: nothing twice, nothing lost.

            Examples:
              vigilctl tail --collector http://127.0.0.1:8443
              vigilctl tail --collector http://127.0.0.1:8443 --type alert --min-level high
              vigilctl tail --collector http://127.0.0.1:8443 --agent 3f2c... --json | jq .
            """
    )

    @OptionGroup var filters: EventFilterOptions

    @Option(
        help: ArgumentHelp(
            "Start after this storage id (an `id` from `vigilctl events --json`) instead of now.",
            valueName: "id"
        )
    )
    var after: Int64?

    @Flag(help: "Print one JSON object per line (the events' JSON as `vigilctl events --json` prints it).")
    var json = false

    func validate() throws {
        if let after, after < 0 { throw ValidationError("--after must be a storage id (0 or more)") }
    }

    func run() async throws {
        var params = try filters.query.parameters()
        if let type = filters.type { params.append(("type", type)) }
        let url =
            try collectorBase(filters.query.collector) + "/v1/events/stream"
            + (params.isEmpty ? "" : "?" + params.map { "\($0.0)=\(percentEncode($0.1))" }.joined(separator: "&"))
        let follower = TailFollower(url: url, json: json, start: after)
        let task = Task { try await follower.run() }
        let signals = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { task.cancel() }
            source.resume()
            return source
        }
        defer { for source in signals { source.cancel() } }
        do {
            try await task.value
        } catch is CancellationError {
            // Interrupted: a clean end.
        }
    }
}

/// Reads the live tail and reconnects after it, resuming with `Last-Event-ID`.
struct TailFollower: Sendable {
    let url: String
    let json: Bool
    let start: Int64?

    /// Longest wait between reconnection attempts.
    static let maxBackoff: Duration = .seconds(30)

    func run() async throws {
        let client = try makeCollectorHTTPClient()
        do {
            try await follow(client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    private func follow(_ client: HTTPClient) async throws {
        var lastId = start
        var backoff: Duration = .seconds(1)
        while true {
            try Task.checkCancellation()
            let reason: String
            do {
                let delivered = try await stream(client, lastId: &lastId)
                if delivered { backoff = .seconds(1) }
                reason = "the collector ended the stream"
            } catch let error as CommandFailure {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch let error as RetryableRefusal {
                reason = error.message
            } catch {
                if Task.isCancelled { throw CancellationError() }
                reason = "connection lost (\(error))"
            }
            let resume = lastId.map { "after event \($0)" } ?? "from now"
            FileHandle.standardError.write(
                Data(
                    "vigilctl tail: \(reason); reconnecting in \(backoff.components.seconds) s, resuming \(resume)\n"
                        .utf8
                )
            )
            try await Task.sleep(for: backoff)
            backoff = min(backoff * 2, Self.maxBackoff)
        }
    }

    struct RetryableRefusal: Error {
        var message: String
    }

    /// One connection. Returns whether the stream got as far as its first chunk.
    private func stream(_ client: HTTPClient, lastId: inout Int64?) async throws -> Bool {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "text/event-stream")
        if let token = ProcessInfo.processInfo.environment["VIGIL_API_TOKEN"], !token.isEmpty {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        if let lastId { request.headers.add(name: "Last-Event-ID", value: String(lastId)) }
        // The deadline covers connecting and the response head only; the body streams on.
        let response = try await client.execute(request, deadline: .now() + .seconds(10))
        guard response.status.code == 200 else {
            let body = Data(buffer: try await response.body.collect(upTo: 64 << 10))
            let json = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
            let message = json?["message"] as? String ?? String(decoding: body.prefix(500), as: UTF8.self)
            if response.status.code == 503 || response.status.code >= 500 {
                throw RetryableRefusal(message: "collector answered \(response.status.code): \(message)")
            }
            throw CommandFailure("collector answered \(response.status.code): \(message)")
        }
        let progress = StreamProgress(lastId: lastId)
        defer { lastId = progress.lastId }
        let json = self.json
        let watchdog = Watchdog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var parser = ServerSentEvents()
                let decoder = JSONDecoder()
                for try await buffer in response.body {
                    watchdog.touch()
                    progress.started()
                    for message in parser.feed(Array(buffer: buffer)) {
                        if let id = message.id.flatMap({ Int64($0) }) { progress.lastId = id }
                        guard !message.data.isEmpty else { continue }
                        if json {
                            emit(message.data)
                        } else {
                            let stored = try decoder.decode(StoredEvent.self, from: Data(message.data.utf8))
                            emit(EventFormatter.line(stored.event, agentId: stored.agentId))
                        }
                    }
                }
            }
            group.addTask {
                // The collector sends a comment at least every 15 s: 45 s of silence is a dead
                // connection.
                while try await watchdog.idle(for: .seconds(45)) == false {}
                throw RetryableRefusal(message: "no data from the collector for 45 s")
            }
            try await group.next()
            group.cancelAll()
        }
        return progress.hasStarted
    }
}

/// Writes one line to stdout at once: a pipe or file sees each event as it comes, not when a
/// buffer fills.
private func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// What one connection got: the last event id (`Last-Event-ID` for the next one) and whether
/// any bytes came.
final class StreamProgress: Sendable {
    private let state: Mutex<(lastId: Int64?, started: Bool)>

    init(lastId: Int64?) { state = Mutex((lastId, false)) }

    var lastId: Int64? {
        get { state.withLock { $0.lastId } }
        set { state.withLock { $0.lastId = newValue } }
    }
    var hasStarted: Bool { state.withLock { $0.started } }
    func started() { state.withLock { $0.started = true } }
}

/// When the stream last delivered bytes.
final class Watchdog: Sendable {
    private let last = Mutex(ContinuousClock.now)

    func touch() { last.withLock { $0 = .now } }

    /// Sleeps until `limit` after the last touch; true when nothing came in that time.
    func idle(for limit: Duration) async throws -> Bool {
        let due = last.withLock { $0 } + limit
        try await Task.sleep(until: due)
        return ContinuousClock.now - last.withLock({ $0 }) >= limit
    }
}

/// A server-sent events parser (the WHATWG event-stream format): feed bytes, get messages.
struct ServerSentEvents {
    struct Message {
        /// The last event id as of this message (`id:` lines persist, as in the standard).
        var id: String?
        var data: String
    }

    private var pending: [UInt8] = []
    private var data: [String] = []
    private var lastId: String? = nil
    private var sawId = false

    mutating func feed(_ bytes: [UInt8]) -> [Message] {
        pending += bytes
        var messages: [Message] = []
        while let newline = pending.firstIndex(where: { $0 == 0x0A || $0 == 0x0D }) {
            var line = String(decoding: pending[..<newline], as: UTF8.self)
            var next = newline + 1
            if pending[newline] == 0x0D, next < pending.count, pending[next] == 0x0A { next += 1 }
            // A lone CR at the very end may be half of CRLF: wait for more.
            if pending[newline] == 0x0D, next == pending.count { break }
            pending.removeFirst(next)
            if line.isEmpty {
                if sawId || !data.isEmpty {
                    messages.append(Message(id: lastId, data: data.joined(separator: "\n")))
                }
                data = []
                sawId = false
                continue
            }
            if line.hasPrefix(":") { continue }
            var value = ""
            if let colon = line.firstIndex(of: ":") {
                value = String(line[line.index(after: colon)...])
                if value.hasPrefix(" ") { value.removeFirst() }
                line = String(line[..<colon])
            }
            switch line {
            case "data": data.append(value)
            case "id" where !value.contains("\0"):
                lastId = value
                sawId = true
            default: break
            }
        }
        return messages
    }
}
