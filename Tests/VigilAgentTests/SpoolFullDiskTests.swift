import Foundation
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilSpool

/// The spool on a disk that fills before its bound: a 6 MiB tmpfs, 4 MiB of it the reserve.
@Suite("Spool on a full disk", .serialized)
struct SpoolFullDiskTests {
    let dir = NSTemporaryDirectory() + "vigil-spool-fulldisk-\(UUID().uuidString)"
    var path: String { dir + "/spool.sqlite" }
    let identity = AgentIdentity.generate()

    /// Events of about 300 serialized bytes each.
    func events(_ n: Int, from start: Int) -> [Event] {
        let stem = String(repeating: "f", count: 240)
        return (start..<start + n).map {
            Event(payload: .file(FileEvent(action: .create, targetFilename: "/\(stem)-\($0)")))
        }
    }

    func rows(_ sql: String) async throws -> [[Int]] {
        try await sqliteRows(path, sql).map { $0.map { Int($0) ?? -1 } }
    }

    @Test(
        "a full disk: the append fails as disk-full, room is made under a disk_full gap record, appends go on within a lowered bound, delivery brings the reserve back",
        .enabled(if: TestEnvironment.isRoot || TestEnvironment.isCI, "mounts a tmpfs: needs root")
    )
    func fullDisk() async throws {
        #expect(TestEnvironment.isRoot, "CI must run this test as root")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mount = try await runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=6m", "tmpfs", dir])
        try #require(mount.status == 0, "mount: \(mount.stderr)")
        defer { _ = try? Process.run(URL(fileURLWithPath: "/bin/umount"), arguments: ["-l", dir]) }

        let spool = try Spool(path: path)
        let reserve = path + ".reserve"
        let size = (try? FileManager.default.attributesOfItem(atPath: reserve)[.size] as? Int) ?? nil
        #expect(size == Spool.reserveBytes, "no reserve made at open")

        // Fill the disk: the append that does not fit fails, as disk-full, and commits nothing.
        var appended = 0
        var failure: (any Error)? = nil
        while appended < 100_000 {
            do {
                try spool.append(events(500, from: appended))
                appended += 500
            } catch {
                failure = error
                break
            }
        }
        let error = try #require(failure, "the disk never filled after \(appended) events")
        #expect(Spool.isDiskFull(error), "not recognized as a full disk: \(error)")
        #expect(try spool.statistics().nextSeq == UInt64(appended) + 1, "the failed append left seqs behind")
        let heldWhenFull = try spool.statistics().bytes

        // Making room: the reserve goes, the oldest events go under a disk_full gap record.
        #expect(try spool.makeRoomOnFullDisk())
        #expect(!FileManager.default.fileExists(atPath: reserve), "the reserve was kept")
        let reports = spool.takeShedReports()
        #expect(reports.count == 1 && reports[0].reason.hasPrefix("disk_full"), "\(reports)")
        #expect(try spool.statistics().bytes < heldWhenFull * 8 / 10)

        // Appends go on, on the same full disk, within 80% of what was held.
        for _ in 0..<60 {
            try spool.append(events(500, from: appended))
            appended += 500
            #expect(try spool.statistics().bytes <= heldWhenFull * 8 / 10)
        }
        _ = spool.takeShedReports()

        // One unsealed gap record, absorbing every drop, and every seq stored or counted.
        let gaps = try await rows("SELECT seq FROM events WHERE type = 'gap'")
        #expect(gaps.count == 1, "gap records: \(gaps)")
        let dropped = try spool.statistics().droppedTotal
        let stored = try await rows("SELECT count(*) FROM events WHERE type != 'gap'").first?.first ?? -1
        #expect(UInt64(stored) + dropped == UInt64(appended), "\(stored) stored + \(dropped) dropped of \(appended)")

        // Delivery empties the spool: the reserve comes back and the bound is lifted.
        let sealer = BatchSealer(identity: identity)
        while let batch = try spool.nextBatch(maxEvents: 2_000, maxBytes: 1 << 20, sealer: sealer) {
            try spool.acknowledge(batch)
        }
        #expect(try spool.statistics().pendingEvents == 0)
        #expect(FileManager.default.fileExists(atPath: reserve), "the reserve was not made again")
        try spool.append(events(500, from: appended))
        #expect(spool.takeShedReports().isEmpty, "events dropped after the bound was lifted")
    }
}
