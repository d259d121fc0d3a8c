/// Remembers the ports of fragmented datagrams (from their first fragment) so later fragments
/// count towards the same flow. Bounded: when full, it starts over.
struct FragmentTracker: Sendable {
    struct Key: Hashable, Sendable {
        var source: IPAddressBits
        var destination: IPAddressBits
        var identification: UInt32
        var proto: UInt8
    }

    private var entries: [Key: (UInt16, UInt16, UInt16)] = [:]
    private let capacity: Int

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    mutating func remember(_ key: Key, ports: (UInt16, UInt16, UInt16)) {
        if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
        entries[key] = ports
    }

    func ports(of key: Key) -> (UInt16, UInt16, UInt16)? {
        entries[key]
    }
}
