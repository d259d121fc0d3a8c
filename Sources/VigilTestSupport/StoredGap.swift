/// A gap record as a collector's SQLite store holds it, with what checking its accounting
/// needs: a record's counts must equal the seqs of its range that hold no event.
public struct StoredGap: Sendable, Hashable {
    /// The seq the record travels under (the first of its range).
    public var seq: Int
    public var firstSeq: Int
    public var lastSeq: Int
    /// The sum of its counts by type.
    public var dropped: Int
    /// The alerts among them.
    public var droppedAlerts: Int
    /// Events stored with a seq in its range, the record itself excluded.
    public var othersInRange: Int
    public var reason: String

    /// The seqs of its range that hold no event.
    public var emptySeqs: Int { lastSeq - firstSeq + 1 - othersInRange }

    /// The gap records of the collector store `store` (SQLite), in seq order.
    public static func all(in store: String) async throws -> [StoredGap] {
        let rows = try await sqliteRows(
            store,
            """
            SELECT g.seq, json_extract(g.json, '$.gap.first_seq'), json_extract(g.json, '$.gap.last_seq'),
                   (SELECT sum(value) FROM json_each(g.json, '$.gap.dropped_by_type')),
                   coalesce(json_extract(g.json, '$.gap.dropped_by_type.alert'), 0),
                   (SELECT count(*) FROM events e WHERE e.seq BETWEEN json_extract(g.json, '$.gap.first_seq')
                        AND json_extract(g.json, '$.gap.last_seq') AND e.seq != g.seq),
                   json_extract(g.json, '$.gap.reason')
            FROM events g WHERE g.type = 'gap' ORDER BY g.seq
            """
        )
        return rows.compactMap { row in
            guard row.count >= 7 else { return nil }
            let numbers = row.prefix(6).map { Int($0) ?? -1 }
            return StoredGap(
                seq: numbers[0],
                firstSeq: numbers[1],
                lastSeq: numbers[2],
                dropped: numbers[3],
                droppedAlerts: numbers[4],
                othersInRange: numbers[5],
                reason: row.dropFirst(6).joined(separator: "|")
            )
        }
    }
}
