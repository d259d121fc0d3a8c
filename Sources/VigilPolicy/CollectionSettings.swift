import Foundation
import Yams

/// What the agent collects, from `collection.yaml` in the policies directory.
///
/// ```yaml
/// files:
///   watch: [/etc, /root/.ssh, /tmp]   # trees watched recursively
///   exclude: [/etc/mtab]              # path prefixes not watched
///   hash_max_bytes: 16777216          # SHA-256 regular files up to this size; 0 disables
/// network:                            # packet metadata (flows); absent: no capture
///   interface: any                    # an interface name or `any`
///   filter: "not port 22"             # BPF (tcpdump syntax), run in the kernel
///   snap_length: 128                  # bytes kept per packet: headers only
///   max_flows: 262144                 # flows tracked at once (memory bound)
///   idle_timeout_s: 60                # a UDP/ICMP flow quiet this long is reported (TCP: 300)
///   metadata: true                    # DNS query/answers and TLS server name on flows
///   attribute_processes: true         # Image/ProcessId of local flows (sock_diag + /proc);
///                                     # default: on when the agent runs as root
/// processes:                          # proc connector + /proc (+ fanotify); absent: off
///   enabled: true
///   max_processes: 32768              # live processes remembered (LRU; memory bound)
///   report: [exec, uid_change, gid_change, sid_change, ptrace]  # also: fork, exit, comm_change
///   fanotify: true                    # FAN_OPEN_EXEC names executables of vanished processes
///   reader_nice: -10                  # the reader thread's priority (-20..19, or `inherit`):
///                                     # /proc must be read before a short-lived process exits
/// budget:                             # the agent's own resource budget (self-watchdog)
///   cpu_percent: 10                   # share of one core, averaged over window_s
///   window_s: 10
///   memory_mb: 96                     # resident set size cap
///   sample_interval_ms: 1000          # how often /proc/self is sampled
/// ```
public struct CollectionSettings: Sendable, Hashable {
    public struct Files: Sendable, Hashable {
        public var watch: [String]
        public var exclude: [String]
        public var hashMaxBytes: Int64

        public init(watch: [String] = [], exclude: [String] = [], hashMaxBytes: Int64 = 16 << 20) {
            self.watch = watch
            self.exclude = exclude
            self.hashMaxBytes = hashMaxBytes
        }
    }

    /// Packet capture for flow metadata.
    public struct Network: Sendable, Hashable {
        public var interface: String
        public var filter: String?
        public var snapLength: Int
        public var maxFlows: Int
        public var idleTimeoutSeconds: Int
        /// DNS query names and answers and the TLS server name (SNI) on flow records; DNS and
        /// ClientHello packets are then captured up to 2048 bytes, all others at `snapLength`.
        public var metadata: Bool = true
        /// Find the process owning the local socket of each flow with an end on this host
        /// (`Image`, `ProcessId`); nil: on when the agent runs as root.
        public var attributeProcesses: Bool? = nil

        public init(
            interface: String = "any",
            filter: String? = nil,
            snapLength: Int = 128,
            maxFlows: Int = 262_144,
            idleTimeoutSeconds: Int = 60
        ) {
            self.interface = interface
            self.filter = filter
            self.snapLength = snapLength
            self.maxFlows = maxFlows
            self.idleTimeoutSeconds = idleTimeoutSeconds
        }
    }

    /// The agent's resource budget: when over it, the agent sheds load along an ordered ladder
    /// (see `VigilAgent.ShedLadder`) and reports what it shed.
    public struct Budget: Sendable, Hashable {
        /// Share of one core (percent) the agent may use, averaged over `windowSeconds`.
        public var cpuPercent: Int
        public var windowSeconds: Int
        /// Resident set size cap, in MiB.
        public var memoryMegabytes: Int
        public var sampleIntervalMilliseconds: Int

