import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import Synchronization
import VigilSpool
import VigilWire

/// Talks to the collector: enrollment and batch delivery over HTTP(S).
///
/// With several collectors (on one store), a request that cannot be delivered to one (network
/// trouble, a server error) goes on to the next at once, and the one that answered is used first
/// from then on.
public struct CollectorClient: Sendable {
    /// The collector in use now.
    public var baseURL: String { baseURLs[current.value.load(ordering: .relaxed) % baseURLs.count] }
    public let baseURLs: [String]
    let client: HTTPClient
    let timeout: TimeAmount
    private let current = CurrentIndex()

    private final class CurrentIndex: Sendable {
        let value = Atomic<Int>(0)
    }

    public init(baseURL: String, client: HTTPClient, timeout: TimeAmount = .seconds(30)) {
        self.init(baseURLs: [baseURL], client: client, timeout: timeout)
    }

    /// - Parameter baseURLs: collectors in order of preference; at least one.
    public init(baseURLs: [String], client: HTTPClient, timeout: TimeAmount = .seconds(30)) {
        precondition(!baseURLs.isEmpty, "CollectorClient needs at least one collector URL")
        self.baseURLs = baseURLs
        self.client = client
        self.timeout = timeout
    }

    /// Tries each collector once, starting with the current one, until one gives an answer that
    /// `isFinal` accepts; that collector becomes the current one.
    private func failingOver<R>(_ attempt: (String) async -> R, isFinal: (R) -> Bool) async -> R {
        let start = current.value.load(ordering: .relaxed)
        var result: R? = nil
        for offset in 0..<baseURLs.count {
            let index = (start + offset) % baseURLs.count
            let answer = await attempt(baseURLs[index])
            if isFinal(answer) {
                current.value.store(index, ordering: .relaxed)
                return answer
            }
            result = answer
        }
        // None answered: start with the next one next time.
        current.value.store((start + 1) % baseURLs.count, ordering: .relaxed)
        return result!
    }

    /// What the collector said about a batch.
    public enum Delivery: Sendable, Equatable {
        /// Stored now, or stored before (a resend): either way it can be forgotten.
        case stored(duplicate: Bool, chain: String?)
        /// The collector does not know this agent (enroll, then resend).
        case unknownAgent
        /// Refused for a reason resending will not fix as is.
        case refused(status: Int, error: String, message: String)
        /// Network trouble or a server error: resend later.
        case retry(String)
        /// Over the collector's per-agent batch rate (429 `rate_limited`): resend the same batch
        /// after `retryAfter` (its `Retry-After`), which is no refusal and no failure.
        case rateLimited(retryAfter: Duration)

        /// Refused as too large (413, from the collector or a proxy before it): the shipper
        /// seals the batch again, smaller.
        public var isTooLarge: Bool {
            if case .refused(status: 413, _, _) = self { true } else { false }
        }
    }

    /// An HTTP client set up for talking to collectors: short connect timeout (a collector that
    /// refuses connections is retried by the shipper's backoff, not inside the client).
    public static func makeHTTPClient() -> HTTPClient {
        HTTPClient(eventLoopGroupProvider: .singleton, configuration: baseHTTPConfiguration())
    }

