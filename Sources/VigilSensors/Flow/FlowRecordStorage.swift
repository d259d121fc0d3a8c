import Glibc

/// The flow table's records in one mapping, updated in place, and each record's links in its
/// expiry list in a second one beside it.
///
/// The links live apart from the records because every packet moves its flow to the tail of
/// its list, which rewrites the links of the flow's neighbours: 8 bytes per flow (a table of
/// 85,000 flows keeps its links in 680 KB, in cache) instead of two more of the records' 12 MB
/// read at random per packet, and a record fits two cache lines.
///
/// The mapping reserves address space for the table's whole flow limit up front (anonymous,
/// `MAP_NORESERVE`): the kernel commits a page only when a record is first written to it, so
/// memory follows the records in use while the table never moves them to grow (a copy that
/// used to fault in a second, larger allocation when a capture outgrew the first). Where the
/// kernel refuses that much address space, a smaller reservation is taken and grown by copying.
///
/// `FlowTable` keeps value semantics by copying the storage before mutating it when it is
/// shared (`isKnownUniquelyReferenced`), once per public mutating call, so per-packet field
/// updates need neither an array uniqueness check nor a copy of the record. Every subscript is
/// bounds-checked.
final class FlowRecordStorage: @unchecked Sendable {
    /// A record's neighbours in its expiry list (-1: none).
    struct Link {
        var previous: Int32 = -1
        var next: Int32 = -1
    }

    private var base: UnsafeMutablePointer<FlowRecord>
    private var linkBase: UnsafeMutablePointer<Link>
    private(set) var count = 0
    private var capacity: Int

    /// - Parameter capacity: records to reserve room for (the table's flow limit).
    init(capacity: Int) {
        // Records are plain bytes: the mapping is released without deinitializing them, and a
        // reservation moves by copying memory.
        precondition(_isPOD(FlowRecord.self), "flow records must be plain data")
        (base, self.capacity) = Self.reserve(max(capacity, 16))
        linkBase = Self.reserveLinks(self.capacity)
    }

    deinit {
        munmap(base, capacity * MemoryLayout<FlowRecord>.stride)
        munmap(linkBase, capacity * MemoryLayout<Link>.stride)
    }

    /// An anonymous mapping for `count` values of `type`, address space only until written
    /// (`MAP_NORESERVE`); nil where the kernel refuses it.
    private static func map<Value>(_ type: Value.Type, count: Int) -> UnsafeMutablePointer<Value>? {
        let mapped = mmap(
            nil,
            count * MemoryLayout<Value>.stride,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
            -1,
            0
        )
        guard let mapped, mapped != MAP_FAILED else { return nil }
        return mapped.bindMemory(to: Value.self, capacity: count)
    }

    /// The links' mapping for `records` (a sixteenth of the records' size; no fallback).
    private static func reserveLinks(_ records: Int) -> UnsafeMutablePointer<Link> {
        guard let links = map(Link.self, count: records) else {
            fatalError("cannot map memory for \(records) flow links: errno \(errno)")
        }
        return links
    }

    /// A mapping for `wanted` records, or for fewer (halving down to 16) where the kernel
    /// refuses the address space.
    private static func reserve(_ wanted: Int) -> (UnsafeMutablePointer<FlowRecord>, Int) {
        var records = wanted
        while true {
            if let mapped = map(FlowRecord.self, count: records) { return (mapped, records) }
            // Out of address space for 16 records (~2 KiB): as `allocate` would, stop here.
            guard records > 16 else { fatalError("cannot map memory for flow records: errno \(errno)") }
            records /= 2
        }
    }

    /// An independent copy (for copy-on-write).
    func copy() -> FlowRecordStorage {
        let copy = FlowRecordStorage(capacity: capacity)
        if copy.capacity < count {
            // The first reservation had room: the copy must too.
            copy.grow(toHold: count)
        }
        copy.base.initialize(from: base, count: count)
        copy.linkBase.initialize(from: linkBase, count: count)
        copy.count = count
        return copy
    }

    subscript(slot: Int) -> FlowRecord {
        unsafeAddress {
            precondition(slot >= 0 && slot < count, "flow slot out of range")
            return UnsafePointer(base + slot)
        }
        unsafeMutableAddress {
            precondition(slot >= 0 && slot < count, "flow slot out of range")
            return base + slot
        }
    }

    /// The links of the record at `slot`.
    subscript(links slot: Int) -> Link {
        unsafeAddress {
            precondition(slot >= 0 && slot < count, "flow slot out of range")
            return UnsafePointer(linkBase + slot)
        }
        unsafeMutableAddress {
            precondition(slot >= 0 && slot < count, "flow slot out of range")
            return linkBase + slot
        }
    }

    /// Adds `record` at slot `count`, in no list yet.
    func append(_ record: FlowRecord) {
        if count == capacity { grow(toHold: count + 1) }
        (base + count).initialize(to: record)
        (linkBase + count).initialize(to: Link())
        count += 1
    }

    /// Forgets every record, keeping the mapping (and its committed pages).
    func removeAll() {
        count = 0
    }

    /// Moves the records to a reservation for at least `records` (doubling), when the first
    /// one was smaller than the flow limit.
    private func grow(toHold records: Int) {
        var wanted = capacity * 2
        while wanted < records { wanted *= 2 }
        let (grown, grownCapacity) = Self.reserve(wanted)
        precondition(grownCapacity >= records, "cannot map memory for \(records) flow records")
        let grownLinks = Self.reserveLinks(grownCapacity)
        grown.initialize(from: base, count: count)
        grownLinks.initialize(from: linkBase, count: count)
        munmap(base, capacity * MemoryLayout<FlowRecord>.stride)
        munmap(linkBase, capacity * MemoryLayout<Link>.stride)
        base = grown
        linkBase = grownLinks
        capacity = grownCapacity
    }
}
