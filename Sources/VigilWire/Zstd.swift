internal import CZstd

/// zstd compression of batch bodies. Contexts are reused across calls; a `Zstd` value is not
/// thread-safe, give each task its own.
public final class Zstd {
    private let cctx: OpaquePointer
    private let dctx: OpaquePointer
    public let level: Int32

    public init(level: Int32 = 3) {
        guard let c = ZSTD_createCCtx(), let d = ZSTD_createDCtx() else {
            fatalError("ZSTD_createCCtx/ZSTD_createDCtx failed: out of memory")
        }
        cctx = c
        dctx = d
        self.level = level
    }

    deinit {
        ZSTD_freeCCtx(cctx)
        ZSTD_freeDCtx(dctx)
    }

    /// The library version, e.g. "1.5.4".
    public static var libraryVersion: String { String(cString: ZSTD_versionString()) }

    public func compress(_ input: [UInt8]) throws(WireError) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var error = 0
        // Written in place: no zero-filling of the worst-case bound, no second copy.
        let out = [UInt8](unsafeUninitializedCapacity: bound) { dst, count in
            let written = input.withUnsafeBytes { src in
                ZSTD_compressCCtx(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count, level)
            }
            if ZSTD_isError(written) != 0 {
                error = written
                count = 0
            } else {
                count = written
            }
        }
        if error != 0 {
            throw WireError(.compressionFailed, String(cString: ZSTD_getErrorName(error)))
        }
        return out
    }

    /// Decompresses one zstd frame whose content is exactly `expectedSize` bytes, refusing
    /// anything larger than `limit` before allocating for it (zstd bombs).
    public func decompress(_ input: [UInt8], expectedSize: UInt64, limit: Int) throws(WireError) -> [UInt8] {
        guard expectedSize <= UInt64(limit) else {
            throw WireError(.tooLarge, "declared uncompressed size \(expectedSize) exceeds the limit of \(limit) bytes")
        }
        let result: Result<[UInt8], WireError> = input.withUnsafeBytes { src in
            let frameSize = ZSTD_getFrameContentSize(src.baseAddress, src.count)
            // ZSTD_CONTENTSIZE_UNKNOWN = -1, ZSTD_CONTENTSIZE_ERROR = -2 (as unsigned long long)
            if frameSize == UInt64.max - 1 {
                return .failure(WireError(.decompressionFailed, "body is not a zstd frame"))
            }
            if frameSize != UInt64.max, frameSize != expectedSize {
                return .failure(
                    WireError(.decompressionFailed, "zstd frame holds \(frameSize) bytes, header says \(expectedSize)")
                )
            }
            // One extra byte of room so that a frame with more content than declared is caught.
            var out = [UInt8](repeating: 0, count: Int(expectedSize) + 1)
            let n = out.withUnsafeMutableBytes { dst in
                ZSTD_decompressDCtx(dctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
            }
            if ZSTD_isError(n) != 0 {
                let name = String(cString: ZSTD_getErrorName(n))
                return .failure(WireError(.decompressionFailed, "zstd: \(name) (limit \(expectedSize) bytes)"))
            }
            guard UInt64(n) == expectedSize else {
                return .failure(
                    WireError(.decompressionFailed, "body decompressed to \(n) bytes, header says \(expectedSize)")
                )
            }
            out.removeLast()
            return .success(out)
        }
        return try result.get()
    }
}

@available(*, unavailable)
extension Zstd: Sendable {}
