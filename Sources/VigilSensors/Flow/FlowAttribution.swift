import Glibc
import Logging
import Synchronization
import VigilCore
import VigilLinux

/// Settings of process attribution in the live flow sensor: which process owns the local
/// socket of a flow (`Image`, `ProcessId` of its flow event).
public struct FlowAttributionConfiguration: Hashable, Sendable {
    /// New flows waiting for the attribution thread; beyond it they stay unattributed and are
    /// counted (`attribution_queue_dropped`). The capture thread never waits.
    public var queueCapacity: Int
    /// The least time between two sweeps of `/proc/*/fd` (one `readlink` per descriptor on the
    /// host). A socket created since the last sweep waits at most this long for the next one.
    /// Whatever this says, a sweep is followed by a pause of at least nine times its duration,
    /// so sweeping takes at most a tenth of a core on a host with many descriptors.
    public var minimumSweepInterval: Duration
    /// How many of the processes started since the last sweep (newest first) a socket that
    /// is not known yet is looked for in at once, with the recent socket owners, before it
    /// waits for the next sweep. A short-lived client is found this way.
    public var quickSweepProcesses: Int
    /// How often the host's own addresses are read again (interfaces come and go).
    public var localAddressRefresh: Duration
    /// Sockets remembered between sweeps.
    public var maxSockets: Int
    /// How long a flow that ends while attribution requests are still being resolved (a busy
    /// or slow host: its sweep is late) is held back for them before it is reported without
    /// its process. Flows are reported in order, so a held flow holds back the later ones too.
    public var maximumReportDelay: Duration

    public init(
        queueCapacity: Int = 4096,
        minimumSweepInterval: Duration = .milliseconds(100),
        quickSweepProcesses: Int = 64,
        localAddressRefresh: Duration = .seconds(10),
        maxSockets: Int = 262_144,
        maximumReportDelay: Duration = .seconds(5)
    ) {
        self.queueCapacity = queueCapacity
        self.minimumSweepInterval = minimumSweepInterval
        self.quickSweepProcesses = quickSweepProcesses
        self.localAddressRefresh = localAddressRefresh
        self.maxSockets = maxSockets
        self.maximumReportDelay = maximumReportDelay
    }
}

/// Counters of process attribution, since the sensor started.
public struct FlowAttributionStatistics: Hashable, Sendable {
    /// New TCP/UDP flows with an end on this host, handed to the attribution thread.
    public var requests: UInt64 = 0
    /// New local flows not handed over: the queue was full.
    public var queueDropped: UInt64 = 0
    /// Flows whose local socket and owning process were found.
    public var attributed: UInt64 = 0
    /// Flows whose local end had no socket (spoofed, already closed, another network
    /// namespace) or whose socket no process holds any more.
    public var unattributed: UInt64 = 0
    /// Ended flows held back for a while because attribution requests were outstanding.
    public var heldFlows: UInt64 = 0
    /// Sweeps of `/proc/*/fd`.
    public var sweeps: UInt64 = 0
    /// Partial sweeps of the processes new since the last sweep and of recent socket owners.
    public var quickSweeps: UInt64 = 0
    /// sock_diag requests that failed (not "no such socket").
    public var errors: UInt64 = 0
    /// How long the last sweep took, in microseconds.
    public var lastSweepMicroseconds: UInt64 = 0

    public init() {}

    /// The counters as the flow sensor's `pcap_stats` health event reports them.
    public var counters: [String: UInt64] {
        [
            "attribution_requests": requests, "attribution_queue_dropped": queueDropped, "attributed": attributed,
            "unattributed": unattributed, "attribution_held_flows": heldFlows, "attribution_sweeps": sweeps,
            "attribution_quick_sweeps": quickSweeps, "attribution_errors": errors,
            "attribution_sweep_us": lastSweepMicroseconds,
        ]
    }
}

/// The addresses of this host's interfaces (in the sensor's network namespace), plus the
/// loopback ranges.
struct LocalAddressSet: Sendable {
    var v4: Set<UInt64> = []
    var v6: Set<IPAddressBits> = []

