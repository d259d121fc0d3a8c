/// One record read from an inotify descriptor (`struct inotify_event`).
public struct InotifyEvent: Hashable, Sendable {
    /// The watch descriptor the event belongs to; -1 for `IN_Q_OVERFLOW`.
    public var watchDescriptor: Int32
    public var mask: InotifyMask
    /// Ties the two halves of a rename (`IN_MOVED_FROM` / `IN_MOVED_TO`); 0 otherwise.
    public var cookie: UInt32
    /// The entry's name inside the watched directory; nil for events about the watched object
    /// itself. Bytes that are not valid UTF-8 are replaced (U+FFFD).
    public var name: String?

    public init(watchDescriptor: Int32, mask: InotifyMask, cookie: UInt32 = 0, name: String? = nil) {
        self.watchDescriptor = watchDescriptor
        self.mask = mask
        self.cookie = cookie
        self.name = name
    }
}

/// Parses the records of one `read(2)` from an inotify descriptor.
///
/// Lengths come from the kernel but are never trusted: a record whose header or name would
/// run past the bytes read ends the parse, and the rest is counted as malformed.
public enum InotifyEventParser {
    /// `sizeof(struct inotify_event)`: wd, mask, cookie, len.
    public static let headerSize = 16

    /// What a parse found.
    public struct Summary: Hashable, Sendable {
        /// Records handed to the body.
        public var events: Int
        /// Trailing bytes that did not form a whole record (0 for well-formed input).
        public var malformedBytes: Int

        public init(events: Int, malformedBytes: Int) {
            self.events = events
            self.malformedBytes = malformedBytes
        }
    }

    /// Calls `body` for each whole record in `bytes`, in order.
    @discardableResult
    public static func parse(
        _ bytes: UnsafeRawBufferPointer,
        _ body: (InotifyEvent) throws -> Void
    ) rethrows -> Summary {
        var offset = 0
        var count = 0
        let total = bytes.count
        while total - offset >= headerSize {
            let wd = bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self)
            let mask = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let cookie = bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
            let length = bytes.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self)
            let available = total - offset - headerSize
            guard UInt64(length) <= UInt64(available) else { break }
            let nameLength = Int(length)
            var name: String?
            if nameLength > 0 {
                let start = offset + headerSize
                let field = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + nameLength)])
                let used = field.firstIndex(of: 0) ?? nameLength
                if used > 0 {
                    name = String(decoding: UnsafeRawBufferPointer(rebasing: field[0..<used]), as: UTF8.self)
                }
            }
            try body(InotifyEvent(watchDescriptor: wd, mask: InotifyMask(rawValue: mask), cookie: cookie, name: name))
            count += 1
            offset += headerSize + nameLength
        }
        return Summary(events: count, malformedBytes: total - offset)
    }
}
