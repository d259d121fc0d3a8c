import Foundation
import Testing
import VigilAgent
import VigilLinux
import VigilPolicy
import VigilTestSupport

@Suite("Configuration files")
struct ConfigurationTests {
    @Test("a full agent configuration parses, relative paths resolve against the file")
    func agentConfig() throws {
        let c = try AgentConfiguration.parse(
            yaml: """
                collector:
                  url: https://collector.example:8443/
                  enroll_token: abc
                state_dir: state
                policies_dir: /etc/vigil/policies
                shipping:
                  batch_max_events: 10
                  batches_in_flight: 3
                log_level: debug
                """,
            file: "/etc/vigil/vigild.yaml"
        )
        #expect(c.shipping.batchesInFlight == 3)
        #expect(c.collectorURL == "https://collector.example:8443")
        #expect(c.enrollToken == "abc")
        #expect(c.stateDirectory == "/etc/vigil/state")
        #expect(c.policiesDirectory == "/etc/vigil/policies")
        #expect(c.shipping.batchMaxEvents == 10)
        #expect(c.logLevel == "debug")
    }

    @Test(
        "the flow sensor's own-traffic filter excludes every collector, fallbacks included, and libpcap compiles it",
        .enabled(if: TestEnvironment.isRoot || TestEnvironment.isCI, "opening a capture needs CAP_NET_RAW")
    )
    func collectorTrafficFilter() throws {
        let c = try AgentConfiguration.parse(
            yaml:
                "collector:\n  url: [http://127.0.0.1:8440, 'http://[::1]:8441', https://collector.example, http://127.0.0.1:8440]\nstate_dir: s\npolicies_dir: p\n",
            file: "/etc/vigil/vigild.yaml"
        )
        let filter = try #require(Agent.collectorFilter(c.collectorURLs))
        #expect(
            filter
                == "not (host 127.0.0.1 and tcp port 8440) and not (host ::1 and tcp port 8441) and not tcp port 443"
        )
        #expect(Agent.collectorFilter(["not a url"]) == nil)
        #expect(TestEnvironment.isRoot, "CI must run this as root")
        // The real libpcap compiles and installs it on a live capture.
        _ = try PcapCapture(options: PcapCaptureOptions(interface: "lo", filter: filter))
    }

    @Test("collector.tls: paths resolve against the file; plain http, half a client pair and unknown keys are refused")
    func collectorTLS() throws {
        let c = try AgentConfiguration.parse(
            yaml:
                "collector:\n  url: https://c:8443\n  tls:\n    ca_file: ca.pem\n    client_cert: /etc/vigil/agent.crt\n    client_key: agent.key\nstate_dir: s\npolicies_dir: p\n",
            file: "/etc/vigil/vigild.yaml"
        )
        #expect(
            c.collectorTLS
                == AgentConfiguration.CollectorTLS(
                    caFile: "/etc/vigil/ca.pem",
                    clientCertificate: "/etc/vigil/agent.crt",
                    clientKey: "/etc/vigil/agent.key"
                )
        )
        for (yaml, message) in [
            ("collector:\n  url: http://c:8443\n  tls:\n    ca_file: ca.pem\n", "is http://"),
            ("collector:\n  url: https://c:8443\n  tls:\n    client_cert: a.crt\n", "go together"),
            ("collector:\n  url: https://c:8443\n  tls:\n    pin: abc\n", "unknown key 'pin'"),
        ] {
            #expect {
                try AgentConfiguration.parse(
                    yaml: yaml + "state_dir: s\npolicies_dir: p\n",
                    file: "/etc/vigil/vigild.yaml"
                )
            } throws: { error in
                let error = error as? PolicyError
                return error?.line == 3 || error?.line == 4 ? error?.message.contains(message) ?? false : false
            }
        }
    }

    @Test("collector.url may list several collectors: the first is used first, the others are failovers")
    func collectorList() throws {
        let c = try AgentConfiguration.parse(
            yaml: "collector:\n  url: [http://a:8443/, http://b:8443]\nstate_dir: s\npolicies_dir: p\n",
            file: "/etc/vigil/vigild.yaml"
        )
        #expect(c.collectorURL == "http://a:8443")
        #expect(c.collectorURLs == ["http://a:8443", "http://b:8443"])
        #expect(
            throws: PolicyError.self,
            performing: {
                try AgentConfiguration.parse(
                    yaml: "collector:\n  url: [http://a, ftp://b]\nstate_dir: s\npolicies_dir: p\n",
                    file: "f.yaml"
                )
            }
        )
        #expect(
            throws: PolicyError.self,
            performing: {
                try AgentConfiguration.parse(
                    yaml: "collector:\n  url: []\nstate_dir: s\npolicies_dir: p\n",
                    file: "f.yaml"
                )
            }
        )
    }

    @Test(
        "agent configuration mistakes name file, line and column",
        arguments: [
            (
                "collector:\n  url: ftp://x\nstate_dir: s\npolicies_dir: p\n",
                "f.yaml:2:8: collector.url must start with http:// or https://"
            ),
            (
                // Found by FuzzConfig: "http://" was accepted and shipped to as "http:/".
                "collector:\n  url: [http://]\nstate_dir: s\npolicies_dir: p\n",
                "f.yaml:2:8: collector.url http:// names no host"
            ),
            (
                "collector:\n  url: [https://a, 'https:///x']\nstate_dir: s\npolicies_dir: p\n",
                "f.yaml:2:8: collector.url https:///x names no host"
            ),
            (
                "collector:\n  url: http://x\nstate_dir: s\npolicies_dir: p\nshipping:\n  batch_max_events: -1\n",
                "f.yaml:6:21: shipping.batch_max_events must be an integer from 1 to 100000"
            ),
            (
                "collector:\n  url: http://x\nstate_dir: s\npolicies_dir: p\nshipping:\n  batches_in_flight: 0\n",
                "f.yaml:6:22: shipping.batches_in_flight must be an integer from 1 to 8"
            ),
            ("collector:\n  url: http://x\npolicies_dir: p\n", "f.yaml:1:1: state_dir is required"),
            (
                "collector:\n  url: http://x\n  tokn: 1\nstate_dir: s\npolicies_dir: p\n",
                "f.yaml:3:3: unknown key 'tokn' in collector"
            ),
            ("collector: [\n", "f.yaml:2:1: YAML syntax"),
        ]
    )
    func agentConfigErrors(yaml: String, expected: String) {
        #expect {
            try AgentConfiguration.parse(yaml: yaml, file: "f.yaml")
        } throws: { "\($0)".hasPrefix(expected) }
    }

    @Test("collection.yaml parses and refuses mistakes with their location")
    func collection() throws {
        let s = try CollectionSettings.parse(
            yaml: "files:\n  watch: [/etc, /tmp]\n  exclude: [/etc/mtab]\n  hash_max_bytes: 1_000\n",
            file: "c.yaml"
        )
        #expect(s.files.watch == ["/etc", "/tmp"])
        #expect(s.files.exclude == ["/etc/mtab"])
        #expect(s.files.hashMaxBytes == 1000)
        #expect { try CollectionSettings.parse(yaml: "files:\n  watch: [etc]\n", file: "c.yaml") } throws: {
            "\($0)" == "c.yaml:2:11: files.watch: 'etc' must be an absolute path"
        }
        #expect { try CollectionSettings.parse(yaml: "file:\n  watch: []\n", file: "c.yaml") } throws: {
            "\($0)".hasPrefix("c.yaml:1:1: unknown key 'file'")
        }
        #expect { try CollectionSettings.parse(yaml: "files:\n  hash_max_bytes: lots\n", file: "c.yaml") } throws: {
            "\($0)" == "c.yaml:2:19: files.hash_max_bytes must be an integer"
        }
    }

    @Test("the shipped default policies directory loads")
    func defaults() throws {
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        let s = try CollectionSettings.load(policiesDirectory: root + "/Policies")
        #expect(s.files.watch.contains("/etc"))
    }
}

@Suite("Configuration paths")
struct ConfigurationPathTests {
    @Test("relative paths in a configuration given by a relative path become absolute")
    func relativeFile() throws {
        let c = try AgentConfiguration.parse(
            yaml: "collector:\n  url: http://x\nstate_dir: state\npolicies_dir: ../p\n",
            file: "conf/v.yaml"
        )
        let cwd = FileManager.default.currentDirectoryPath
        #expect(c.stateDirectory == (cwd as NSString).appendingPathComponent("conf/state"))
        #expect(c.policiesDirectory == ((cwd as NSString).appendingPathComponent("p") as NSString).standardizingPath)
    }
}
