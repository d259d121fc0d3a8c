// Runs Vigil's ProcessSensor until `/bin/true vigil-bench-done` runs, and writes one
// line per exec it reported to OUTFILE: `pid <TAB> incomplete <TAB> Image <TAB> CommandLine`
// (run.sh picks the spawner's children by the pids the spawner wrote and scores them against
// what each really ran). Every exec is written, not only those whose parent is the exec
// named SPAWN_PATH: when that one exec was missed or named otherwise, no child was counted
// (a 20,000-exec burst once scored 0% seen that way).
//
// usage: process-bench SPAWN_PATH OUTFILE  (SPAWN_PATH: counted in `spawner_seen`)
// Prints READY once subscribed, then one line of key=value counters.
import Glibc
import Logging
import VigilCore
import VigilSensors

/// Unbuffered, so run.sh sees READY at once.
func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return }
        bytes = bytes.dropFirst(n)
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 3 else {
    writeAll(2, "usage: process-bench SPAWN_PATH OUTFILE\n")
    exit(2)
}
let spawnPath = arguments[1]
let outputPath = arguments[2]

var configuration = ProcessSensorConfiguration()
configuration.reportedActions = [.exec]
configuration.statisticsInterval = .seconds(3600)
configuration.queueCapacity = 200_000
// PROCESS_BENCH_READER_NICE: the reader thread's nice value ("none": as the process).
if let nice = getenv("PROCESS_BENCH_READER_NICE").map({ String(cString: $0) }) {
    configuration.readerNice = Int(nice)
}
let sensor = try ProcessSensor(configuration: configuration, logger: Logger(label: "process-bench"))
try sensor.start()
writeAll(1, "READY\n")

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(
        usage.ru_utime.tv_usec + usage.ru_stime.tv_usec
    ) / 1e6
}

let cpuAtStart = cpuSeconds()
var spawnerSeen = false
var lines: [String] = []
var events = 0
loop: for await event in sensor.events {
    events += 1
    guard case .process(let p) = event.payload else { continue }
    guard p.action == .exec else { continue }
    if p.argv.last == "vigil-bench-done" { break loop }
    if p.image == spawnPath { spawnerSeen = true }
    lines.append("\(p.processId)\t\(p.incomplete ? 1 : 0)\t\(p.image ?? "")\t\(p.commandLine ?? "")")
}
let cpu = cpuSeconds() - cpuAtStart
var threads: [String] = []
if let tasks = opendir("/proc/self/task") {
    while let entry = readdir(tasks) {
        let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard Int(tid) != nil, let f = fopen("/proc/self/task/\(tid)/stat", "r") else { continue }
        var buffer = [CChar](repeating: 0, count: 1024)
        if fgets(&buffer, 1024, f) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let open = line.firstIndex(of: "("), let close = line.lastIndex(of: ")") {
                let name = line[line.index(after: open)..<close]
                let fields = line[line.index(close, offsetBy: 2)...].split(separator: " ")
                if fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]), u + s > 0 {
                    threads.append("\(name):\((u + s) / 100)")
                }
            }
        }
        fclose(f)
    }
    closedir(tasks)
}
let statistics = sensor.statistics
sensor.stop()
guard let file = fopen(outputPath, "w") else {
    writeAll(2, "cannot write \(outputPath)\n")
    exit(1)
}
for line in lines { fputs(line + "\n", file) }
fclose(file)
print(
    "events=\(events) spawner_seen=\(spawnerSeen) cpu_seconds=\(cpu) kernel_overruns=\(statistics.kernelOverruns) fanotify=\(sensor.hasFanotify) "
        + "fanotify_overflows=\(statistics.fanotifyOverflows) queue_dropped=\(statistics.queueDropped) incomplete=\(statistics.incompleteExecs) named_by_fanotify=\(statistics.execsNamedByFanotify) threads_cpu=\(threads.joined(separator: ","))"
)
