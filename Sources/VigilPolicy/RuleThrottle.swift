/// Rate-limit and suppression state of one rule.
struct RuleThrottle {
    static let maximumKeys = 10_000

    var windowStart: Int64?
    var windowCount = 0
    var rateDropped: UInt64 = 0
    var suppressedUntil: [String: (until: Int64, count: UInt64)] = [:]

    /// Nil when the hit is dropped; otherwise the number of hits dropped since the last
    /// reported one.
    mutating func admit(_ settings: VigilSettings, fields: some SigmaFields, now: Int64) -> UInt64? {
        var carried: UInt64 = 0
        if let suppression = settings.suppression {
            let key = suppression.by.map { fields.value(of: $0) ?? "" }.joined(separator: "\u{1F}")
            if let entry = suppressedUntil[key], now < entry.until {
                suppressedUntil[key] = (entry.until, entry.count + 1)
                return nil
            }
            carried = suppressedUntil[key]?.count ?? 0
            if suppressedUntil.count >= Self.maximumKeys {
                suppressedUntil = suppressedUntil.filter { now < $0.value.until }
                if suppressedUntil.count >= Self.maximumKeys { suppressedUntil.removeAll() }
            }
            let until = now.addingReportingOverflow(suppression.windowNanoseconds)
            suppressedUntil[key] = (until.overflow ? .max : until.partialValue, 0)
        }
        if let limit = settings.rateLimit {
            let elapsed = windowStart.map { now.subtractingReportingOverflow($0) }
            let inWindow =
                elapsed.map { !$0.overflow && $0.partialValue >= 0 && $0.partialValue < limit.perNanoseconds } ?? false
            if !inWindow {
                windowStart = now
                windowCount = 0
            }
            guard windowCount < limit.max else {
                rateDropped += 1
                return nil
            }
            windowCount += 1
            carried += rateDropped
            rateDropped = 0
        }
        return carried
    }
}
