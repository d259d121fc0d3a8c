import Foundation
import Testing
import VigilCore

@testable import VigilLinux
@testable import VigilSensors

@Suite("Process sensor parsing")
struct ProcParsingTests {
    @Test("stat: fields are counted after the last parenthesis of the command name")
    func stat() throws {
        let line =
            "4242 (we (ird) name) S 17 4242 4200 34816 4242 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615 0"
        let stat = try #require(ProcParsing.stat(Array(line.utf8)))
        #expect(stat.parentPid == 17)
        #expect(stat.session == 4200)
        #expect(stat.ttyNumber == 34816)
        #expect(stat.startTimeTicks == 987654)
        #expect(ProcParsing.stat(Array("4242 (x) S 1 2".utf8)) == nil)
        #expect(ProcParsing.stat(Array("garbage".utf8)) == nil)
        #expect(ProcParsing.stat([]) == nil)
    }

    @Test("status: real and effective uid and gid")
    func credentials() throws {
        let text = "Name:\tsleep\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t100\t50\t50\t50\nFDSize:\t64\n"
        let c = try #require(ProcParsing.credentials(Array(text.utf8)))
        #expect(c.uid == 1000 && c.euid == 0 && c.gid == 100 && c.egid == 50)
        #expect(ProcParsing.credentials(Array("Uid:\tx\n".utf8)) == nil)
        // Gid before Uid (no kernel writes it so) is still found; no Gid at all is nil.
        let swapped = "Gid:\t7\t8\t8\t8\nUid:\t5\t6\t6\t6\n"
        #expect(ProcParsing.credentials(Array(swapped.utf8)) == .init(uid: 5, euid: 6, gid: 7, egid: 8))
        #expect(ProcParsing.credentials(Array("Uid:\t1\t2\t2\t2\n".utf8)) == nil)
    }

