internal import CPcap
import Glibc

/// How a live capture is set up. Defaults suit a flow sensor: headers only, a 4 MiB kernel ring,
/// packets delivered in blocks (non-immediate) at least every 250 ms.
public struct PcapCaptureOptions: Hashable, Sendable {
    /// An interface name, or `any` for all interfaces (Linux cooked headers).
    public var interface: String
    /// Bytes kept per packet: 128 holds Ethernet + VLANs + IPv6 with options + TCP.
    public var snapshotLength: Int
    /// The kernel ring buffer (TPACKET_V3 on Linux), in bytes.
    public var bufferSize: Int
    /// How long the kernel may hold a partly filled block before handing it over.
    public var timeoutMilliseconds: Int
    /// Puts the interface in promiscuous mode (off by default: the sensor sees this host's traffic).
    public var promiscuous: Bool
    /// A BPF filter expression (tcpdump syntax), compiled and run in the kernel. Nil: everything.
    public var filter: String?
    /// A per-packet snap length: packets that pass `filter` and match `largeSnapshot.filter`
    /// are kept up to `largeSnapshot.length` bytes, the others up to `snapshotLength`. Nil:
    /// every packet is cut at `snapshotLength`.
    public var largeSnapshot: LargeSnapshot?

    /// Packets kept longer than the snap length: the kernel filter's return value is how many
    /// bytes of a packet it keeps, so the filter is spliced from two compiled programs (see
    /// `PcapCapture.splice`). The capture's own snap length (`pcap_set_snaplen`, which sizes
    /// the ring's frames) is then the larger one.
    public struct LargeSnapshot: Hashable, Sendable {
        /// Which packets are kept longer (tcpdump syntax). Its loads must stay inside the
        /// packets it sees: a load past the end makes the kernel drop the packet.
        public var filter: String
        public var length: Int

        public init(filter: String, length: Int) {
            self.filter = filter
            self.length = length
        }
    }

    public init(
        interface: String = "any",
        snapshotLength: Int = 128,
        bufferSize: Int = 4 << 20,
        timeoutMilliseconds: Int = 250,
        promiscuous: Bool = false,
        filter: String? = nil,
        largeSnapshot: LargeSnapshot? = nil
    ) {
        self.interface = interface
        self.snapshotLength = snapshotLength
        self.bufferSize = bufferSize
        self.timeoutMilliseconds = timeoutMilliseconds
        self.promiscuous = promiscuous
        self.filter = filter
        self.largeSnapshot = largeSnapshot
    }

    /// The snap length the capture is opened with: the largest a packet may be kept.
    var captureSnapshotLength: Int { max(snapshotLength, largeSnapshot?.length ?? 0) }
}

/// One classic BPF instruction (`struct bpf_insn`).
public struct BPFInstruction: Hashable, Sendable {
    public var code: UInt16
    public var jt: UInt8
    public var jf: UInt8
    public var k: UInt32

    public init(code: UInt16, jt: UInt8, jf: UInt8, k: UInt32) {
        self.code = code
        self.jt = jt
        self.jf = jf
        self.k = k
    }

    /// `ret #k` (accept `k` bytes; 0 rejects).
    public var isReturnConstant: Bool { code & 0x07 == 0x06 && code & 0x18 == 0x00 }
}

/// Counters of a live capture since it was opened (`pcap_stats`).
public struct PcapStatistics: Hashable, Sendable {
    /// Packets that passed the filter.
    public var received: UInt64
    /// Packets dropped because the ring buffer was full.
    public var dropped: UInt64
    /// Packets dropped by the interface or its driver.
    public var interfaceDropped: UInt64

    public init(received: UInt64, dropped: UInt64, interfaceDropped: UInt64) {
        self.received = received
        self.dropped = dropped
        self.interfaceDropped = interfaceDropped
    }
}

