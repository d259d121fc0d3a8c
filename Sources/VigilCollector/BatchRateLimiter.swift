import Synchronization

/// How many batches one agent may deliver (`--max-batch-rate`, `--max-batch-burst`).
///
/// A healthy agent sends a batch every `batch_max_age` (about one a second) or, while draining a
/// backlog after an outage, one after another as fast as round trips allow; the default (20 a
/// second sustained, a minute's worth of burst) leaves both alone and still stops a runaway or
/// hostile agent from monopolising the store's writer.
public struct BatchRateLimit: Sendable, Hashable {
    /// Sustained batches per second per agent; 0 turns the limit off.
    public var perSecond: Double
    /// Batches an agent may send back to back after being idle.
    public var burst: Double

    public static let defaultPerSecond: Double = 20

    /// - Parameter burst: nil: a minute's worth of `perSecond` (at least 1).
    public init(perSecond: Double = Self.defaultPerSecond, burst: Double? = nil) {
        self.perSecond = max(0, perSecond)
        self.burst = max(1, burst ?? perSecond * 60)
    }

    public static let unlimited = BatchRateLimit(perSecond: 0)

    public var isEnabled: Bool { perSecond > 0 }
}

/// A token bucket per agent id for `POST /v1/batches`.
///
/// The collector charges it only after the batch header's Ed25519 signature verified against the
/// agent's enrolled key (a cheap check: the header is small and the body is neither decompressed
/// nor hashed yet). Keyed by an unauthenticated header's agent id, anyone could spoof a real
/// agent's id and drain its bucket, locking it out; keyed by peer address, agents behind one NAT
/// or load balancer would share a bucket. Keyed by verified id, only the agent itself (or someone
/// replaying its own captured batches, which TLS prevents) spends its tokens, and the table holds
/// enrolled agents only, so spoofed ids cannot grow it. Forged batches are still refused before
/// any expensive work: their signature check fails first.
public final class BatchRateLimiter: Sendable {
    public let limit: BatchRateLimit
    private let buckets = Mutex<[String: Bucket]>([:])

    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    public init(limit: BatchRateLimit) {
        self.limit = limit
    }

    /// Takes one token from `agentId`'s bucket. Returns nil when the batch may go on, else how
    /// many whole seconds (at least 1) until a token is available: the `Retry-After`.
    public func admit(_ agentId: String, now: ContinuousClock.Instant = .now) -> Int? {
        guard limit.isEnabled else { return nil }
        return buckets.withLock { buckets in
            var bucket = buckets[agentId] ?? Bucket(tokens: limit.burst, updated: now)
            let elapsed = now - bucket.updated
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(limit.burst, bucket.tokens + max(0, seconds) * limit.perSecond)
            bucket.updated = max(bucket.updated, now)
            defer { buckets[agentId] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return max(1, Int(((1 - bucket.tokens) / limit.perSecond).rounded(.up)))
        }
    }
}