    func contains(_ address: IPAddressBits, family: UInt8) -> Bool {
        if family == 4 { return address.low >> 24 == 127 || v4.contains(address.low) }
        return (address.high == 0 && address.low == 1) || v6.contains(address)
    }

    /// What `getifaddrs(3)` lists now; nil if it fails.
    static func current() -> LocalAddressSet? {
        var set = LocalAddressSet()
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&list) == 0 else { return nil }
        guard let first = list else { return set }
        defer { freeifaddrs(first) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr else { continue }
            switch Int32(address.pointee.sa_family) {
            case AF_INET:
                let value = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    UInt64(UInt32(bigEndian: $0.pointee.sin_addr.s_addr))
                }
                set.v4.insert(value)
            case AF_INET6:
                var raw = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                let value = withUnsafeBytes(of: &raw) { bytes in
                    IPAddressBits(
                        high: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                        low: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                    )
                }
                set.v6.insert(value)
            default:
                break
            }
        }
        return set
    }
}

/// Resolves the local socket of new flows to the owning process, on its own thread
/// (`vigil-flow-a`), so the capture thread only tests an address set and appends to a bounded
/// queue.
///
/// For each new TCP or UDP flow with an end on this host, right after its first packet: the
/// socket is looked up with sock_diag (the exact 4-tuple, then the local end with a wildcard
/// remote for a listener or an unconnected UDP socket, then the IPv4-mapped IPv6 form for a
/// dual-stack socket); its inode is looked up in `SocketInodeIndex`; on a miss the processes
/// new since the last sweep and the recent socket owners are read at once, then, if still
/// missing, everything at the next full sweep (at most every `minimumSweepInterval`, and
/// never more than a tenth of the time). When both ends
/// are local (loopback), the sender of the first packet is tried first: the flow belongs to the
/// process that initiated it. The result
/// is keyed by the flow's Community ID, which the capture thread uses to annotate the flow
/// event when it is reported.
final class FlowAttributor: Sendable {
    struct Request: Sendable {
        var family: UInt8
        var proto: UInt8
        var source: IPAddressBits
        var destination: IPAddressBits
        var sourcePort: UInt16
        var destinationPort: UInt16
        var sourceIsLocal: Bool
        var destinationIsLocal: Bool
    }

    struct Attribution: Sendable {
        var communityID: String
        var pid: UInt32
        var image: String?
    }

    let configuration: FlowAttributionConfiguration
    private let logger: Logger
    private let queue = Mutex<[Request]>([])
    private let results = Mutex<[Attribution]>([])
    private let resultCount = Atomic<Int>(0)
    /// Requests taken but not yet resolved (queued or waiting for a sweep).
    private let outstanding = Atomic<Int>(0)
    private let local: Mutex<LocalAddressSet>
    private let wakeup: EventFD
    private let stopRequested = Atomic<Bool>(false)
    private let thread = Mutex<PosixThread?>(nil)
    private let counters = Mutex(FlowAttributionStatistics())

    init(configuration: FlowAttributionConfiguration, logger: Logger) throws(FlowSensorError) {
        guard configuration.queueCapacity > 0, configuration.maxSockets > 0 else {
            throw FlowSensorError(
                code: .invalidConfiguration,
                message: "attribution queue capacity and max sockets must be positive"
            )
        }
        guard configuration.quickSweepProcesses >= 0, configuration.maximumReportDelay >= .zero else {
            throw FlowSensorError(
                code: .invalidConfiguration,
                message: "attribution quick sweep processes and maximum report delay must not be negative"
            )
        }
        self.configuration = configuration
        self.logger = logger
        // Loopback only until the first refresh if the interfaces cannot be listed now.
        local = Mutex(LocalAddressSet.current() ?? LocalAddressSet())
        do {
            wakeup = try EventFD()
        } catch {
            throw FlowSensorError(code: .threadUnavailable, message: "cannot create the attribution wake-up (\(error))")
        }
    }

    var statistics: FlowAttributionStatistics { counters.withLock { $0 } }