    static func baseHTTPConfiguration() -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: .seconds(3), read: .seconds(30))
        configuration.connectionPool = HTTPClient.Configuration.ConnectionPool(idleTimeout: .seconds(60))
        return configuration
    }

    /// Sends one serialized batch. `timeout` bounds the whole exchange (default: the client's).
    ///
    /// - Parameter previousInFlight: the batch before this one when it was sent just before and
    ///   is unanswered (`BatchTransport.previousBatchHeader`): the collector stores this one
    ///   only after it. Such a send is not failed over: a second collector would wait in vain
    ///   for a predecessor sent to the first.
    public func send(
        batch bytes: [UInt8],
        previousInFlight: UInt64? = nil,
        timeout: TimeAmount? = nil
    ) async -> Delivery {
        if let previousInFlight {
            return await send(batch: bytes, to: baseURL, previousInFlight: previousInFlight, timeout: timeout)
        }
        return await failingOver(
            { url in await send(batch: bytes, to: url, previousInFlight: nil, timeout: timeout) },
            isFinal: { delivery in
                if case .retry = delivery { return false }
                return true
            }
        )
    }

    private func send(
        batch bytes: [UInt8],
        to baseURL: String,
        previousInFlight: UInt64?,
        timeout: TimeAmount?
    ) async -> Delivery {
        var request = HTTPClientRequest(url: baseURL + "/v1/batches")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: BatchTransport.contentType)
        if let previousInFlight {
            request.headers.add(name: BatchTransport.previousBatchHeader, value: String(previousInFlight))
        }
        request.body = .bytes(ByteBuffer(bytes: bytes))
        do {
            let response = try await client.execute(request, timeout: timeout ?? self.timeout)
            let body = try await response.body.collect(upTo: 1 << 20)
            let status = Int(response.status.code)
            let json = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
            switch status {
            case 200..<300:
                return .stored(duplicate: json["status"] as? String == "duplicate", chain: json["chain"] as? String)
            case 401 where json["error"] as? String == "unknown_agent":
                return .unknownAgent
            case 429:
                // Seconds (RFC 9110 also allows an HTTP date; the collector sends seconds). Capped,
                // so a confused proxy cannot park the agent for hours.
                let seconds = response.headers.first(name: "Retry-After").flatMap { Int($0) } ?? 1
                return .rateLimited(retryAfter: .seconds(min(max(seconds, 1), 300)))
            case 400..<500:
                return .refused(
                    status: status,
                    error: json["error"] as? String ?? "http_\(status)",
                    message: json["message"] as? String ?? ""
                )
            default:
                return .retry("collector answered \(status): \(json["message"] as? String ?? "")")
            }
        } catch {
            return .retry(Self.describe(error))
        }
    }

    /// What the collector said about a key rotation statement.
    public enum RotationAnswer: Sendable, Equatable {
        /// Taken now (`rotated`) or before (`already_rotated`): sign with the new key from now on.
        case accepted(status: String)
        /// The collector does not know this agent (enroll with the current key first).
        case unknownAgent
        /// Refused; presenting it again as it is will not help.
        case refused(status: Int, error: String, message: String)
        /// Network trouble or a server error: present it again later.
        case retry(String)
    }

    /// Presents a key rotation statement (`POST /v1/agents/ID/keys`).
    public func rotateKey(_ statement: KeyRotation) async -> RotationAnswer {
        await failingOver(
            { url in await rotateKey(statement, at: url) },
            isFinal: { answer in
                if case .retry = answer { return false }
                return true
            }
        )
    }

    private func rotateKey(_ statement: KeyRotation, at baseURL: String) async -> RotationAnswer {
        let id = statement.agentId.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? statement.agentId
        var request = HTTPClientRequest(url: baseURL + "/v1/agents/\(id)/keys")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        do {
            request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(statement)))
            let response = try await client.execute(request, timeout: timeout)
            let body = try await response.body.collect(upTo: 1 << 20)
            let status = Int(response.status.code)
            let json = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
            switch status {
            case 200..<300:
                return .accepted(status: json["status"] as? String ?? "rotated")
            case 401 where json["error"] as? String == "unknown_agent":
                return .unknownAgent
            case 400..<500:
                return .refused(
                    status: status,
                    error: json["error"] as? String ?? "http_\(status)",
                    message: json["message"] as? String ?? ""
                )
            default:
                return .retry("collector answered \(status): \(json["message"] as? String ?? "")")
            }
        } catch {
            return .retry(Self.describe(error))
        }
    }

    public struct EnrollmentError: Error, CustomStringConvertible {
        public var message: String
        /// True when retrying cannot help (bad token, conflicting key).
        public var permanent: Bool
        public var description: String { message }
    }

    /// Enrolls the agent's public key. Succeeds also when it was enrolled before with the same key.
    public func enroll(
        identity: AgentIdentity,
        token: String,
        hostname: String,
        machineId: String
    ) async throws(EnrollmentError) {
        let outcome: EnrollmentError? = await failingOver(
            { url in
                do throws(EnrollmentError) {
                    try await enroll(
                        identity: identity,
                        token: token,
                        hostname: hostname,
                        machineId: machineId,
                        at: url
                    )
                    return nil
                } catch {
                    return error
                }
            },
            isFinal: { error in error.map(\.permanent) ?? true }
        )
        if let outcome { throw outcome }
    }

    private func enroll(
        identity: AgentIdentity,
        token: String,
        hostname: String,
        machineId: String,
        at baseURL: String
    ) async throws(EnrollmentError) {
        let payload: [String: String] = [
            "token": token,
            "agent_id": identity.agentId,
            "public_key": identity.publicKeyBase64,
            "hostname": hostname,
            "machine_id": machineId,
        ]
        var request = HTTPClientRequest(url: baseURL + "/v1/enroll")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        do {
            request.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: payload)))
            let response = try await client.execute(request, timeout: timeout)
            let body = try await response.body.collect(upTo: 1 << 20)
            let status = Int(response.status.code)
            guard (200..<300).contains(status) else {
                let json = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
                let reason = json["message"] as? String ?? String(buffer: body)
                throw EnrollmentError(
                    message: "enrollment refused (\(status)): \(reason)",
                    permanent: (400..<500).contains(status)
                )
            }
        } catch let error as EnrollmentError {
            throw error
        } catch {
            throw EnrollmentError(
                message: "cannot reach collector at \(baseURL): \(Self.describe(error))",
                permanent: false
            )
        }
    }
}