/// A live capture on an interface through libpcap (`pcap_create` + `pcap_activate`): on Linux a
/// TPACKET_V3 memory-mapped ring, the BPF filter attached to the socket in the kernel.
///
/// Read it from one thread (`dispatch`). `breakLoop()` and `statistics()` may be called from
/// any thread: libpcap makes `pcap_breakloop` wake a blocked reader, and `pcap_stats` only
/// reads socket counters. Needs `CAP_NET_RAW`.
public final class PcapCapture: @unchecked Sendable {
    private let handle: OpaquePointer
    private let selectableFD: Int32
    public let options: PcapCaptureOptions
    /// The link-layer header type, e.g. 1 (Ethernet) or 113 (Linux cooked, for `any`).
    public let linkType: Int32

    /// Opens and activates the capture and installs the filter.
    ///
    /// - Throws: `PcapError`: `.openFailed` (no such interface), `.optionRejected`,
    ///   `.activateFailed` (no permission: needs `CAP_NET_RAW`), `.invalidFilter` (the message
    ///   quotes the expression and libpcap's reason).
    public init(options: PcapCaptureOptions) throws(PcapError) {
        let source = options.interface
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let created = pcap_create(source, &errbuf) else {
            throw PcapError(code: .openFailed, message: PcapError.message(fromErrorBuffer: errbuf), source: source)
        }
        func fail(_ code: PcapError.Code, _ message: String) -> PcapError {
            pcap_close(created)
            return PcapError(code: code, message: message, source: source)
        }
        func check(_ rc: Int32, _ what: String) throws(PcapError) {
            guard rc == 0 else { throw fail(.optionRejected, "\(what) rejected (libpcap status \(rc))") }
        }
        guard options.snapshotLength > 0, options.snapshotLength <= 262_144 else {
            throw fail(.optionRejected, "snapshot length \(options.snapshotLength) is not in 1...262144")
        }
        if let large = options.largeSnapshot, large.length <= 0 || large.length > 262_144 {
            throw fail(.optionRejected, "large snapshot length \(large.length) is not in 1...262144")
        }
        guard options.bufferSize > 0, options.bufferSize <= Int(Int32.max) else {
            throw fail(.optionRejected, "buffer size \(options.bufferSize) is not positive")
        }
        guard options.timeoutMilliseconds > 0, options.timeoutMilliseconds <= 60_000 else {
            throw fail(.optionRejected, "timeout \(options.timeoutMilliseconds) ms is not in 1...60000")
        }
        try check(pcap_set_snaplen(created, Int32(options.captureSnapshotLength)), "snapshot length")
        try check(pcap_set_buffer_size(created, Int32(options.bufferSize)), "buffer size")
        try check(pcap_set_timeout(created, Int32(options.timeoutMilliseconds)), "timeout")
        try check(pcap_set_immediate_mode(created, 0), "non-immediate mode")
        try check(pcap_set_promisc(created, options.promiscuous ? 1 : 0), "promiscuous mode")
        let activated = pcap_activate(created)
        if activated < 0 {
            let detail = String(cString: pcap_geterr(created))
            let reason = String(cString: pcap_statustostr(activated))
            let message = detail.isEmpty ? reason : "\(reason): \(detail)"
            let code: PcapError.Code = activated == PCAP_ERROR_NO_SUCH_DEVICE ? .openFailed : .activateFailed
            throw fail(code, message)
        }
        if let large = options.largeSnapshot {
            do {
                try Self.installSpliced(
                    on: created,
                    compilingWith: created,
                    filter: options.filter,
                    snapshotLength: options.snapshotLength,
                    large: large,
                    source: source
                )
            } catch {
                pcap_close(created)
                throw error
            }
        } else if let filter = options.filter {
            var program = bpf_program()
            guard pcap_compile(created, &program, filter, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
                throw fail(.invalidFilter, "invalid BPF filter '\(filter)': \(String(cString: pcap_geterr(created)))")
            }
            let installed = pcap_setfilter(created, &program)
            pcap_freecode(&program)
            guard installed == 0 else {
                throw fail(
                    .invalidFilter,
                    "cannot install BPF filter '\(filter)': \(String(cString: pcap_geterr(created)))"
                )
            }
        }
        // Non-blocking reads with our own poll: with TPACKET_V3 a blocking pcap_dispatch waits
        // forever when no packet arrives, which would stall idle-flow expiry and shutdown.
        var nonblockError = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard pcap_setnonblock(created, 1, &nonblockError) == 0 else {
            throw fail(
                .activateFailed,
                "cannot make the capture non-blocking: \(String(decoding: nonblockError.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))"
            )
        }
        let selectable = pcap_get_selectable_fd(created)
        guard selectable >= 0 else { throw fail(.activateFailed, "the capture has no selectable descriptor") }
        self.handle = created
        self.options = options
        self.linkType = pcap_datalink(created)
        self.selectableFD = selectable
    }

