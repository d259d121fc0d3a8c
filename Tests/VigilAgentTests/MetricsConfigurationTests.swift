import Foundation
import Testing
import VigilCore
import VigilLinux
import VigilPolicy

@testable import VigilAgent

@Suite("Agent metrics endpoint configuration")
struct MetricsConfigurationTests {
    static let base = "collector:\n  url: http://127.0.0.1:8443\nstate_dir: s\npolicies_dir: p\n"

    func parse(_ extra: String) throws(PolicyError) -> AgentConfiguration {
        try AgentConfiguration.parse(yaml: Self.base + extra, file: "/etc/vigil/vigild.yaml")
    }

    @Test("metrics_listen is off unless set; IPv4 and bracketed IPv6 literals parse")
    func parses() throws {
        #expect(try parse("").metricsListen == nil)
        let v4 = try parse("metrics_listen: 127.0.0.1:9477\n").metricsListen
        #expect(v4 == AgentConfiguration.MetricsEndpoint(host: "127.0.0.1", port: 9477))
        let v6 = try parse("metrics_listen: '[::1]:9478'\n").metricsListen
        #expect(v6 == AgentConfiguration.MetricsEndpoint(host: "::1", port: 9478))
        #expect(v6?.description == "[::1]:9478")
    }

    @Test(
        "a metrics_listen that is not IP:PORT is refused with its line",
        arguments: ["localhost:9477", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:9477", "'[]:9477'", "[a, b]"]
    )
    func refuses(_ value: String) throws {
        do {
            _ = try parse("metrics_listen: \(value)\n")
            Issue.record("\(value) was accepted")
        } catch {
            #expect(error.line == 5, "\(error)")
            #expect(error.message.contains("metrics_listen must be IP:PORT"), "\(error)")
        }
    }

    @Test("the listener binds before the sandbox and reports its port; a taken port is EADDRINUSE")
    func listener() throws {
        let listener = try TCPListener(host: "127.0.0.1", port: 0)
        #expect(listener.port > 0)
        #expect(listener.fileDescriptor >= 0)
        let taken = #expect(throws: (any Error).self) { try TCPListener(host: "127.0.0.1", port: listener.port) }
        #expect("\(taken.map { "\($0)" } ?? "")".contains("in use"), "\(String(describing: taken))")
        #expect(throws: (any Error).self) { try TCPListener(host: "localhost", port: 0) }
        let fd = listener.take()
        #expect(fd != nil && listener.fileDescriptor == -1 && listener.take() == nil)
        if let fd { close(fd) }
    }
}

@Suite("Agent metrics")
struct AgentMetricsTests {
    func value(_ metrics: AgentMetrics, _ series: String) -> String? {
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        return text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.map {
            String($0.dropFirst(series.count + 1))
        }
    }

    @Test("kernel drops from pcap_stats are mirrored as a counter, surviving a reset of the source")
    func kernelDrops() {
        let metrics = AgentMetrics()
        for dropped: UInt64 in [5, 8, 2] {
            metrics.eventRead(
                Event(
                    payload: .health(
                        AgentHealth(kind: "pcap_stats", message: "m", counters: ["pcap_dropped": dropped])
                    )
                )
            )
        }
        #expect(value(metrics, "vigil_agent_kernel_drops_total{sensor=\"flow\"}") == "10")
        #expect(value(metrics, "vigil_agent_events_total{type=\"health\"}") == "3")
    }

    @Test("deliveries are counted by result; events shipped only when the collector kept them")
    func deliveries() {
        let metrics = AgentMetrics()
        metrics.batchSent(.stored(duplicate: false, chain: "ok"), events: 7, roundTrip: .milliseconds(3))
        metrics.batchSent(.stored(duplicate: true, chain: nil), events: 7, roundTrip: .milliseconds(3))
        metrics.batchSent(.retry("down"), events: 4, roundTrip: .seconds(3))
        metrics.batchSent(.refused(status: 400, error: "malformed_batch", message: "m"), events: 4, roundTrip: .zero)
        #expect(value(metrics, "vigil_agent_batches_sent_total{result=\"accepted\"}") == "1")
        #expect(value(metrics, "vigil_agent_batches_sent_total{result=\"duplicate\"}") == "1")
        #expect(value(metrics, "vigil_agent_batches_sent_total{result=\"failed\"}") == "1")
        #expect(value(metrics, "vigil_agent_batches_sent_total{result=\"refused\"}") == "1")
        #expect(value(metrics, "vigil_agent_events_shipped_total") == "14")
        #expect(value(metrics, "vigil_agent_batch_round_trip_seconds_count") == "4")
        #expect(value(metrics, "vigil_agent_batch_round_trip_seconds_bucket{le=\"0.005\"}") == "3")
    }
}
