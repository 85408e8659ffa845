import RedisTestSupport
import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import Redis

/// Throughput measurement, not a timed test: it runs only when `REDIS_THROUGHPUT` is set (see
/// `redis-throughput.sh` beside this file, which builds in release mode) and prints its figures.
///
/// - SET/GET: the same shape as `redis-benchmark -q -P 16 -t set,get -n 200000` (50 connections, 16 commands in
///   flight on each, 3-byte values), measured against a `redis-benchmark` run on the same server in the same
///   invocation; the ratio is printed.
/// - Pub/sub: one subscriber connection drains 100-byte messages that a Lua loop publishes inside Redis (so the
///   publisher costs nothing on the client side).
@Suite(
    "Redis throughput",
    .enabled(if: ProcessInfo.processInfo.environment["REDIS_THROUGHPUT"] != nil),
    .serialized
)
struct ThroughputBenchmark {
    static let requests = Int(ProcessInfo.processInfo.environment["REDIS_THROUGHPUT_REQUESTS"] ?? "") ?? 200_000
    static let clients = 50
    static let depth = 16
    static let rounds = Int(ProcessInfo.processInfo.environment["REDIS_THROUGHPUT_ROUNDS"] ?? "") ?? 5
    static let clientThreads = Int(ProcessInfo.processInfo.environment["REDIS_THROUGHPUT_THREADS"] ?? "") ?? 1

    @Test func setGetAgainstRedisBenchmark() async throws {
        try await withRedisServer { server in try await self.setGet(server) }
    }

    func setGet(_ server: TestRedisServer) async throws {
        guard let benchmark = TestRedisServer.findExecutable("redis-benchmark") else {
            Issue.record("redis-benchmark not found on PATH")
            return
        }
        // One event-loop thread, like redis-benchmark's one thread: on a small machine a second client thread only
        // takes CPU from redis-server.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: Self.clientThreads)
        defer { group.shutdownGracefully { _ in } }
        var connections: [RedisConnection] = []
        for _ in 0..<Self.clients {
            connections.append(
                try await RedisConnection.connect(
                    configuration: server.configuration,
                    eventLoop: group.next(),
                    logger: testLogger
                )
            )
        }
        // Warm up (allocator, caches, connection buffers) before timing anything.
        _ = try await self.measure(connections, group: group, command: "SET", mode: .futurePerCommand, total: 50_000)

        // Rounds alternate redis-benchmark and this client on the same server, so load from elsewhere on the machine
        // hits both sides alike; the median ratio of each mode over the rounds is reported.
        var ratios: [String: [Double]] = [:]
        var rates: [String: [Double]] = [:]
        var baselines: [String: [Double]] = [:]
        for _ in 0..<Self.rounds {
            let baseline = try Self.runRedisBenchmark(benchmark, port: server.port)
            for command in ["SET", "GET"] {
                baselines[command, default: []].append(baseline[command] ?? .nan)
                for mode in [Driver.Mode.futurePerCommand, .pipelineBatches] {
                    let rate = try await self.measure(
                        connections,
                        group: group,
                        command: command,
                        mode: mode,
                        total: Self.requests
                    )
                    let key = "\(command) \(mode)"
                    rates[key, default: []].append(rate)
                    ratios[key, default: []].append(rate / (baseline[command] ?? .nan))
                }
            }
        }
        for connection in connections { try await connection.close().get() }
        print(
            "== redis-throughput: SET/GET, \(Self.clients) connections on \(Self.clientThreads) event loop(s), "
                + "pipeline depth \(Self.depth), \(Self.requests) requests, median of \(Self.rounds) rounds"
        )
        for command in ["SET", "GET"] {
            print("== redis-benchmark \(command): \(Int(Self.median(baselines[command] ?? []))) req/s")
        }
        for key in rates.keys.sorted() {
            print(
                "== \(key): \(Int(Self.median(rates[key]!))) req/s; "
                    + "ratio to redis-benchmark \(String(format: "%.2f", Self.median(ratios[key]!))) "
                    + "(rounds: \(ratios[key]!.map { String(format: "%.2f", $0) }.joined(separator: " ")))"
            )
        }
    }

