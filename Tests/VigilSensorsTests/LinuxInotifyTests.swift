import Glibc
import Synchronization
import SystemPackage
import Testing
import VigilCore
import VigilLinux
import VigilTestSupport

extension RealKernelTests {
    /// The VigilLinux wrappers, on the real kernel, plus forced `EINTR` and malformed input.
    @Suite("VigilLinux inotify and friends")
    struct LinuxInotifyTests {
        @Test("mask constants match <sys/inotify.h>")
        func maskValues() {
            let pairs: [(InotifyMask, UInt32)] = [
                (.access, UInt32(IN_ACCESS)), (.modify, UInt32(IN_MODIFY)), (.attrib, UInt32(IN_ATTRIB)),
                (.closeWrite, UInt32(IN_CLOSE_WRITE)), (.closeNoWrite, UInt32(IN_CLOSE_NOWRITE)),
                (.open, UInt32(IN_OPEN)), (.movedFrom, UInt32(IN_MOVED_FROM)), (.movedTo, UInt32(IN_MOVED_TO)),
                (.create, UInt32(IN_CREATE)), (.delete, UInt32(IN_DELETE)), (.deleteSelf, UInt32(IN_DELETE_SELF)),
                (.moveSelf, UInt32(IN_MOVE_SELF)), (.unmount, UInt32(IN_UNMOUNT)),
                (.qOverflow, UInt32(IN_Q_OVERFLOW)), (.ignored, UInt32(IN_IGNORED)),
                (.isDir, UInt32(IN_ISDIR)), (.onlyDir, UInt32(IN_ONLYDIR)),
                (.dontFollow, UInt32(IN_DONT_FOLLOW)), (.exclUnlink, UInt32(IN_EXCL_UNLINK)),
                (.maskAdd, UInt32(IN_MASK_ADD)), (.oneShot, UInt32(truncatingIfNeeded: IN_ONESHOT)),
            ]
            for (mask, value) in pairs {
                #expect(mask.rawValue == value, "\(mask)")
            }
            #expect(InotifyMask([.create, .isDirectory]).description == "CREATE|ISDIR")
        }

        @Test("records from the real kernel: create with a name, then IGNORED after removeWatch")
        func realKernelRecords() throws {
            let dir = try TemporaryDirectory()
            let inotify = try Inotify()
            let wd = try inotify.addWatch(path: dir.path, mask: [.create, .closeWrite])
            #expect(wd > 0)
            #expect(try inotify.addWatch(path: dir.path, mask: [.create, .closeWrite]) == wd)
            var records: [InotifyEvent] = []
            #expect(try inotify.readEvents { records.append($0) } == .wouldBlock)
            let fd = open(dir.appending("hello"), O_CREAT | O_WRONLY, 0o644)
            close(fd)
            #expect(try inotify.wait(wakeup: nil, timeoutMilliseconds: 10_000) == .readable)
            _ = try inotify.readEvents { records.append($0) }
            #expect(records.first == InotifyEvent(watchDescriptor: wd, mask: .create, name: "hello"))
            try inotify.removeWatch(wd)
            #expect(try inotify.wait(wakeup: nil, timeoutMilliseconds: 10_000) == .readable)
            records.removeAll()
            while case .read = try inotify.readEvents({ records.append($0) }) {}
            #expect(records.contains { $0.watchDescriptor == wd && $0.mask.contains(.ignored) })
            #expect(throws: Errno.invalidArgument) { try inotify.removeWatch(wd) }
        }

