import Testing
import VigilCore
import VigilPolicy

/// Sigma `network_connection` rules on the process fields that flow attribution fills.
@Suite("Flow attribution in policies")
struct FlowAttributionPolicyTests {
    @Test("a network_connection rule on Image and ProcessId matches attributed flows only")
    func imageRule() {
        let byImage = policy(
            rule(
                category: "network_connection",
                """
                    selection:
                        Image|endswith: '/nc'
                        DestinationPort: 4444
                    condition: selection
                """
            )
        )
        let byPid = policy(
            rule(
                id: "r2",
                category: "network_connection",
                """
                    selection:
                        ProcessId: 4242
                    condition: selection
                """
            )
        )
        for rules in [byImage, byPid] {
            #expect(rules.report.notApplicable.isEmpty, "\(rules.report.notApplicable)")
        }
        func hits(_ flow: FlowEvent) -> [String] {
            (byImage.evaluate(Event(payload: .flow(flow))) + byPid.evaluate(Event(payload: .flow(flow)))).map(\.ruleId)
        }
        var flow = FlowEvent(
            ts: 1,
            duration: 1,
            proto: "tcp",
            origH: "10.0.0.5",
            origP: 50000,
            respH: "203.0.113.9",
            respP: 4444
        )
        // Unattributed (no local socket found, or attribution off): neither rule can match.
        #expect(hits(flow).isEmpty)
        flow.image = "/usr/bin/nc"
        flow.processId = 4242
        #expect(hits(flow) == ["r1", "r2"])
        flow.image = "/usr/bin/curl"
        flow.processId = 4243
        #expect(hits(flow).isEmpty)
    }

    @Test("network.attribute_processes: unset (as root: on), true, false; a bad value is located")
    func setting() throws {
        let unset = try #require(try CollectionSettings.parse(yaml: "network: {}\n", file: "c.yaml").network)
        #expect(unset.attributeProcesses == nil)
        let off = try CollectionSettings.parse(yaml: "network:\n  attribute_processes: false\n", file: "c.yaml")
        #expect(off.network?.attributeProcesses == false)
        let on = try CollectionSettings.parse(yaml: "network:\n  attribute_processes: true\n", file: "c.yaml")
        #expect(on.network?.attributeProcesses == true)
        #expect {
            try CollectionSettings.parse(yaml: "network:\n  attribute_processes: root\n", file: "c.yaml")
        } throws: {
            "\($0)" == "c.yaml:2:24: network.attribute_processes must be true or false"
        }
    }
}
