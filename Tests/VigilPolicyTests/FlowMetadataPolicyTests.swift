import Testing
import VigilCore
import VigilPolicy

/// Sigma rules on flow payload metadata: `DestinationHostname` (the TLS server name),
/// `QueryName` and `QueryResults` (DNS) on `network_connection` events, and flows with a DNS
/// query as `dns_query` events.
@Suite("Flow metadata in policies")
struct FlowMetadataPolicyTests {
    static let flow = FlowEvent(
        ts: 1,
        duration: 1,
        proto: "udp",
        origH: "10.0.0.5",
        origP: 40000,
        respH: "10.0.0.53",
        respP: 53
    )

    @Test("dns_query rules match a flow's query name and answers; network_connection rules its SNI")
    func rules() {
        let dns = policy(
            rule(
                category: "dns_query",
                """
                    selection:
                        QueryName|endswith: '.onion.example'
                    condition: selection
                """
            ) + "\n---\n"
                + rule(
                    id: "r2",
                    category: "dns_query",
                    """
                        selection:
                            QueryResults|contains: '203.0.113.66'
                        condition: selection
                    """
                )
        )
        let sni = policy(
            rule(
                id: "r3",
                category: "network_connection",
                """
                    selection:
                        DestinationHostname|endswith: '.evil.test'
                        DestinationPort: 443
                    condition: selection
                """
            ) + "\n---\n"
                + rule(
                    id: "r4",
                    category: "network_connection",
                    """
                        selection:
                            QueryName: 'c2.onion.example'
                        condition: selection
                    """
                )
        )
        #expect(dns.report.notApplicable.isEmpty && sni.report.notApplicable.isEmpty, "\(dns.report.notApplicable)")
        func hits(_ flow: FlowEvent) -> [String] {
            (dns.evaluate(Event(payload: .flow(flow))) + sni.evaluate(Event(payload: .flow(flow)))).map(\.ruleId)
        }
        var flow = Self.flow
        #expect(hits(flow).isEmpty)
        flow.dnsQuery = "c2.onion.example"
        flow.dnsAnswers = ["192.0.2.1", "203.0.113.66"]
        #expect(hits(flow) == ["r1", "r2", "r4"])
        let fields = EventFields(Event(payload: .flow(flow)))
        #expect(fields.categories == [.networkConnection, .dnsQuery])
        #expect(fields.value(of: "QueryResults") == "192.0.2.1;203.0.113.66")

        var tls = Self.flow
        tls.proto = "tcp"
        tls.respP = 443
        tls.serverName = "www.evil.test"
        #expect(hits(tls) == ["r3"])
        #expect(EventFields(Event(payload: .flow(tls))).categories == [.networkConnection])
        tls.serverName = "www.good.test"
        #expect(hits(tls).isEmpty)
    }

    @Test("network.metadata in collection.yaml: on by default, false turns it off, anything else is an error")
    func collectionSetting() throws {
        #expect(
            try CollectionSettings.parse(yaml: "network:\n  interface: any\n", file: "c.yaml").network?.metadata == true
        )
        #expect(
            try CollectionSettings.parse(yaml: "network:\n  metadata: false\n", file: "c.yaml").network?.metadata
                == false
        )
        #expect {
            _ = try CollectionSettings.parse(yaml: "network:\n  metadata: sometimes\n", file: "c.yaml")
        } throws: { error in
            "\(error)".contains("c.yaml:2") && "\(error)".contains("network.metadata must be true or false")
        }
    }
}
