import Glibc
import Testing
import VigilCore
import VigilLinux
import VigilSensors
import VigilTestSupport

extension RealKernelTests {
    /// Each kind of file event, with exact fields, on real inotify over temporary trees.
    @Suite("FileSensor events")
    struct FileSensorEventTests {
        @Test("create: metadata from lstat and SHA-256 of the (empty) content")
        func create() async throws {
            let dir = try TemporaryDirectory()
            try await withSensor(paths: [dir.path]) { _, recorder in
                let path = dir.appending("new.txt")
                try FS.touch(path)
                let event = try await recorder.file(.create, path)
                let expected = FileEvent(
                    action: .create,
                    targetFilename: path,
                    isDirectory: false,
                    metadata: try FS.lstat(path),
                    sha256: KnownDigest.empty
                )
                #expect(event == expected)
            }
        }

        @Test("modify (close after write): SHA-256 of the written content")
        func modify() async throws {
            let dir = try TemporaryDirectory()
            let path = dir.appending("data.txt")
            try FS.touch(path)
            try await withSensor(paths: [dir.path]) { _, recorder in
                try FS.write(path, "hello")
                let event = try await recorder.file(.modify, path)
                let expected = FileEvent(
                    action: .modify,
                    targetFilename: path,
                    isDirectory: false,
                    metadata: try FS.lstat(path),
                    sha256: KnownDigest.hello
                )
                #expect(event == expected)
                #expect(event.metadata?.size == 5)
            }
        }

        @Test("attrib: chmod 4755 shows the setuid bit in metadata.mode")
        func chmodSetuid() async throws {
            let dir = try TemporaryDirectory()
            let path = dir.appending("tool")
            try FS.touch(path)
            try await withSensor(paths: [dir.path]) { _, recorder in
                try FS.chmod(path, 0o4755)
                let event = try await recorder.file(.attrib, path)
                #expect(event.metadata?.mode == UInt32(S_IFREG) | 0o4755)
                #expect(event.metadata?.isSetUID == true)
                #expect(event.metadata == (try FS.lstat(path)))
                #expect(event.sha256 == nil && event.hashSkipped == nil)
            }
        }

        @Test(
            "attrib: chown shows the new owner",
            .enabled(if: TestEnvironment.isRoot, "chown to another user needs root")
        )
        func chown() async throws {
            let dir = try TemporaryDirectory()
            let path = dir.appending("owned")
            try FS.touch(path)
            try await withSensor(paths: [dir.path]) { _, recorder in
                try FS.chown(path, 1234, 5678)
                let event = try await recorder.file(.attrib, path)
                #expect(event.metadata?.uid == 1234)
                #expect(event.metadata?.gid == 5678)
            }
        }

        @Test("delete: no metadata, no hash")
        func delete() async throws {
            let dir = try TemporaryDirectory()
            let path = dir.appending("doomed")
            try FS.touch(path)
            try await withSensor(paths: [dir.path]) { _, recorder in
                try FS.unlink(path)
                let event = try await recorder.file(.delete, path)
                #expect(event == FileEvent(action: .delete, targetFilename: path, isDirectory: false, metadata: nil))
            }
        }

        @Test("rename within the trees: one event with both names")
        func renameWithinTrees() async throws {
            let dir = try TemporaryDirectory()
            try FS.mkdir(dir.appending("sub"))
            let source = dir.appending("a.txt")
            let target = dir.appending("sub/b.txt")
            try FS.write(source, "hello")
            try await withSensor(paths: [dir.path]) { _, recorder in
                try FS.rename(source, target)
                let event = try await recorder.file(.rename, target)
                #expect(
                    event
                        == FileEvent(
                            action: .rename,
                            targetFilename: target,
                            sourceFilename: source,
                            isDirectory: false,
                            metadata: try FS.lstat(target)
                        )
                )
                try await recorder.settle(marker: dir.appending("marker"))
                #expect(recorder.fileEvents(about: source).count == 1)
                #expect(recorder.fileEvents(about: target).count == 1)
            }
        }