    @Test("stat and status of every process on this machine read as a plain split of their text reads them")
    func statAndStatusOfLiveProcesses() throws {
        let pids = try FileManager.default.contentsOfDirectory(atPath: "/proc").filter { UInt32($0) != nil }
        var compared = 0
        for pid in pids {
            guard let stat = FileManager.default.contents(atPath: "/proc/\(pid)/stat"),
                let status = FileManager.default.contents(atPath: "/proc/\(pid)/status")
            else { continue }  // gone meanwhile
            let text = String(decoding: stat, as: UTF8.self)
            let fields = text[text.index(after: try #require(text.lastIndex(of: ")")))...].split(separator: " ")
            let parsed = try #require(ProcParsing.stat(Array(stat)), "\(text)")
            #expect(parsed.parentPid == UInt32(fields[1]))
            #expect(parsed.session == Int32(fields[3]))
            #expect(Int64(parsed.ttyNumber) == Int64(fields[4]))
            #expect(parsed.startTimeTicks == UInt64(fields[19]))
            let lines = String(decoding: status, as: UTF8.self).split(separator: "\n")
            func numbers(_ label: String) throws -> [UInt32] {
                try #require(lines.first { $0.hasPrefix(label) }).dropFirst(label.count).split(
                    whereSeparator: \.isWhitespace
                )
                .compactMap { UInt32($0) }
            }
            let credentials = try #require(ProcParsing.credentials(Array(status)))
            #expect([credentials.uid, credentials.euid] == Array(try numbers("Uid:").prefix(2)))
            #expect([credentials.gid, credentials.egid] == Array(try numbers("Gid:").prefix(2)))
            compared += 1
        }
        #expect(compared > 10)
    }

    @Test("cmdline: NUL-separated arguments, empty ones kept, trailing NULs dropped")
    func argv() {
        #expect(ProcParsing.argv(Array("/bin/echo\0a b\0\0c\0".utf8)) == ["/bin/echo", "a b", "", "c"])
        #expect(ProcParsing.argv(Array("nginx: worker process".utf8)) == ["nginx: worker process"])
        #expect(ProcParsing.argv([]) == [])
        #expect(ProcParsing.argv([0, 0]) == [])
        #expect(ProcParsing.commandLine(["/bin/echo", "a b"]) == "/bin/echo a b")
    }

    @Test("loginuid and sessionid: unset is nil")
    func audit() {
        #expect(ProcParsing.auditNumber(Array("1000".utf8)) == 1000)
        #expect(ProcParsing.auditNumber(Array("4294967295".utf8)) == nil)
        #expect(ProcParsing.auditNumber(Array("x".utf8)) == nil)
    }

    @Test("tty names")
    func tty() {
        #expect(ProcParsing.ttyName(0) == nil)
        #expect(ProcParsing.ttyName(136 << 8 | 3) == "pts/3")
        #expect(ProcParsing.ttyName(4 << 8 | 1) == "tty1")
        #expect(ProcParsing.ttyName(4 << 8 | 64) == "ttyS0")
    }

    @Test("container ids from cgroup paths of docker, containerd, cri-o, podman, nspawn; none on the host")
    func containers() {
        let id = String(repeating: "0123456789abcdef", count: 4)
        let cases: [(String, String?)] = [
            ("0::/system.slice/docker-\(id).scope\n", id),
            ("12:pids:/docker/\(id)\n", id),
            (
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-\(id).scope\n",
                id
            ),
            ("0::/kubepods/besteffort/pod0b1c/\(id)\n", id),
            ("0::/machine.slice/crio-\(id).scope\n", id),
            ("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-\(id).scope/container\n", id),
            ("0::/machine.slice/machine-web\\x2d1.scope/payload\n", "web-1"),
            ("0::/machine.slice/systemd-nspawn@db.service/payload\n", "db"),
            ("0::/user.slice/user-1000.slice/session-3.scope\n", nil),
            ("0::/init.scope\n", nil),
            ("0::/\n", nil),
            ("garbage", nil),
        ]
        for (text, expected) in cases {
            #expect(ProcParsing.containerId(cgroup: Array(text.utf8)) == expected, "\(text)")
        }
    }

    @Test("exit codes: the code, or 128 + signal")
    func exitCodes() {
        #expect(ProcessReader.exitCode(0) == 0)
        #expect(ProcessReader.exitCode(3 << 8) == 3)
        #expect(ProcessReader.exitCode(9) == 137)
    }

    @Test("the executable among the files opened for one exec skips the ELF interpreter")
    func executable() {
        #expect(ProcessReader.executable(opened: nil) == nil)
        #expect(
            ProcessReader.executable(opened: ["/usr/bin/true", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"])
                == "/usr/bin/true"
        )
        #expect(
            ProcessReader.executable(opened: ["/tmp/x.sh", "/usr/bin/dash", "/usr/lib64/ld-linux-x86-64.so.2"])
                == "/usr/bin/dash"
        )
        #expect(ProcessReader.executable(opened: ["/static"]) == "/static")
    }

    @Test("passwd parsing")
    func passwd() {
        let names = UserNames.parse(
            Array("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\nbad\n".utf8)
        )
        #expect(names == [0: "root", 65534: "nobody"])
    }

    @Test("pid reuse never mixes two processes: the later start time wins the entry")
    func clocks() {
        let offsets = ClockOffsets(realtimeMinusMonotonic: 0, boottimeMinusMonotonic: 0)
        // Started at tick 100 (1 s at 100 Hz); exec at 2 s: same process.
        #expect(offsets.startedBefore(ticks: 100, ticksPerSecond: 100, monotonic: 2_000_000_000))
        // Started at 3 s, after the exec at 2 s: a newer process holds the pid.
        #expect(!offsets.startedBefore(ticks: 300, ticksPerSecond: 100, monotonic: 2_000_000_000))
        #expect(!offsets.startedBefore(ticks: .max, ticksPerSecond: 100, monotonic: 2_000_000_000))
    }
}

@Suite("Process table")
struct ProcessTableTests {
    @Test("bounded: the least recently used entry is evicted and counted")
    func lru() {
        var table = ProcessTable(capacity: 3)
        for pid in UInt32(1)...3 { table.upsert(ProcessRecord(pid: pid, image: "/p\(pid)")) }
        _ = table.lookup(pid: 1)  // 2 is now the oldest
        let evicted = table.upsert(ProcessRecord(pid: 4))
        #expect(evicted?.pid == 2)
        #expect(table.count == 3 && table.evictions == 1)
        #expect(table.peek(pid: 2) == nil && table.peek(pid: 1) != nil)
        for pid in UInt32(5)..<1005 { table.upsert(ProcessRecord(pid: pid)) }
        #expect(table.count == 3 && table.evictions == 1001)
        #expect(Set([1002, 1003, 1004].compactMap { table.peek(pid: $0)?.pid }) == [1002, 1003, 1004])
    }

    @Test("exits remove entries; freed slots are reused")
    func remove() {
        var table = ProcessTable(capacity: 2)
        table.upsert(ProcessRecord(pid: 10))
        table.upsert(ProcessRecord(pid: 11))
        #expect(table.remove(pid: 10)?.pid == 10)
        #expect(table.remove(pid: 10) == nil)
        table.upsert(ProcessRecord(pid: 12))
        #expect(table.count == 2 && table.evictions == 0)
        table.upsert(ProcessRecord(pid: 13))
        #expect(table.peek(pid: 11) == nil && table.evictions == 1)
    }

