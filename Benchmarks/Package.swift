// swift-tools-version:6.1
// Micro-benchmarks of the hot paths (codecs, broadcast fan-out, RESP decoding), kept out of the root package so
// that building or testing Switchboard never resolves the benchmark tooling.
import PackageDescription

/// Every benchmark target: an executable whose `benchmarks` closure the BenchmarkPlugin wraps in a runner, using the
/// Switchboard and SwiftNIO products named.
func benchmarkTarget(
    _ name: String,
    switchboard: [String],
    nio: [String] = ["NIOCore"],
    other: [Target.Dependency] = []
) -> Target {
    .executableTarget(
        name: name,
        dependencies: [.product(name: "Benchmark", package: "benchmark"), "BenchmarkSupport"]
            + switchboard.map { .product(name: $0, package: "Switchboard") }
            + nio.map { .product(name: $0, package: "swift-nio") } + other,
        path: "Benchmarks/\(name)",
        plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    )
}

let package = Package(
    name: "SwitchboardBenchmarks",
    dependencies: [
        .package(name: "Switchboard", path: ".."),
        // MallocInterposer counts allocations without jemalloc; naming the trait also leaves out the default
        // RuntimeInterposer trait and its package.
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
    ],
    targets: [
        .target(name: "BenchmarkSupport", dependencies: [.product(name: "Benchmark", package: "benchmark")]),
        benchmarkTarget("EngineIOCodec", switchboard: ["EngineIO"]),
        benchmarkTarget("SocketIOCodec", switchboard: ["SocketIO"]),
        benchmarkTarget(
            "Broadcast",
            switchboard: ["EngineIO", "SocketIO"],
            nio: ["NIOCore", "NIOConcurrencyHelpers", "NIOEmbedded"],
            other: [.product(name: "Logging", package: "swift-log")]
        ),
        benchmarkTarget("RESPDecoding", switchboard: ["Redis"]),
    ],
    swiftLanguageModes: [.v6]
)