    func start() throws(FlowSensorError) {
        do {
            let spawned = try PosixThread.spawn(name: "vigil-flow-a") { [self] in run() }
            thread.withLock { $0 = spawned }
        } catch {
            throw FlowSensorError(code: .threadUnavailable, message: "cannot start the attribution thread (\(error))")
        }
    }

    /// Stops the thread (blocks until it has ended). Idempotent.
    func stop() {
        stopRequested.store(true, ordering: .releasing)
        try? wakeup.signal()
        let running = thread.withLock { t -> PosixThread? in
            defer { t = nil }
            return t
        }
        running?.join()
    }

    // MARK: - Capture thread

    /// Called by the capture thread with the first packet of a new flow: queues it when an end
    /// is local. Never blocks on the attribution thread.
    func flowStarted(_ packet: DecodedPacket) {
        guard packet.proto == IPProtocol.tcp || packet.proto == IPProtocol.udp else { return }
        let (sourceIsLocal, destinationIsLocal) = local.withLock {
            ($0.contains(packet.source, family: packet.family), $0.contains(packet.destination, family: packet.family))
        }
        guard sourceIsLocal || destinationIsLocal else { return }
        let request = Request(
            family: packet.family,
            proto: packet.proto,
            source: packet.source,
            destination: packet.destination,
            sourcePort: packet.sourcePort,
            destinationPort: packet.destinationPort,
            sourceIsLocal: sourceIsLocal,
            destinationIsLocal: destinationIsLocal
        )
        let (queued, wasEmpty) = queue.withLock { q -> (Bool, Bool) in
            guard q.count < configuration.queueCapacity else { return (false, false) }
            q.append(request)
            return (true, q.count == 1)
        }
        counters.withLock {
            $0.requests &+= 1
            if !queued { $0.queueDropped &+= 1 }
        }
        guard queued else { return }
        outstanding.add(1, ordering: .relaxed)
        if wasEmpty { try? wakeup.signal() }
    }

    /// Whether requests are queued or waiting for a sweep. Once false, every result so far is
    /// in `takeResults`.
    var isBusy: Bool { outstanding.load(ordering: .acquiring) > 0 }

    /// Counts ended flows held back for outstanding requests (`heldFlows`).
    func countHeld(_ count: Int) {
        guard count > 0 else { return }
        counters.withLock { $0.heldFlows &+= UInt64(count) }
    }

    /// Whether results wait in `takeResults`.
    var hasResults: Bool { resultCount.load(ordering: .relaxed) > 0 }

    /// Hands the results found since the last call to `body`.
    func takeResults(_ body: (Attribution) -> Void) {
        let taken = results.withLock { r -> [Attribution] in
            defer { r.removeAll(keepingCapacity: true) }
            return r
        }
        resultCount.store(0, ordering: .relaxed)
        taken.forEach(body)
    }

    /// Waits until every queued flow is resolved or `timeout` passes (at stop, so that flows
    /// reported by the final flush carry their process).
    func waitIdle(timeout: Duration) {
        let deadline = ContinuousClock.now + timeout
        while outstanding.load(ordering: .acquiring) > 0, ContinuousClock.now < deadline {
            usleep(2000)
        }
    }

    // MARK: - Attribution thread

