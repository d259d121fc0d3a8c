import VigilCore

/// Accounts for every event seq of one agent across batches, so that loss is either declared by
/// the agent (a signed gap record) or flagged.
///
/// The agent never reuses a seq. When its spool is full it drops the oldest events and a gap
/// record takes the seq of the first one it dropped, declaring the range `first_seq...last_seq`
/// (see `Spool.shed` in VigilSpool). The record therefore arrives before the hole it explains.
/// A batch whose first seq leaves a hole after the last stored seq is fine when gap records
/// received before it declared the hole; otherwise the hole is a `seq_gap` anomaly: events the
/// agent numbered and signed never arrived and nothing said why.
///
/// Stores keep these four numbers per agent and run `admit` inside the transaction that stores
/// the batch (SQLite: columns of `agents`).
public struct SeqAccount: Sendable, Hashable {
    /// The highest event seq stored.
    public var lastEventSeq: UInt64
    /// The highest `last_seq` of any gap record stored: seqs up to here that hold no event are
    /// declared loss.
    public var declaredThrough: UInt64
    /// Gap records stored.
    public var gapRecords: UInt64
    /// The sum of their `dropped_by_type` counts.
    public var droppedEvents: UInt64

    public init(
        lastEventSeq: UInt64 = 0,
        declaredThrough: UInt64 = 0,
        gapRecords: UInt64 = 0,
        droppedEvents: UInt64 = 0
    ) {
        self.lastEventSeq = lastEventSeq
        self.declaredThrough = declaredThrough
        self.gapRecords = gapRecords
        self.droppedEvents = droppedEvents
    }

    /// Takes in a verified batch holding seqs `firstSeq...lastSeq` (its `events`).
    ///
    /// - Parameter inOrder: the batch is the next one in the hash chain. Holes are judged only
    ///   then: around missing or reordered batches the chain verdict already says what is wrong.
    /// - Returns: the detail of a `seq_gap` anomaly when events are missing undeclared, else nil.
    public mutating func admit(firstSeq: UInt64, lastSeq: UInt64, events: [Event], inOrder: Bool) -> String? {
        guard !events.isEmpty else { return nil }
        var anomaly: String? = nil
        if inOrder, firstSeq > lastEventSeq &+ 1 {
            let from = max(lastEventSeq + 1, declaredThrough &+ 1)
            let to = firstSeq - 1
            if from <= to {
                anomaly =
                    from == to
                    ? "event \(from) is missing and no gap record declares it"
                    : "events \(from)-\(to) are missing and no gap record declares them"
            }
        }
        for event in events {
            guard case .gap(let gap) = event.payload else { continue }
            gapRecords += 1
            droppedEvents = gap.droppedByType.values.reduce(droppedEvents) { $0 &+ $1 }
            declaredThrough = max(declaredThrough, gap.lastSeq)
        }
        lastEventSeq = max(lastEventSeq, lastSeq)
        return anomaly
    }
}
