import Glibc

/// Parses the time arguments operators type: `--since 10m`, `--since 2026-11-28T13:00:00Z`,
/// `--since 1764334800`.
public enum TimeSpec {
    /// - A duration back from `now`: a number followed by `s`, `m`, `h` or `d` (`90s`, `15m`, `2h`, `7d`).
    /// - Seconds since the Unix epoch, optionally fractional (`1764334800.5`).
    /// - ISO 8601 UTC: `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or `+00:00`), or just `YYYY-MM-DD`.
    ///
    /// Nil for anything else, and for times a `Timestamp` cannot hold: durations over 100 years,
    /// and times outside 1970-01-01 ... 2261-12-31 (the text often comes from the network).
    public static func parse(_ text: String, now: Timestamp = .now()) -> Timestamp? {
        let s = text.trimmingSpaces
        guard let last = s.last else { return nil }
        if let unit = ["s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0][String(last)],
            let n = Double(s.dropLast()), n >= 0, n * unit <= maximumDurationSeconds
        {
            let back = Int64(n * unit * 1e9)
            let (time, overflow) = now.nanosecondsSinceEpoch.subtractingReportingOverflow(back)
            return overflow ? nil : Timestamp(nanosecondsSinceEpoch: time)
        }
        if let seconds = Double(s), seconds >= 0, seconds < latestSeconds {
            return Timestamp(nanosecondsSinceEpoch: Int64(seconds * 1e9))
        }
        return parseISO8601(s)
    }

    /// 100 years.
    static let maximumDurationSeconds = 100 * 366 * 86_400.0
    /// 2262-01-01T00:00:00Z: nanoseconds since the epoch in an Int64 run out in April 2262.
    static let latestSeconds = 9_214_646_400.0

    static func parseISO8601(_ s: String) -> Timestamp? {
        let u = Array(s.utf8)
        func num(_ from: Int, _ len: Int) -> Int? {
            guard from + len <= u.count else { return nil }
            var v = 0
            for c in u[from..<from + len] {
                guard c >= 0x30, c <= 0x39 else { return nil }
                v = v * 10 + Int(c - 0x30)
            }
            return v
        }
        guard u.count >= 10, let year = num(0, 4), (1970...2261).contains(year), u[4] == 0x2d, let month = num(5, 2),
            u[7] == 0x2d, let day = num(8, 2),
            (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var hour = 0
        var minute = 0
        var second = 0
        var nanos = 0
        var i = 10
        if u.count > 10 {
            guard u[10] == 0x54 || u[10] == 0x20, let h = num(11, 2), u.count > 13, u[13] == 0x3a, let m = num(14, 2),
                u.count > 16, u[16] == 0x3a, let sec = num(17, 2), h < 24, m < 60, sec < 61
            else { return nil }
            hour = h
            minute = m
            second = sec
            i = 19
            if i < u.count, u[i] == 0x2e {
                i += 1
                var digits = 0
                while i < u.count, u[i] >= 0x30, u[i] <= 0x39 {
                    if digits < 9 { nanos = nanos * 10 + Int(u[i] - 0x30) }
                    digits += 1
                    i += 1
                }
                guard digits > 0 else { return nil }
                for _ in min(digits, 9)..<9 { nanos *= 10 }
            }
            let rest = String(decoding: u[i...], as: UTF8.self)
            guard rest == "Z" || rest == "+00:00" || rest == "" else { return nil }
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let seconds = timegm(&parts)
        return Timestamp(nanosecondsSinceEpoch: Int64(seconds) * 1_000_000_000 + Int64(nanos))
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