    private func run() {
        var diag: SockDiag? = nil
        let index = SocketInodeIndex(maxEntries: configuration.maxSockets)
        var waiting: [(Request, UInt64)] = []
        var nextSweep = ContinuousClock.now
        var lastLocalRefresh = ContinuousClock.now
        var reportedError = false
        while !stopRequested.load(ordering: .acquiring) {
            var timeout: Int32 = 1000
            if !waiting.isEmpty {
                let remaining = nextSweep - ContinuousClock.now
                timeout = Int32(clamping: max(0, (remaining.nanoseconds &+ 999_999) / 1_000_000))
            }
            _ = try? wakeup.wait(timeoutMilliseconds: timeout)
            _ = try? wakeup.drain()
            if stopRequested.load(ordering: .acquiring) { break }
            let now = ContinuousClock.now
            if now - lastLocalRefresh >= configuration.localAddressRefresh {
                // A failed listing keeps the previous addresses.
                if let fresh = LocalAddressSet.current() { local.withLock { $0 = fresh } }
                lastLocalRefresh = now
            }
            // Flows waiting for the next sweep are bounded too: past the queue's capacity, new
            // ones stay in the queue (which then sheds and counts).
            let batch =
                waiting.count >= configuration.queueCapacity
                ? []
                : queue.withLock { q -> [Request] in
                    defer { q.removeAll(keepingCapacity: true) }
                    return q
                }
            var quickSwept = false
            for request in batch {
                if diag == nil {
                    do {
                        diag = try SockDiag()
                    } catch {
                        if !reportedError {
                            logger.error("flow attribution: sock_diag unavailable", metadata: ["error": "\(error)"])
                            reportedError = true
                        }
                    }
                }
                guard let client = diag, let inode = socketInode(request, diag: client, reopen: &diag) else {
                    finish(request, owner: nil)
                    continue
                }
                if let owner = index.cachedOwner(inode: inode) {
                    finish(request, owner: owner)
                    continue
                }
                // A new socket: most often a new process's (a client that connects and exits):
                // look at new and recent processes now, the full sweep can wait.
                if !quickSwept {
                    index.sweepNewAndRecent(newProcesses: configuration.quickSweepProcesses)
                    quickSwept = true
                    counters.withLock { $0.quickSweeps &+= 1 }
                    if let owner = index.cachedOwner(inode: inode) {
                        finish(request, owner: owner)
                        continue
                    }
                }
                waiting.append((request, inode))
            }
            if !waiting.isEmpty, ContinuousClock.now >= nextSweep {
                let started = ContinuousClock.now
                index.sweep()
                let ended = ContinuousClock.now
                nextSweep = ended + max(configuration.minimumSweepInterval, (ended - started) * 9)
                counters.withLock {
                    $0.sweeps &+= 1
                    $0.lastSweepMicroseconds = UInt64(max(0, (ended - started).nanoseconds / 1000))
                }
                for (request, inode) in waiting { finish(request, owner: index.cachedOwner(inode: inode)) }
                waiting.removeAll(keepingCapacity: true)
            }
        }
    }

    /// The inode of the local socket of `request`'s flow, nil if none is found.
    private func socketInode(_ request: Request, diag: SockDiag, reopen: inout SockDiag?) -> UInt64? {
        var ends: [InetSocketTuple] = []
        func tuple(
            local: IPAddressBits,
            _ localPort: UInt16,
            remote: IPAddressBits,
            _ remotePort: UInt16
        )
            -> InetSocketTuple
        {
            InetSocketTuple(
                proto: request.proto,
                family: request.family,
                localAddress: InetAddress(high: local.high, low: local.low),
                localPort: localPort,
                remoteAddress: InetAddress(high: remote.high, low: remote.low),
                remotePort: remotePort
            )
        }
        if request.sourceIsLocal {
            ends.append(
                tuple(local: request.source, request.sourcePort, remote: request.destination, request.destinationPort)
            )
        }
        if request.destinationIsLocal {
            ends.append(
                tuple(local: request.destination, request.destinationPort, remote: request.source, request.sourcePort)
            )
        }
        do {
            for end in ends {
                var candidates = [end, end.wildcardRemote]
                if end.family == 4 {
                    let mapped = InetSocketTuple(
                        proto: end.proto,
                        family: 6,
                        localAddress: InetAddress(low: 0xFFFF_0000_0000 | end.localAddress.low),
                        localPort: end.localPort,
                        remoteAddress: InetAddress(low: 0xFFFF_0000_0000 | end.remoteAddress.low),
                        remotePort: end.remotePort
                    )
                    candidates += [mapped, mapped.wildcardRemote]
                }
                for candidate in candidates {
                    if let socket = try diag.lookup(candidate), socket.inode != 0 { return socket.inode }
                }
            }
        } catch {
            counters.withLock { $0.errors &+= 1 }
            logger.debug("flow attribution: sock_diag lookup failed", metadata: ["error": "\(error)"])
            reopen = nil
        }
        return nil
    }

