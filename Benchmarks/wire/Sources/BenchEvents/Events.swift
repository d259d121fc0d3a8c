// The benchmarks' synthetic event stream: one host's activity, deterministic (the same events
// every run), shared by wire-bench and delivery-bench so both measure the same mix.
import Foundation
import VigilCore
import VigilSensors

/// SplitMix64: deterministic, so both sides see the same events every run.
public struct Random {
    public init(state: UInt64) { self.state = state }
    public var state: UInt64
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

private let dirs = [
    "/etc", "/etc/cron.d", "/var/log", "/tmp", "/home/app/data", "/srv/www/uploads", "/var/lib/postgresql/15/main",
    "/usr/local/bin",
]
private let names = [
    "config.yaml", "access.log", "index.html", "session", "report.csv", "backup.tar", "id_rsa.pub", "run.sh",
    "0000000100000000000000A3",
]
private let images = [
    "/usr/bin/bash", "/usr/bin/python3.11", "/usr/sbin/sshd", "/usr/bin/curl", "/usr/lib/postgresql/15/bin/postgres",
    "/usr/bin/tar", "/usr/sbin/cron",
]
private let commands = [
    "bash -c ./deploy.sh --env prod", "python3 /opt/app/worker.py --queue default",
    "curl -fsSL https://example.org/install.sh", "tar czf /var/backups/db.tar.gz /var/lib/db", "postgres: checkpointer",
    "/usr/sbin/sshd -D -R",
]
private let users = ["root", "www-data", "postgres", "app", "backup"]

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
public func makeEvents(_ n: Int) -> [Event] {
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
public func ipv4(_ text: String) -> IPAddressBits {
    IPAddressBits(high: 0, low: text.split(separator: ".").reduce(0) { $0 << 8 | UInt64($1)! })
}

/// Writes `events` as JSON lines (Vigil's own JSON form of an event, keys sorted), the form the
/// JSON + gzip references ship.
public func writeJSONLines(_ events: [Event], to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    var out = Data()
    for e in events {
        out.append(try encoder.encode(e))
        out.append(0x0a)
    }
    try out.write(to: URL(fileURLWithPath: path))
}
