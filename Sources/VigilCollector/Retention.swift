import Foundation
import Logging
import ServiceLifecycle
import VigilCore

/// What a collector keeps: events younger than `maxAgeDays` (`--retention-days`) in a store no
/// larger than `maxStoreBytes` (`--max-store-size`). Neither set: everything is kept.
///
/// Deletion runs in transactions of at most `batchSize` events with `pause` between them, so
/// ingest interleaves. Agents, their chain state and each batch's signed header and hash stay:
/// a resent old batch is still a duplicate and the next batch still links.
public struct RetentionPolicy: Sendable, Hashable {
    /// Events whose time is more than this many days ago are deleted; nil keeps them.
    public var maxAgeDays: Int?
    /// When the store is larger (see `StoreUsage`), the oldest events go until it is not.
    public var maxStoreBytes: Int64?
    /// Events per deleting transaction.
    public var batchSize = 5_000
    /// Rest between two deleting transactions.
    public var pause: Duration = .milliseconds(50)
    /// Time between passes (one also runs at start).
    public var interval: Duration = .seconds(60)
    /// SQLite pages given back to the file system after each deleting transaction (8 MiB of 4 KiB
    /// pages), when the file allows it (`EventStore.reclaimSpace`).
    public var reclaimPages = 2_048

    public init(maxAgeDays: Int? = nil, maxStoreBytes: Int64? = nil) {
        self.maxAgeDays = maxAgeDays
        self.maxStoreBytes = maxStoreBytes
    }

    /// Whether there is anything to enforce.
    public var isEnabled: Bool { maxAgeDays != nil || maxStoreBytes != nil }

    /// The longest retention `--retention-days` accepts (100 years).
    public static let maxDays = 36_500
    /// The smallest `--max-store-size`: an empty store's schema alone takes a few hundred KiB.
    public static let minStoreBytes: Int64 = 1 << 20

    /// Parses `--retention-days`: a whole number of days, 1 to `maxDays`.
    public static func parseDays(_ text: String) throws(CollectorError) -> Int {
        guard let days = Int(text.trimmingCharacters(in: .whitespaces)), (1...maxDays).contains(days) else {
            throw CollectorError(
                .badRequest,
                "--retention-days: '\(text)' must be a whole number of days from 1 to \(maxDays)"
            )
        }
        return days
    }

    /// Parses `--max-store-size`: a number with a unit, e.g. `500MiB` or `10GiB`. Units: B (or
    /// none); KiB,
    /// MiB, GiB, TiB (and K, M, G, T) in powers of 1024; KB, MB, GB, TB in powers of 1000.
    public static func parseSize(_ text: String) throws(CollectorError) -> Int64 {
        let units: [String: Double] = [
            "": 1, "b": 1,
            "k": 0x1p10, "kib": 0x1p10, "m": 0x1p20, "mib": 0x1p20, "g": 0x1p30, "gib": 0x1p30,
            "t": 0x1p40, "tib": 0x1p40,
            "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
        ]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let number = trimmed.prefix { $0.isNumber || $0 == "." }
        let unit = trimmed.dropFirst(number.count).trimmingCharacters(in: .whitespaces).lowercased()
        guard let value = Double(number), value.isFinite, let scale = units[unit] else {
            throw CollectorError(
                .badRequest,
                "--max-store-size: '\(text)' is not a size; use e.g. 500MiB or 10GiB (units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            )
        }
        let bytes = value * scale
        guard bytes >= Double(minStoreBytes) else {
            throw CollectorError(.badRequest, "--max-store-size: '\(text)' is below the minimum of 1MiB")
        }
        guard bytes < 0x1p62 else {
            throw CollectorError(.badRequest, "--max-store-size: '\(text)' is too large")
        }
        return Int64(bytes)
    }
}

/// What one retention pass did.
public struct RetentionReport: Sendable, Hashable {
    /// Events deleted for being older than the retention period.
    public var deletedByAge = 0
    /// Events deleted to bring the store under its size bound.
    public var deletedBySize = 0
    /// Deleting transactions run (the last of a run may delete fewer than the batch size).
    public var transactions = 0
    /// The store's usage when the pass ended, if the size bound was checked.
    public var usage: StoreUsage?
    /// False when another collector was running retention on the same store, so this one did not.
    public var ran = true