    deinit {
        pcap_close(handle)
    }

    /// What `dispatch` returned.
    public enum DispatchResult: Hashable, Sendable {
        /// This many packets were delivered (0: the timeout passed without any).
        case packets(Int)
        /// `breakLoop()` was called.
        case interrupted
    }

    private final class DispatchContext {
        let body: (borrowing CapturedPacket) -> Void
        let linkType: Int32
        init(body: @escaping (borrowing CapturedPacket) -> Void, linkType: Int32) {
            self.body = body
            self.linkType = linkType
        }
    }

    /// Waits for the next block of packets (polling at most the configured timeout; it never
    /// blocks longer, even when no packet arrives) and calls `body`
    /// for each, up to `maxPackets`.
    ///
    /// The corresponding C function is `pcap_dispatch`.
    /// - Throws: `PcapError` `.readFailed` (the interface went away...).
    public func dispatch(
        maxPackets: Int = 4096,
        _ body: (borrowing CapturedPacket) -> Void
    ) throws(PcapError) -> DispatchResult {
        var pfd = pollfd(fd: selectableFD, events: Int16(POLLIN), revents: 0)
        // EINTR or timeout: dispatch finds nothing
        _ = poll(&pfd, 1, Int32(clamping: max(1, options.timeoutMilliseconds)))
        let rc: Int32 = withoutActuallyEscaping(body) { escapable in
            let context = Unmanaged.passRetained(DispatchContext(body: escapable, linkType: linkType))
            defer { context.release() }
            return pcap_dispatch(
                handle,
                Int32(clamping: maxPackets),
                { user, header, data in
                    guard let user, let header, let data else { return }
                    let context = Unmanaged<DispatchContext>.fromOpaque(UnsafeRawPointer(user)).takeUnretainedValue()
                    let h = header.pointee
                    let nanos = Int64(h.ts.tv_sec) &* 1_000_000_000 &+ Int64(h.ts.tv_usec) &* 1000
                    context.body(
                        CapturedPacket(
                            timestampNanoseconds: nanos,
                            wireLength: Int(h.len),
                            linkType: context.linkType,
                            bytes: UnsafeRawBufferPointer(start: data, count: Int(h.caplen))
                        )
                    )
                },
                context.toOpaque().assumingMemoryBound(to: UInt8.self)
            )
        }
        if rc >= 0 { return .packets(Int(rc)) }
        if rc == PCAP_ERROR_BREAK { return .interrupted }
        throw PcapError(code: .readFailed, message: String(cString: pcap_geterr(handle)), source: options.interface)
    }

