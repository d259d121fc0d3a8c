/// What the sensor knows about one live process: enough to name it as a parent and to
/// attribute its actions.
public struct ProcessRecord: Hashable, Sendable {
    public var pid: UInt32
    public var parentPid: UInt32?
    /// `/proc/PID/stat` field 22 (clock ticks after boot); nil when not read (a fork copy).
    public var startTimeTicks: UInt64?
    public var image: String?
    public var commandLine: String?
    public var uid: UInt32?
    public var euid: UInt32?
    public var gid: UInt32?
    public var user: String?
    public var containerId: String?

    public init(
        pid: UInt32,
        parentPid: UInt32? = nil,
        startTimeTicks: UInt64? = nil,
        image: String? = nil,
        commandLine: String? = nil,
        uid: UInt32? = nil,
        euid: UInt32? = nil,
        gid: UInt32? = nil,
        user: String? = nil,
        containerId: String? = nil
    ) {
        self.pid = pid
        self.parentPid = parentPid
        self.startTimeTicks = startTimeTicks
        self.image = image
        self.commandLine = commandLine
        self.uid = uid
        self.euid = euid
        self.gid = gid
        self.user = user
        self.containerId = containerId
    }
}

/// A bounded table of live processes by pid, least recently used first out.
///
/// Exits remove entries; when full, inserting evicts the least recently used entry and counts
/// it (`evictions`). A pid holds one entry: a new process with a reused pid replaces the old
/// entry (the sensor sees the fork or exec first), and `lookup(pid:startTimeTicks:)` refuses an
/// entry whose start time differs, so two processes never share one. Memory is
/// O(`capacity`). A value type: the sensor keeps it behind a lock its reader holds per batch.
public struct ProcessTable: Sendable {
    public let capacity: Int
    public private(set) var evictions: UInt64 = 0

    private struct Node {
        var record: ProcessRecord
        var previous: Int32
        var next: Int32
    }

    private var nodes: [Node] = []
    private var free: [Int32] = []
    private var index: [UInt32: Int32] = [:]
    /// Most recently used.
    private var head: Int32 = -1
    /// Least recently used.
    private var tail: Int32 = -1

    public init(capacity: Int) {
        precondition(capacity > 0, "a process table holds at least one entry")
        self.capacity = capacity
        index.reserveCapacity(min(capacity, 65_536))
    }

    public var count: Int { index.count }

    /// The entry of `pid`, marked as recently used.
    public mutating func lookup(pid: UInt32) -> ProcessRecord? {
        guard let i = index[pid] else { return nil }
        moveToFront(i)
        return nodes[Int(i)].record
    }

    /// The entry of `pid` only if it is the same process: a record with another known start
    /// time is a former holder of the pid and is not returned.
    public mutating func lookup(pid: UInt32, startTimeTicks: UInt64) -> ProcessRecord? {
        guard let record = lookup(pid: pid) else { return nil }
        if let known = record.startTimeTicks, known != startTimeTicks { return nil }
        return record
    }

    /// The entry of `pid` without touching recency.
    public func peek(pid: UInt32) -> ProcessRecord? {
        index[pid].map { nodes[Int($0)].record }
    }

    /// Inserts or replaces the entry of `record.pid`; returns the record evicted to make room.
    @discardableResult
    public mutating func upsert(_ record: ProcessRecord) -> ProcessRecord? {
        if let i = index[record.pid] {
            nodes[Int(i)].record = record
            moveToFront(i)
            return nil
        }
        var evicted: ProcessRecord?
        if index.count >= capacity, tail >= 0 {
            evicted = nodes[Int(tail)].record
            remove(pid: nodes[Int(tail)].record.pid)
            evictions += 1
        }
        let node = Node(record: record, previous: -1, next: head)
        let i: Int32
        if let reused = free.popLast() {
            i = reused
            nodes[Int(i)] = node
        } else {
            i = Int32(nodes.count)
            nodes.append(node)
        }
        if head >= 0 { nodes[Int(head)].previous = i }
        head = i
        if tail < 0 { tail = i }
        index[record.pid] = i
        return evicted
    }

    /// Updates the entry of `pid` in place, if present.
    public mutating func update(pid: UInt32, _ body: (inout ProcessRecord) -> Void) {
        guard let i = index[pid] else { return }
        body(&nodes[Int(i)].record)
    }

    /// Forgets `pid` (it exited); returns its entry.
    @discardableResult
    public mutating func remove(pid: UInt32) -> ProcessRecord? {
        guard let i = index.removeValue(forKey: pid) else { return nil }
        unlink(i)
        let record = nodes[Int(i)].record
        nodes[Int(i)].record = ProcessRecord(pid: 0)
        free.append(i)
        return record
    }

    private mutating func unlink(_ i: Int32) {
        let node = nodes[Int(i)]
        if node.previous >= 0 { nodes[Int(node.previous)].next = node.next } else { head = node.next }
        if node.next >= 0 { nodes[Int(node.next)].previous = node.previous } else { tail = node.previous }
        nodes[Int(i)].previous = -1
        nodes[Int(i)].next = -1
    }

    private mutating func moveToFront(_ i: Int32) {
        guard head != i else { return }
        unlink(i)
        nodes[Int(i)].next = head
        if head >= 0 { nodes[Int(head)].previous = i }
        head = i
        if tail < 0 { tail = i }
    }
}
