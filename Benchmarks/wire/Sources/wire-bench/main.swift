// Encodes, compresses and signs N synthetic events (a deterministic mix of file, process and
// flow events) in batches, on one thread, and prints what it cost and how many bytes it made;
// then reads the batches back as the collector does (parse, verify, decompress, decode) and
// prints what that cost.
// With --json-out it also writes the same events as JSON lines for the reference side.
//
// usage: wire-bench [--events N] [--batch N] [--level ZSTD_LEVEL] [--json-out FILE]
import BenchEvents
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

func threadCPU() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

let events = makeEvents(count)
if let jsonOut {
    try writeJSONLines(events, to: jsonOut)
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

let identity = AgentIdentity.generate()
let sealer = BatchSealer(identity: identity, compressionLevel: level)
var prev = genesisHeaderHash
var serialized: [[UInt8]] = []
var wireBytes = 0
var rawBytes: UInt64 = 0
var batches = 0
let wallStart = Date()
let cpuStart = threadCPU()
var i = 0
while i < events.count {
    let slice = Array(events[i..<min(i + batchSize, events.count)])
    let batch = try sealer.seal(events: slice, batchSeq: UInt64(batches + 1), prevHeaderHash: prev)
    let bytes = batch.serialized()
    wireBytes += bytes.count
    serialized.append(bytes)
    rawBytes += batch.header.uncompressedSize
    prev = batch.headerHash
    batches += 1
    i += batchSize
}
let cpu = threadCPU() - cpuStart
let wall = Date().timeIntervalSince(wallStart)

// The collector's side of the same batches: parse, check the signature and body hash,
// decompress and decode every event.
let readStart = threadCPU()
var read = 0
for bytes in serialized {
    let batch = try BatchOpener.parse(bytes)
    read += try BatchOpener.verify(batch, publicKey: identity.publicKey).count
}
let readCPU = threadCPU() - readStart
guard read == events.count else {
    FileHandle.standardError.write(Data("read \(read) events back, sealed \(events.count)\n".utf8))
    exit(1)
}

print(
    "{\"events\":\(events.count),\"batches\":\(batches),\"batch_size\":\(batchSize),\"cpu_s\":\(cpu),\"wall_s\":\(wall),"
        + "\"read_cpu_s\":\(readCPU),\"read_events_per_cpu_s\":\(Double(events.count) / readCPU),"
        + "\"events_per_cpu_s\":\(Double(events.count) / cpu),\"wire_bytes\":\(wireBytes),\"bytes_per_event\":\(Double(wireBytes) / Double(events.count)),\"raw_bytes_per_event\":\(Double(rawBytes) / Double(events.count)),\"zstd_level\":\(level)}"
)
