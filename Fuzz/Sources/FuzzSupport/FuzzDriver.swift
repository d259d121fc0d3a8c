import Foundation
import VigilCore

/// libFuzzer's entry point for a program that brings its own `main` (SwiftPM names every
/// executable's entry point itself, so the fuzz targets link `libclang_rt.fuzzer_no_main`).
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// One input path under test.
///
/// `test` gets every input libFuzzer makes up; it must never crash on any of them, and it checks
/// invariants of what the code under test returns with `FuzzCheck.require`, which stops the run
/// with a crash (and so a reproducer) when one does not hold.
public protocol FuzzTarget {
    /// Inputs that reach deep into the code: real batches, rules, frames, configs. Written into
    /// the seed corpus by `Fuzz/run` before fuzzing.
    static func seeds() throws -> [[UInt8]]
    static func test(_ input: [UInt8])
}

/// The one fuzz target of this process (libFuzzer's callback is a C function pointer, so it
/// cannot capture anything).
nonisolated(unsafe) private var currentTest: (([UInt8]) -> Void)?

public enum FuzzDriver {
    /// Runs `Target` under libFuzzer with the process's arguments.
    ///
    /// With `VIGIL_FUZZ_WRITE_SEEDS=DIR` in the environment it writes `Target.seeds()` into DIR
    /// instead (one file each, named by content hash) and exits.
    public static func main<Target: FuzzTarget>(
        _ target: Target.Type,
        _ argc: CInt,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    ) -> CInt {
        if let dir = ProcessInfo.processInfo.environment["VIGIL_FUZZ_WRITE_SEEDS"] {
            do {
                let seeds = try Target.seeds()
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                for seed in seeds {
                    let name = String(format: "seed-%016llx", fnv1a(seed))
                    try Data(seed).write(to: URL(fileURLWithPath: dir + "/" + name))
                }
                print("\(seeds.count) seed(s) written to \(dir)")
                return 0
            } catch {
                FileHandle.standardError.write(Data("cannot write seeds: \(error)\n".utf8))
                return 1
            }
        }
        // Run the seeds once before libFuzzer counts allocations: lazily built globals (sample
        // events, compiled regexes, type metadata) then do not look like leaks of the first input.
        if let seeds = try? Target.seeds() {
            for seed in seeds { Target.test(seed) }
        }
        currentTest = Target.test
        var argc = argc
        var argv = argv
        return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            let input = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
            currentTest?(input)
            return 0
        }
    }

    private static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}

public enum FuzzCheck {
    /// Stops the run with a crash report when an invariant does not hold.
    public static func require(
        _ condition: @autoclosure () -> Bool,
        _ message: @autoclosure () -> String,
        file: StaticString = #filePath,
        line: UInt = #line
    ) {
        if !condition() {
            fatalError("invariant violated: \(message())", file: file, line: line)
        }
    }
}

/// Where seeds are read from: the repository this package sits in and the shared corpora next
/// to it (`../shared/corpora` from the repository root, as the tests use).
public enum FuzzPaths {
    public static var repository: String {
        // .../Fuzz/Sources/FuzzSupport/FuzzDriver.swift → four levels up.
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }

    public static var corpora: String {
        ProcessInfo.processInfo.environment["VIGIL_CORPORA"] ?? (repository + "/../shared/corpora")
    }

    /// Regular files under `directory` whose names end in one of `extensions`, sorted; none if
    /// the directory is missing.
    public static func files(under directory: String, extensions: [String], limit: Int = .max) -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return [] }
        var found: [String] = []
        while let relative = walker.nextObject() as? String {
            if extensions.contains(where: { relative.hasSuffix($0) }) { found.append(directory + "/" + relative) }
        }
        return Array(found.sorted().prefix(limit))
    }

    public static func contents(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { Array($0) }
    }
}