    /// Requests per second for `total` commands spread over the connections.
    private func measure(
        _ connections: [RedisConnection],
        group: MultiThreadedEventLoopGroup,
        command: String,
        mode: Driver.Mode,
        total: Int
    ) async throws -> Double {
        let perConnection = total / connections.count
        let start = ContinuousClock.now
        let futures = connections.map { connection in
            connection.eventLoop.flatSubmit {
                Driver.run(
                    connection: connection,
                    command: command,
                    mode: mode,
                    total: perConnection,
                    depth: Self.depth
                )
            }
        }
        let errors = try await EventLoopFuture.whenAllSucceed(futures, on: group.next()).get().reduce(0, +)
        #expect(errors == 0)
        return Double(perConnection * connections.count) / Self.seconds(ContinuousClock.now - start)
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
    }

    @Test func pubSubDrainOneSubscriber() async throws {
        try await withRedisServer { server in try await self.pubSub(server) }
    }

    func pubSub(_ server: TestRedisServer) async throws {
        let total = Int(ProcessInfo.processInfo.environment["REDIS_THROUGHPUT_MESSAGES"] ?? "") ?? 2_000_000
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let counter = MessageCounter(expected: total, promise: loop.makePromise())
        let watcher = StateWatcher()
        let subscriber = try RedisSubscriber(
            configuration: server.configuration,
            eventLoop: loop,
            logger: testLogger,
            onStateChange: { state in
                watcher.handler(state)
                // Losing the subscriber (e.g. Redis killed it for its output buffer) fails the run, never hangs it.
                if state == .disconnected { counter.fail() }
            },
            onMessage: { message in counter.received(message) }
        )
        subscriber.start()
        try await watcher.next(.connected)
        try await subscriber.subscribe(channels: "bench")

        let publisher = try await RedisConnection.connect(
            configuration: server.configuration,
            eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
            logger: testLogger
        )
        let payload = String(repeating: "p", count: 100)
        let script = RedisScript("for i = 1, tonumber(ARGV[1]) do redis.call('PUBLISH', KEYS[1], ARGV[2]) end")
        let perCall = 1000
        let start = ContinuousClock.now
        var inFlight: [EventLoopFuture<RESPValue>] = []
        // Redis publishes faster than one connection can drain: keep at most `window` messages (~6.5 MB) between
        // publisher and subscriber, so what is measured is the drain rate, not Redis dropping a slow subscriber.
        let window = 50_000
        for call in 0..<(total / perCall) {
            let publishedSoFar = call * perCall
            if publishedSoFar > window {
                try await loop.flatSubmit { counter.waitFor(publishedSoFar - window) }.get()
            }
            inFlight.append(publisher.evaluate(script, keys: ["bench"], arguments: [perCall, payload]))
            if inFlight.count == 4 {
                _ = try await inFlight.removeFirst().get()
            }
        }
        for future in inFlight { _ = try await future.get() }
        let published = ContinuousClock.now
        try await counter.promise.futureResult.get()
        let drained = ContinuousClock.now
        let clients = try await publisher.execute("CLIENT", "LIST", "TYPE", "pubsub").string ?? ""
        let seconds = Self.seconds(drained - start)
        print("== redis-throughput: pub/sub, one subscriber, \(total) messages of 100 bytes")
        print(
            "== drained \(Int(Double(total) / seconds)) msgs/s (publishing took \(Self.seconds(published - start)) s, "
                + "draining finished \(Self.seconds(drained - published)) s later); subscriber after: "
                + (clients.split(separator: " ").filter { $0.hasPrefix("omem=") || $0.hasPrefix("tot-mem=") }
                    .joined(separator: " "))
        )
        await subscriber.shutdown()
        try await publisher.close().get()
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Runs redis-benchmark and returns requests per second by test name.
    static func runRedisBenchmark(_ executable: String, port: Int) throws -> [String: Double] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "-h", "127.0.0.1", "-p", "\(port)", "-q", "-P", "\(Self.depth)", "-c", "\(Self.clients)",
            "-t", "set,get", "-n", "\(Self.requests)",
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        var result: [String: Double] = [:]
        // Lines look like "SET: 1234567.89 requests per second, p50=0.327 msec" (after \r progress output).
        for line in output.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let parts = line.split(separator: " ")
            if parts.count > 2, parts[0].hasSuffix(":"), parts[2] == "requests", let rate = Double(parts[1]) {
                result[String(parts[0].dropLast())] = rate
            }
        }
        return result
    }
}

