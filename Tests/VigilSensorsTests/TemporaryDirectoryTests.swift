import Glibc
import Testing
import VigilTestSupport

@Suite("TemporaryDirectory")
struct TemporaryDirectoryTests {
    static func exists(_ path: String) -> Bool {
        var s = stat()
        return lstat(path, &s) == 0
    }

    @Test("remove() deletes nested content, links not followed; deinit removes too")
    func removal() throws {
        let keep = try TemporaryDirectory(prefix: "vigil-keep")
        defer { keep.remove() }
        close(open(keep.appending("precious"), O_CREAT | O_WRONLY, 0o644))

        let dir = try TemporaryDirectory()
        #expect(dir.path.hasPrefix("/tmp/vigil-test."))
        mkdir(dir.appending("a"), 0o755)
        mkdir(dir.appending("a/b"), 0o000)
        close(open(dir.appending("a/f"), O_CREAT | O_WRONLY, 0o644))
        symlink(keep.path, dir.appending("a/link"))
        dir.remove()
        dir.remove()
        #expect(!Self.exists(dir.path))
        #expect(Self.exists(keep.appending("precious")))

        var path = ""
        do {
            let scoped = try TemporaryDirectory()
            path = scoped.path
            #expect(Self.exists(path))
        }
        #expect(!Self.exists(path))
    }
}
