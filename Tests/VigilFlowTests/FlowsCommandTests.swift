import Foundation
import Testing
import VigilCore
import VigilSensors
import VigilTestSupport

/// The built `vigilctl flows` prints, for every corpus capture, the same flows as the library,
/// with DESIGN.md's field names.
@Suite("vigilctl flows")
struct FlowsCommandTests {
    /// Drops what JSON lines round away (sub-microsecond time).
    private func normalized(_ flow: FlowEvent) -> FlowEvent {
        var f = flow
        f.ts = (f.ts * 1e6).rounded() / 1e6
        f.duration = (f.duration * 1e6).rounded() / 1e6
        return f
    }

    @Test(
        "--json prints the library's flows for every corpus capture",
        .enabled(if: Corpus.isPresent, "the reference corpus is not at ../shared/corpora/pcaps")
    )
    func jsonMatchesLibrary() async throws {
        let vigilctl = BuiltProducts.path("vigilctl")
        var checked = 0
        for capture in Corpus.captures() {
            guard let linkType = Corpus.linkType(capture), LinkType.isSupported(linkType) else { continue }
            let result = try await runCommand(
                vigilctl,
                ["flows", "--pcap", Corpus.directory + "/" + capture, "--json"]
            )
            #expect(result.status == 0, "\(capture): \(result.stderr)")
            let printed = try result.stdout.split(separator: "\n").map {
                try JSONDecoder().decode(FlowEvent.self, from: Data($0.utf8))
            }
            let library = try Corpus.flows(capture)
            #expect(printed.map(normalized) == library.map(normalized), "\(capture)")
            #expect(result.stderr.contains("packets "), "\(capture): no counter summary on stderr")
            checked += 1
        }
        #expect(checked > 40)
    }

    @Test("--json lines carry exactly DESIGN.md's flow fields")
    func jsonFieldNames() throws {
        let flow = FlowEvent(
            ts: 1.5,
            duration: 0.25,
            proto: "tcp",
            origH: "10.0.0.1",
            origP: 1,
            respH: "10.0.0.2",
            respP: 2
        )
        let object = try JSONSerialization.jsonObject(with: Data(flow.jsonLine.utf8)) as? [String: Any] ?? [:]
        #expect(
            Set(object.keys) == [
                "ts", "duration", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "orig_pkts", "resp_pkts",
                "orig_ip_bytes", "resp_ip_bytes", "orig_bytes", "resp_bytes", "orig_tcp_flags", "resp_tcp_flags",
                "state", "community_id",
            ]
        )
        #expect(try JSONDecoder().decode(FlowEvent.self, from: Data(flow.jsonLine.utf8)) == flow)
    }

    @Test("string fields escape quote, backslash and controls, to the byte; DEL stays as it is")
    func jsonStringBytes() throws {
        var flow = FlowEvent(
            ts: 1.5,
            duration: 0.25,
            proto: "udp",
            origH: "10.0.0.1",
            origP: 1,
            respH: "10.0.0.2",
            respP: 53
        )
        flow.image = "/tmp/a\"b\\c\n\r\t\u{1}\u{7f}é/"
        #expect(flow.jsonLine.contains(#","Image":"/tmp/a\"b\\c\n\r\t\u0001"# + "\u{7f}" + #"é/""#), "\(flow.jsonLine)")
        #expect(try JSONDecoder().decode(FlowEvent.self, from: Data(flow.jsonLine.utf8)) == flow)
    }

    @Test("a missing or non-capture file is a clear error")
    func badFile() async throws {
        let directory = try TemporaryDirectory()
        let notCapture = directory.appending("notes.txt")
        _ = FileManager.default.createFile(atPath: notCapture, contents: Data("hello".utf8))
        let cases = [
            (directory.appending("missing.pcap"), "No such file or directory"),
            (notCapture, "unknown file format"),
        ]
        for (path, reason) in cases {
            let result = try await runCommand(BuiltProducts.path("vigilctl"), ["flows", "--pcap", path])
            #expect(result.status != 0)
            // One line naming the file and the reason; nothing on standard output (no table
            // header before the error), no Swift type names.
            #expect(
                result.stderr.contains("Error: cannot read the capture file \(path): \(reason)"),
                "\(result.stderr)"
            )
            #expect(result.stdout.isEmpty, "\(result.stdout)")
            #expect(!result.stderr.contains("FlowSensorError"), "\(result.stderr)")
        }
    }
}
