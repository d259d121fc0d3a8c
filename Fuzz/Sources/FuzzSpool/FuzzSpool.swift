import Foundation
import FuzzSupport
import VigilCore
import VigilSpool
import VigilWire

/// The spool's start-up reading a damaged file: what the agent does after a crash, a full disk
/// or a bad sector. Input: one byte choosing what the bytes replace in a real spool (0: the
/// database file, 1: its write-ahead log, 2: the anchor), then those bytes.
///
/// Invariants: opening never fails because of what the files hold (damage is moved aside and
/// reported, not thrown); the opened spool accepts an event, numbers it above everything the
/// intact spool had numbered unless the anchor itself was replaced, and seals it into a batch.
enum SpoolTarget: FuzzTarget {
    /// On tmpfs: the spool fsyncs every transaction, which costs nothing there.
    static let root =
        (FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory())
        + "vigil-fuzz-spool-\(getpid())"
    /// The intact spool every input starts from, built once and kept in memory (its directory is
    /// removed at once, so no process leaves one behind on tmpfs), and the seq it would hand out next.
    static let template: (files: [TemplateFile], nextSeq: UInt64) = {
        let dir = root + "-template"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let nextSeq = try! makeSpool(in: dir)
        let names = try! FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        return (names.map { TemplateFile(name: Array($0.utf8), bytes: FuzzPaths.contents(dir + "/" + $0)!) }, nextSeq)
    }()

    /// One file of the intact spool. Plain byte arrays, not `String` or `Data`: LeakSanitizer does
    /// not follow the tagged pointers those keep their storage behind (see Fuzz/lsan.supp), so a
    /// global holding them looks leaked to the per-input leak check.
    struct TemplateFile {
        var name: [UInt8]
        var bytes: [UInt8]
    }

    /// A spool with a few events, one batch sealed and acknowledged and one in flight; returns
    /// its directory and the next seq it would hand out.
    static func makeSpool(in dir: String) throws -> UInt64 {
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let spool = try Spool(path: dir + "/spool.sqlite")
        let seal = FuzzIdentity.seal
        _ = try spool.append(Array(SampleEvents.all.prefix(4)))
        if let batch = try spool.nextBatch(maxEvents: 3, maxBytes: 1 << 20, seal: seal) { try spool.acknowledge(batch) }
        _ = try spool.append(Array(SampleEvents.all.suffix(3)))
        _ = try spool.nextBatch(maxEvents: 2, maxBytes: 1 << 20, seal: seal)
        return try spool.statistics().nextSeq
    }

    static func seeds() throws -> [[UInt8]] {
        let dir = root + "-seeds"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try makeSpool(in: dir)
        var seeds: [[UInt8]] = []
        for (selector, suffix) in [(0, ""), (1, "-wal"), (2, ".anchor")] {
            if let bytes = FuzzPaths.contents(dir + "/spool.sqlite" + suffix), bytes.count <= 65_000 {
                seeds.append([UInt8(selector)] + bytes)
            }
        }
        return seeds
    }

    static func test(_ input: [UInt8]) {
        guard let selector = input.first else { return }
        let dir = root
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let numberedBefore = template.nextSeq
        do {
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for file in template.files {
                try Data(file.bytes).write(
                    to: URL(fileURLWithPath: dir + "/" + String(decoding: file.name, as: UTF8.self))
                )
            }
        } catch {
            FuzzCheck.require(false, "cannot write the intact spool: \(error)")
            return
        }
        let suffix = ["", "-wal", ".anchor"][Int(selector) % 3]
        FileManager.default.createFile(atPath: dir + "/spool.sqlite" + suffix, contents: Data(input.dropFirst()))
        let spool: Spool
        do {
            spool = try Spool(path: dir + "/spool.sqlite")
        } catch {
            FuzzCheck.require(false, "a damaged \(suffix.isEmpty ? "database" : suffix) made opening throw: \(error)")
            return
        }
        let accepted: [Event]
        do {
            accepted = try spool.append([
                Event(payload: .file(FileEvent(action: .create, targetFilename: "/tmp/after")))
            ])
        } catch {
            FuzzCheck.require(
                false,
                "the reopened spool refused an event: \(error) (recovery: \(String(describing: spool.recovery)))"
            )
            return
        }
        let seq = accepted.first?.seq ?? 0
        if suffix != ".anchor" {
            FuzzCheck.require(
                seq >= numberedBefore,
                "seq \(seq) reused: \(numberedBefore) had been handed out (recovery: \(String(describing: spool.recovery)))"
            )
        }
        do {
            var sent = 0
            while let batch = try spool.nextBatch(maxEvents: 100, maxBytes: 1 << 20, seal: FuzzIdentity.seal) {
                try spool.acknowledge(batch)
                sent += 1
                FuzzCheck.require(sent < 100, "the spool keeps handing out batches")
            }
        } catch {
            FuzzCheck.require(false, "the reopened spool cannot seal: \(error)")
        }
    }
}

@_cdecl("FuzzSpool_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.main(SpoolTarget.self, argc, argv)
}