        @Test("errors surface as Errno: missing path, ONLYDIR on a file")
        func errors() throws {
            let dir = try TemporaryDirectory()
            let inotify = try Inotify()
            #expect(throws: Errno.noSuchFileOrDirectory) {
                try inotify.addWatch(path: dir.appending("missing"), mask: .create)
            }
            let fd = open(dir.appending("file"), O_CREAT | O_WRONLY, 0o644)
            close(fd)
            #expect(throws: Errno.notDirectory) {
                try inotify.addWatch(path: dir.appending("file"), mask: [.create, .onlyDirectory])
            }
        }

        #if DEBUG
        @Test("EINTR is retried by default and surfaces with retryOnInterrupt: false")
        func interruptedCalls() throws {
            let dir = try TemporaryDirectory()
            let inotify = try Inotify()
            let script = SyscallFailureScript(["inotify_add_watch": [.interrupted, .interrupted]])
            let wd = try SyscallMocking.$script.withValue(script) {
                try inotify.addWatch(path: dir.path, mask: .create)
            }
            #expect(wd > 0)
            #expect(script.remaining("inotify_add_watch") == 0)

            let once = SyscallFailureScript(["inotify_add_watch": [.interrupted]])
            SyscallMocking.$script.withValue(once) {
                #expect(throws: Errno.interrupted) {
                    try inotify.addWatch(path: dir.path, mask: .create, retryOnInterrupt: false)
                }
            }

            let reads = SyscallFailureScript(["read": [.interrupted, .interrupted, .interrupted]])
            let result = try SyscallMocking.$script.withValue(reads) {
                try inotify.readEvents { _ in }
            }
            #expect(result == .wouldBlock)
            #expect(reads.remaining("read") == 0)

            let stat = SyscallFailureScript(["lstat": [.interrupted, .noSuchFileOrDirectory]])
            SyscallMocking.$script.withValue(stat) {
                #expect(throws: Errno.noSuchFileOrDirectory) { try FileStatus.lstat(dir.path) }
            }
        }
        #endif

        @Test("a bad descriptor is a bug: EBADF traps")
        func badDescriptorTraps() async {
            await #expect(processExitsWith: .failure) {
                _ = try? FileStatus.fstat(FileDescriptor(rawValue: -1))
            }
        }

        @Test("eventfd wakes a poll and drains to zero")
        func eventFD() throws {
            let event = try EventFD()
            #expect(try event.wait(timeoutMilliseconds: 0) == false)
            try event.signal()
            try event.signal(2)
            #expect(try event.wait(timeoutMilliseconds: 0))
            #expect(try event.drain() == 3)
            #expect(try event.drain() == 0)
            let inotify = try Inotify()
            try event.signal()
            #expect(try inotify.wait(wakeup: event, timeoutMilliseconds: 10_000) == .woken)
            #expect(try EventFD().wait(timeoutMilliseconds: 1) == false)
        }

        @Test("lstat and stat give mode, owner, size and inode; lstat does not follow links")
        func fileStatus() throws {
            let dir = try TemporaryDirectory()
            let path = dir.appending("f")
            let fd = open(path, O_CREAT | O_WRONLY, 0o640)
            _ = write(fd, "12345", 5)
            close(fd)
            chmod(path, 0o640)
            symlink(path, dir.appending("link"))
            var raw = stat()
            _ = stat(path, &raw)
            let metadata = try FileStatus.lstat(path)
            #expect(
                metadata
                    == FileMetadata(
                        mode: UInt32(S_IFREG) | 0o640,
                        uid: getuid(),
                        gid: getgid(),
                        size: 5,
                        inode: UInt64(raw.st_ino)
                    )
            )
            #expect(metadata.isRegularFile)
            #expect(try FileStatus.lstat(dir.appending("link")).isSymbolicLink)
            #expect(try FileStatus.stat(dir.appending("link")) == metadata)
            #expect(throws: Errno.noSuchFileOrDirectory) { try FileStatus.lstat(dir.appending("nope")) }
        }

        @Test("directory listing: names and kinds, no dot entries")
        func directoryListing() throws {
            let dir = try TemporaryDirectory()
            mkdir(dir.appending("d"), 0o755)
            close(open(dir.appending("r"), O_CREAT | O_WRONLY, 0o644))
            symlink("r", dir.appending("l"))
            let entries = try Directory.entries(of: dir.path).sorted { $0.name < $1.name }
            #expect(
                entries == [
                    .init(name: "d", kind: .directory), .init(name: "l", kind: .symbolicLink),
                    .init(name: "r", kind: .regular),
                ]
            )
            #expect(throws: Errno.noSuchFileOrDirectory) { try Directory.entries(of: dir.appending("none")) }
        }

        @Test("a named POSIX thread runs its body and joins")
        func posixThread() throws {
            let done = ThreadFlag()
            let thread = try PosixThread.spawn(name: "vigil-test-thread") {
                done.set(currentThreadName())
            }
            thread.join()
            thread.join()
            #expect(done.value == "vigil-test-thre")
        }

        @Test("system libraries are linked and report versions")
        func systemLibraries() {
            #expect(SystemLibraries.pcapVersion.contains("libpcap"))
            #expect(SystemLibraries.seccompVersion.split(separator: ".").count == 3)
        }

        @Test("the kernel limits are readable")
        func limits() {
            #expect((InotifyLimits.maxUserWatches ?? 0) > 0)
            #expect((InotifyLimits.maxQueuedEvents ?? 0) > 0)
            #expect((InotifyLimits.maxUserInstances ?? 0) > 0)
        }
    }
}

/// A value set on another thread.
final class ThreadFlag: Sendable {
    private let storage = Mutex<String?>(nil)
    func set(_ value: String) { storage.withLock { $0 = value } }
    var value: String? { storage.withLock { $0 } }
}

/// The calling thread's name, from /proc (prctl is variadic, so not callable from Swift).
func currentThreadName() -> String {
    let text = (try? ProcFile.read("/proc/thread-self/comm")) ?? ""
    return String(decoding: text.utf8.prefix { $0 != 10 }, as: UTF8.self)
}
