/// The event and flag bits of `inotify_add_watch(2)` and `struct inotify_event`.
///
/// Values are those of `<sys/inotify.h>` (checked against Glibc in the tests).
public struct InotifyMask: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    // Events a watch can ask for.

    /// `IN_ACCESS`: a file was read.
    public static let access = InotifyMask(rawValue: 0x0000_0001)
    /// `IN_MODIFY`: a file was written.
    public static let modify = InotifyMask(rawValue: 0x0000_0002)
    /// `IN_ATTRIB`: metadata changed (mode, owner, timestamps, link count, xattrs).
    public static let attrib = InotifyMask(rawValue: 0x0000_0004)
    /// `IN_CLOSE_WRITE`: a file opened for writing was closed.
    public static let closeWrite = InotifyMask(rawValue: 0x0000_0008)
    /// `IN_CLOSE_NOWRITE`: a file not opened for writing was closed.
    public static let closeNoWrite = InotifyMask(rawValue: 0x0000_0010)
    /// `IN_OPEN`: a file or directory was opened.
    public static let open = InotifyMask(rawValue: 0x0000_0020)
    /// `IN_MOVED_FROM`: an entry was renamed away from the watched directory.
    public static let movedFrom = InotifyMask(rawValue: 0x0000_0040)
    /// `IN_MOVED_TO`: an entry was renamed into the watched directory.
    public static let movedTo = InotifyMask(rawValue: 0x0000_0080)
    /// `IN_CREATE`: an entry was created in the watched directory.
    public static let create = InotifyMask(rawValue: 0x0000_0100)
    /// `IN_DELETE`: an entry was deleted from the watched directory.
    public static let delete = InotifyMask(rawValue: 0x0000_0200)
    /// `IN_DELETE_SELF`: the watched object itself was deleted.
    public static let deleteSelf = InotifyMask(rawValue: 0x0000_0400)
    /// `IN_MOVE_SELF`: the watched object itself was moved.
    public static let moveSelf = InotifyMask(rawValue: 0x0000_0800)

    // Bits the kernel sets in events.

    /// `IN_UNMOUNT`: the file system holding the watched object was unmounted.
    public static let unmount = InotifyMask(rawValue: 0x0000_2000)
    /// `IN_Q_OVERFLOW`: the event queue overflowed; events were lost (`wd` is -1).
    public static let queueOverflow = InotifyMask(rawValue: 0x0000_4000)
    /// `IN_IGNORED`: the watch was removed (explicitly, or because its object went away).
    public static let ignored = InotifyMask(rawValue: 0x0000_8000)
    /// `IN_ISDIR`: the subject of the event is a directory.
    public static let isDirectory = InotifyMask(rawValue: 0x4000_0000)

    // Flags for `inotify_add_watch`.

    /// `IN_ONLYDIR`: only watch the path if it is a directory.
    public static let onlyDirectory = InotifyMask(rawValue: 0x0100_0000)
    /// `IN_DONT_FOLLOW`: do not follow a symbolic link at the path.
    public static let dontFollow = InotifyMask(rawValue: 0x0200_0000)
    /// `IN_EXCL_UNLINK`: no events for children after they were unlinked.
    public static let excludeUnlinked = InotifyMask(rawValue: 0x0400_0000)
    /// `IN_MASK_CREATE`: fail with `EEXIST` if the path is already watched.
    public static let maskCreate = InotifyMask(rawValue: 0x1000_0000)
    /// `IN_MASK_ADD`: add to the mask of an existing watch instead of replacing it.
    public static let maskAdd = InotifyMask(rawValue: 0x2000_0000)
    /// `IN_ONESHOT`: remove the watch after one event.
    public static let oneShot = InotifyMask(rawValue: 0x8000_0000)

    /// `IN_MOVE`: both halves of a rename.
    public static let move: InotifyMask = [.movedFrom, .movedTo]
    /// `IN_CLOSE`: any close.
    public static let close: InotifyMask = [.closeWrite, .closeNoWrite]

    // Short names matching the kernel's spelling, for readers coming from C.
    public static let qOverflow = queueOverflow
    public static let isDir = isDirectory
    public static let onlyDir = onlyDirectory
    public static let exclUnlink = excludeUnlinked

    private static let names: [(InotifyMask, String)] = [
        (.access, "ACCESS"), (.modify, "MODIFY"), (.attrib, "ATTRIB"), (.closeWrite, "CLOSE_WRITE"),
        (.closeNoWrite, "CLOSE_NOWRITE"), (.open, "OPEN"), (.movedFrom, "MOVED_FROM"),
        (.movedTo, "MOVED_TO"), (.create, "CREATE"), (.delete, "DELETE"),
        (.deleteSelf, "DELETE_SELF"), (.moveSelf, "MOVE_SELF"), (.unmount, "UNMOUNT"),
        (.queueOverflow, "Q_OVERFLOW"), (.ignored, "IGNORED"), (.isDirectory, "ISDIR"),
        (.onlyDirectory, "ONLYDIR"), (.dontFollow, "DONT_FOLLOW"), (.excludeUnlinked, "EXCL_UNLINK"),
        (.maskCreate, "MASK_CREATE"), (.maskAdd, "MASK_ADD"), (.oneShot, "ONESHOT"),
    ]

    /// The kernel's names joined by `|`, e.g. `CREATE|ISDIR`; unknown bits in hex.
    public var description: String {
        var parts: [String] = []
        var rest = rawValue
        for (flag, name) in Self.names where rawValue & flag.rawValue != 0 {
            parts.append(name)
            rest &= ~flag.rawValue
        }
        if rest != 0 { parts.append("0x" + String(rest, radix: 16)) }
        return parts.isEmpty ? "0" : parts.joined(separator: "|")
    }
}
