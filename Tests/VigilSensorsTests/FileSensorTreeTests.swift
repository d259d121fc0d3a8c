import Glibc
import Testing
import VigilCore
import VigilLinux
import VigilSensors
import VigilTestSupport

extension RealKernelTests {
    /// Recursion, directory renames, exclusions and hashing limits.
    @Suite("FileSensor trees and hashing")
    struct FileSensorTreeTests {
        @Test("a directory created after start is watched")
        func newDirectoryIsWatched() async throws {
            let dir = try TemporaryDirectory()
            try await withSensor(paths: [dir.path]) { _, recorder in
                try FS.mkdir(dir.appending("late"))
                let event = try await recorder.file(.create, dir.appending("late"))
                #expect(event.isDirectory)
                #expect(event.hashSkipped == "not_regular")
                #expect(event.metadata?.isDirectory == true)
                try FS.write(dir.appending("late/f"), "hello")
                let modify = try await recorder.file(.modify, dir.appending("late/f"))
                #expect(modify.sha256 == KnownDigest.hello)
            }
        }

        @Test("mkdir -p a/b/c && touch a/b/c/f: everything reported exactly once")
        func fastNestedCreation() async throws {
            let dir = try TemporaryDirectory()
            try await withSensor(paths: [dir.path]) { _, recorder in
                var expected: [String] = []
                for round in 0..<25 {
                    let top = dir.appending("r\(round)")
                    try FS.mkdirs(top + "/b/c")
                    try FS.touch(top + "/b/c/f")
                    expected += [top, top + "/b", top + "/b/c", top + "/b/c/f"]
                }
                for path in expected { try await recorder.file(.create, path) }
                try await recorder.settle(marker: dir.appending("marker"))
                for path in expected {
                    let creates = recorder.fileEvents.filter { $0.action == .create && $0.targetFilename == path }
                    #expect(creates.count == 1, "\(path) created \(creates.count) times")
                }
            }
        }

        #if DEBUG
        @Test("entries created between a new directory's watch and its scan are reported once")
        func entriesCreatedDuringScan() async throws {
            let dir = try TemporaryDirectory()
            try await withSensor(paths: [dir.path], hashMaxBytes: 0) { sensor, recorder in
                // In the window, each of these is both queued as IN_CREATE and found by the scan.
                sensor.setNewDirectoryHookForTesting { path in
                    guard path.hasSuffix("/busy") else { return }
                    for i in 0..<20 { try? FS.touch(path + "/in-window-\(i)") }
                    try? FS.mkdir(path + "/sub-in-window")
                }
                let busy = dir.appending("busy")
                try FS.mkdir(busy)
                try FS.touch(busy + "/after")
                let names = (0..<20).map { "\(busy)/in-window-\($0)" } + ["\(busy)/sub-in-window", "\(busy)/after"]
                for name in names { try await recorder.file(.create, name) }
                try FS.touch(busy + "/sub-in-window/deeper")
                try await recorder.file(.create, busy + "/sub-in-window/deeper")
                try await recorder.settle(marker: dir.appending("marker"))
                for name in names {
                    let creates = recorder.fileEvents.filter { $0.action == .create && $0.targetFilename == name }
                    #expect(creates.count == 1, "\(name) created \(creates.count) times")
                }
            }
        }
        #endif

        @Test("a directory renamed within the trees: later events carry the new paths")
        func directoryRenameUpdatesPaths() async throws {
            let dir = try TemporaryDirectory()
            try FS.mkdirs(dir.appending("old/sub/deeper"))
            try await withSensor(paths: [dir.path]) { _, recorder in
                try FS.rename(dir.appending("old"), dir.appending("new"))
                let rename = try await recorder.file(.rename, dir.appending("new"))
                #expect(rename.sourceFilename == dir.appending("old"))
                #expect(rename.isDirectory)
                try FS.touch(dir.appending("new/sub/f"))
                try FS.touch(dir.appending("new/sub/deeper/g"))
                try await recorder.file(.create, dir.appending("new/sub/f"))
                try await recorder.file(.create, dir.appending("new/sub/deeper/g"))
                #expect(!recorder.fileEvents.contains { $0.targetFilename.hasPrefix(dir.appending("old/")) })
            }
        }

