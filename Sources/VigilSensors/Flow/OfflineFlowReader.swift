import VigilCore
import VigilLinux

/// Runs the flow decoder and table over a capture file: the offline twin of `FlowSensor`
/// (`vigilctl flows --pcap`).
public struct OfflineFlowReader: Sendable {
    /// What a run saw, besides the flows.
    public struct Summary: Hashable, Sendable {
        public var packets: Int
        public var linkType: Int32
        public var decode: DecodeStatistics
        public var table: FlowTableStatistics
    }

    public var configuration: FlowTableConfiguration

    public init(configuration: FlowTableConfiguration = FlowTableConfiguration()) {
        self.configuration = configuration
    }

    /// Reads `path` and calls `onFlow` for each flow record as it completes (idle, active
    /// timeout, eviction), then for the flows left at the end of the file, oldest first. Each
    /// gives its event (`CompletedFlow.event`) or its JSON line on demand.
    ///
    /// - Throws: `FlowSensorError` `.captureUnavailable` (not a capture file),
    ///   `.unsupportedLinkType`, `.readFailed` (truncated file; flows up to it were reported).
    public func read(path: String, onFlow: (CompletedFlow) -> Void) throws(FlowSensorError) -> Summary {
        let file: PcapFile
        do {
            file = try PcapFile(path: path)
        } catch {
            throw FlowSensorError(error)
        }
        guard LinkType.isSupported(file.linkType) else {
            throw FlowSensorError(
                code: .unsupportedLinkType,
                message: "link-layer type \(file.linkType) is not supported",
                source: path
            )
        }
        var decoder = PacketDecoder()
        var table = FlowTable(configuration: configuration)
        var packet = DecodedPacket()
        var readError: PcapError?
        let packets: Int
        do {
            packets = try file.forEachPacket { captured in
                if decoder.decode(captured.bytes, linkType: captured.linkType, into: &packet) {
                    table.add(packet, at: captured.timestampNanoseconds, frame: captured.bytes)
                    if table.hasCompleted { table.takeCompleted(onFlow) }
                }
            }
        } catch {
            readError = error
            packets = error.packetIndex ?? 0
        }
        table.flush(onFlow)
        if let readError { throw FlowSensorError(readError) }
        return Summary(packets: packets, linkType: file.linkType, decode: decoder.statistics, table: table.statistics)
    }
}
