/// Parsers for `/proc/PID` files. Each takes the raw bytes and returns nil (or leaves a field
/// nil) for anything malformed: content from the kernel is checked, never trusted to be whole.
public enum ProcParsing {
    /// `/proc/PID/stat` fields the sensor uses.
    public struct Stat: Hashable, Sendable {
        public var parentPid: UInt32
        public var session: Int32
        /// `tty_nr`: the controlling terminal's device number, 0 for none.
        public var ttyNumber: UInt32
        public var startTimeTicks: UInt64
    }

    /// Parses `/proc/PID/stat`; the command name (field 2) may hold spaces and parentheses, so
    /// fields are counted after the last `)`.
    public static func stat(_ bytes: [UInt8]) -> Stat? {
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        // Fields after the name, in place: field N (N >= 3) is the (N - 3)th.
        var fields = FieldScanner(bytes, from: close + 1, separators: (UInt8(ascii: " "), UInt8(ascii: " ")))
        guard fields.skip(1),  // 3: state
            let ppid = fields.next().flatMap(UInt32.init(decimal:)),  // 4
            fields.skip(1),  // 5: pgrp
            let session = fields.next().flatMap(Int32.init(decimal:)),  // 6
            let tty = fields.next().flatMap(Int64.init(decimal:)),  // 7
            fields.skip(14),  // 8-21
            let start = fields.next().flatMap(UInt64.init(decimal:))  // 22: starttime
        else { return nil }
        return Stat(
            parentPid: ppid,
            session: session,
            ttyNumber: UInt32(truncatingIfNeeded: tty),
            startTimeTicks: start
        )
    }

    /// Real and effective uid and gid from `/proc/PID/status` (`Uid:` and `Gid:` lines).
    public struct Credentials: Hashable, Sendable {
        public var uid: UInt32
        public var euid: UInt32
        public var gid: UInt32
        public var egid: UInt32
    }

    public static func credentials(_ bytes: [UInt8]) -> Credentials? {
        // The kernel writes `Gid:` right after `Uid:`: look there first, then from the top.
        guard let (uids, uidLineEnd) = firstTwoNumbers(bytes, afterLine: "Uid:", from: 0),
            let (gids, _) = firstTwoNumbers(bytes, afterLine: "Gid:", from: uidLineEnd)
                ?? firstTwoNumbers(bytes, afterLine: "Gid:", from: 0)
        else { return nil }
        return Credentials(uid: uids.0, euid: uids.1, gid: gids.0, egid: gids.1)
    }

    /// The first two numbers of the first line at or after `start` that starts with `label`
    /// (tab or space separated), read in place, and where that line ends.
    private static func firstTwoNumbers(
        _ bytes: [UInt8],
        afterLine label: StaticString,
        from start: Int
    ) -> ((UInt32, UInt32), lineEnd: Int)? {
        let tag = UnsafeRawBufferPointer(start: label.utf8Start, count: label.utf8CodeUnitCount)
        var lineStart = start
        while lineStart < bytes.count {
            let lineEnd = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
            if lineEnd - lineStart >= tag.count, bytes[lineStart..<(lineStart + tag.count)].elementsEqual(tag) {
                var fields = FieldScanner(
                    bytes[..<lineEnd],
                    from: lineStart + tag.count,
                    separators: (UInt8(ascii: "\t"), UInt8(ascii: " "))
                )
                guard let first = fields.next().flatMap(UInt32.init(decimal:)),
                    let second = fields.next().flatMap(UInt32.init(decimal:))
                else { return nil }
                return ((first, second), lineEnd)
            }
            lineStart = lineEnd + 1
        }
        return nil
    }

