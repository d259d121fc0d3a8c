// swift-tools-version:6.1
// Fuzz targets for every input path Vigil parses: libFuzzer + AddressSanitizer. Build and run
// them with `Fuzz/run SECONDS` (it passes the sanitizer flags; a plain `swift build` here is not
// how they are meant to be built).
import PackageDescription

let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
    ("FuzzBatch", [.product(name: "VigilWire", package: "vigil"), .product(name: "VigilCore", package: "vigil")]),
    ("FuzzEvent", [.product(name: "VigilWire", package: "vigil"), .product(name: "VigilCore", package: "vigil")]),
    ("FuzzZstd", [.product(name: "VigilWire", package: "vigil")]),
    (
        "FuzzPackets",
        [.product(name: "VigilSensors", package: "vigil"), .product(name: "VigilLinux", package: "vigil")]
    ),
    ("FuzzSigma", [.product(name: "VigilPolicy", package: "vigil"), .product(name: "VigilCore", package: "vigil")]),
    (
        "FuzzSpool",
        [
            .product(name: "VigilSpool", package: "vigil"), .product(name: "VigilWire", package: "vigil"),
            .product(name: "VigilCore", package: "vigil"),
        ]
    ),
    // The agent configuration's parser is compiled in from the agent's source (a symbolic link),
    // not through VigilAgent, and the query target needs only VigilCore: no HTTP stack in this build.
    ("FuzzConfig", [.product(name: "VigilPolicy", package: "vigil"), .product(name: "Yams", package: "Yams")]),
    ("FuzzQuery", [.product(name: "VigilCore", package: "vigil")]),
]

let package = Package(
    name: "vigil-fuzz",
    platforms: [.macOS(.v15)],
    products: fuzzTargets.map { .executable(name: $0.name, targets: [$0.name]) },
    dependencies: [
        .package(name: "vigil", path: ".."),
        // The agent configuration parser's YAML library (same version as the root).
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
    ],
    targets: [
        .target(
            name: "FuzzSupport",
            dependencies: [
                .product(name: "VigilCore", package: "vigil"), .product(name: "VigilWire", package: "vigil"),
            ]
        )
    ]
        + fuzzTargets.map {
            .executableTarget(name: $0.name, dependencies: ["FuzzSupport"] + $0.dependencies)
        }
)
