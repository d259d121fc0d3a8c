// swift-tools-version:6.1
// Vigil: a lightweight Linux host monitoring agent. See README.md and DESIGN notes in the repo.

import PackageDescription

let swiftSettings: [SwiftSetting] = [
    // https://github.com/swiftlang/swift-evolution/blob/main/proposals/0335-existential-any.md
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "vigil",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vigild", targets: ["vigild"]),
        .executable(name: "vigil-collector", targets: ["vigil-collector"]),
        .executable(name: "vigilctl", targets: ["vigilctl"]),
        // Libraries, for Benchmarks/ and for tools built on Vigil's formats.
        .library(name: "VigilCore", targets: ["VigilCore"]),
        .library(name: "VigilLinux", targets: ["VigilLinux"]),
        .library(name: "VigilSensors", targets: ["VigilSensors"]),
        .library(name: "VigilPolicy", targets: ["VigilPolicy"]),
        .library(name: "VigilWire", targets: ["VigilWire"]),
        .library(name: "VigilSpool", targets: ["VigilSpool"]),
        .library(name: "VigilCollector", targets: ["VigilCollector"]),
        .library(name: "VigilAgent", targets: ["VigilAgent"]),
        .library(name: "VigilDrills", targets: ["VigilDrills"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.28.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.29.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.24.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.10.0", traits: []),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // System libraries from Debian (-dev packages), reached through pkg-config.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),

        // The VERSION file, compiled in (C23 #embed), so every binary's --version matches the packages.
        .target(name: "CVigilVersion"),
        // Linux calls glibc declares only under _GNU_SOURCE.
        .target(name: "CVigilSys"),
        .target(
            name: "VigilCore",
            dependencies: ["CVigilVersion"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VigilLinux",
            dependencies: [
                "VigilCore",
                "CPcap",
                "CSeccomp",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VigilSensors",
            dependencies: [
                "VigilCore",
                "VigilLinux",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VigilPolicy",
            dependencies: [
                "VigilCore",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VigilWire",
            dependencies: [
                "VigilCore",
                "CZstd",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["vigil.proto", "generate.sh"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VigilSQLite",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VigilSpool",
            dependencies: [
                "CVigilSys",
                "VigilCore",
                "VigilWire",
                "VigilSQLite",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VigilCollector",
            dependencies: [
                "VigilCore",
                "VigilWire",
                "VigilSQLite",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VigilAgent",
            dependencies: [
                "VigilCore",
                "VigilLinux",
                "VigilSensors",
                "VigilPolicy",
                "VigilWire",
                "VigilSpool",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VigilDrills",
            dependencies: [
                "VigilCore",
                "VigilAgent",
                "VigilCollector",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VigilTestSupport",
            dependencies: [
                "VigilCore",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),

        // Executables: argument parsing and lifecycle only.
        .executableTarget(
            name: "vigild",
            dependencies: [
                "VigilAgent",
                "VigilCollector",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "vigil-collector",
            dependencies: [
                "VigilCollector",
                "VigilLinux",
                "VigilWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "vigilctl",
            dependencies: [
                "VigilAgent",
                "VigilCollector",
                "VigilCore",
                "VigilDrills",
                "VigilPolicy",
                "VigilSensors",
                "VigilWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        .testTarget(
            name: "VigilWireTests",
            dependencies: [
                "VigilWire", "VigilCore", "VigilSensors", "VigilTestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VigilSensorsTests",
            dependencies: [
                "VigilSensors", "VigilLinux", "VigilCore", "VigilTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VigilCollectorTests",
            dependencies: [
                "VigilCollector", "VigilWire", "VigilCore", "VigilSQLite", "VigilTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VigilAgentTests",
            dependencies: [
                "VigilAgent", "VigilSpool", "VigilPolicy", "VigilWire", "VigilCore", "VigilLinux", "VigilTestSupport",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VigilPolicyTests",
            dependencies: ["VigilPolicy", "VigilCore", "VigilTestSupport"],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VigilFlowTests",
            dependencies: ["VigilSensors", "VigilLinux", "VigilCore", "VigilTestSupport"],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VigilProcessTests",
            dependencies: [
                "VigilSensors", "VigilLinux", "VigilCore", "VigilTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VigilDrillsTests",
            dependencies: ["VigilDrills", "VigilPolicy", "VigilCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PackagingTests",
            dependencies: ["VigilTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["VigilTestSupport", "VigilCore", "VigilWire"],
            swiftSettings: swiftSettings
        ),
    ]
)
