// Encodes, compresses and signs N synthetic events (a deterministic mix of file, process and
// flow events) in batches, on one thread, and prints what it cost and how many bytes it made.
// With --json-out it also writes the same events as JSON lines for the reference side.
//
// usage: wire-bench [--events N] [--batch N] [--level ZSTD_LEVEL] [--json-out FILE]
import Foundation
import VigilCore
import VigilSensors
import VigilWire

var count = 1_000_000
var batchSize = 2000
var jsonOut: String? = nil
var level: Int32 = 3
var breakdown = false
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--events": count = Int(args.popFirst() ?? "") ?? count
    case "--batch": batchSize = Int(args.popFirst() ?? "") ?? batchSize
    case "--json-out": jsonOut = args.popFirst()
    case "--level": level = Int32(args.popFirst() ?? "") ?? level
    case "--breakdown": breakdown = true
    default:
        FileHandle.standardError.write(
            Data("usage: wire-bench [--events N] [--batch N] [--level ZSTD_LEVEL] [--json-out FILE]\n".utf8)
        )
        exit(2)
    }
}

/// SplitMix64: deterministic, so both sides see the same events every run.
struct Random {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

let dirs = [
    "/etc", "/etc/cron.d", "/var/log", "/tmp", "/home/app/data", "/srv/www/uploads", "/var/lib/postgresql/15/main",
    "/usr/local/bin",
]
let names = [
    "config.yaml", "access.log", "index.html", "session", "report.csv", "backup.tar", "id_rsa.pub", "run.sh",
    "0000000100000000000000A3",
]
let images = [
    "/usr/bin/bash", "/usr/bin/python3.11", "/usr/sbin/sshd", "/usr/bin/curl", "/usr/lib/postgresql/15/bin/postgres",
    "/usr/bin/tar", "/usr/sbin/cron",
]
let commands = [
    "bash -c ./deploy.sh --env prod", "python3 /opt/app/worker.py --queue default",
    "curl -fsSL https://example.org/install.sh", "tar czf /var/backups/db.tar.gz /var/lib/db", "postgres: checkpointer",
    "/usr/sbin/sshd -D -R",
]
let users = ["root", "www-data", "postgres", "app", "backup"]

/// A host's worth of activity: a fixed population of files (each keeps its inode, owner and
/// mode; its size and hash change when it is written), processes exec'd by a few parents with
/// increasing pids, and flows between a few hundred peers and services. Hashes, ephemeral
/// ports, timestamps and counters stay as random as they are on a real host.
///
/// Flows are what the flow sensor reports: `ts` is the first packet's (pcap, microseconds),
/// before the event's own time (the flow is reported once it ended), and `community_id` is the
/// Community ID of the 5-tuple computed by the sensor's own code. (An earlier version used
/// random bytes for it, which no real flow has; a real Community ID is as incompressible for
/// both sides, since each flow's tuple is new, but a reader can recompute it from the tuple.)
func makeEvents(_ n: Int) -> [Event] {
    var r = Random(state: 42)
    var t: Int64 = 1_764_334_800_000_000_000
    struct File {
        var path: String
        var inode: UInt64
        var uid: UInt32
        var mode: UInt32
        var size: UInt64
        var sha: String
    }
    func randomHash(_ r: inout Random) -> String {
        Hex.encode((0..<32).map { _ in UInt8(truncatingIfNeeded: r.next()) })
    }
    var files: [File] = (0..<5000).map { i in
        let uid = UInt32([0, 0, 0, 33, 999, 1000, 1001][r.below(7)])
        return File(
            path: dirs[r.below(dirs.count)] + "/" + names[r.below(names.count)] + ".\(i)",
            inode: UInt64(131_072 + i * 7 + r.below(7)),
            uid: uid,
            mode: [0o100644, 0o100600, 0o100755, 0o100640][r.below(4)],
            size: UInt64(r.below(1 << 16)),
            sha: randomHash(&r)
        )
    }
    let userOf: [UInt32: String] = [0: "root", 33: "www-data", 999: "postgres", 1000: "app", 1001: "backup"]
    let parents: [(pid: UInt32, image: String, cmd: String)] = (0..<40).map { i in
        (UInt32(300 + i * 37), images[i % images.count], commands[i % commands.count])
    }
    var nextPid: UInt32 = 20_000
    let peers = (0..<300).map { i in "10.\(i % 3).\(i / 3 % 200).\(1 + i % 250)" }
    let services: [(ip: String, port: UInt16)] = [
        ("10.0.0.5", 443), ("10.0.0.5", 80), ("10.0.0.2", 53), ("10.0.1.10", 5432), ("10.0.1.11", 6379),
        ("10.0.2.1", 22),
    ]
    var events: [Event] = []
    events.reserveCapacity(n)
    for i in 0..<n {
        t += Int64(r.below(2_000_000))
        let seq = UInt64(i + 1)
        let kind = r.below(10)
        let payload: Event.Payload
        if kind < 4 {
            let idx = r.below(files.count)
            let action: FileEvent.Action = [.create, .modify, .modify, .modify, .attrib, .delete, .rename][r.below(7)]
            if action == .modify || action == .create {
                files[idx].size = UInt64(r.below(1 << 16))
                files[idx].sha = randomHash(&r)
            }
            let f = files[idx]
            let hashed = action == .modify || action == .create
            payload = .file(
                FileEvent(
                    action: action,
                    targetFilename: f.path,
                    metadata: action == .delete
                        ? nil : FileMetadata(mode: f.mode, uid: f.uid, gid: f.uid, size: f.size, inode: f.inode),
                    sha256: hashed ? f.sha : nil,
                    image: images[Int(f.uid) % images.count],
                    processId: parents[r.below(parents.count)].pid
                )
            )
        } else if kind < 7 {
            let parent = parents[r.below(parents.count)]
            let cmd = commands[r.below(commands.count)]
            let uid = [UInt32(0), 33, 999, 1000, 1001][r.below(5)]
            nextPid &+= UInt32(1 + r.below(3))
            payload = .process(
                ProcessEvent(
                    action: .exec,
                    processId: nextPid,
                    parentProcessId: parent.pid,
                    image: images[r.below(images.count)],
                    commandLine: cmd,
                    argv: cmd.split(separator: " ").map(String.init),
                    currentDirectory: dirs[r.below(dirs.count)],
                    user: userOf[uid],
                    uid: uid,
                    euid: uid,
                    gid: uid,
                    parentImage: parent.image,
                    parentCommandLine: parent.cmd,
                    startTimeTicks: UInt64(t / 10_000_000)
                )
            )
        } else {
            let service = services[r.below(services.count)]
            let tcp = service.port != 53
            let pkts = UInt64(1 + r.below(40))
            let durationMicros = Int64(r.below(100_000_000))
            let reportDelayMicros = Int64(1_000_000 + r.below(1_000_000))  // idle timeout
            let firstMicros = t / 1000 - durationMicros - reportDelayMicros
            let peer = peers[r.below(peers.count)]
            let origP = UInt16(32768 + r.below(28000))
            payload = .flow(
                FlowEvent(
                    ts: Double(firstMicros) / 1e6,
                    duration: Double(durationMicros) / 1e6,
                    proto: tcp ? "tcp" : "udp",
                    origH: peer,
                    origP: origP,
                    respH: service.ip,
                    respP: service.port,
                    origPkts: pkts,
                    respPkts: pkts + UInt64(r.below(8)),
                    origIPBytes: pkts * UInt64(60 + r.below(200)),
                    respIPBytes: pkts * UInt64(60 + r.below(1400)),
                    origBytes: pkts * UInt64(r.below(200)),
                    respBytes: pkts * UInt64(r.below(1400)),
                    origTCPFlags: tcp ? 0x1b : 0,
                    respTCPFlags: tcp ? 0x1a : 0,
                    state: tcp ? "SF" : "",
                    communityID: CommunityID.compute(
                        family: 4,
                        source: ipv4(peer),
                        destination: ipv4(service.ip),
                        proto: tcp ? 6 : 17,
                        sourcePort: origP,
                        destinationPort: service.port
                    )
                )
            )
        }
        events.append(Event(seq: seq, time: Timestamp(nanosecondsSinceEpoch: t), payload: payload))
    }
    return events
}

/// The address bits of a dotted IPv4 address, as the flow sensor keeps them.
func ipv4(_ text: String) -> IPAddressBits {
    IPAddressBits(high: 0, low: text.split(separator: ".").reduce(0) { $0 << 8 | UInt64($1)! })
}

func threadCPU() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

let events = makeEvents(count)
if let jsonOut {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    var out = Data()
    for e in events {
        out.append(try encoder.encode(e))
        out.append(0x0a)
    }
    try out.write(to: URL(fileURLWithPath: jsonOut))
}

/// Wire bytes per event of `events` sealed in batches (no timing).
func wireBytesPerEvent(_ events: [Event], sealer: BatchSealer, batchSize: Int) throws -> Double {
    var bytes = 0
    var prev = genesisHeaderHash
    var i = 0
    while i < events.count {
        let batch = try sealer.seal(
            events: Array(events[i..<min(i + batchSize, events.count)]),
            batchSeq: UInt64(i / batchSize + 1),
            prevHeaderHash: prev
        )
        bytes += batch.serialized().count
        prev = batch.headerHash
        i += batchSize
    }
    return Double(bytes) / Double(events.count)
}

if breakdown {
    // Where the bytes go: the same stream with one group of fields blanked at a time. The drop
    // from the full stream is what that group costs on the wire, per event of the whole stream.
    let sealer = BatchSealer(identity: AgentIdentity.generate(), compressionLevel: level)
    let full = try wireBytesPerEvent(events, sealer: sealer, batchSize: batchSize)
    print("full stream: \(full) bytes/event")
    func variant(_ name: String, _ change: (inout Event) -> Void) throws {
        var copy = events
        for i in copy.indices { change(&copy[i]) }
        let b = try wireBytesPerEvent(copy, sealer: sealer, batchSize: batchSize)
        print("\(name.padding(toLength: 36, withPad: " ", startingAt: 0)) \(b) (-\(full - b))")
    }
    for kind in [EventType.file, .process, .flow] {
        let only = events.filter { $0.type == kind }
        print(
            "only \(kind) events: \(only.count), \(try wireBytesPerEvent(only, sealer: sealer, batchSize: batchSize)) bytes each"
        )
    }
    try variant("time = 0") { $0.time = Timestamp(nanosecondsSinceEpoch: 0) }
    try variant("file sha256 = nil") {
        if case .file(var f) = $0.payload {
            f.sha256 = nil
            $0.payload = .file(f)
        }
    }
    try variant("file metadata = nil") {
        if case .file(var f) = $0.payload {
            f.metadata = nil
            $0.payload = .file(f)
        }
    }
    try variant("flow community_id = \"\"") {
        if case .flow(var f) = $0.payload {
            f.communityID = ""
            $0.payload = .flow(f)
        }
    }
    try variant("flow ts, duration = 0") {
        if case .flow(var f) = $0.payload {
            f.ts = 0
            f.duration = 0
            $0.payload = .flow(f)
        }
    }
    try variant("flow counters = 0") {
        if case .flow(var f) = $0.payload {
            f.origPkts = 0
            f.respPkts = 0
            f.origBytes = 0
            f.respBytes = 0
            f.origIPBytes = 0
            f.respIPBytes = 0
            $0.payload = .flow(f)
        }
    }
    try variant("flow orig_p = 0") {
        if case .flow(var f) = $0.payload {
            f.origP = 0
            $0.payload = .flow(f)
        }
    }
    try variant("process argv = []") {
        if case .process(var p) = $0.payload {
            p.argv = []
            $0.payload = .process(p)
        }
    }
    try variant("process pid, start ticks = 0") {
        if case .process(var p) = $0.payload {
            p.processId = 0
            p.startTimeTicks = nil
            $0.payload = .process(p)
        }
    }
    exit(0)
}

let sealer = BatchSealer(identity: AgentIdentity.generate(), compressionLevel: level)
var prev = genesisHeaderHash
var wireBytes = 0
var rawBytes: UInt64 = 0
var batches = 0
let wallStart = Date()
let cpuStart = threadCPU()
var i = 0
while i < events.count {
    let slice = Array(events[i..<min(i + batchSize, events.count)])
    let batch = try sealer.seal(events: slice, batchSeq: UInt64(batches + 1), prevHeaderHash: prev)
    wireBytes += batch.serialized().count
    rawBytes += batch.header.uncompressedSize
    prev = batch.headerHash
    batches += 1
    i += batchSize
}
let cpu = threadCPU() - cpuStart
let wall = Date().timeIntervalSince(wallStart)
print(
    "{\"events\":\(events.count),\"batches\":\(batches),\"batch_size\":\(batchSize),\"cpu_s\":\(cpu),\"wall_s\":\(wall),"
        + "\"events_per_cpu_s\":\(Double(events.count) / cpu),\"wire_bytes\":\(wireBytes),\"bytes_per_event\":\(Double(wireBytes) / Double(events.count)),\"raw_bytes_per_event\":\(Double(rawBytes) / Double(events.count)),\"zstd_level\":\(level)}"
)
