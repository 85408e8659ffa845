import Benchmark

extension Benchmark.Configuration {
    /// The metrics and tolerances every hot-path benchmark shares.
    ///
    /// `thresholds check` compares the p90 of each metric with the value committed in `Thresholds/`:
    /// - allocations must match exactly: the count is deterministic, and one more per operation is the regression
    ///   these benchmarks exist to catch;
    /// - instructions may move 5 %. They are only measured where the CPU exposes a hardware counter to the process
    ///   (perf events); the virtual machines this project runs on have none, so there neither the run nor the
    ///   thresholds carry them;
    /// - wall clock and throughput are reported (and recorded in the threshold files) but not gated: on a shared
    ///   two-core machine they move by more than any regression worth catching.
    ///
    /// Benchmark names have no spaces or slashes: the tool writes threshold files with those replaced but looks
    /// them up by the name as it is.
    public static func hotPath(scalingFactor: BenchmarkScalingFactor) -> Benchmark.Configuration {
        Benchmark.Configuration(
            metrics: [.instructions, .mallocCountTotal, .throughput, .wallClock],
            warmupIterations: 10,
            scalingFactor: scalingFactor,
            maxDuration: .seconds(1),
            maxIterations: 1_000,
            thresholds: [
                .instructions: BenchmarkThresholds(relative: [.p90: 5]),
                .mallocCountTotal: BenchmarkThresholds(absolute: [.p90: 0]),
                .throughput: .none,
                .wallClock: .none,
            ]
        )
    }
}
