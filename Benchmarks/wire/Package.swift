// swift-tools-version:6.1
// Wire benchmark: encode + compress + sign synthetic events (run.sh compares with JSON lines + gzip).
import PackageDescription

let package = Package(
    name: "wire-benchmark",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "vigil", path: "../..")],
    targets: [
        .executableTarget(
            name: "wire-bench",
            dependencies: [
                .product(name: "VigilWire", package: "vigil"),
                .product(name: "VigilCore", package: "vigil"),
                .product(name: "VigilSensors", package: "vigil"),
            ]
        )
    ]
)
