// swift-tools-version:6.1
// Wire benchmark: encode + compress + sign synthetic events (run.sh compares with JSON lines + gzip).
// BenchEvents, the synthetic event stream, is shared with Benchmarks/delivery.
import PackageDescription

let package = Package(
    name: "wire-benchmark",
    platforms: [.macOS(.v15)],
    products: [.library(name: "BenchEvents", targets: ["BenchEvents"])],
    dependencies: [.package(name: "vigil", path: "../..")],
    targets: [
        .target(
            name: "BenchEvents",
            dependencies: [
                .product(name: "VigilCore", package: "vigil"),
                .product(name: "VigilSensors", package: "vigil"),
            ]
        ),
        .executableTarget(
            name: "wire-bench",
            dependencies: [
                "BenchEvents",
                .product(name: "VigilWire", package: "vigil"),
                .product(name: "VigilCore", package: "vigil"),
                .product(name: "VigilSensors", package: "vigil"),
            ]
        ),
    ]
)
