import Foundation
import Testing
import VigilAgent
import VigilPolicy

/// `collector.tls.pin_sha256` as vigild.yaml gives it.
@Suite("Collector key pins in the configuration")
struct PinConfigurationTests {
    static let digest: [UInt8] = Array(0..<32)
    static let base64 = Data(digest).base64EncodedString()
    static let hex = digest.map { String(format: "%02x", $0) }.joined()

    func parse(_ tls: String) throws(PolicyError) -> AgentConfiguration {
        try AgentConfiguration.parse(
            yaml: "collector:\n  url: https://c.example:8443\n  tls:\n\(tls)state_dir: /s\npolicies_dir: /p\n",
            file: "/etc/vigil/vigild.yaml"
        )
    }

    @Test("curl's sha256//BASE64, bare base64 and hex (with or without colons) name the same pin; one or a list")
    func forms() throws {
        let colons = stride(from: 0, to: 64, by: 2).map { i in
            String(Self.hex.dropFirst(i).prefix(2)).uppercased()
        }.joined(separator: ":")
        let listed = try parse(
            "    pin_sha256:\n      - \"sha256//\(Self.base64)\"\n      - \"\(Self.base64)\"\n      - \(Self.hex)\n      - \"\(colons)\"\n"
        )
        #expect(listed.collectorTLS?.pinnedKeys == Array(repeating: Self.digest, count: 4))
        #expect(listed.collectorTLS?.caFile == nil)
        let single = try parse("    ca_file: ca.pem\n    pin_sha256: \"sha256//\(Self.base64)\"\n")
        #expect(single.collectorTLS?.pinnedKeys == [Self.digest])
        #expect(single.collectorTLS?.caFile == "/etc/vigil/ca.pem")
        #expect(AgentConfiguration.CollectorTLS.describePin(Self.digest) == "sha256//" + Self.base64)
    }

    @Test("a pin that is not 32 bytes, or an empty list, is refused naming the setting and its line")
    func refused() {
        for bad in [
            "    pin_sha256: \"sha256//AAAA\"\n", "    pin_sha256: []\n", "    pin_sha256: \(Self.hex.dropLast(2))\n",
            "    pin_sha256: {a: b}\n",
        ] {
            do {
                _ = try parse(bad)
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.description.contains("pin_sha256"), "\(error.description)")
                #expect(error.description.contains("vigild.yaml:4"), "\(error.description)")
            }
        }
    }
}