/// Counts messages on the subscriber's loop.
///
/// `@unchecked Sendable`: `count` and `waiter` are only touched on the subscriber's single event loop (`received` and
/// `fail` are called there by the subscriber, `waitFor` through `flatSubmit`); `expected` and `promise` are immutable.
private final class MessageCounter: @unchecked Sendable {
    let expected: Int
    let promise: EventLoopPromise<Void>
    private var count = 0

    init(expected: Int, promise: EventLoopPromise<Void>) {
        self.expected = expected
        self.promise = promise
    }

    private var waiter: (count: Int, promise: EventLoopPromise<Void>)?

    func received(_ message: RedisPubSubMessage) {
        self.count += 1
        if let waiter = self.waiter, self.count >= waiter.count {
            self.waiter = nil
            waiter.promise.succeed()
        }
        if self.count == self.expected {
            self.promise.succeed()
        }
    }

    /// Succeeds once `count` messages arrived (call on the subscriber's loop).
    func waitFor(_ count: Int) -> EventLoopFuture<Void> {
        if self.count >= count { return self.promise.futureResult.eventLoop.makeSucceededVoidFuture() }
        let promise = self.promise.futureResult.eventLoop.makePromise(of: Void.self)
        self.waiter = (count, promise)
        return promise.futureResult
    }

    struct SubscriberLost: Error {}

    func fail() {
        self.waiter?.promise.fail(SubscriberLost())
        self.waiter = nil
        self.promise.fail(SubscriberLost())
    }
}

/// Keeps `depth` commands in flight on one connection until `total` were answered, like redis-benchmark -P.
/// Lives on the connection's event loop.
private final class Driver {
    enum Mode: CustomStringConvertible {
        /// `connection.send(...)` per command, one future each.
        case futurePerCommand
        /// A `RedisPipeline` of `depth` commands, one future per batch.
        case pipelineBatches

        var description: String {
            switch self {
            case .futurePerCommand: return "future per command"
            case .pipelineBatches: return "pipeline batches"
            }
        }
    }

    let connection: RedisConnection
    let command: String
    let mode: Mode
    var remaining: Int
    let depth: Int
    var errors = 0
    let promise: EventLoopPromise<Int>

    init(connection: RedisConnection, command: String, mode: Mode, total: Int, depth: Int) {
        self.connection = connection
        self.command = command
        self.mode = mode
        self.remaining = total
        self.depth = depth
        self.promise = connection.eventLoop.makePromise()
    }

    static func run(
        connection: RedisConnection,
        command: String,
        mode: Mode,
        total: Int,
        depth: Int
    )
        -> EventLoopFuture<Int>
    {
        let driver = Driver(connection: connection, command: command, mode: mode, total: total, depth: depth)
        driver.nextBatch()
        return driver.promise.futureResult
    }

    func nextBatch() {
        guard self.remaining > 0 else {
            self.promise.succeed(self.errors)
            return
        }
        let count = min(self.depth, self.remaining)
        self.remaining -= count
        switch self.mode {
        case .futurePerCommand:
            var last: EventLoopFuture<RESPValue>?
            for _ in 0..<count {
                let future =
                    self.command == "SET"
                    ? self.connection.send("SET", "key:__rand_int__", "xxx")
                    : self.connection.send("GET", "key:__rand_int__")
                future.assumeIsolated().whenFailure { _ in self.errors += 1 }
                last = future
            }
            last!.assumeIsolated().whenComplete { _ in self.nextBatch() }
        case .pipelineBatches:
            var pipeline = RedisPipeline(capacity: 64 * count)
            for _ in 0..<count {
                if self.command == "SET" {
                    pipeline.append("SET", "key:__rand_int__", "xxx")
                } else {
                    pipeline.append("GET", "key:__rand_int__")
                }
            }
            self.connection.send(pipeline).assumeIsolated().whenComplete { result in
                if case .failure = result { self.errors += 1 }
                self.nextBatch()
            }
        }
    }
}