        /// Defaults from measurement (2026-11-28, debug build, file sensor + flow capture): idle
        /// ~54 MiB resident and ~0% CPU; under ~40,000 file events/s ~60 MiB and about half a core
        /// before shedding. 96 MiB leaves room for the bounded queues; 10% of a core keeps the
        /// agent an order of magnitude below the workloads it watches (osquery's watchdog: 10%).
        public init(
            cpuPercent: Int = 10,
            windowSeconds: Int = 10,
            memoryMegabytes: Int = 96,
            sampleIntervalMilliseconds: Int = 1000
        ) {
            self.cpuPercent = cpuPercent
            self.windowSeconds = windowSeconds
            self.memoryMegabytes = memoryMegabytes
            self.sampleIntervalMilliseconds = sampleIntervalMilliseconds
        }
    }

    /// Process events (exec with full context, credential changes, ...).
    public struct Processes: Sendable, Hashable {
        /// Action names as in `ProcessEvent.Action` (`exec`, `fork`, `exit`, `uid_change`,
        /// `gid_change`, `sid_change`, `ptrace`, `comm_change`).
        public static let actionNames = [
            "exec", "fork", "exit", "uid_change", "gid_change", "sid_change", "ptrace", "comm_change",
        ]

        public var maxProcesses: Int
        public var report: [String]
        public var fanotify: Bool
        /// The reader thread's nice value; nil (`inherit`) leaves it as the agent's.
        public var readerNice: Int?

        /// Defaults: 32,768 remembered processes (the default `kernel.pid_max` on small hosts;
        /// about 10 MiB at most), execs and the security-relevant changes, fanotify on, the
        /// reader at nice -10 (measured: under systemd's `Nice=10`, `CPUSchedulingPolicy=batch`
        /// a reader left at the agent's priority named 27% of a burst's command lines, at -10
        /// 93%).
        public init(
            maxProcesses: Int = 32_768,
            report: [String] = ["exec", "uid_change", "gid_change", "sid_change", "ptrace"],
            fanotify: Bool = true,
            readerNice: Int? = -10
        ) {
            self.maxProcesses = maxProcesses
            self.report = report
            self.fanotify = fanotify
            self.readerNice = readerNice
        }
    }

    public var files: Files
    /// Nil: no packet capture.
    public var network: Network?
    /// Nil: no process events.
    public var processes: Processes?
    public var budget: Budget

    public init(files: Files = Files(), network: Network? = nil, budget: Budget = Budget()) {
        self.files = files
        self.network = network
        self.budget = budget
    }

    public static let fileName = "collection.yaml"