        @Test("move out of the trees becomes a delete")
        func moveOut() async throws {
            let watched = try TemporaryDirectory()
            let outside = try TemporaryDirectory()
            let source = watched.appending("leaving")
            try FS.touch(source)
            try await withSensor(paths: [watched.path]) { _, recorder in
                try FS.rename(source, outside.appending("leaving"))
                let event = try await recorder.file(.delete, source)
                #expect(event == FileEvent(action: .delete, targetFilename: source, isDirectory: false, metadata: nil))
                try await recorder.settle(marker: watched.appending("marker"))
                #expect(recorder.fileEvents(about: source).count == 1)
                #expect(!recorder.fileEvents.contains { $0.action == .rename })
            }
        }

        @Test("a directory moved out is no longer watched")
        func directoryMoveOut() async throws {
            let watched = try TemporaryDirectory()
            let outside = try TemporaryDirectory()
            try FS.mkdirs(watched.appending("d/e"))
            try await withSensor(paths: [watched.path]) { sensor, recorder in
                #expect(sensor.statistics.watches == 3)
                try FS.rename(watched.appending("d"), outside.appending("d"))
                let event = try await recorder.file(.delete, watched.appending("d"))
                #expect(event.isDirectory)
                try FS.touch(outside.appending("d/e/f"))
                try await recorder.settle(marker: watched.appending("marker"))
                #expect(recorder.fileEvents.allSatisfy { !$0.targetFilename.hasSuffix("/f") })
                #expect(sensor.statistics.watches == 1)
            }
        }

        @Test("move into the trees becomes a create with metadata and hash")
        func moveIn() async throws {
            let watched = try TemporaryDirectory()
            let outside = try TemporaryDirectory()
            let source = outside.appending("arriving")
            let target = watched.appending("arriving")
            try FS.write(source, "hello")
            try await withSensor(paths: [watched.path]) { _, recorder in
                try FS.rename(source, target)
                let event = try await recorder.file(.create, target)
                #expect(
                    event
                        == FileEvent(
                            action: .create,
                            targetFilename: target,
                            isDirectory: false,
                            metadata: try FS.lstat(target),
                            sha256: KnownDigest.hello
                        )
                )
            }
        }

        @Test("a directory moved in is watched and its content reported")
        func directoryMoveIn() async throws {
            let watched = try TemporaryDirectory()
            let outside = try TemporaryDirectory()
            try FS.mkdirs(outside.appending("pkg/bin"))
            try FS.write(outside.appending("pkg/bin/tool"), "hello")
            try await withSensor(paths: [watched.path]) { _, recorder in
                try FS.rename(outside.appending("pkg"), watched.appending("pkg"))
                let dirEvent = try await recorder.file(.create, watched.appending("pkg"))
                #expect(dirEvent.isDirectory)
                let tool = try await recorder.file(.create, watched.appending("pkg/bin/tool"))
                #expect(tool.sha256 == KnownDigest.hello)
                try FS.touch(watched.appending("pkg/bin/later"))
                try await recorder.file(.create, watched.appending("pkg/bin/later"))
            }
        }

        @Test("rename pairs stay paired under a burst of renames")
        func manyRenames() async throws {
            let dir = try TemporaryDirectory()
            for i in 0..<200 { try FS.touch(dir.appending("f\(i)")) }
            try await withSensor(paths: [dir.path]) { _, recorder in
                for i in 0..<200 { try FS.rename(dir.appending("f\(i)"), dir.appending("g\(i)")) }
                try await recorder.waitUntil("200 renames") { _ in
                    recorder.fileEvents.filter { $0.action == .rename }.count == 200
                }
                try await recorder.settle(marker: dir.appending("marker"))
                let kinds = Set(
                    recorder.fileEvents.filter { $0.targetFilename != dir.appending("marker") }.map(\.action)
                )
                #expect(kinds == [.rename])
            }
        }
    }
}
