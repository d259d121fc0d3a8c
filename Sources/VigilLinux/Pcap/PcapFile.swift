internal import CPcap
import Glibc

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

    /// Opens `path` ("-": standard input).
    ///
    /// The corresponding C function is `pcap_fopen_offline_with_tstamp_precision`. The file is
    /// opened here, with a 64 KiB stdio buffer and without stdio's per-call locking: libpcap
    /// reads each packet with two `fread` calls, and only this object's thread reads the file.
    /// Measured with the flows benchmark's capture, that takes reading from 0.16 to 0.12 s.
    /// - Throws: `PcapError` `.openFailed` with libpcap's message (missing file, not a capture,
    ///   a pcapng whose interfaces have different link types).
    public init(path: String) throws(PcapError) {
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        let precision = UInt32(PCAP_TSTAMP_PRECISION_NANO)
        let opened: OpaquePointer?
        if path == "-" {
            opened = pcap_open_offline_with_tstamp_precision(path, precision, &errbuf)
        } else {
            guard let file = fopen(path, "rb") else {
                let message = String(cString: strerror(errno))
                throw PcapError(code: .openFailed, message: "\(path): \(message)", source: path)
            }
            setvbuf(file, nil, _IOFBF, Self.bufferSize)
            _ = __fsetlocking(file, Int32(FSETLOCKING_BYCALLER))
            opened = pcap_fopen_offline_with_tstamp_precision(file, precision, &errbuf)
            // On success the handle owns the file (`pcap_close` closes it); on failure it is ours.
            if opened == nil { fclose(file) }
        }
        guard let opened else {
            throw PcapError(code: .openFailed, message: PcapError.message(fromErrorBuffer: errbuf), source: path)
        }
        self.handle = opened
        self.path = path
        self.linkType = pcap_datalink(opened)
        self.snapshotLength = Int(pcap_snapshot(opened))
    }

    /// The stdio buffer of a capture file (a larger one measured no faster: it falls out of
    /// the cache between the kernel's copy into it and libpcap's copy out of it).
    static let bufferSize = 64 << 10

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
