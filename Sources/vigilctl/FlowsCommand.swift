import ArgumentParser
import Glibc
import VigilCore
import VigilSensors

struct FlowsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flows",
        abstract: "Summarize the flows in a capture file with the live sensor's decoder and flow table.",
        discussion: """
            Reads classic pcap or pcapng. Fields follow Zeek's conn.log vocabulary (DESIGN.md); decoder
            and table counters go to standard error. No Image or ProcessId: process attribution needs
            the live sockets, so only vigild's flow sensor does it.
            Payload metadata (on unless --no-metadata), in JSON only when a flow has it: dns_query (the
            first DNS query name over UDP port 53), dns_answers (its distinct A/AAAA answer addresses,
            at most 8) and server_name (the TLS SNI of the originator's ClientHello, read from the
            first segments that start a TLS record; a hello cut short by the capture's snap length
            gives no name). The table shows the server name or the query after the Community ID.
            Examples:
              vigilctl flows --pcap trace.pcap
              vigilctl flows --pcap trace.pcapng --json | jq 'select(.proto == "tcp")'
              vigilctl flows --pcap trace.pcap --json | jq -r 'select(.server_name) | .server_name'
            """
    )

    @Option(help: ArgumentHelp("The capture file (pcap or pcapng).", valueName: "file"))
    var pcap: String

    @Flag(help: "Print one JSON object per line instead of a table.")
    var json = false

    @Flag(
        inversion: .prefixedNo,
        help: "Read DNS query names and answers and TLS server names from payloads into the flows."
    )
    var metadata = true

    @Option(help: ArgumentHelp("Most flows tracked at once (older ones are reported early).", valueName: "n"))
    var maxFlows: Int = 262_144

    @Option(help: ArgumentHelp("Seconds without a packet before a TCP flow is reported.", valueName: "s"))
    var tcpIdleTimeout: Int = 300

    @Option(help: ArgumentHelp("Seconds without a packet before a UDP/ICMP/other flow is reported.", valueName: "s"))
    var idleTimeout: Int = 60

    @Option(
        help: ArgumentHelp(
            "Seconds after which a long flow is reported and its counters start over (0: never).",
            valueName: "s"
        )
    )
    var activeTimeout: Int = 1800

    func validate() throws {
        guard maxFlows > 0 else { throw ValidationError("--max-flows must be positive") }
        guard tcpIdleTimeout > 0, idleTimeout > 0, activeTimeout >= 0 else {
            throw ValidationError("timeouts must be positive (--active-timeout may be 0)")
        }
    }

    func run() throws {
        let configuration = FlowTableConfiguration(
            maxFlows: maxFlows,
            tcpIdleTimeout: .seconds(tcpIdleTimeout),
            idleTimeout: .seconds(idleTimeout),
            activeTimeout: activeTimeout == 0 ? nil : .seconds(activeTimeout),
            metadata: metadata
        )
        let output = BufferedOutput()
        // The table's header goes out with its first row (or at the end for none), so a capture
        // that cannot be opened prints the error alone.
        // Read once: the wrapper's getter is not free, and the closure runs per flow.
        let json = self.json
        var header = !json
        func writeHeader() {
            guard header else { return }
            header = false
            output.write(
                "ts                 duration   proto  originator -> responder  pkts o/r  ip bytes o/r  state  community_id\n"
            )
        }
        let summary: OfflineFlowReader.Summary
        do {
            summary = try OfflineFlowReader(configuration: configuration).read(path: pcap) { flow in
                if json {
                    output.writeLine(flow.appendJSONLine)
                } else {
                    writeHeader()
                    output.writeLine(flow.appendTextRow)
                }
            }
        } catch {
            output.flush()
            throw CommandFailure(Self.explain(error, path: pcap))
        }
        writeHeader()
        output.flush()
        var counters =
            "packets \(summary.packets), decoded \(summary.decode.decoded), fragments \(summary.decode.fragments)"
        counters += ", flows \(summary.table.flowsReported), evictions \(summary.table.evictions)"
        counters += ", active timeouts \(summary.table.activeTimeouts)"
        for (reason, count) in summary.decode.droppedByReason.sorted(by: { $0.key < $1.key }) {
            counters += ", \(reason) \(count)"
        }
        FileHandleStderr.write("vigilctl flows: \(counters)\n")
    }

    /// The reader's error as one line for the terminal: the file first, then what went wrong
    /// (and at which packet, when reading failed part way).
    static func explain(_ error: FlowSensorError, path: String) -> String {
        var message = error.message
        if message.hasPrefix(path + ": ") { message.removeFirst(path.count + 2) }
        if error.code == .captureUnavailable {
            return "cannot read the capture file \(path): \(message)"
        }
        if let index = error.packetIndex {
            return "\(path): packet \(index + 1): \(message)"
        }
        return "\(path): \(message)"
    }
}

/// Standard output through a 64 KiB buffer (flow lists run to millions of lines).
private final class BufferedOutput {
    private var buffer: [UInt8] = []

    init() {
        buffer.reserveCapacity(1 << 16)
    }

    func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    /// A line `append` writes straight into the buffer (a flow's `appendTextRow` or
    /// `appendJSONLine`), and a newline.
    func writeLine(_ append: (inout [UInt8]) -> Void) {
        append(&buffer)
        buffer.append(UInt8(ascii: "\n"))
        if buffer.count >= 1 << 16 { flush() }
    }

    func flush() {
        buffer.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(1, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

private enum FileHandleStderr {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { raw in _ = Glibc.write(2, raw.baseAddress, raw.count) }
    }
}
