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

    /// `int pthread_setname_np(pthread_t, const char *)`, in glibc since 2.12; optional.
    static let pthreadSetName: SetNameFunction? = resolve("pthread_setname_np")

    private static func resolve<F>(_ name: String) -> F? {
        // RTLD_DEFAULT is a null handle on glibc.
        guard let symbol = dlsym(nil, name) else { return nil }
        return unsafeBitCast(symbol, to: F.self)
    }
}
