internal import CPcap

/// A capture file (classic pcap or pcapng) read through libpcap's `pcap_open_offline`, with
/// nanosecond timestamps.
///
/// Not thread-safe: read it from one thread.
public final class PcapFile {
    private let handle: OpaquePointer
    /// The path given to `init`.
    public let path: String
    /// The file's link-layer header type (`pcap_datalink`), e.g. 1 for Ethernet.
    public let linkType: Int32
    /// The snapshot length recorded in the file.
    public let snapshotLength: Int

    /// Opens `path`.
    ///
    /// The corresponding C function is `pcap_open_offline_with_tstamp_precision`.
    /// - Throws: `PcapError` `.openFailed` with libpcap's message (missing file, not a capture,
    ///   a pcapng whose interfaces have different link types).
    public init(path: String) throws(PcapError) {
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        let opened = pcap_open_offline_with_tstamp_precision(path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf)
        guard let opened else {
            throw PcapError(code: .openFailed, message: PcapError.message(fromErrorBuffer: errbuf), source: path)
        }
        self.handle = opened
        self.path = path
        self.linkType = pcap_datalink(opened)
        self.snapshotLength = Int(pcap_snapshot(opened))
    }

    deinit {
        pcap_close(handle)
    }

    /// Calls `body` for each packet until the end of the file and returns how many were read.
    ///
    /// The corresponding C function is `pcap_next_ex`.
    /// - Throws: `PcapError` `.readFailed` (with the packet index) when the file is truncated
    ///   or corrupt; packets before it were delivered.
    @discardableResult
    public func forEachPacket(_ body: (borrowing CapturedPacket) -> Void) throws(PcapError) -> Int {
        var count = 0
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        let linkType = self.linkType
        while true {
            let rc = pcap_next_ex(handle, &header, &data)
            if rc == 1, let header, let data {
                let h = header.pointee
                let nanos = Int64(h.ts.tv_sec) &* 1_000_000_000 &+ Int64(h.ts.tv_usec)
                let packet = CapturedPacket(
                    timestampNanoseconds: nanos,
                    wireLength: Int(h.len),
                    linkType: linkType,
                    bytes: UnsafeRawBufferPointer(start: data, count: Int(h.caplen))
                )
                body(packet)
                count &+= 1
            } else if rc == PCAP_ERROR_BREAK {
                return count
            } else {
                throw PcapError(
                    code: .readFailed,
                    message: String(cString: pcap_geterr(handle)),
                    source: path,
                    packetIndex: count
                )
            }
        }
    }
}

@available(*, unavailable)
extension PcapFile: Sendable {}
