/// Limits and timeouts of a flow table.
public struct FlowTableConfiguration: Hashable, Sendable {
    /// The most flows tracked at once; when full, the least recently seen flow is reported
    /// early and counted as evicted. Memory is bounded by this (about 200 bytes a flow).
    public var maxFlows: Int
    /// A TCP flow with no packet for this long is reported and forgotten.
    public var tcpIdleTimeout: Duration
    /// Same for UDP, ICMP and other protocols.
    public var idleTimeout: Duration
    /// A TCP flow closed by FIN from both sides or a RST is reported after this much quiet.
    public var closedTimeout: Duration
    /// A flow still active after this long is reported and its counters start over, so long
    /// flows show up periodically, not only at their end. Nil: never.
    public var activeTimeout: Duration?
    /// Whether DNS queries and answers (UDP port 53) and the TLS server name (from the
    /// originator's ClientHello) are read from payloads into the flow records; they are read
    /// only from what the capture kept (see `PcapCaptureOptions.largeSnapshot`). A flow that has
    /// some keeps it beside its record until reported (at most a few hundred bytes).
    public var metadata: Bool

    public init(
        maxFlows: Int = 262_144,
        tcpIdleTimeout: Duration = .seconds(300),
        idleTimeout: Duration = .seconds(60),
        closedTimeout: Duration = .seconds(5),
        activeTimeout: Duration? = .seconds(1800),
        metadata: Bool = true
    ) {
        self.maxFlows = maxFlows
        self.tcpIdleTimeout = tcpIdleTimeout
        self.idleTimeout = idleTimeout
        self.closedTimeout = closedTimeout
        self.activeTimeout = activeTimeout
        self.metadata = metadata
    }
}

/// Counters of a flow table.
public struct FlowTableStatistics: Hashable, Sendable {
    /// Flows created.
    public var flowsCreated: UInt64 = 0
    /// Flow records reported (idle, closed, active timeout, eviction, flush).
    public var flowsReported: UInt64 = 0
    /// Flows reported early because the table was full.
    public var evictions: UInt64 = 0
    /// Records reported because a flow reached the active timeout.
    public var activeTimeouts: UInt64 = 0
    /// Flows currently tracked.
    public var liveFlows: Int = 0

    public init() {}
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000
    }
}
