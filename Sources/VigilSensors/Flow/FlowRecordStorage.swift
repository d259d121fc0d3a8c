/// The flow table's records in one growable allocation, updated in place.
///
/// `FlowTable` keeps value semantics by copying the storage before mutating it when it is
/// shared (`isKnownUniquelyReferenced`), once per public mutating call, so per-packet field
/// updates need neither an array uniqueness check nor a copy of the record. Every subscript is
/// bounds-checked.
final class FlowRecordStorage: @unchecked Sendable {
    private var base: UnsafeMutablePointer<FlowRecord>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 16)
        base = .allocate(capacity: self.capacity)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    /// An independent copy (for copy-on-write).
    func copy() -> FlowRecordStorage {
        let copy = FlowRecordStorage(capacity: capacity)
        copy.base.initialize(from: base, count: count)
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

    /// Adds `record` at slot `count`.
    func append(_ record: FlowRecord) {
        if count == capacity {
            let grown = FlowRecordStorage(capacity: capacity * 2)
            grown.base.moveInitialize(from: base, count: count)
            swap(&base, &grown.base)
            swap(&capacity, &grown.capacity)
            // `grown` now owns the old, emptied allocation.
        }
        (base + count).initialize(to: record)
        count += 1
    }

    /// Forgets every record, keeping the allocation.
    func removeAll() {
        base.deinitialize(count: count)
        count = 0
    }
}