    /// Loads `DIR/collection.yaml`; a directory without one collects nothing from files.
    public static func load(policiesDirectory dir: String) throws(PolicyError) -> CollectionSettings {
        let path = (dir as NSString).appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: path) else { return CollectionSettings() }
        return try load(path: path)
    }

    public static func load(path: String) throws(PolicyError) -> CollectionSettings {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PolicyError(file: path, line: 1, column: 1, message: "cannot read: \(error.localizedDescription)")
        }
        return try parse(yaml: text, file: path)
    }

    public static func parse(yaml text: String, file: String) throws(PolicyError) -> CollectionSettings {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw PolicyError(file: file, yamlError: error)
        }
        guard let root else { return CollectionSettings() }
        let top = try YAMLMapping(file: file, node: root, what: "collection.yaml")
        try top.checkKeys(["files", "network", "processes", "budget"], context: "collection.yaml")
        var settings = CollectionSettings()
        if let files = try top.mapping("files", context: "files") {
            try files.checkKeys(["watch", "exclude", "hash_max_bytes"], context: "files")
            if let watch = try files.stringList("watch", context: "files") {
                for (i, path) in watch.enumerated() where !path.hasPrefix("/") {
                    let node = files.value("watch").flatMap { n -> Node? in
                        if case .sequence(let s) = n { return s[i] } else { return nil }
                    }
                    throw PolicyError(file: file, at: node, "files.watch: '\(path)' must be an absolute path")
                }
                settings.files.watch = watch
            }
            settings.files.exclude = try files.stringList("exclude", context: "files") ?? []
            if let max = try files.integer("hash_max_bytes", context: "files", range: 0...(1 << 40)) {
                settings.files.hashMaxBytes = max
            }
        }
        if let network = try top.mapping("network", context: "network") {
            try network.checkKeys(
                [
                    "interface", "filter", "snap_length", "max_flows", "idle_timeout_s", "metadata",
                    "attribute_processes",
                ],
                context: "network"
            )
            var n = Network()
            if let v = network.value("interface") {
                guard case .scalar(let s) = v, !s.string.isEmpty, s.string.utf8.count < 16 else {
                    throw PolicyError(
                        file: file,
                        at: v,
                        "network.interface must be an interface name (at most 15 characters) or any"
                    )
                }
                n.interface = s.string
            }
            if let v = network.value("filter") {
                guard case .scalar(let s) = v else {
                    throw PolicyError(file: file, at: v, "network.filter must be a BPF expression string")
                }
                n.filter = s.string.isEmpty ? nil : s.string
            }
            if let v = try network.integer("snap_length", context: "network", range: 64...65535) {
                n.snapLength = Int(v)
            }
            if let v = try network.integer("max_flows", context: "network", range: 16...(1 << 24)) {
                n.maxFlows = Int(v)
            }
            if let v = try network.integer("idle_timeout_s", context: "network", range: 1...86400) {
                n.idleTimeoutSeconds = Int(v)
            }
            if let v = network.value("metadata") {
                guard case .scalar(let s) = v, let b = Bool(s.string.lowercased()) else {
                    throw PolicyError(file: file, at: v, "network.metadata must be true or false")
                }
                n.metadata = b
            }
            if let v = network.value("attribute_processes") {
                guard case .scalar(let s) = v, let b = Bool(s.string.lowercased()) else {
                    throw PolicyError(file: file, at: v, "network.attribute_processes must be true or false")
                }
                n.attributeProcesses = b
            }
            settings.network = n
        }
        if let processes = try top.mapping("processes", context: "processes") {
            try processes.checkKeys(
                ["enabled", "max_processes", "report", "fanotify", "reader_nice"],
                context: "processes"
            )
            var p = Processes()
            func flag(_ key: String) throws(PolicyError) -> Bool? {
                guard let v = processes.value(key) else { return nil }
                guard case .scalar(let s) = v, let b = Bool(s.string.lowercased()) else {
                    throw PolicyError(file: file, at: v, "processes.\(key) must be true or false")
                }
                return b
            }
            let enabled = try flag("enabled") ?? true
            if let v = try processes.integer("max_processes", context: "processes", range: 16...(1 << 22)) {
                p.maxProcesses = Int(v)
            }
            if let report = try processes.stringList("report", context: "processes") {
                for (i, name) in report.enumerated() where !Processes.actionNames.contains(name) {
                    let node = processes.value("report").flatMap { n -> Node? in
                        if case .sequence(let s) = n { return s[i] } else { return nil }
                    }
                    throw PolicyError(
                        file: file,
                        at: node,
                        "processes.report: unknown action '\(name)'; expected some of: \(Processes.actionNames.joined(separator: ", "))"
                    )
                }
                p.report = report
            }
            if let v = try flag("fanotify") { p.fanotify = v }
            if let v = processes.value("reader_nice") {
                if case .scalar(let s) = v, s.string == "inherit" {
                    p.readerNice = nil
                } else {
                    p.readerNice = try processes.integer("reader_nice", context: "processes", range: -20...19).map(
                        Int.init
                    )
                }
            }
            settings.processes = enabled ? p : nil
        }
        if let budget = try top.mapping("budget", context: "budget") {
            try budget.checkKeys(["cpu_percent", "window_s", "memory_mb", "sample_interval_ms"], context: "budget")
            if let v = try budget.integer("cpu_percent", context: "budget", range: 1...400) {
                settings.budget.cpuPercent = Int(v)
            }
            if let v = try budget.integer("window_s", context: "budget", range: 1...3600) {
                settings.budget.windowSeconds = Int(v)
            }
            if let v = try budget.integer("memory_mb", context: "budget", range: 8...65536) {
                settings.budget.memoryMegabytes = Int(v)
            }
            if let v = try budget.integer("sample_interval_ms", context: "budget", range: 50...60000) {
                settings.budget.sampleIntervalMilliseconds = Int(v)
            }
        }
        return settings
    }
}