/// Batches sent to the collector and not yet answered, oldest first: one at a time, or under a
/// backlog up to `capacity`, each next one sealed and sent while the collector stores the one
/// before (which it stores first: `BatchTransport.previousBatchHeader`). Answers are taken in
/// sending order; anything but "stored" for the oldest cancels the others, and they are sent
/// again, in order, from the spool's outbox. So one agent is not bound by a round trip per batch.
public struct DeliveryWindow {
    public typealias Send =
        @Sendable ([UInt8], _ previousInFlight: UInt64?, TimeAmount?) async -> CollectorClient.Delivery

    public let capacity: Int
    private var sent: [(batch: Spool.PendingBatch, answer: Task<(CollectorClient.Delivery, Duration), Never>)] = []

    /// - Parameter capacity: most batches in flight (at least 1).
    public init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    public var isEmpty: Bool { sent.isEmpty }

    /// Sends the oldest batch when none is in flight; then, with `ahead`, further batches while
    /// fewer than `capacity` are in flight and the newest one left events waiting behind it.
    /// Returns whether a batch is in flight.
    ///
    /// - Parameters:
    ///   - timeout: for the batches sent now (nil: the client's).
    ///   - next: the batch after the given one in flight, or the oldest for nil (`Spool.nextBatch`).
    ///   - send: posts a batch (`CollectorClient.send`).
    public mutating func fill(
        ahead: Bool,
        timeout: TimeAmount?,
        next: (UInt64?) throws -> Spool.PendingBatch?,
        send: @escaping Send
    ) rethrows -> Bool {
        if sent.isEmpty {
            guard let batch = try next(nil) else { return false }
            start(batch, previous: nil, timeout: timeout, send: send)
        }
        while ahead, sent.count < capacity, let newest = sent.last?.batch, newest.backlog,
            let batch = try next(newest.batchSeq)
        {
            start(batch, previous: newest.batchSeq, timeout: timeout, send: send)
        }
        return true
    }

    private mutating func start(
        _ batch: Spool.PendingBatch,
        previous: UInt64?,
        timeout: TimeAmount?,
        send: @escaping Send
    ) {
        let bytes = batch.bytes
        let answer = Task {
            let started = ContinuousClock.now
            let outcome = await send(bytes, previous, timeout)
            return (outcome, ContinuousClock.now - started)
        }
        sent.append((batch, answer))
    }

    /// Waits for the oldest batch's answer and takes it out of the window, with the time from
    /// sending to answer. When that answer is not "stored", the batches sent after it are
    /// cancelled and forgotten. Call only when not empty.
    public mutating func answer() async -> (
        batch: Spool.PendingBatch, outcome: CollectorClient.Delivery, roundTrip: Duration
    ) {
        let (batch, answer) = sent.removeFirst()
        let (outcome, roundTrip) = await answer.value
        if case .stored = outcome {
        } else if outcome.isTooLarge {
            // Too large: the shipper seals this batch and those after it again, smaller
            // (`Spool.unseal`), so the ones sent ahead must be answered first, not cancelled: a
            // request cancelled here could still be waiting at the collector for its
            // predecessor. None can be stored (its predecessor never is); they are answered
            // `predecessor_pending` once the collector's wait is over.
            storedBehindRefusal = false
            for (_, later) in sent {
                if case .stored = await later.value.0 { storedBehindRefusal = true }
            }
            sent.removeAll()
        } else {
            cancelAll()
        }
        return (batch, outcome, roundTrip)
    }

    /// Whether a batch sent ahead of one refused as too large was stored all the same (a
    /// collector that does not keep batches in order): its batches must then not be sealed again.
    public private(set) var storedBehindRefusal = false

    /// Cancels and forgets every batch in flight (their answers no longer matter).
    public mutating func cancelAll() {
        for (_, answer) in sent { answer.cancel() }
        sent.removeAll()
    }
}

/// Exponential backoff with full jitter: 0.5 s, 1 s, 2 s, ... up to `cap`.
struct Backoff {
    var attempt = 0
    let base: Double = 0.5
    let cap: Double

    init(cap: Double = 30) { self.cap = cap }

    mutating func next() -> Duration {
        let ceiling = min(cap, base * pow(2, Double(min(attempt, 16))))
        attempt += 1
        return .milliseconds(Int64(Double.random(in: ceiling / 2...ceiling) * 1000))
    }

    mutating func reset() { attempt = 0 }
}