    /// Replaces the kernel filter of the live capture (`nil`: everything). With
    /// `snapshotLength` below the capture's, the filter's accept keeps only that many bytes per
    /// packet, so the kernel copies less into the ring. Call it from the thread that calls
    /// `dispatch` (libpcap handles are not thread-safe); the socket needs no privilege for it.
    ///
    /// The corresponding C functions are `pcap_compile` (on a `pcap_open_dead` handle of the
    /// capture's link type and the given snap length) and `pcap_setfilter`.
    /// - Throws: `PcapError` `.invalidFilter`, quoting the expression.
    ///
    /// With `largeSnapshot`, packets that also match its filter are kept up to its length (at
    /// most the capture's snap length): the two programs are spliced (`splice`).
    public func setFilter(
        _ expression: String?,
        snapshotLength: Int? = nil,
        largeSnapshot: PcapCaptureOptions.LargeSnapshot? = nil
    ) throws(PcapError) {
        let snap = Int32(clamping: min(snapshotLength ?? options.snapshotLength, options.captureSnapshotLength))
        guard let dead = pcap_open_dead(linkType, max(1, snap)) else {
            throw PcapError(
                code: .invalidFilter,
                message: "cannot compile a filter for link type \(linkType)",
                source: options.interface
            )
        }
        defer { pcap_close(dead) }
        if var large = largeSnapshot {
            large.length = min(large.length, options.captureSnapshotLength)
            try Self.installSpliced(
                on: handle,
                compilingWith: dead,
                filter: expression,
                snapshotLength: Int(snap),
                large: large,
                source: options.interface
            )
            return
        }
        var program = bpf_program()
        guard pcap_compile(dead, &program, expression ?? "", 1, PCAP_NETMASK_UNKNOWN) == 0 else {
            throw PcapError(
                code: .invalidFilter,
                message: "invalid BPF filter '\(expression ?? "")': \(String(cString: pcap_geterr(dead)))",
                source: options.interface
            )
        }
        defer { pcap_freecode(&program) }
        guard pcap_setfilter(handle, &program) == 0 else {
            throw PcapError(
                code: .invalidFilter,
                message: "cannot install BPF filter '\(expression ?? "")': \(String(cString: pcap_geterr(handle)))",
                source: options.interface
            )
        }
    }

    // MARK: - Per-packet snap length

    /// Compiles `expression` (nil or empty: every packet) for `linkType` into classic BPF, the
    /// accepting returns keeping `snapshotLength` bytes.
    ///
    /// The corresponding C functions are `pcap_open_dead` and `pcap_compile`.
    /// - Throws: `PcapError` `.invalidFilter`, quoting the expression.
    public static func compile(
        _ expression: String?,
        linkType: Int32,
        snapshotLength: Int
    ) throws(PcapError) -> [BPFInstruction] {
        guard let dead = pcap_open_dead(linkType, Int32(clamping: max(1, snapshotLength))) else {
            throw PcapError(
                code: .invalidFilter,
                message: "cannot compile a filter for link type \(linkType)",
                source: "link type \(linkType)"
            )
        }
        defer { pcap_close(dead) }
        return try compile(expression, with: dead, source: "link type \(linkType)")
    }

    private static func compile(
        _ expression: String?,
        with handle: OpaquePointer,
        source: String
    ) throws(PcapError) -> [BPFInstruction] {
        var program = bpf_program()
        guard pcap_compile(handle, &program, expression ?? "", 1, PCAP_NETMASK_UNKNOWN) == 0 else {
            throw PcapError(
                code: .invalidFilter,
                message: "invalid BPF filter '\(expression ?? "")': \(String(cString: pcap_geterr(handle)))",
                source: source
            )
        }
        defer { pcap_freecode(&program) }
        return (0..<Int(program.bf_len)).map { i in
            let insn = program.bf_insns[i]
            return BPFInstruction(code: insn.code, jt: insn.jt, jf: insn.jf, k: insn.k)
        }
    }

