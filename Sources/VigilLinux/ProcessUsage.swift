import Glibc

/// This process's CPU time and resident memory, read from `/proc/self/stat` and
/// `/proc/self/statm` (no allocation beyond a small stack buffer per read).
public struct ProcessUsage: Sendable, Hashable {
    /// User + system CPU time consumed by all threads since the process started, in nanoseconds.
    public var cpuNanoseconds: UInt64
    /// Resident set size in bytes.
    public var residentBytes: UInt64

    public init(cpuNanoseconds: UInt64, residentBytes: UInt64) {
        self.cpuNanoseconds = cpuNanoseconds
        self.residentBytes = residentBytes
    }

    private static let ticksPerSecond = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
    private static let pageSize = UInt64(max(1, sysconf(Int32(_SC_PAGESIZE))))

    /// Reads the current usage; nil when /proc is unreadable or malformed (never traps).
    public static func current() -> ProcessUsage? {
        guard let stat = readSmallFile("/proc/self/stat"), let statm = readSmallFile("/proc/self/statm"),
            let ticks = parseCPUTicks(stat: stat), let pages = parseResidentPages(statm: statm)
        else { return nil }
        return ProcessUsage(cpuNanoseconds: ticks &* (1_000_000_000 / ticksPerSecond), residentBytes: pages &* pageSize)
    }

    /// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line, in clock ticks. The
    /// command name (field 2) may hold spaces and parentheses, so fields are counted after the
    /// last `)`.
    public static func parseCPUTicks(stat: [UInt8]) -> UInt64? {
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        // fields[0] is field 3 (state), so utime (14) is fields[11] and stime (15) fields[12].
        guard fields.count > 12, let utime = number(fields[11]), let stime = number(fields[12]) else { return nil }
        return utime &+ stime
    }

    /// The resident pages (second field) of a `/proc/PID/statm` line.
    public static func parseResidentPages(statm: [UInt8]) -> UInt64? {
        let fields = statm.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        guard fields.count > 1 else { return nil }
        return number(fields[1])
    }

    private static func number(_ digits: ArraySlice<UInt8>) -> UInt64? {
        var value: UInt64 = 0
        var any = false
        for byte in digits {
            if byte == UInt8(ascii: "\n") { break }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            value = a
            any = true
        }
        return any ? value : nil
    }

    private static func readSmallFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        var count = 0
        while count < buffer.count {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            count += n
        }
        return count > 0 ? Array(buffer[..<count]) : nil
    }
}
