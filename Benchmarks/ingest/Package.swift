// swift-tools-version:6.1
// Ingest benchmark: signed batches posted to running collectors (run.sh starts them and the reference).
import PackageDescription

let package = Package(
    name: "ingest-benchmark",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "vigil", path: "../.."),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.24.0"),
    ],
    targets: [
        .executableTarget(
            name: "ingest-bench",
            dependencies: [
                .product(name: "VigilWire", package: "vigil"),
                .product(name: "VigilCore", package: "vigil"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        )
    ]
)
