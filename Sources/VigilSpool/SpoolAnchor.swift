import CVigilSys
import Foundation
import VigilCore

#if canImport(Glibc)
import Glibc
#endif

/// What must outlive the spool database: the seqs and batch numbers already handed out.
///
/// Why a second file. SQLite in WAL mode with `synchronous = FULL` already cuts a torn tail for
/// us: each WAL frame carries a cumulative checksum and the salt of its WAL generation, so on
/// open SQLite replays frames up to the last valid commit frame and ignores a half-written frame
/// and everything after it. A crash (even a power cut) therefore only loses the transaction that
/// was being written, which was never acknowledged to the sensors: nothing accepted is lost.
///
/// What SQLite cannot tell us is that a tail of *committed* transactions is gone (a -wal file
/// truncated or lost behind its back, a restored backup), or that the database file itself is
/// damaged (truncated mid-page, overwritten). In both cases reusing seqs or batch numbers would
/// be worse than losing events: the collector would see forks and duplicate seqs from an agent
/// that is merely unlucky. So the spool keeps this anchor beside the database, written atomically
/// (a spare file written and synced, exchanged with the anchor, fsync of the directory; see
/// `save`) *before* the transaction that needs it commits:
///
/// - `seqCeiling`: no seq at or above it was ever assigned. Raised in steps of `ceilingStep` by
///   the append that would cross it, so the anchor is written once per `ceilingStep` events, not
///   per append.
/// - `nextBatchSeq`, `prevHeaderHash`, `sealedThrough`: the chain after the last sealed batch,
///   written by every seal (once per batch).
/// - `nextSeq`: `next_seq` as committed when the anchor was written (a lower bound).
///
/// On open (`Spool.init`), a database that cannot be opened, fails `PRAGMA quick_check` or lost
/// its state rows is moved aside (`spool.sqlite.damaged-UNIXTIME`, with its -wal and -shm) and a
/// fresh one created. Then the database is compared with the anchor: fewer committed seqs or
/// batches than the anchor recorded means committed transactions were lost. The spool then
/// continues from the anchor: seqs from `seqCeiling`, batches after `nextBatchSeq - 1`, linked to
/// `prevHeaderHash`, so nothing is ever numbered twice; and a gap record declares the seqs that
/// may have held lost events (`dropped_by_type: {"unknown": n}`, an upper bound: seqs up to the
/// ceiling may never have been used). Events still in the database are kept and sent: if a batch
/// holding some of them had already been delivered, the collector stores them once and records
/// the duplicate seqs; if a sealed batch was lost, the collector records the missing batch. Both
/// are visible, neither is silent.
///
/// A crash between writing the anchor for a seal and committing the seal (the anchor is one
/// batch ahead, every append is still there) is ordinary: that batch was never sent, so the
/// database wins and the batch is sealed again under the same number.
///
/// Limits: a lost or unreadable anchor together with a damaged database restarts the numbering
/// from 1 (logged as an error). If exactly the last committed seal and nothing else was lost
/// behind SQLite's back, and that batch had been delivered, the batch number is used again: the
/// collector records a fork (visible, not silent).
struct SpoolAnchor: Codable, Hashable, Sendable {
    var seqCeiling: Int64
    var nextSeq: Int64
    var nextBatchSeq: Int64
    /// Hex SHA-256 of the last sealed batch header (32 zero bytes before the first).
    var prevHeaderHash: String
    /// The last event seq of the last sealed batch (0 before the first).
    var sealedThrough: Int64

    static let ceilingStep: Int64 = 10_000

    enum CodingKeys: String, CodingKey {
        case seqCeiling = "seq_ceiling"
        case nextSeq = "next_seq"
        case nextBatchSeq = "next_batch_seq"
        case prevHeaderHash = "prev_header_sha256"
        case sealedThrough = "sealed_through"
    }

    /// Reads the anchor; nil when there is none. A file that is not a valid anchor throws.
    static func load(_ path: String) throws(SpoolError) -> SpoolAnchor? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            let anchor = try JSONDecoder().decode(
                SpoolAnchor.self,
                from: try Data(contentsOf: URL(fileURLWithPath: path))
            )
            guard anchor.seqCeiling >= anchor.nextSeq, anchor.nextSeq >= 1, anchor.nextBatchSeq >= 1,
                Hex.decode(anchor.prevHeaderHash)?.count == 32
            else {
                throw SpoolError("\(path): values out of range")
            }
            return anchor
        } catch let error as SpoolError {
            throw error
        } catch {
            throw SpoolError("\(path): not a spool anchor: \(error)")
        }
    }

    /// Replaces the anchor atomically and durably, without taking any new room on disk once
    /// it has been written twice: the new anchor is written over the spare file beside it
    /// (`path + ".tmp"`, padded to `fileBytes`), synced, and the two files are exchanged
    /// (`renameat2` with `RENAME_EXCHANGE`), so the old anchor becomes the next spare. On a disk
    /// another writer has filled, every seal still gets its anchor written. Where the files
    /// cannot be exchanged (no anchor yet, a filesystem without it) the spare is renamed over
    /// and made again.
    func save(_ path: String) throws(SpoolError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data: Data
        do {
            data = try encoder.encode(self)
        } catch {
            throw SpoolError("cannot encode the spool anchor: \(error)")
        }
        // Trailing white space is valid JSON: every anchor takes the same blocks.
        if data.count < Self.fileBytes - 1 {
            data.append(contentsOf: repeatElement(0x20, count: Self.fileBytes - 1 - data.count))
        }
        data.append(0x0A)
        let spare = path + ".tmp"
        try Self.write(data, to: spare)
        if vigil_rename_exchange(spare, path) != 0 {
            // No anchor yet (ENOENT), a filesystem that cannot exchange (EINVAL), a kernel or
            // sandbox without renameat2: the spare is renamed over, and made again below.
            guard rename(spare, path) == 0 else {
                throw SpoolError("\(path): cannot replace: \(String(cString: strerror(errno)))")
            }
            // The next save's spare, made while there is room.
            try? Self.write(data, to: spare)
        }
        let dir = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            _ = fsync(dir)
            close(dir)
        }
    }

    /// Writes `data` over the file at `path` (made if missing) and syncs it.
    private static func write(_ data: Data, to path: String) throws(SpoolError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SpoolError("\(path): cannot create: \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        var failure = written == data.count ? 0 : written < 0 ? errno : ENOSPC  // a short write: out of room
        if failure == 0, ftruncate(fd, off_t(data.count)) != 0 { failure = errno }
        if failure == 0, fsync(fd) != 0 { failure = errno }
        close(fd)
        guard failure == 0 else {
            throw SpoolError(
                "\(path): cannot write: \(String(cString: strerror(failure)))",
                isDiskFull: failure == ENOSPC || failure == EDQUOT
            )
        }
    }

    /// The size every anchor file is written at (the JSON takes about 250 bytes).
    static let fileBytes = 512
}
