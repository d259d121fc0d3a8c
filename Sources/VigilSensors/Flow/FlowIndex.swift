/// The flow table's key → slot index: open addressing with linear probing and backward-shift
/// deletion (no tombstones), at most half full.
///
/// A bucket is one `UInt64`: the record's slot + 1 in the high half (0: empty) and the low 32
/// bits of the key's hash in the low half, so probing compares 8-byte words and only reads a
/// record when the hash bits match, and growing never rehashes a key. The hash is a keyed
/// multiply-mix whose key is drawn at random per index, so traffic crafted to collide in one
/// process does not collide in another (the role of `Hasher`'s per-process seed).
struct FlowIndex: Sendable {
    private var buckets: [UInt64]
    private var mask: Int
    /// Keys indexed.
    private(set) var count = 0
    private let seed: (UInt64, UInt64, UInt64, UInt64, UInt64)

    /// - Parameter capacity: keys to hold before the first growth.
    init(capacity: Int) {
        var size = 16
        while size < 2 * capacity && size < 1 << 30 { size <<= 1 }
        buckets = Array(repeating: 0, count: size)
        mask = size - 1
        var random = SystemRandomNumberGenerator()
        seed = (random.next(), random.next(), random.next(), random.next(), random.next())
    }

    /// The hash of `key` that `find`, `insert` and `remove` take.
    @inline(__always)
    func hash(_ key: FlowKey) -> UInt32 {
        let ports =
            UInt64(key.lowPort) | UInt64(key.highPort) << 16 | UInt64(key.icmpIdentifier) << 32
            | UInt64(key.proto) << 48 | UInt64(key.family) << 56
        let a = Self.mix(key.lowAddress.low ^ seed.0, key.highAddress.low ^ seed.1)
        let b = Self.mix(key.lowAddress.high ^ seed.2, key.highAddress.high ^ seed.3)
        let h = Self.mix(a ^ ports, b ^ seed.4)
        return UInt32(truncatingIfNeeded: h ^ h >> 32)
    }

    @inline(__always)
    private static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = a.multipliedFullWidth(by: b)
        return product.high ^ product.low
    }

    /// The slot whose key has `hash` and satisfies `isKey`, if any.
    @inline(__always)
    func find(hash: UInt32, where isKey: (Int32) -> Bool) -> Int32? {
        var i = Int(hash) & mask
        while true {
            let entry = buckets[i]
            if entry == 0 { return nil }
            if UInt32(truncatingIfNeeded: entry) == hash {
                let slot = Int32(truncatingIfNeeded: entry >> 32) &- 1
                if isKey(slot) { return slot }
            }
            i = (i &+ 1) & mask
        }
    }

    /// Indexes `slot` under `hash`; the key must not be indexed yet.
    mutating func insert(_ slot: Int32, hash: UInt32) {
        if (count + 1) * 2 > buckets.count { grow() }
        place(UInt64(UInt32(bitPattern: slot) &+ 1) << 32 | UInt64(hash))
        count += 1
    }

    /// Removes `slot`, indexed under `hash`.
    mutating func remove(_ slot: Int32, hash: UInt32) {
        let wanted = UInt64(UInt32(bitPattern: slot) &+ 1)
        var hole = Int(hash) & mask
        var probes = 0
        while buckets[hole] >> 32 != wanted {
            if buckets[hole] == 0 || probes > mask {
                assertionFailure("flow slot \(slot) not indexed")
                return
            }
            hole = (hole &+ 1) & mask
            probes += 1
        }
        // Backward shift: pull later entries of the run into the hole when their home bucket
        // is not between the hole and where they sit.
        var j = hole
        while true {
            j = (j &+ 1) & mask
            let entry = buckets[j]
            if entry == 0 { break }
            let home = Int(UInt32(truncatingIfNeeded: entry)) & mask
            if (j &- home) & mask >= (j &- hole) & mask {
                buckets[hole] = entry
                hole = j
            }
        }
        buckets[hole] = 0
        count -= 1
    }

    /// Forgets every key, keeping the buckets.
    mutating func removeAll() {
        for i in buckets.indices { buckets[i] = 0 }
        count = 0
    }

    private mutating func place(_ entry: UInt64) {
        var i = Int(UInt32(truncatingIfNeeded: entry)) & mask
        while buckets[i] != 0 { i = (i &+ 1) & mask }
        buckets[i] = entry
    }

    private mutating func grow() {
        let old = buckets
        buckets = Array(repeating: 0, count: old.count * 2)
        mask = buckets.count - 1
        for entry in old where entry != 0 { place(entry) }
    }
}
