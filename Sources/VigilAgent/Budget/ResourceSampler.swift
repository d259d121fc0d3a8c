import VigilLinux

/// Turns readings of the process's cumulative CPU time and resident size into budget samples:
/// the CPU share is averaged over a sliding window, so one busy second does not count as a
/// busy window. Pure apart from its input; the agent feeds it `ProcessUsage.current()`.
public struct ResourceSampler: Sendable {
    public let window: Duration
    private var readings: [(at: Duration, cpuNanoseconds: UInt64)] = []

    public init(window: Duration) {
        self.window = window
    }

    /// Records a reading taken at `at` (a monotonic offset) and returns the sample, or nil for
    /// the very first reading (a share needs two).
    public mutating func record(_ usage: ProcessUsage, at: Duration) -> ShedLadder.Sample? {
        readings.append((at, usage.cpuNanoseconds))
        // Keep the newest reading at or before the window's start, so the share covers the window.
        while readings.count > 2, at - readings[1].at >= window {
            readings.removeFirst()
        }
        guard let first = readings.first, readings.count >= 2 else { return nil }
        let elapsed = at - first.at
        let elapsedNanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        guard elapsedNanoseconds > 0 else { return nil }
        let used = usage.cpuNanoseconds >= first.cpuNanoseconds ? usage.cpuNanoseconds - first.cpuNanoseconds : 0
        return ShedLadder.Sample(
            cpuPercent: Double(used) / elapsedNanoseconds * 100,
            residentBytes: usage.residentBytes
        )
    }
}
