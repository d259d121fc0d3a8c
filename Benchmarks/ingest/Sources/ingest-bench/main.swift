// Posts signed batches to running collectors as a fleet of agents would, and measures ingest:
// events/s over the whole run and each batch's round trip (POST /v1/batches until the collector
// answers that the batch is stored). Batches are sealed before the clock starts, so the figure is
// the collector's (verify, decompress, decode, store), not this program's.
//
// Every agent sends its batches in chain order, one at a time (as vigild does); agents run
// concurrently. With several collectors, each batch goes to the next collector in turn, so every
// agent's chain is extended through all of them (the scale-out case: shared chain state).
//
// usage: ingest-bench --collector URL [--collector URL ...] --enroll-token TOKEN
//                     [--agents N] [--batches PER_AGENT] [--events PER_BATCH] [--label TEXT]
// Prints one JSON object.
import AsyncHTTPClient
import Foundation
import NIOCore
import VigilCore
import VigilWire

struct Options {
    var collectors: [String] = []
    var enrollToken = ""
    var agents = 8
    var batches = 40
    var events = 1000
    var label = "vigil"

    static let usage =
        "usage: ingest-bench --collector URL [--collector URL ...] --enroll-token TOKEN [--agents N] [--batches PER_AGENT] [--events PER_BATCH] [--label TEXT]\n"

    static func parse() -> Options {
        var o = Options()
        var args = CommandLine.arguments.dropFirst()
        func int(_ flag: String) -> Int {
            guard let v = args.popFirst().flatMap(Int.init), v > 0 else { fail("\(flag): a positive integer") }
            return v
        }
        while let a = args.popFirst() {
            switch a {
            case "--collector": o.collectors.append(args.popFirst() ?? "")
            case "--enroll-token": o.enrollToken = args.popFirst() ?? ""
            case "--agents": o.agents = int(a)
            case "--batches": o.batches = int(a)
            case "--events": o.events = int(a)
            case "--label": o.label = args.popFirst() ?? o.label
            default: fail("unknown argument '\(a)'")
            }
        }
        if o.collectors.isEmpty || o.enrollToken.isEmpty { fail("--collector and --enroll-token are required") }
        return o
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("ingest-bench: \(message)\n\(Options.usage)".utf8))
    exit(2)
}

/// SplitMix64: the same events every run.
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
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

let dirs = ["/etc", "/var/log", "/tmp", "/home/app/data", "/srv/www/uploads", "/usr/local/bin"]
let names = ["config.yaml", "access.log", "index.html", "session", "report.csv", "backup.tar", "run.sh"]
let images = [
    "/usr/bin/bash", "/usr/bin/python3.11", "/usr/sbin/sshd", "/usr/bin/curl", "/usr/bin/tar", "/usr/sbin/cron",
]
let commands = [
    "bash -c ./deploy.sh --env prod", "python3 /opt/app/worker.py --queue default",
    "curl -fsSL https://example.org/install.sh", "tar czf /var/backups/db.tar.gz /var/lib/db", "/usr/sbin/sshd -D -R",
]

/// One host's activity: file writes, process execs and flows, in the proportions a busy server makes.
func makeEvent(seq: UInt64, time: Timestamp, random: inout Random) -> Event {
    switch random.below(10) {
    case 0..<5:
        let path = random.pick(dirs) + "/" + random.pick(names)
        let hash = (0..<4).map { _ in String(format: "%016llx", random.next()) }.joined()
        return Event(
            seq: seq,
            time: time,
            payload: .file(
                FileEvent(
                    action: .modify,
                    targetFilename: path,
                    metadata: FileMetadata(
                        mode: 0o100644,
                        uid: 1000,
                        gid: 1000,
                        size: UInt64(random.below(1 << 20)),
                        inode: UInt64(random.below(1 << 24))
                    ),
                    sha256: hash
                )
            )
        )
    case 5..<8:
        let image = random.pick(images)
        let command = random.pick(commands)
        return Event(
            seq: seq,
            time: time,
            payload: .process(
                ProcessEvent(
                    action: .exec,
                    processId: UInt32(1000 + random.below(60000)),
                    parentProcessId: UInt32(1 + random.below(999)),
                    image: image,
                    commandLine: command,
                    argv: command.split(separator: " ").map(String.init),
                    currentDirectory: random.pick(dirs),
                    user: "app",
                    uid: 1000,
                    euid: 1000,
                    gid: 1000,
                    parentImage: "/usr/bin/bash"
                )
            )
        )
    default:
        return Event(
            seq: seq,
            time: time,
            payload: .flow(
                FlowEvent(
                    ts: Double(time.nanosecondsSinceEpoch) / 1e9,
                    duration: Double(random.below(5_000_000)) / 1e6,
                    proto: "tcp",
                    origH: "10.0.\(random.below(4)).\(1 + random.below(250))",
                    origP: UInt16(32768 + random.below(28000)),
                    respH: "10.1.0.\(1 + random.below(8))",
                    respP: [443, 5432, 6379, 80][random.below(4)],
                    origPkts: UInt64(1 + random.below(40)),
                    respPkts: UInt64(1 + random.below(40)),
                    origBytes: UInt64(random.below(100_000)),
                    respBytes: UInt64(random.below(1_000_000)),
                    state: "SF"
                )
            )
        )
    }
}