    private func finish(_ request: Request, owner: SocketInodeIndex.Owner?) {
        defer { outstanding.subtract(1, ordering: .releasing) }
        guard let owner else {
            counters.withLock { $0.unattributed &+= 1 }
            return
        }
        let attribution = Attribution(
            communityID: CommunityID.compute(
                family: request.family,
                source: request.source,
                destination: request.destination,
                proto: request.proto,
                sourcePort: request.sourcePort,
                destinationPort: request.destinationPort
            ),
            pid: owner.pid,
            image: owner.image
        )
        let kept = results.withLock { r -> Bool in
            guard r.count < configuration.queueCapacity * 4 else { return false }
            r.append(attribution)
            return true
        }
        counters.withLock {
            if kept { $0.attributed &+= 1 } else { $0.unattributed &+= 1 }
        }
        if kept { resultCount.add(1, ordering: .relaxed) }
    }
}

/// The capture thread's side: attributions by Community ID until their flow is reported, and
/// the ended flows held back while requests are outstanding.
struct FlowAttributions {
    private var byCommunityID: [String: (pid: UInt32, image: String?, added: Int64)] = [:]
    /// Ended flows waiting for outstanding requests, oldest first, each with the time it must
    /// go at the latest.
    private var held: [(flow: FlowEvent, reason: FlowEndReason, until: Int64)] = []
    let capacity: Int
    let maximumDelay: Int64

    init(capacity: Int, maximumDelay: Duration = .seconds(5)) {
        self.capacity = max(16, capacity)
        self.maximumDelay = max(0, maximumDelay.nanoseconds)
    }

    /// Reports `completed` (ended or active flows, in the order they came) through `report`,
    /// annotated with their process (as they are when there is no `attributor`). While the
    /// attributor still has requests outstanding, a flow's may be one of them: the flows wait
    /// (in order, at most `maximumDelay` and at most `capacity` of them) for the next call that
    /// finds the attributor idle. With `final`, everything goes now.
    mutating func report(
        _ completed: [(event: FlowEvent, reason: FlowEndReason)],
        attributor: FlowAttributor?,
        now: Int64,
        final: Bool = false,
        _ report: (FlowEvent) -> Void
    ) {
        guard let attributor else {
            for (flow, _) in completed { report(flow) }
            return
        }
        // Read before taking the results: once idle, every result is in.
        let busy = !final && attributor.isBusy
        absorb(attributor, now: now)
        guard busy || !held.isEmpty else {
            for (flow, reason) in completed { report(annotated(flow, reason: reason)) }
            return
        }
        if busy, maximumDelay > 0 {
            let until = now &+ maximumDelay
            for (flow, reason) in completed { held.append((flow, reason, until)) }
            attributor.countHeld(completed.count)
        } else {
            for (flow, reason) in completed { held.append((flow, reason, now)) }
        }
        var released = 0
        for entry in held {
            guard !busy || entry.until <= now || held.count - released > capacity else { break }
            report(annotated(entry.flow, reason: entry.reason))
            released += 1
        }
        held.removeFirst(released)
    }

    /// Takes the attributor's new results.
    private mutating func absorb(_ attributor: FlowAttributor, now: Int64) {
        guard attributor.hasResults else { return }
        attributor.takeResults { result in
            if byCommunityID.count >= capacity {
                // Results whose flow was reported before they came: drop the old ones.
                let horizon = now &- 600_000_000_000
                byCommunityID = byCommunityID.filter { $0.value.added >= horizon }
                if byCommunityID.count >= capacity { byCommunityID.removeAll(keepingCapacity: true) }
            }
            byCommunityID[result.communityID] = (result.pid, result.image, now)
        }
    }

    /// The reported flow with its `Image` and `ProcessId`; they are forgotten unless the flow
    /// goes on (`active` reports).
    private mutating func annotated(_ flow: FlowEvent, reason: FlowEndReason) -> FlowEvent {
        guard !byCommunityID.isEmpty else { return flow }
        let found =
            reason == .active ? byCommunityID[flow.communityID] : byCommunityID.removeValue(forKey: flow.communityID)
        guard let found else { return flow }
        var flow = flow
        flow.processId = found.pid
        flow.image = found.image
        return flow
    }
}
