// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "loyalty-edge",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SyncProtocol", targets: ["SyncProtocol"]),
        .library(name: "EdgeNode", targets: ["EdgeNode"]),
        .library(name: "HubNode", targets: ["HubNode"]),
        .executable(name: "edge", targets: ["edge"]),
        .executable(name: "hub", targets: ["hub"]),
        .executable(name: "simulate", targets: ["simulate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // C libraries from Debian, installed by scripts/bootstrap.
        .systemLibrary(name: "CLibUV", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // The simulator's allocator (Debian's libmimalloc-dev; no pkg-config file).
        .systemLibrary(name: "CMimalloc", providers: [.apt(["libmimalloc-dev"])]),
        // A pass-through SQLite VFS that writes each commit's WAL frames in one system call.
        .target(name: "CWALBatch", dependencies: ["CSQLite"]),

        // Sans-IO core: counters, clocks, wire format, channel and session state machines.
        .target(name: "SyncProtocol", dependencies: ["CSodium"]),
        // I/O runtime shared by edge and hub: libuv loop, SQLite writer thread, line framing.
        .target(
            name: "NodeKit",
            dependencies: [
                "CLibUV", "CSQLite", "CWALBatch", "SyncProtocol", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "EdgeNode",
            dependencies: [
                "SyncProtocol", "NodeKit", .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .target(
            name: "HubNode",
            dependencies: [
                "SyncProtocol", "NodeKit", .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"), .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // The operator console: the hub's HTTP API, /metrics and the dashboard (Hummingbird).
        .target(
            name: "HubConsole",
            dependencies: [
                "HubNode", "NodeKit", "SyncProtocol", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "edge",
            dependencies: [
                "EdgeNode", "NodeKit", "SyncProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "hub",
            dependencies: [
                "HubNode", "HubConsole", "NodeKit", "SyncProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Simulations: the process harness (real executables on loopback) and the `simulate` tool.
        .target(
            name: "Harness",
            dependencies: ["NodeKit", "SyncProtocol", "EdgeNode"],
            path: "Simulations/Harness"
        ),
        // The deterministic simulator: the real session machines and ledgers on a simulated
        // network and clocks, one thread, one seed.
        .target(
            name: "Simulator",
            dependencies: ["EdgeNode", "HubNode", "NodeKit", "SyncProtocol"],
            path: "Simulations/Simulator"
        ),
        .executableTarget(
            name: "simulate",
            dependencies: [
                "CMimalloc", "Harness", "NodeKit", "Simulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Simulations/simulate"
        ),

        // Figures for the protocol core; `make bench-sync` runs it in release mode.
        .executableTarget(name: "SyncBench", dependencies: ["SyncProtocol"], path: "Benchmarks/SyncBench"),
        // The hub's merge rate against a raw batched upsert; part of `make bench`.
        .executableTarget(
            name: "HubBench", dependencies: ["HubNode", "NodeKit", "SyncProtocol"], path: "Benchmarks/HubBench"),
        // 1,000 concurrent store sessions on one hub process: memory and merge lag; part of `make bench`.
        .executableTarget(
            name: "SessionsBench", dependencies: ["HubNode", "NodeKit", "SyncProtocol"],
            path: "Benchmarks/SessionsBench"),
        // The store node under load against raw SQLite group commit; `make bench-edge`.
        .executableTarget(
            name: "EdgeBench", dependencies: ["EdgeNode", "NodeKit", "SyncProtocol"], path: "Benchmarks/EdgeBench"),
        // Channel throughput against plaintext loopback, and handshakes per second; `make bench-channel`.
        .executableTarget(
            name: "ChannelBench", dependencies: ["SyncProtocol", "NodeKit"], path: "Benchmarks/ChannelBench"),

        .testTarget(
            name: "SyncProtocolTests",
            dependencies: ["SyncProtocol", .product(name: "PropertyBased", package: "swift-property-based")],
            exclude: ["Fixtures"]),
        .testTarget(name: "NodeKitTests", dependencies: ["NodeKit", "SyncProtocol", "CSQLite"]),
        .testTarget(name: "EdgeNodeTests", dependencies: ["EdgeNode", "NodeKit", "SyncProtocol"]),
        .testTarget(name: "HubNodeTests", dependencies: ["HubNode", "EdgeNode", "NodeKit", "SyncProtocol"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Harness", "EdgeNode", "NodeKit", "SyncProtocol"]),
        .testTarget(name: "SimulatorTests", dependencies: ["Simulator", "Harness", "NodeKit", "SyncProtocol"]),
    ]
)

for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    target.swiftSettings = settings
}
