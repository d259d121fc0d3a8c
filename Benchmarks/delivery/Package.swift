// swift-tools-version:6.1
// Delivery benchmark: the agent's spool and shipper delivering to a running collector (run.sh
// starts it and the NDJSON + gzip reference).
import PackageDescription

let package = Package(
    name: "delivery-benchmark",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "vigil", path: "../.."),
        .package(name: "wire-benchmark", path: "../wire"),
    ],
    targets: [
        .executableTarget(
            name: "delivery-bench",
            dependencies: [
                .product(name: "BenchEvents", package: "wire-benchmark"),
                .product(name: "VigilAgent", package: "vigil"),
                .product(name: "VigilSpool", package: "vigil"),
                .product(name: "VigilWire", package: "vigil"),
                .product(name: "VigilCore", package: "vigil"),
                "CZstdDict",
            ]
        ),
        .systemLibrary(name: "CZstdDict", pkgConfig: "libzstd"),
    ]
)
