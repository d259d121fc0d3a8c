import Glibc

// Every raw call of this module goes through one of these functions, so a debug build can
// inject failures (see Mocking.swift). Nothing here retries or interprets errors.

@inline(__always)
func setErrno(_ value: Int32) {
    errno = value
}

func system_inotify_init1(_ flags: Int32) -> Int32 {
    #if DEBUG
    if injectedFailure("inotify_init1") { return -1 }
    #endif
    return inotify_init1(flags)
}

func system_inotify_add_watch(_ fd: Int32, _ path: UnsafePointer<CChar>, _ mask: UInt32) -> Int32 {
    #if DEBUG
    if injectedFailure("inotify_add_watch") { return -1 }
    #endif
    return inotify_add_watch(fd, path, mask)
}

func system_inotify_rm_watch(_ fd: Int32, _ wd: Int32) -> Int32 {
    #if DEBUG
    if injectedFailure("inotify_rm_watch") { return -1 }
    #endif
    return inotify_rm_watch(fd, wd)
}

func system_eventfd(_ initial: UInt32, _ flags: Int32) -> Int32 {
    #if DEBUG
    if injectedFailure("eventfd") { return -1 }
    #endif
    return GNULibC.eventfd(initial, flags)
}

func system_read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    #if DEBUG
    if injectedFailure("read") { return -1 }
    #endif
    return read(fd, buffer, count)
}

func system_write(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    #if DEBUG
    if injectedFailure("write") { return -1 }
    #endif
    return write(fd, buffer, count)
}

func system_poll(_ fds: UnsafeMutablePointer<pollfd>, _ count: nfds_t, _ timeout: Int32) -> Int32 {
    #if DEBUG
    if injectedFailure("poll") { return -1 }
    #endif
    return poll(fds, count, timeout)
}

func system_close(_ fd: Int32) -> Int32 {
    close(fd)
}

func system_lstat(_ path: UnsafePointer<CChar>, _ buffer: UnsafeMutablePointer<stat>) -> Int32 {
    #if DEBUG
    if injectedFailure("lstat") { return -1 }
    #endif
    return lstat(path, buffer)
}

func system_stat(_ path: UnsafePointer<CChar>, _ buffer: UnsafeMutablePointer<stat>) -> Int32 {
    #if DEBUG
    if injectedFailure("stat") { return -1 }
    #endif
    return stat(path, buffer)
}

func system_fstat(_ fd: Int32, _ buffer: UnsafeMutablePointer<stat>) -> Int32 {
    #if DEBUG
    if injectedFailure("fstat") { return -1 }
    #endif
    return fstat(fd, buffer)
}

/// `buffer`: a `struct statfs` (120 bytes on the 64-bit targets; `f_fsid` at offset 56).
func system_fstatfs(_ fd: Int32, _ buffer: UnsafeMutableRawPointer) -> Int32 {
    #if DEBUG
    if injectedFailure("fstatfs") { return -1 }
    #endif
    guard let call = GNULibC.fstatfs else {
        setErrno(ENOSYS)
        return -1
    }
    return call(fd, buffer)
}

func system_open(_ path: UnsafePointer<CChar>, _ flags: Int32) -> Int32 {
    #if DEBUG
    if injectedFailure("open") { return -1 }
    #endif
    return open(path, flags)
}

func system_opendir(_ path: UnsafePointer<CChar>) -> OpaquePointer? {
    #if DEBUG
    if injectedFailure("opendir") { return nil }
    #endif
    return opendir(path)
}

// Proc connector (netlink), fanotify and /proc reads: the process sensor.

func system_socket(_ domain: Int32, _ type: Int32, _ protocolNumber: Int32) -> Int32 {
    #if DEBUG
    if injectedFailure("socket") { return -1 }
    #endif
    return socket(domain, type, protocolNumber)
}

func system_bind(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
    #if DEBUG
    if injectedFailure("bind") { return -1 }
    #endif
    return bind(fd, address, length)
}

func system_send(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int, _ flags: Int32) -> Int {
    #if DEBUG
    if injectedFailure("send") { return -1 }
    #endif
    return send(fd, buffer, count, flags)
}

func system_recv(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int, _ flags: Int32) -> Int {
    #if DEBUG
    if injectedFailure("recv") { return -1 }
    #endif
    return recv(fd, buffer, count, flags)
}

func system_setsockopt(
    _ fd: Int32,
    _ level: Int32,
    _ name: Int32,
    _ value: UnsafeRawPointer?,
    _ length: socklen_t
) -> Int32 {
    #if DEBUG
    if injectedFailure("setsockopt") { return -1 }
    #endif
    return setsockopt(fd, level, name, value, length)
}

func system_getsockopt(
    _ fd: Int32,
    _ level: Int32,
    _ name: Int32,
    _ value: UnsafeMutableRawPointer?,
    _ length: UnsafeMutablePointer<socklen_t>
) -> Int32 {
    #if DEBUG
    if injectedFailure("getsockopt") { return -1 }
    #endif
    return getsockopt(fd, level, name, value, length)
}

func system_fanotify_init(_ flags: UInt32, _ eventFlags: UInt32) -> Int32 {
    #if DEBUG
    if injectedFailure("fanotify_init") { return -1 }
    #endif
    guard let call = GNULibC.fanotifyInit else {
        setErrno(ENOSYS)
        return -1
    }
    return call(flags, eventFlags)
}

func system_fanotify_mark(
    _ fd: Int32,
    _ flags: UInt32,
    _ mask: UInt64,
    _ dirfd: Int32,
    _ path: UnsafePointer<CChar>?
) -> Int32 {
    #if DEBUG
    if injectedFailure("fanotify_mark") { return -1 }
    #endif
    guard let call = GNULibC.fanotifyMark else {
        setErrno(ENOSYS)
        return -1
    }
    return call(fd, flags, mask, dirfd, path)
}

func system_openat(_ dirfd: Int32, _ path: UnsafePointer<CChar>, _ flags: Int32) -> Int32 {
    #if DEBUG
    if injectedFailure("openat") { return -1 }
    #endif
    return openat(dirfd, path, flags)
}

func system_readlinkat(
    _ dirfd: Int32,
    _ path: UnsafePointer<CChar>,
    _ buffer: UnsafeMutablePointer<CChar>,
    _ size: Int
) -> Int {
    #if DEBUG
    if injectedFailure("readlinkat") { return -1 }
    #endif
    return readlinkat(dirfd, path, buffer, size)
}

func system_open_by_handle_at(_ mountFD: Int32, _ handle: UnsafeMutableRawPointer, _ flags: Int32) -> Int32 {
    #if DEBUG
    if injectedFailure("open_by_handle_at") { return -1 }
    #endif
    guard let call = GNULibC.openByHandleAt else {
        setErrno(ENOSYS)
        return -1
    }
    return call(mountFD, handle, flags)
}
