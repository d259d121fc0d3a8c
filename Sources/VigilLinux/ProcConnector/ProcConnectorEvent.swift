/// One process event from the kernel's proc connector (`<linux/cn_proc.h>`, `struct proc_event`).
///
/// Pids are as the kernel names them: `pid` is the thread id, `tgid` the process id (what
/// user space calls the pid).
public enum ProcConnectorEvent: Hashable, Sendable {
    /// `PROC_EVENT_NONE`: the kernel's acknowledgement of a subscription; `error` is 0 on success.
    case acknowledgement(error: UInt32)
    /// `PROC_EVENT_FORK`: a new thread or process.
    case fork(parentPid: UInt32, parentTgid: UInt32, childPid: UInt32, childTgid: UInt32)
    /// `PROC_EVENT_EXEC`: the process replaced its image (sent after the exec committed).
    case exec(pid: UInt32, tgid: UInt32)
    /// `PROC_EVENT_UID`: real and effective uid after a change.
    case uidChange(pid: UInt32, tgid: UInt32, ruid: UInt32, euid: UInt32)
    /// `PROC_EVENT_GID`: real and effective gid after a change.
    case gidChange(pid: UInt32, tgid: UInt32, rgid: UInt32, egid: UInt32)
    /// `PROC_EVENT_SID`: the process started a new session (`setsid`).
    case sidChange(pid: UInt32, tgid: UInt32)
    /// `PROC_EVENT_PTRACE`: a tracer attached (tracer 0: detached).
    case ptrace(pid: UInt32, tgid: UInt32, tracerPid: UInt32, tracerTgid: UInt32)
    /// `PROC_EVENT_COMM`: the task renamed itself (`prctl(PR_SET_NAME)`).
    case commChange(pid: UInt32, tgid: UInt32, comm: String)
    /// `PROC_EVENT_COREDUMP`.
    case coredump(pid: UInt32, tgid: UInt32)
    /// `PROC_EVENT_EXIT`: `exitStatus` is the raw wait status (`code << 8 | signal`).
    case exit(pid: UInt32, tgid: UInt32, exitStatus: UInt32, exitSignal: UInt32, parentPid: UInt32, parentTgid: UInt32)
    /// An event type this parser does not know (a newer kernel), with its `what` value.
    case unknown(what: UInt32)
}

/// A proc connector message: the event with the CPU and the kernel's timestamp
/// (`ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds).
public struct ProcConnectorMessage: Hashable, Sendable {
    public var cpu: UInt32
    public var timestampNanoseconds: UInt64
    public var event: ProcConnectorEvent

    public init(cpu: UInt32, timestampNanoseconds: UInt64, event: ProcConnectorEvent) {
        self.cpu = cpu
        self.timestampNanoseconds = timestampNanoseconds
        self.event = event
    }
}

/// Parses netlink datagrams of the proc connector with bounds checks: a short, corrupt or
/// foreign message is counted as malformed and skipped, never trusted.
///
/// Layout (all native-endian): `struct nlmsghdr` (16 bytes: len, type, flags, seq, pid), then
/// `struct cn_msg` (20 bytes: id.idx, id.val, seq, ack, len u16, flags u16), then
/// `struct proc_event` (what u32, cpu u32, timestamp_ns u64 at offset 8, the union at offset 16).
public enum ProcConnectorParser {
    static let netlinkHeaderSize = 16
    static let connectorHeaderSize = 20
    static let eventHeaderSize = 16
    /// `CN_IDX_PROC` and `CN_VAL_PROC`.
    static let connectorIndex: UInt32 = 1
    static let connectorValue: UInt32 = 1

    public struct Summary: Hashable, Sendable {
        public var messages = 0
        public var malformed = 0
    }

