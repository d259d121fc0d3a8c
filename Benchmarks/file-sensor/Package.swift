// swift-tools-version:6.1
// Side-by-side benchmark of Vigil's inotify file sensor against inotifywait (run.sh).
// Depends on the root package by path and needs it to export a `VigilSensors` library product.

import PackageDescription

let package = Package(
    name: "file-sensor-benchmark",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "vigil", path: "../.."),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
    ],
    targets: [
        .executableTarget(
            name: "file-sensor-bench",
            dependencies: [
                .product(name: "VigilSensors", package: "vigil"),
                .product(name: "Logging", package: "swift-log"),
            ]
        )
    ]
)
