// swift-tools-version:6.1
// Policy benchmark: the compiled matcher against a naive rule-by-rule evaluator (run.sh).
import PackageDescription

let package = Package(
    name: "policy-benchmark",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "vigil", path: "../..")],
    targets: [
        .executableTarget(
            name: "policy-bench",
            dependencies: [
                .product(name: "VigilPolicy", package: "vigil"),
                .product(name: "VigilCore", package: "vigil"),
            ]
        )
    ]
)
