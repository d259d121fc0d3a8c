import Glibc

/// Hands back to the kernel the memory this process touched once and no longer uses.
///
/// Most of an idle agent's resident set is not its heap but the pages of its own executable
/// (and libraries) that start-up read: the dynamic linker's relocation and symbol tables, the
/// code that parsed the configuration and compiled the policy, and whatever the kernel mapped
/// around each of those faults. They stay mapped, and counted, until memory runs short. After
/// start-up (and after a flood) the agent asks for them to be reclaimed now:
///
/// - `madvise(MADV_PAGEOUT)` (Linux 5.4) on every read-only file mapping: clean pages mapped by
///   this process alone are dropped, pages shared with other processes (libc, say) are left
///   alone by the kernel. Code still in use simply faults back in, from the page cache or disk,
///   so what stays resident is the working set.
/// - `malloc_trim(0)`: free heap memory at the top of glibc's arenas and in whole free pages
///   inside them goes back to the kernel.
///
/// Nothing here changes behaviour; it changes only what the process holds on to.
public enum ResidentMemory {
    /// What one `release()` did.
    public struct Release: Sendable, Hashable {
        /// Read-only file mappings advised, and their total size in bytes.
        public var mappings: Int
        public var advisedBytes: UInt64
        /// The errno of the first refused `madvise` (EINVAL before Linux 5.4), or 0.
        public var refusedErrno: Int32
    }

    /// `MADV_PAGEOUT` from <linux/mman.h> (not in every libc's headers).
    static let pageOut: Int32 = 21

    /// Reclaims this process's read-only file pages and trims the heap.
    @discardableResult
    public static func release() -> Release {
        var result = Release(mappings: 0, advisedBytes: 0, refusedErrno: 0)
        for mapping in readOnlyFileMappings() {
            guard let start = UnsafeMutableRawPointer(bitPattern: mapping.start) else { continue }
            if madvise(start, Int(mapping.end - mapping.start), pageOut) == 0 {
                result.mappings += 1
                result.advisedBytes += UInt64(mapping.end - mapping.start)
            } else if result.refusedErrno == 0 {
                result.refusedErrno = errno
            }
        }
        _ = GNULibC.mallocTrim?(0)
        return result
    }

    /// The address ranges of `/proc/self/maps` lines that map a file and are not writable.
    static func readOnlyFileMappings() -> [(start: UInt, end: UInt)] {
        guard let text = try? ProcFile.read("/proc/self/maps", limit: 4 << 20) else { return [] }
        return parseReadOnlyFileMappings(Array(text.utf8))
    }

    /// Parses `/proc/PID/maps` text: `start-end perms offset dev inode [path]`; keeps the lines
    /// with a path starting with `/` (a file, not `[heap]`, `[stack]` or an anonymous map) whose
    /// permissions have no `w`.
    public static func parseReadOnlyFileMappings(_ text: [UInt8]) -> [(start: UInt, end: UInt)] {
        var out: [(start: UInt, end: UInt)] = []
        for line in text.split(separator: UInt8(ascii: "\n")) {
            let fields = line.split(separator: UInt8(ascii: " "), maxSplits: 5, omittingEmptySubsequences: true)
            // The path is the rest of the line, after the spaces that align it.
            guard fields.count == 6, fields[1].count >= 3, fields[1][fields[1].startIndex + 1] != UInt8(ascii: "w"),
                fields[5].first(where: { $0 != UInt8(ascii: " ") }) == UInt8(ascii: "/")
            else { continue }
            let range = fields[0].split(separator: UInt8(ascii: "-"))
            guard range.count == 2, let start = UInt(String(decoding: range[0], as: UTF8.self), radix: 16),
                let end = UInt(String(decoding: range[1], as: UTF8.self), radix: 16), end > start
            else { continue }
            out.append((start, end))
        }
        return out
    }
}
