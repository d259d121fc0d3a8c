// Delivers N synthetic events (BenchEvents, the wire benchmark's stream) through the agent's own
// delivery path to a running collector and measures it end to end: the events are appended to a
// real `Spool` (VigilSpool, SQLite) in chunks, as the agent's flush loop appends its sensors'
// output, while a shipping loop like the agent's (`Agent.shipLoop`: `Spool.nextBatch` sealing
// with `BatchSealer` — protobuf, zstd, Ed25519, hash chain — sent with `CollectorClient.send`
// through the agent's `DeliveryWindow`, then `Spool.acknowledge`; up to --in-flight batches in
// flight, 2 by default like vigild's `shipping.batches_in_flight`) posts them to the collector,
// which answers once it has stored the batch. The clock runs from the first append to the last acknowledgement; the
// events are generated before it starts (sensors' reading is not delivery).
//
// What differs from vigild: no sensors, policy or alerts; no key rotation step or metrics; when
// the spool is empty the loop sleeps 1 ms (vigild waits `batch_max_age`, 1 s, which only matters
// when the shipper outruns the sensors); the spool is bounded at 4 GiB instead of 256 MiB, so an
// unthrottled producer cannot make it shed events.
//
// --json-out writes the events as JSON lines and --batch-sizes-out the size of each batch sent,
// one a line, for the NDJSON + gzip reference, which then ships the same events in the same
// batches. --dictionary then measures what a zstd dictionary trained on the agent's earlier
// events would save on the later batch bodies (not part of the protocol; measured only).
//
// usage: delivery-bench --collector URL --enroll-token TOKEN --spool PATH [--events N]
//                       [--batch MAX_EVENTS] [--append-chunk N] [--in-flight N] [--json-out FILE]
//                       [--batch-sizes-out FILE] [--dictionary]
// Prints one JSON object.
import AsyncHTTPClient
import BenchEvents
import CZstdDict
import Foundation
import Synchronization
import VigilAgent
import VigilCore
import VigilSpool
import VigilWire

struct Options {
    var collector = ""
    var enrollToken = ""
    var spool = ""
    var events = 200_000
    var batch = 2000
    var appendChunk = 5000
    var jsonOut: String? = nil
    var batchSizesOut: String? = nil
    var dictionary = false
    var inFlight = 2

    static let usage =
        "usage: delivery-bench --collector URL --enroll-token TOKEN --spool PATH [--events N] [--batch MAX_EVENTS] [--append-chunk N] [--in-flight N] [--json-out FILE] [--batch-sizes-out FILE] [--dictionary]\n"

    static func parse() -> Options {
        var o = Options()
        var args = CommandLine.arguments.dropFirst()
        func int(_ flag: String) -> Int {
            guard let v = args.popFirst().flatMap(Int.init), v > 0 else { fail("\(flag): a positive integer") }
            return v
        }
        while let a = args.popFirst() {
            switch a {
            case "--collector": o.collector = args.popFirst() ?? ""
            case "--enroll-token": o.enrollToken = args.popFirst() ?? ""
            case "--spool": o.spool = args.popFirst() ?? ""
            case "--events": o.events = int(a)
            case "--batch": o.batch = int(a)
            case "--append-chunk": o.appendChunk = int(a)
            case "--in-flight": o.inFlight = int(a)
            case "--json-out": o.jsonOut = args.popFirst()
            case "--batch-sizes-out": o.batchSizesOut = args.popFirst()
            case "--dictionary": o.dictionary = true
            default: fail("unknown argument '\(a)'")
            }
        }
        if o.collector.isEmpty || o.enrollToken.isEmpty || o.spool.isEmpty {
            fail("--collector, --enroll-token and --spool are required")
        }
        return o
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("delivery-bench: \(message)\n\(Options.usage)".utf8))
    exit(2)
}

let options = Options.parse()
let events = makeEvents(options.events)
if let path = options.jsonOut {
    try writeJSONLines(events, to: path)
}

let spool = try Spool(path: options.spool, limits: Spool.Limits(maxBytes: 4 << 30))
let identity = AgentIdentity.generate()
let http = CollectorClient.makeHTTPClient()
let client = CollectorClient(baseURL: options.collector, client: http)
do {
    try await client.enroll(identity: identity, token: options.enrollToken, hostname: "bench", machineId: "bench")
} catch {
    fail("enrollment: \(error)")
}

