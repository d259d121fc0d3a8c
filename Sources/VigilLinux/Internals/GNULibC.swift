import Glibc

/// glibc functions that Swift's `Glibc` module does not import: `<sys/eventfd.h>` is outside its
/// module map and `pthread_setname_np` needs `_GNU_SOURCE`. They are resolved once by name.
///
/// The STYLE.md answer is a C target (`CVigilLinux`, `_GNU_SOURCE` in `cSettings`); when
/// Package.swift gains one, these become plain calls to its shims.
enum GNULibC {
    typealias EventFDFunction = @convention(c) (UInt32, Int32) -> Int32
    typealias SetNameFunction = @convention(c) (pthread_t, UnsafePointer<CChar>) -> Int32

    /// `int eventfd(unsigned int initval, int flags)`, in glibc since 2.8.
    static let eventfd: EventFDFunction = resolve("eventfd")!

    typealias FanotifyInitFunction = @convention(c) (UInt32, UInt32) -> Int32
    typealias FanotifyMarkFunction = @convention(c) (Int32, UInt32, UInt64, Int32, UnsafePointer<CChar>?) -> Int32

    /// `int fanotify_init(unsigned int flags, unsigned int event_f_flags)` (`<sys/fanotify.h>`,
    /// outside Glibc's module map), in glibc since 2.13.
    static let fanotifyInit: FanotifyInitFunction? = resolve("fanotify_init")

    /// `int fanotify_mark(int fd, unsigned int flags, uint64_t mask, int dirfd, const char *path)`.
    static let fanotifyMark: FanotifyMarkFunction? = resolve("fanotify_mark")

    typealias MallocTrimFunction = @convention(c) (Int) -> Int32

    /// `int malloc_trim(size_t pad)` (`<malloc.h>`, outside Glibc's module map), glibc since 2.0.
    static let mallocTrim: MallocTrimFunction? = resolve("malloc_trim")

    typealias OpenByHandleFunction = @convention(c) (Int32, UnsafeMutableRawPointer, Int32) -> Int32

    /// `int open_by_handle_at(int mount_fd, struct file_handle *handle, int flags)` (`_GNU_SOURCE`).
    static let openByHandleAt: OpenByHandleFunction? = resolve("open_by_handle_at")

    typealias FStatFSFunction = @convention(c) (Int32, UnsafeMutableRawPointer) -> Int32

    /// `int fstatfs(int fd, struct statfs *buf)` (`<sys/statfs.h>`, outside Glibc's module map).
    static let fstatfs: FStatFSFunction? = resolve("fstatfs")

    /// `int pthread_setname_np(pthread_t, const char *)`, in glibc since 2.12; optional.
    static let pthreadSetName: SetNameFunction? = resolve("pthread_setname_np")

    private static func resolve<F>(_ name: String) -> F? {
        // RTLD_DEFAULT is a null handle on glibc.
        guard let symbol = dlsym(nil, name) else { return nil }
        return unsafeBitCast(symbol, to: F.self)
    }
}
