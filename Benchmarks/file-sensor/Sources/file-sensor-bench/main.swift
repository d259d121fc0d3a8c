// Runs Vigil's FileSensor on ROOT until a file whose name contains SENTINEL is created, then
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
    fputs("usage: file-sensor-bench ROOT SENTINEL HASH_MAX_BYTES\n", stderr)
    exit(2)
}
let root = arguments[1]
let sentinel = arguments[2]

/// utime + stime of this process, in seconds, as /proc/self/stat reports them.
func processCPUSeconds() -> Double {
    guard let file = fopen("/proc/self/stat", "r") else { return -1 }
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
    logger: logger)
try sensor.start()
print("READY")
fflush(stdout)

var fileEvents = 0
var hashed = 0
var overflowEvents = 0
events: for await event in sensor.events {
    switch event.payload {
    case .file(let file):
        if file.targetFilename.contains(sentinel) {
            break events
        }
        fileEvents += 1
        if file.sha256 != nil { hashed += 1 }
    case .health(let health):
        if health.kind == "inotify_overflow" { overflowEvents += 1 }
    default:
        break
    }
}
sensor.stop()
let statistics = sensor.statistics
print("events=\(fileEvents) hashed=\(hashed) overflows=\(statistics.overflows) queue_drops=\(statistics.queueDrops) cpu_seconds=\(processCPUSeconds())")
