import Glibc
import Synchronization
import SystemPackage

/// A dedicated kernel thread (pthread) for blocking work that must stay out of Swift's
/// cooperative pool, such as reading an event descriptor.
public final class PosixThread: Sendable {
    private let handle: pthread_t
    private let joined = Atomic<Bool>(false)

    private init(handle: pthread_t) {
        self.handle = handle
    }

    private final class Context {
        let name: String
        let body: () -> Void
        init(name: String, body: @escaping () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts a thread running `body`. `name` (at most 15 bytes are kept) shows in `ps -T` and
    /// `/proc/PID/task/TID/comm`.
    ///
    /// The corresponding C function is `pthread_create`; the thread is joinable.
    public static func spawn(name: String, body: sending @escaping () -> Void) throws(Errno) -> PosixThread {
        let context = Unmanaged.passRetained(Context(name: name, body: body)).toOpaque()
        var handle = pthread_t()
        let rc = pthread_create(
            &handle,
            nil,
            { raw in
                guard let raw else { return nil }
                let context = Unmanaged<Context>.fromOpaque(raw).takeRetainedValue()
                if let setName = GNULibC.pthreadSetName, let name = String(context.name.utf8.prefix(15)) {
                    _ = name.withCString { setName(pthread_self(), $0) }
                }
                context.body()
                return nil
            },
            context
        )
        guard rc == 0 else {
            Unmanaged<Context>.fromOpaque(context).release()
            throw Errno(rawValue: rc)
        }
        return PosixThread(handle: handle)
    }

    /// Whether the caller runs on this thread.
    public var isCurrent: Bool {
        pthread_equal(pthread_self(), handle) != 0
    }

    /// Waits for the thread to end. Only the first call waits; calling it from the thread
    /// itself is a no-op (it would deadlock).
    public func join() {
        guard !isCurrent else { return }
        guard !joined.exchange(true, ordering: .acquiringAndReleasing) else { return }
        pthread_join(handle, nil)
    }
}