        @Test("excluded prefixes are neither watched nor reported")
        func exclusions() async throws {
            let dir = try TemporaryDirectory()
            try FS.mkdirs(dir.appending("skip/inner"))
            try FS.mkdir(dir.appending("keep"))
            try FS.mkdir(dir.appending("skipped-not"))  // shares the string prefix, not the path
            try await withSensor(paths: [dir.path], exclude: [dir.appending("skip"), dir.appending("later") + "/"]) {
                sensor,
                recorder in
                #expect(sensor.statistics.watches == 3)  // root, keep, skipped-not
                try FS.touch(dir.appending("skip/f"))
                try FS.touch(dir.appending("skip/inner/f"))
                try FS.mkdir(dir.appending("later"))
                try FS.touch(dir.appending("later/f"))
                try FS.touch(dir.appending("keep/f"))
                try FS.touch(dir.appending("skipped-not/f"))
                try await recorder.file(.create, dir.appending("keep/f"))
                try await recorder.file(.create, dir.appending("skipped-not/f"))
                try await recorder.settle(marker: dir.appending("marker"))
                let leaked = recorder.fileEvents.filter {
                    $0.targetFilename.hasPrefix(dir.appending("skip/"))
                        || $0.targetFilename.hasPrefix(dir.appending("later"))
                }
                #expect(leaked.isEmpty, "excluded paths reported: \(leaked.map(\.targetFilename))")
                #expect(sensor.statistics.watches == 3)
            }
        }

        @Test("files larger than hashMaxBytes are not hashed: too_large")
        func hashTooLarge() async throws {
            let dir = try TemporaryDirectory()
            try await withSensor(paths: [dir.path], hashMaxBytes: 4) { _, recorder in
                try FS.write(dir.appending("big"), "hello")
                let event = try await recorder.file(.modify, dir.appending("big"))
                #expect(event.sha256 == nil)
                #expect(event.hashSkipped == "too_large")
                try FS.write(dir.appending("small"), "hell")
                let small = try await recorder.file(.modify, dir.appending("small"))
                #expect(small.sha256 != nil)
                #expect(small.hashSkipped == nil)
            }
        }

        @Test("hashMaxBytes 0 disables hashing")
        func hashDisabled() async throws {
            let dir = try TemporaryDirectory()
            try await withSensor(paths: [dir.path], hashMaxBytes: 0) { _, recorder in
                try FS.write(dir.appending("f"), "hello")
                let create = try await recorder.file(.create, dir.appending("f"))
                let modify = try await recorder.file(.modify, dir.appending("f"))
                #expect(create.hashSkipped == "disabled" && create.sha256 == nil)
                #expect(modify.hashSkipped == "disabled" && modify.sha256 == nil)
            }
        }

        @Test("symbolic links are not hashed (not_regular) and not followed")
        func symlinkNotRegular() async throws {
            let dir = try TemporaryDirectory()
            try FS.write(dir.appending("target"), "hello")
            try await withSensor(paths: [dir.path]) { _, recorder in
                try FS.symlink(dir.appending("target"), dir.appending("link"))
                let event = try await recorder.file(.create, dir.appending("link"))
                #expect(event.hashSkipped == "not_regular")
                #expect(event.metadata?.isSymbolicLink == true)
            }
        }

        @Test("a file gone before the sensor looked: no metadata, hashSkipped gone")
        func goneBeforeLooked() async throws {
            let dir = try TemporaryDirectory()
            try await withSensor(paths: [dir.path]) { sensor, recorder in
                sensor.suspendReadingForTesting()
                try FS.touch(dir.appending("brief"))
                try FS.unlink(dir.appending("brief"))
                sensor.resumeReadingForTesting()
                let create = try await recorder.file(.create, dir.appending("brief"))
                #expect(create.metadata == nil)
                #expect(create.hashSkipped == "gone")
                try await recorder.file(.delete, dir.appending("brief"))
            }
        }
    }
}
