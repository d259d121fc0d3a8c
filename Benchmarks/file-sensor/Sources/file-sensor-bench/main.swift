// Runs Vigil's FileSensor on ROOT until a file ROOT/SENTINEL* is created, then
// prints what it received and the CPU it used (user+sys from /proc/self/stat, all threads).
//
// usage: file-sensor-bench ROOT SENTINEL HASH_MAX_BYTES
// Prints "READY" once the watches are in place.

import Glibc
import Logging
import VigilCore
import VigilSensors

let arguments = CommandLine.arguments
guard arguments.count == 4, let hashMaxBytes = Int64(arguments[3]) else {
    print("usage: file-sensor-bench ROOT SENTINEL HASH_MAX_BYTES")
    exit(2)
}
let root = arguments[1]
let sentinel = arguments[2]

/// utime + stime, in seconds, from a /proc stat file (the process's or one thread's).
func cpuSeconds(_ statPath: String = "/proc/self/stat") -> Double {
    guard let file = fopen(statPath, "r") else { return -1 }
    defer { fclose(file) }
    var buffer = [CChar](repeating: 0, count: 4096)
    guard fgets(&buffer, Int32(buffer.count), file) != nil else { return -1 }
    let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    guard let close = line.lastIndex(of: ")") else { return -1 }
    let fields = line[line.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return -1 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

let logger = Logger(label: "vigil.bench.file-sensor") { _ in SwiftLogNoOpLogHandler() }
let sensor = try FileSensor(
    configuration: FileSensorConfiguration(paths: [root], hashMaxBytes: hashMaxBytes, queueCapacity: 65_536),
    logger: logger
)
try sensor.start()
print("READY")
fflush(nil)  // all streams: Swift 6 cannot touch the C global `stdout`

struct Tally: Sendable {
    var fileEvents = 0
    var hashed = 0
}

/// The consumer, off the main actor like an agent's pipeline stage: buffered events are taken
/// without a hop per event.
/// Ends at the first file whose path starts with `sentinel` (a plain prefix test: `contains`
/// would cost more than the sensor's own work per event).
@concurrent func consume(_ sensor: FileSensor, until sentinel: String) async -> Tally {
    var tally = Tally()
    events: for await event in sensor.events {
        guard case .file(let file) = event.payload else { continue }
        if file.targetFilename.hasPrefix(sentinel) { break events }
        tally.fileEvents += 1
        if file.sha256 != nil { tally.hashed += 1 }
    }
    return tally
}

let tally = await consume(sensor, until: root + "/" + sentinel)

/// CPU by thread name, taken before the sensor's threads end: its reader (vigil-fsensor-r) and
/// hashing stage (vigil-fsensor-h) against the consumer side (the cooperative pool).
var byThread: [String: Double] = [:]
if let tasks = opendir("/proc/self/task") {
    while let entry = readdir(tasks) {
        let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard Int(tid) != nil, let comm = fopen("/proc/self/task/\(tid)/comm", "r") else { continue }
        var name = [CChar](repeating: 0, count: 64)
        _ = fgets(&name, 64, comm)
        fclose(comm)
        let key = String(decoding: name.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        byThread[key, default: 0] += cpuSeconds("/proc/self/task/\(tid)/stat")
    }
    closedir(tasks)
}
let threadCPU =
    "threads_cpu=" + byThread.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ",")

sensor.stop()
let statistics = sensor.statistics
print(
    "events=\(tally.fileEvents) hashed=\(tally.hashed) overflows=\(statistics.overflows) queue_drops=\(statistics.queueDrops) cpu_seconds=\(cpuSeconds())"
)
print(threadCPU)
