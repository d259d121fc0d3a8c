import VigilCore

/// The earliest and latest event time of a batch, stored with it (`min_time_ns`, `max_time_ns`).
///
/// The stores keep no (agent, time) index on events: every ingested event would pay for it, and
/// the insert rate with it was a quarter lower. A query for one agent's events in a time range
/// instead asks the agent's batches (a thousandth of the rows) which of them hold events in that
/// range, and reads the seqs from the first such batch's to the last one's through the unique
/// (agent, seq) index, keeping the rows whose own time is in range. Collector alerts
/// (`ChainAlert`, negative seqs) belong to no batch and are always looked at.
enum BatchTimeBounds {
    /// The bounds of `events`' times, nil for none.
    static func of(_ events: [Event]) -> ClosedRange<Int64>? {
        guard let first = events.first else { return nil }
        var low = first.time.nanosecondsSinceEpoch
        var high = low
        for event in events.dropFirst() {
            let time = event.time.nanosecondsSinceEpoch
            if time < low { low = time }
            if time > high { high = time }
        }
        return low...high
    }
}