    /// The arguments of `/proc/PID/cmdline` (NUL-separated; the last NUL may be missing when
    /// the process rewrote its arguments). Empty for a zombie or kernel thread.
    public static func argv(_ bytes: [UInt8]) -> [String] {
        var end = bytes.endIndex
        while end > bytes.startIndex, bytes[end - 1] == 0 { end -= 1 }
        guard end > bytes.startIndex else { return [] }
        return bytes[..<end].split(separator: 0, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
    }

    /// `CommandLine`: the arguments joined with spaces (as Sysmon for Linux and auditd's
    /// `proctitle` show them).
    public static func commandLine(_ argv: [String]) -> String {
        argv.joined(separator: " ")
    }

    /// A number file such as `loginuid` or `sessionid`; nil for "unset" (`4294967295`).
    public static func auditNumber(_ bytes: [UInt8]) -> UInt32? {
        let digits = bytes.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        guard let value = UInt32(decimal: digits[...]), value != UInt32.max else { return nil }
        return value
    }

    /// The terminal name for `tty_nr` (`pts/3`, `tty1`, `ttyS0`), `major:minor` for others,
    /// nil for none.
    public static func ttyName(_ number: UInt32) -> String? {
        guard number != 0 else { return nil }
        let major = (number >> 8) & 0xfff
        let minor = (number & 0xff) | ((number >> 12) & 0xfff00)
        switch major {
        case 136...143: return "pts/\((major - 136) * 256 + minor)"
        case 4 where minor < 64: return "tty\(minor)"
        case 4: return "ttyS\(minor - 64)"
        case 5 where minor == 0: return "tty"
        case 5 where minor == 1: return "console"
        default: return "\(major):\(minor)"
        }
    }

    /// The container a process runs in, from its `/proc/PID/cgroup` paths: the 64-hex id of
    /// docker (`/docker/ID`, `docker-ID.scope`), containerd (`cri-containerd-ID.scope`,
    /// `/kubepods/.../ID`), cri-o (`crio-ID.scope`) and podman (`libpod-ID.scope`), or the
    /// machine name of a systemd-nspawn container (`machine.slice/machine-NAME.scope` or
    /// `systemd-nspawn@NAME.service`). Nil on the host.
    public static func containerId(cgroup bytes: [UInt8]) -> String? {
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            // hierarchy-ID:controllers:path
            guard
                let path = line.split(separator: UInt8(ascii: ":"), maxSplits: 2, omittingEmptySubsequences: false).last
            else { continue }
            let components = path.split(separator: UInt8(ascii: "/"))
            // The innermost id wins.
            for component in components.reversed() {
                var name = Substring(String(decoding: component, as: UTF8.self))
                if name.hasSuffix(".scope") { name = name.dropLast(6) }
                if let dash = name.lastIndex(of: "-") {
                    let id = name[name.index(after: dash)...]
                    if isContainerId(id) { return String(id) }
                } else if isContainerId(name) {
                    return String(name)
                }
            }
            for component in components {
                let name = String(decoding: component, as: UTF8.self)
                if name.hasPrefix("machine-"), name.hasSuffix(".scope") {
                    return unescapeSystemd(String(name.dropFirst(8).dropLast(6)))
                }
                if name.hasPrefix("systemd-nspawn@"), name.hasSuffix(".service") {
                    return unescapeSystemd(String(name.dropFirst(15).dropLast(8)))
                }
            }
        }
        return nil
    }

    private static func isContainerId(_ s: Substring) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// systemd escapes `-` in unit names as `\x2d`.
    private static func unescapeSystemd(_ s: String) -> String {
        s.replacing("\\x2d", with: "-")
    }
}

/// Walks the fields of a line in place: runs of bytes between separators (runs of separators
/// count as one), without building an array of them.
struct FieldScanner<Bytes: Collection<UInt8>> where Bytes.Index == Int {
    private let bytes: Bytes
    private var position: Int
    private let separators: (UInt8, UInt8)

    init(_ bytes: Bytes, from start: Int, separators: (UInt8, UInt8)) {
        self.bytes = bytes
        self.position = start
        self.separators = separators
    }

    private func isSeparator(_ byte: UInt8) -> Bool { byte == separators.0 || byte == separators.1 }

    /// The next field; nil at the end.
    mutating func next() -> Bytes.SubSequence? {
        let end = bytes.endIndex
        while position < end, isSeparator(bytes[position]) { position += 1 }
        guard position < end else { return nil }
        let start = position
        while position < end, !isSeparator(bytes[position]) { position += 1 }
        return bytes[start..<position]
    }

    /// Skips `count` fields; false when the line ends first.
    mutating func skip(_ count: Int) -> Bool {
        for _ in 0..<count where next() == nil { return false }
        return true
    }
}

extension FixedWidthInteger {
    /// Parses ASCII decimal digits with an optional leading `-`; nil for anything else or overflow.
    init?(decimal bytes: some Collection<UInt8>) {
        guard !bytes.isEmpty else { return nil }
        var value: Self = 0
        var negative = false
        var first = true
        for byte in bytes {
            if first, byte == UInt8(ascii: "-"), Self.isSigned {
                negative = true
                first = false
                continue
            }
            first = false
            guard byte >= 48, byte <= 57 else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) =
                negative ? m.subtractingReportingOverflow(Self(byte - 48)) : m.addingReportingOverflow(Self(byte - 48))
            guard !o1, !o2 else { return nil }
            value = a
        }
        if negative && bytes.count == 1 { return nil }
        self = value
    }
}
