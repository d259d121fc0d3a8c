/// One packet as libpcap hands it over. `bytes` points into libpcap's buffer: it is valid only
/// inside the callback that receives the packet, so never keep it.
public struct CapturedPacket {
    /// Capture time, nanoseconds since the Unix epoch.
    public var timestampNanoseconds: Int64
    /// Bytes on the wire (`len`); `bytes.count` is what was captured (`caplen`).
    public var wireLength: Int
    /// The link-layer header type (a `LINKTYPE_`/`DLT_` value, e.g. 1 for Ethernet).
    public var linkType: Int32
    /// The captured bytes, starting at the link-layer header.
    public var bytes: UnsafeRawBufferPointer

    @inlinable
    public init(timestampNanoseconds: Int64, wireLength: Int, linkType: Int32, bytes: UnsafeRawBufferPointer) {
        self.timestampNanoseconds = timestampNanoseconds
        self.wireLength = wireLength
        self.linkType = linkType
        self.bytes = bytes
    }
}

@available(*, unavailable)
extension CapturedPacket: Sendable {}
