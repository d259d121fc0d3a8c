import Foundation
import Testing
import VigilCore
import VigilTestSupport
import VigilWire

@testable import VigilSpool

/// The spool on a disk that fills before its bound: a 6 MiB tmpfs, 4 MiB of it the reserve.
@Suite("Spool store on a full disk", .serialized)
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

    /// Runs `body` with a 6 MiB tmpfs mounted at `dir`, unmounted and removed afterwards.
    func onSmallTmpfs(_ body: () async throws -> Void) async throws {
        #expect(TestEnvironment.isRoot, "CI must run this test as root")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mount = try await runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=6m", "tmpfs", dir])
        try #require(mount.status == 0, "mount: \(mount.stderr)")
        defer { _ = try? Process.run(URL(fileURLWithPath: "/bin/umount"), arguments: ["-l", dir]) }
        try await body()
    }

    @Test(
        "a full disk: the append fails as disk-full, room is made under a disk_full gap record, appends go on within a lowered bound, delivery brings the reserve back",
        .enabled(if: TestEnvironment.isRoot || TestEnvironment.isCI, "mounts a tmpfs: needs root")
    )
    func fullDisk() async throws {
        try await onSmallTmpfs {
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
            #expect(
                UInt64(stored) + dropped == UInt64(appended),
                "\(stored) stored + \(dropped) dropped of \(appended)"
            )

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

    /// Events of about 300 serialized bytes that do not compress: sealed batches take room too.
    func randomEvents(_ n: Int) -> [Event] {
        (0..<n).map { _ in
            let name = (0..<15).map { _ in UUID().uuidString }.joined()
            return Event(payload: .file(FileEvent(action: .create, targetFilename: "/" + name)))
        }
    }

    @Test(
        "a disk that stays full, taken by another writer: the spool goes on taking, sealing and acknowledging inside the room it holds",
        .enabled(if: TestEnvironment.isRoot || TestEnvironment.isCI, "mounts a tmpfs: needs root")
    )
    func diskTakenByOthers() async throws {
        try await onSmallTmpfs {
            let spool = try Spool(path: path)
            let sealer = BatchSealer(identity: identity)
            var appended = 0
            var failures: [String] = []
            /// What the agent does (`Agent.withRoom`).
            func withRoom<T>(_ write: () throws -> T) throws -> T { try spool.makingRoom(write) }
            // The spool fills the disk and makes room once: the reserve is gone.
            while appended < 100_000 {
                do {
                    try spool.append(randomEvents(500))
                    appended += 500
                } catch  where Spool.isDiskFull(error) {
                    break
                }
            }
            #expect(try spool.makeRoomOnFullDisk())
            _ = spool.takeShedReports()

            // Another writer takes every block left (logs filling /var, say), and keeps it.
            let filler = dir + "/filler"
            let fd = open(filler, O_WRONLY | O_CREAT, 0o600)
            try #require(fd >= 0)
            let chunk = [UInt8](repeating: 0xA5, count: 4096)
            var taken = 0
            while write(fd, chunk, chunk.count) == chunk.count { taken += chunk.count }
            close(fd)
            var room = statvfs()
            statvfs(dir, &room)
            #expect(room.f_bavail == 0, "the filler left \(room.f_bavail) blocks")

            // A flush far larger than one round of making room drops (the agent behind after a
            // stall): the database no longer grows, so it takes several rounds, and it fits.
            let held = try spool.statistics().bytes
            let large = randomEvents(held * 85 / 100 / (try EventCodec.encode(randomEvents(1)[0]).count))
            #expect(try large.map { try EventCodec.encode($0).count }.reduce(0, +) > held / 2)
            do {
                try withRoom { _ = try spool.append(large) }
                appended += large.count
            } catch {
                failures.append("the large flush: \(error)")
            }

            // The agent goes on: appends, seals (up to four batches in flight, as a slow collector
            // keeps them), acknowledgements. Each must succeed, making room from the spool's own
            // events when it has to; the spool must never lose the room to make room.
            var inFlight: [Spool.PendingBatch] = []
            var delivered: [[UInt8]] = []
            for round in 0..<150 {
                do {
                    try withRoom { _ = try spool.append(randomEvents(200)) }
                    appended += 200
                    if let batch = try withRoom({
                        try spool.nextBatch(
                            after: inFlight.last?.batchSeq,
                            maxEvents: 300,
                            maxBytes: 256 << 10,
                            sealer: sealer
                        )
                    }) {
                        inFlight.append(batch)
                    }
                    if inFlight.count > 4 || round % 3 == 0, let oldest = inFlight.first {
                        try withRoom { try spool.acknowledge(oldest) }
                        delivered.append(oldest.bytes)
                        inFlight.removeFirst()
                    }
                } catch {
                    failures.append("round \(round): \(error)")
                    if failures.count > 3 { break }
                }
            }
            #expect(failures.isEmpty, "\(failures)")

            // The other writer gives its room back; delivery empties the spool.
            unlink(filler)
            while let batch = try spool.nextBatch(
                after: inFlight.last?.batchSeq,
                maxEvents: 2_000,
                maxBytes: 1 << 20,
                sealer: sealer
            ) {
                inFlight.append(batch)
            }
            for batch in inFlight {
                try spool.acknowledge(batch)
                delivered.append(batch.bytes)
            }
            #expect(try spool.statistics().pendingEvents == 0)
            #expect(FileManager.default.fileExists(atPath: path + ".reserve"), "the reserve was not made again")

            // Every event appended was delivered or counted in a gap record, and every seq is
            // accounted for exactly once.
            var seqs: Set<UInt64> = []
            var raw = 0
            var declared: UInt64 = 0
            for bytes in delivered {
                let batch = try BatchOpener.parse(bytes)
                for event in try BatchOpener.verify(batch, publicKey: identity.publicKey) {
                    #expect(seqs.insert(event.seq).inserted, "seq \(event.seq) delivered twice")
                    if case .gap(let gap) = event.payload {
                        declared += gap.droppedByType.values.reduce(0, +)
                    } else {
                        raw += 1
                    }
                }
            }
            #expect(
                UInt64(raw) + declared == UInt64(appended),
                "\(raw) delivered + \(declared) declared of \(appended)"
            )
        }
    }
}