    public var deleted: Int { deletedByAge + deletedBySize }
}

/// Runs retention passes over an `EventStore`.
public enum Retention {
    /// One pass: deletes events older than the policy's age, then the oldest events while the
    /// store is over its size bound, in transactions of at most `policy.batchSize` events.
    public static func pass(
        _ policy: RetentionPolicy,
        store: any EventStore,
        now: Timestamp = .now()
    ) async throws -> RetentionReport {
        var report = RetentionReport()
        let batchSize = max(policy.batchSize, 1)

        /// Deletes up to `limit` events; pauses first unless it is the pass's first transaction.
        func deleteBatch(before cutoff: Timestamp?, limit: Int) async throws -> Int {
            if report.transactions > 0 { try await Task.sleep(for: policy.pause) }
            let deleted = try await store.deleteOldestEvents(before: cutoff, limit: limit)
            report.transactions += 1
            if deleted > 0 { try await store.reclaimSpace(pages: policy.reclaimPages) }
            return deleted
        }

        report.ran = try await store.withRetentionLock {
            if let days = policy.maxAgeDays {
                let cutoff = Timestamp(
                    nanosecondsSinceEpoch: now.nanosecondsSinceEpoch - Int64(days) * 86_400 * 1_000_000_000
                )
                while true {
                    let deleted = try await deleteBatch(before: cutoff, limit: batchSize)
                    report.deletedByAge += deleted
                    if deleted < batchSize { break }
                }
            }
            guard let maxBytes = policy.maxStoreBytes else { return }
            var usage = try await store.storeUsage()
            // SQLite measures exactly, so re-measure and go on until under (a deletion frees
            // less than its share while index pages stay partly full). PostgreSQL's estimate
            // lags: delete what one measurement asks for and leave the rest to the next pass.
            for _ in 0..<100 where usage.bytes > maxBytes && usage.events > 0 {
                let excess = Double(usage.bytes - maxBytes) / Double(usage.bytes)
                var wanted = max(Int((Double(usage.events) * excess).rounded(.up)), 1)
                var progressed = false
                while wanted > 0 {
                    let deleted = try await deleteBatch(before: nil, limit: min(batchSize, wanted))
                    report.deletedBySize += deleted
                    wanted -= deleted
                    progressed = progressed || deleted > 0
                    if deleted == 0 { break }
                }
                usage = try await store.storeUsage()
                if !progressed || !usage.reflectsDeletesAtOnce { break }
            }
            report.usage = usage
        }
        return report
    }
}

/// The collector's retention task: a pass at start, then one every `policy.interval`, logging
/// what it deleted. A failed pass is logged and retried at the next interval.
public struct RetentionService: Service {
    let policy: RetentionPolicy
    let store: any EventStore
    let logger: Logger

    public init(policy: RetentionPolicy, store: any EventStore, logger: Logger) {
        self.policy = policy
        self.store = store
        self.logger = logger
    }

    public func run() async throws {
        var metadata: Logger.Metadata = [:]
        if let days = policy.maxAgeDays { metadata["retention_days"] = "\(days)" }
        if let bytes = policy.maxStoreBytes { metadata["max_store_bytes"] = "\(bytes)" }
        logger.info("retention enabled", metadata: metadata)
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await runPass()
                do { try await Task.sleep(for: policy.interval) } catch { return }
            }
        }
    }

    func runPass() async {
        do {
            let report = try await Retention.pass(policy, store: store)
            var metadata: Logger.Metadata = [
                "deleted_by_age": "\(report.deletedByAge)", "deleted_by_size": "\(report.deletedBySize)",
                "transactions": "\(report.transactions)",
            ]
            if let usage = report.usage { metadata["store_bytes"] = "\(usage.bytes)" }
            if !report.ran {
                logger.debug("retention skipped: another collector is running it")
            } else if report.deleted > 0 {
                logger.info("retention deleted events", metadata: metadata)
            } else {
                logger.debug("retention: nothing to delete", metadata: metadata)
            }
        } catch is CancellationError {
            return
        } catch {
            logger.warning("retention pass failed", metadata: ["error": "\(error)"])
        }
    }
}