struct Agent {
    let identity: AgentIdentity
    let batches: [[UInt8]]
}

func sealAgents(_ o: Options) throws -> [Agent] {
    let run = UInt64(Date().timeIntervalSince1970)
    var random = Random(state: 42)
    let start = Timestamp.now().nanosecondsSinceEpoch
    return try (0..<o.agents).map { index in
        let identity = AgentIdentity(
            agentId: "bench-\(run)-\(index)",
            privateKey: AgentIdentity.generate().privateKey
        )
        let sealer = BatchSealer(identity: identity)
        var prev = genesisHeaderHash
        var seq: UInt64 = 1
        var time = start
        var batches: [[UInt8]] = []
        for batchSeq in 1...UInt64(o.batches) {
            var events: [Event] = []
            events.reserveCapacity(o.events)
            for _ in 0..<o.events {
                time += Int64(1 + random.below(2_000_000))
                events.append(makeEvent(seq: seq, time: Timestamp(nanosecondsSinceEpoch: time), random: &random))
                seq += 1
            }
            let batch = try sealer.seal(events: events, batchSeq: batchSeq, prevHeaderHash: prev)
            prev = batch.headerHash
            batches.append(batch.serialized())
        }
        return Agent(identity: identity, batches: batches)
    }
}

struct Failure: Error, CustomStringConvertible {
    var description: String
}

func post(
    _ client: HTTPClient,
    _ url: String,
    body: [UInt8],
    contentType: String
) async throws -> (status: UInt, body: String) {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: contentType)
    request.body = .bytes(ByteBuffer(bytes: body))
    let response = try await client.execute(request, timeout: .seconds(60))
    let bytes = try await response.body.collect(upTo: 1 << 20)
    return (response.status.code, String(buffer: bytes))
}

let options = Options.parse()
let agents = try sealAgents(options)
let client = HTTPClient(eventLoopGroupProvider: .singleton)
let bases = options.collectors.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }

for agent in agents {
    let enroll: [String: String] = [
        "token": options.enrollToken, "agent_id": agent.identity.agentId,
        "public_key": agent.identity.publicKeyBase64, "hostname": agent.identity.agentId,
        "machine_id": agent.identity.agentId,
    ]
    let reply = try await post(
        client,
        bases[0] + "/v1/enroll",
        body: Array(try JSONEncoder().encode(enroll)),
        contentType: "application/json"
    )
    guard reply.status == 200 else { throw Failure(description: "enroll: HTTP \(reply.status): \(reply.body)") }
}

let clock = ContinuousClock()
let started = clock.now
let latencies: [[Double]] = try await withThrowingTaskGroup(of: [Double].self) { group in
    for (index, agent) in agents.enumerated() {
        group.addTask {
            var mine: [Double] = []
            for (k, batch) in agent.batches.enumerated() {
                let base = bases[(index + k) % bases.count]
                let t0 = clock.now
                let reply = try await post(
                    client,
                    base + "/v1/batches",
                    body: batch,
                    contentType: "application/x-protobuf"
                )
                mine.append((clock.now - t0) / .milliseconds(1))
                guard reply.status == 200, reply.body.contains("\"accepted\"") else {
                    throw Failure(
                        description: "batch \(k + 1) of \(agent.identity.agentId): HTTP \(reply.status): \(reply.body)"
                    )
                }
            }
            return mine
        }
    }
    var all: [[Double]] = []
    for try await l in group { all.append(l) }
    return all
}
let seconds = (clock.now - started) / .seconds(1)
try await client.shutdown()

let sorted = latencies.flatMap { $0 }.sorted()
func percentile(_ p: Double) -> Double {
    sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
}
let events = options.agents * options.batches * options.events
let result: [String: Any] = [
    "label": options.label, "collectors": bases.count, "agents": options.agents, "batches": sorted.count,
    "events": events, "seconds": seconds, "events_per_s": Double(events) / seconds,
    "p50_ms": percentile(0.50), "p99_ms": percentile(0.99), "max_ms": sorted.last ?? 0,
    "batch_bytes": agents.flatMap { $0.batches }.map(\.count).reduce(0, +) / max(1, sorted.count),
]
print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
