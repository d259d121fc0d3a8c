/// What the file sensor watches and how.
public struct FileSensorConfiguration: Sendable {
    /// Absolute paths of the directory trees to watch recursively.
    public var paths: [String]
    /// Absolute path prefixes not to watch (matched by whole path components: `/var/log`
    /// excludes `/var/log` and `/var/log/x`, not `/var/logs`). No events are reported for them.
    public var exclude: [String]
    /// Regular files up to this size get a SHA-256 on create and modify; 0 disables hashing.
    public var hashMaxBytes: Int64
    /// Bound of each queue between the kernel reader and the consumer (the hashing stage's
    /// input and the `events` stream). Past it events are dropped and counted.
    public var queueCapacity: Int
    /// Name the process (`Image`, `ProcessId`, `User`) that made each change, with fanotify
    /// marks on the watched filesystems (see `FileSensor.attributesProcesses`). Needs
    /// `CAP_SYS_ADMIN` when the sensor is created; without it the sensor runs on inotify alone.
    public var attributeProcesses: Bool

    public init(
        paths: [String],
        exclude: [String] = [],
        hashMaxBytes: Int64 = 16 << 20,
        queueCapacity: Int = 65_536,
        attributeProcesses: Bool = false
    ) {
        self.paths = paths
        self.exclude = exclude
        self.hashMaxBytes = hashMaxBytes
        self.queueCapacity = queueCapacity
        self.attributeProcesses = attributeProcesses
    }
}
