/// Keeps a collector's repeated refusals out of the error log: the first refusal of a kind is
/// logged at error, the same refusal again (same HTTP status and error code) only at debug,
/// until something changes: a different refusal, or a batch delivered.
///
/// Metrics still count every refused batch (`vigil_agent_batches_sent_total{result="refused"}`).
struct RefusalLog {
    private var last: (status: Int, error: String)? = nil

    /// Whether this refusal differs from the previous one (log it at error); false for a repeat.
    mutating func isNew(status: Int, error: String) -> Bool {
        if let last, last.status == status, last.error == error { return false }
        last = (status, error)
        return true
    }

    /// Something changed (a batch was delivered, the agent enrolls again): the next refusal is news.
    mutating func reset() { last = nil }

    /// The revocation time in a collector's `revoked_agent` message ("agent X was revoked at
    /// 2026-11-29T03:50:00Z"), else nil.
    static func revocationTime(in message: String) -> String? {
        guard let range = message.range(of: "revoked at ") else { return nil }
        let time = message[range.upperBound...].prefix { !$0.isWhitespace && $0 != ";" }
        return time.isEmpty ? nil : String(time)
    }
}