    @Test("a lookup with another start time does not return the former holder of the pid")
    func reuse() {
        var table = ProcessTable(capacity: 8)
        table.upsert(ProcessRecord(pid: 7, startTimeTicks: 100, commandLine: "old"))
        #expect(table.lookup(pid: 7, startTimeTicks: 100)?.commandLine == "old")
        #expect(table.lookup(pid: 7, startTimeTicks: 200) == nil)
        table.upsert(ProcessRecord(pid: 7, startTimeTicks: 200, commandLine: "new"))
        #expect(table.lookup(pid: 7, startTimeTicks: 200)?.commandLine == "new")
        #expect(table.count == 1)
    }
}

@Suite("Proc connector parser")
struct ProcConnectorParserTests {
    /// One netlink message carrying a proc event with `what` and union words.
    static func message(what: UInt32, words: [UInt32], cnLength: UInt16? = nil) -> [UInt8] {
        var bytes: [UInt8] = []
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        let eventLength = 16 + 24
        put(UInt32(16 + 20 + eventLength))
        put(UInt16(3))
        put(UInt16(0))
        put(UInt32(0))
        put(UInt32(0))
        put(UInt32(1))
        put(UInt32(1))
        put(UInt32(0))
        put(UInt32(0))
        put(cnLength ?? UInt16(eventLength))
        put(UInt16(0))
        put(what)
        put(UInt32(1))
        put(UInt64(123_456_789))
        for i in 0..<6 { put(i < words.count ? words[i] : 0) }
        return bytes
    }

    static func parse(_ bytes: [UInt8]) -> ([ProcConnectorMessage], ProcConnectorParser.Summary) {
        var out: [ProcConnectorMessage] = []
        let summary = bytes.withUnsafeBytes { ProcConnectorParser.parse($0) { out.append($0) } }
        return (out, summary)
    }

    @Test("fork, exec, exit, uid, ptrace and comm records")
    func records() {
        var comm = Array("worker".utf8) + [UInt8](repeating: 0, count: 10)
        let commWords = (0..<4).map { i in
            comm.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self) }
        }
        comm.removeAll()
        let bytes =
            Self.message(what: 1, words: [10, 10, 11, 11]) + Self.message(what: 2, words: [11, 11])
            + Self.message(what: 0x8000_0000, words: [11, 11, 3 << 8, 17, 10, 10])
            + Self.message(what: 4, words: [11, 11, 1000, 0]) + Self.message(what: 0x100, words: [11, 11, 12, 12])
            + Self.message(what: 0x200, words: [11, 11] + commWords)
        let (messages, summary) = Self.parse(bytes)
        #expect(summary.messages == 6 && summary.malformed == 0)
        #expect(
            messages.map(\.event) == [
                .fork(parentPid: 10, parentTgid: 10, childPid: 11, childTgid: 11),
                .exec(pid: 11, tgid: 11),
                .exit(pid: 11, tgid: 11, exitStatus: 3 << 8, exitSignal: 17, parentPid: 10, parentTgid: 10),
                .uidChange(pid: 11, tgid: 11, ruid: 1000, euid: 0),
                .ptrace(pid: 11, tgid: 11, tracerPid: 12, tracerTgid: 12),
                .commChange(pid: 11, tgid: 11, comm: "worker"),
            ]
        )
        #expect(messages.first?.timestampNanoseconds == 123_456_789)
    }

    @Test("short, foreign and corrupt input is counted, never trusted")
    func malformed() {
        let good = Self.message(what: 2, words: [5, 5])
        // Truncated anywhere: no crash, no event beyond what is whole.
        for cut in 0..<good.count {
            let (messages, _) = Self.parse(Array(good[0..<cut]))
            #expect(messages.isEmpty)
        }
        // A data length claiming less than a proc event.
        #expect(Self.parse(Self.message(what: 2, words: [5, 5], cnLength: 8)).1.malformed == 1)
        // A nlmsg_len larger than the datagram.
        var lying = good
        lying[0] = 0xff
        #expect(Self.parse(lying).0.isEmpty)
        // Random bytes.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let n = Int.random(in: 0..<200, using: &generator)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if n >= 8, Bool.random() {
                bytes[4] = 3
                bytes[5] = 0
            }
            _ = Self.parse(bytes)
        }
    }
}
