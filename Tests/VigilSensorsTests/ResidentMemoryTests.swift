import Foundation
import Glibc
import Testing
import VigilLinux

@Suite("Resident memory handed back")
struct ResidentMemoryTests {
    @Test("only read-only mappings of files are picked from /proc/PID/maps")
    func parsesMaps() {
        let maps = """
            55d0a0000000-55d0a3000000 r-xp 00000000 fd:01 1234                       /usr/sbin/vigild
            55d0a3000000-55d0a3100000 r--p 03000000 fd:01 1234                       /usr/sbin/vigild
            55d0a3100000-55d0a3200000 rw-p 03100000 fd:01 1234                       /usr/sbin/vigild
            55d0a4000000-55d0a4100000 rw-p 00000000 00:00 0                          [heap]
            7f0000000000-7f0000100000 r--p 00000000 00:00 0
            7f0000100000-7f0000200000 r--p 00000000 fd:01 99                         /var/lib/vigil/a file (deleted)
            7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
            7ffd00030000-7ffd00032000 r-xp 00000000 00:00 0                          [vdso]
            garbage line
            ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]

            """
        let ranges = ResidentMemory.parseReadOnlyFileMappings(Array(maps.utf8))
        #expect(ranges.map(\.start) == [0x55d0_a000_0000, 0x55d0_a300_0000, 0x7f00_0010_0000])
        #expect(ranges.map(\.end) == [0x55d0_a300_0000, 0x55d0_a310_0000, 0x7f00_0020_0000])
    }

    /// A 32 MiB file on disk, mapped and read through: its pages count in this process's
    /// resident size until `release()` hands them back; the mapping still reads the same after.
    @Test("release() drops the pages of a read-only file mapping from the resident set, and they read back")
    func releasesFilePages() throws {
        let size = 32 << 20
        let path = FileManager.default.currentDirectoryPath + "/.build/resident-memory-\(getpid()).bin"
        defer { unlink(path) }
        var content = [UInt8](repeating: 0, count: size)
        for i in stride(from: 0, to: size, by: 4096) { content[i] = UInt8(truncatingIfNeeded: i >> 12) }
        try Data(content).write(to: URL(fileURLWithPath: path))
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(fsync(fd) == 0)  // clean pages: reclaimable without writeback
        let mapped = try #require(mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0))
        try #require(mapped != MAP_FAILED)
        defer { munmap(mapped, size) }
        let bytes = mapped.assumingMemoryBound(to: UInt8.self)
        var sum = 0
        for i in stride(from: 0, to: size, by: 4096) { sum &+= Int(bytes[i]) }
        let touched = try #require(Self.residentFileKiB())

        let release = ResidentMemory.release()
        let released = try #require(Self.residentFileKiB())
        #expect(release.refusedErrno == 0)
        #expect(release.mappings > 0 && release.advisedBytes >= UInt64(size))
        // Other suites run alongside and map things too; 32 MiB stands well clear of them.
        #expect(
            touched - released >= 24 * 1024,
            "file-backed resident size went from \(touched) KiB to \(released) KiB"
        )
        var again = 0
        for i in stride(from: 0, to: size, by: 4096) {
            #expect(bytes[i] == UInt8(truncatingIfNeeded: i >> 12))
            again &+= Int(bytes[i])
        }
        #expect(again == sum)
    }

    static func residentFileKiB() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("RssFile:") })
        else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }
}
