import FuzzSupport
import VigilWire

/// Bounded zstd decompression of a batch body (the defence against decompression bombs).
/// Input: 4 bytes of declared uncompressed size (little-endian), then the frame.
///
/// Invariants: what comes out is never larger than the limit, and is exactly the declared size.
enum ZstdTarget: FuzzTarget {
    static let limit = 1 << 20

    static func seeds() throws -> [[UInt8]] {
        let zstd = Zstd()
        var seeds: [[UInt8]] = []
        for text in ["", "vigil", String(repeating: "abc", count: 5_000), String(repeating: "\u{0}", count: 70_000)] {
            let raw = Array(text.utf8)
            let size = UInt32(raw.count)
            seeds.append(withUnsafeBytes(of: size.littleEndian, Array.init) + (try zstd.compress(raw)))
        }
        return seeds
    }

    static func test(_ input: [UInt8]) {
        guard input.count >= 4 else { return }
        let declared = UInt64(input[0]) | UInt64(input[1]) << 8 | UInt64(input[2]) << 16 | UInt64(input[3]) << 24
        guard let out = try? Zstd().decompress(Array(input[4...]), expectedSize: declared, limit: limit) else { return }
        FuzzCheck.require(out.count <= limit, "decompressed \(out.count) bytes past the limit of \(limit)")
        FuzzCheck.require(UInt64(out.count) == declared, "decompressed \(out.count) bytes, declared \(declared)")
    }
}

@_cdecl("FuzzZstd_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.main(ZstdTarget.self, argc, argv)
}
