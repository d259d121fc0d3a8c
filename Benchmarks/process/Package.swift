// swift-tools-version:6.1
// Side-by-side benchmark of Vigil's process sensor against forkstat (run.sh).
// Depends on the root package by path and needs it to export a `VigilSensors` library product.

import PackageDescription

let package = Package(
    name: "process-benchmark",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "vigil", path: "../.."),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
    ],
    targets: [
        .executableTarget(
            name: "process-bench",
            dependencies: [
                .product(name: "VigilSensors", package: "vigil"),
                .product(name: "VigilCore", package: "vigil"),
                .product(name: "Logging", package: "swift-log"),
            ]
        )
    ]
)
