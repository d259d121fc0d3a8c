import Testing

/// Every test that uses inotify. They share per-user kernel limits, and two of them lower
/// `fs.inotify.max_user_watches` or `max_queued_events` for a moment, so they run one at a time.
/// (`.serialized` applies to the nested suites declared in extensions.)
@Suite("Real kernel (inotify), one at a time", .serialized)
struct RealKernelTests {}