    /// One program from two, for a snap length per packet: every accepting `ret #k` (k > 0) of
    /// `base` becomes a jump to the start of `large`, whose rejecting `ret #0` becomes
    /// `ret #baseSnapshot` and whose accepting returns become `ret #largeSnapshot`. So a packet
    /// `base` rejects is dropped, one both accept is kept up to `largeSnapshot` bytes, and the
    /// others up to `baseSnapshot`. Jumps inside each program are relative and stay as they are.
    /// Nil when the result is longer than the kernel takes (4096 instructions).
    public static func splice(
        _ base: [BPFInstruction],
        baseSnapshot: Int,
        large: [BPFInstruction],
        largeSnapshot: Int
    ) -> [BPFInstruction]? {
        guard !base.isEmpty, !large.isEmpty, base.count + large.count <= 4096 else { return nil }
        var out = base
        for i in out.indices where out[i].isReturnConstant && out[i].k != 0 {
            // BPF_JMP | BPF_JA: to instruction i + 1 + k, the first one of `large`.
            out[i] = BPFInstruction(code: 0x05, jt: 0, jf: 0, k: UInt32(base.count - i - 1))
        }
        for var insn in large {
            if insn.isReturnConstant {
                insn.k = UInt32(clamping: insn.k == 0 ? baseSnapshot : largeSnapshot)
            }
            out.append(insn)
        }
        return out
    }

    /// What `program` returns for `packet` (bytes kept; 0: dropped), run in user space as the
    /// kernel would run it.
    ///
    /// The corresponding C function is `bpf_filter`.
    public static func run(_ program: [BPFInstruction], on packet: UnsafeRawBufferPointer, wireLength: Int) -> UInt32 {
        let insns = program.map { bpf_insn(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) }
        guard let base = packet.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return 0 }
        return bpf_filter(insns, base, UInt32(clamping: wireLength), UInt32(clamping: packet.count))
    }

    /// Compiles `filter` and `large.filter` with `compiler` (the live handle, or a dead one of
    /// its link type), splices them and installs the result on `handle`.
    private static func installSpliced(
        on handle: OpaquePointer,
        compilingWith compiler: OpaquePointer,
        filter: String?,
        snapshotLength: Int,
        large: PcapCaptureOptions.LargeSnapshot,
        source: String
    ) throws(PcapError) {
        let base = try compile(filter, with: compiler, source: source)
        let extra = try compile(large.filter, with: compiler, source: source)
        guard
            var spliced = splice(base, baseSnapshot: snapshotLength, large: extra, largeSnapshot: large.length)
        else {
            throw PcapError(
                code: .invalidFilter,
                message: "BPF filter '\(filter ?? "")' is too long to splice with the large-snapshot filter",
                source: source
            )
        }
        var insns = spliced.map { bpf_insn(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) }
        spliced.removeAll()
        let installed = insns.withUnsafeMutableBufferPointer { buffer in
            var program = bpf_program(bf_len: UInt32(buffer.count), bf_insns: buffer.baseAddress)
            return pcap_setfilter(handle, &program)
        }
        guard installed == 0 else {
            throw PcapError(
                code: .invalidFilter,
                message: "cannot install BPF filter '\(filter ?? "")': \(String(cString: pcap_geterr(handle)))",
                source: source
            )
        }
    }

    /// Makes the current or next `dispatch` return `.interrupted` (wakes a blocked reader).
    ///
    /// The corresponding C function is `pcap_breakloop`.
    public func breakLoop() {
        pcap_breakloop(handle)
    }

    /// Packets received and dropped since the capture was opened.
    ///
    /// The corresponding C function is `pcap_stats`.
    public func statistics() throws(PcapError) -> PcapStatistics {
        var stats = pcap_stat()
        guard pcap_stats(handle, &stats) == 0 else {
            throw PcapError(
                code: .statisticsUnavailable,
                message: String(cString: pcap_geterr(handle)),
                source: options.interface
            )
        }
        return PcapStatistics(
            received: UInt64(stats.ps_recv),
            dropped: UInt64(stats.ps_drop),
            interfaceDropped: UInt64(stats.ps_ifdrop)
        )
    }
}