    /// Calls `body` for each proc event in `bytes` (one datagram, possibly several netlink
    /// messages).
    @discardableResult
    public static func parse(_ bytes: UnsafeRawBufferPointer, _ body: (ProcConnectorMessage) -> Void) -> Summary {
        var summary = Summary()
        var offset = 0
        while bytes.count - offset >= netlinkHeaderSize {
            let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            let type = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
            guard length >= netlinkHeaderSize, length <= bytes.count - offset else {
                summary.malformed += 1
                return summary
            }
            defer { offset += (length + 3) & ~3 }
            // NLMSG_NOOP 1, NLMSG_ERROR 2; connector data arrives as NLMSG_DONE (3).
            guard type == 3 else {
                if type != 1 { summary.malformed += 1 }
                continue
            }
            let message = UnsafeRawBufferPointer(rebasing: bytes[(offset + netlinkHeaderSize)..<(offset + length)])
            if let parsed = parseConnectorMessage(message) {
                summary.messages += 1
                body(parsed)
            } else {
                summary.malformed += 1
            }
        }
        if bytes.count - offset > 0 {  // trailing bytes shorter than a header
            summary.malformed += 1
        }
        return summary
    }

    /// Parses `struct cn_msg` + `struct proc_event`; nil when it is not a well-formed proc event.
    static func parseConnectorMessage(_ m: UnsafeRawBufferPointer) -> ProcConnectorMessage? {
        guard m.count >= connectorHeaderSize + eventHeaderSize else { return nil }
        let idx = m.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
        let val = m.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        let dataLength = Int(m.loadUnaligned(fromByteOffset: 16, as: UInt16.self))
        guard idx == connectorIndex, val == connectorValue else { return nil }
        let available = min(dataLength, m.count - connectorHeaderSize)
        guard available >= eventHeaderSize else { return nil }
        let e = UnsafeRawBufferPointer(rebasing: m[connectorHeaderSize..<(connectorHeaderSize + available)])
        let what = e.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
        let cpu = e.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        let timestamp = e.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        let union = e.count - eventHeaderSize
        func u32(_ index: Int) -> UInt32 {
            e.loadUnaligned(fromByteOffset: eventHeaderSize + index * 4, as: UInt32.self)
        }
        let event: ProcConnectorEvent
        switch what {
        case 0:
            guard union >= 4 else { return nil }
            event = .acknowledgement(error: u32(0))
        case 0x1:
            guard union >= 16 else { return nil }
            event = .fork(parentPid: u32(0), parentTgid: u32(1), childPid: u32(2), childTgid: u32(3))
        case 0x2:
            guard union >= 8 else { return nil }
            event = .exec(pid: u32(0), tgid: u32(1))
        case 0x4:
            guard union >= 16 else { return nil }
            event = .uidChange(pid: u32(0), tgid: u32(1), ruid: u32(2), euid: u32(3))
        case 0x40:
            guard union >= 16 else { return nil }
            event = .gidChange(pid: u32(0), tgid: u32(1), rgid: u32(2), egid: u32(3))
        case 0x80:
            guard union >= 8 else { return nil }
            event = .sidChange(pid: u32(0), tgid: u32(1))
        case 0x100:
            guard union >= 16 else { return nil }
            event = .ptrace(pid: u32(0), tgid: u32(1), tracerPid: u32(2), tracerTgid: u32(3))
        case 0x200:
            guard union >= 24 else { return nil }
            let raw = UnsafeRawBufferPointer(rebasing: e[(eventHeaderSize + 8)..<(eventHeaderSize + 24)])
            let name = raw.prefix { $0 != 0 }
            event = .commChange(pid: u32(0), tgid: u32(1), comm: String(decoding: name, as: UTF8.self))
        case 0x4000_0000:
            guard union >= 8 else { return nil }
            event = .coredump(pid: u32(0), tgid: u32(1))
        case 0x8000_0000:
            guard union >= 16 else { return nil }
            // parent_pid/parent_tgid were added in Linux 4.18; older kernels send 16 bytes.
            let hasParent = union >= 24
            event = .exit(
                pid: u32(0),
                tgid: u32(1),
                exitStatus: u32(2),
                exitSignal: u32(3),
                parentPid: hasParent ? u32(4) : 0,
                parentTgid: hasParent ? u32(5) : 0
            )
        default:
            // PROC_EVENT_NONZERO_EXIT (0x20000000) and newer types: reported, not interpreted.
            event = .unknown(what: what)
        }
        return ProcConnectorMessage(cpu: cpu, timestampNanoseconds: timestamp, event: event)
    }
}