/// Appends the events to the spool in chunks, as the agent's flush loop does, on its own thread.
final class Producer: Sendable {
    let done = Mutex<Double?>(nil)

    func start(_ spool: Spool, _ events: [Event], chunk: Int, from start: ContinuousClock.Instant) {
        let thread = Thread {
            do {
                var i = 0
                while i < events.count {
                    try spool.append(Array(events[i..<min(i + chunk, events.count)]))
                    i += chunk
                }
            } catch {
                fail("spool append: \(error)")
            }
            let elapsed = ContinuousClock.now - start
            self.done.withLock { $0 = seconds(elapsed) }
        }
        thread.start()
    }
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

let sealer = BatchSealer(identity: identity)
var sent: [[UInt8]] = []
var batchSizes: [Int] = []
var bodyBytes = 0
var idleWaits = 0
var retries = 0
var roundTrips: [Double] = []
/// CPU seconds this process has used (user + system), every thread.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

let producer = Producer()
let cpuStart = processCPUSeconds()
let start = ContinuousClock.now
producer.start(spool, events, chunk: options.appendChunk, from: start)
var delivered = 0
// A local, not a global of this file: its async mutating calls stay off the main actor.
do {
    var window = DeliveryWindow(capacity: options.inFlight)
    while delivered < events.count {
        let sending = try window.fill(ahead: true, timeout: nil) { after in
            try spool.nextBatch(after: after, maxEvents: options.batch, maxBytes: 1 << 20, sealer: sealer)
        } send: { bytes, previous, timeout in
            await client.send(batch: bytes, previousInFlight: previous, timeout: timeout)
        }
        guard sending else {
            idleWaits += 1
            try await Task.sleep(for: .milliseconds(1))
            continue
        }
        let (batch, outcome, roundTrip) = await window.answer()
        switch outcome {
        case .stored:
            roundTrips.append(seconds(roundTrip))
            try spool.acknowledge(batch)
            delivered += batch.eventCount
            bodyBytes += batch.bytes.count
            batchSizes.append(batch.eventCount)
            if options.dictionary { sent.append(batch.bytes) }
        case .rateLimited(let after):
            retries += 1
            try await Task.sleep(for: after)
        case .retry(let reason):
            retries += 1
            FileHandle.standardError.write(Data("delivery-bench: retrying batch \(batch.batchSeq): \(reason)\n".utf8))
            try await Task.sleep(for: .milliseconds(100))
        case .unknownAgent:
            fail("the collector does not know the agent")
        case .refused(let status, let error, let message):
            fail("batch \(batch.batchSeq) refused: \(status) \(error) \(message)")
        }
    }
}
let wall = seconds(ContinuousClock.now - start)
let cpu = processCPUSeconds() - cpuStart
let appendSeconds = producer.done.withLock { $0 } ?? wall
try await http.shutdown().get()

if let path = options.batchSizesOut {
    try Data(batchSizes.map { "\($0)\n" }.joined().utf8).write(to: URL(fileURLWithPath: path))
}

roundTrips.sort()
let sortedRoundTrips = roundTrips
let percentile = { (p: Double) -> Double in
    sortedRoundTrips.isEmpty
        ? 0 : sortedRoundTrips[min(sortedRoundTrips.count - 1, Int(Double(sortedRoundTrips.count) * p))]
}
var result: [String: Any] = [
    "events": delivered,
    "batches": batchSizes.count,
    "events_per_batch": Double(delivered) / Double(max(1, batchSizes.count)),
    "wall_s": wall,
    "events_per_s": Double(delivered) / wall,
    "append_s": appendSeconds,
    "body_bytes": bodyBytes,
    "bytes_per_event": Double(bodyBytes) / Double(delivered),
    "idle_waits": idleWaits,
    "retries": retries,
    "round_trip_p50_ms": percentile(0.5) * 1000,
    "round_trip_p99_ms": percentile(0.99) * 1000,
    "agent_id": identity.agentId,
    "in_flight": options.inFlight,
    "cpu_s": cpu,
]
if options.dictionary {
    result["dictionary"] = try dictionaryGain(sent: sent, events: events)
}
let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
print(String(decoding: json, as: UTF8.self))
