import VigilCore

/// What a flow's payloads said, kept beside its counters when `FlowTableConfiguration.metadata`
/// is on: the first DNS query name, the distinct A/AAAA answer addresses (at most
/// `maxAnswers`) and the TLS server name of the originator's ClientHello.
struct FlowMetadata: Sendable {
    static let maxAnswers = 8

    var dnsQuery: String?
    var dnsAnswers: [DNSAddress] = []
    var serverName: String?

    /// Sets the flow event's `dnsQuery`, `dnsAnswers` and `serverName` (those it has).
    func apply(to event: inout FlowEvent) {
        if let dnsQuery { event.dnsQuery = dnsQuery }
        if !dnsAnswers.isEmpty { event.dnsAnswers = dnsAnswers.map(\.text) }
        if let serverName { event.serverName = serverName }
    }
}
