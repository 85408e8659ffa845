import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Redis

/// redis: the project's Redis client (hiredis' reader inside a NIO decoder) against `redis-benchmark`
/// on the same redis-server, in the same invocation:
/// - SET/GET in the shape of `redis-benchmark -P 16 -c 50 -t set,get` (50 connections, 16 commands in
///   flight on each, 3-byte values), one client event loop like redis-benchmark's one thread; rounds
///   alternate the two so that other load on the machine hits both alike, and the median is reported;
/// - pub/sub: one subscriber connection draining 100-byte messages that a Lua loop publishes inside
///   Redis, so that the publisher costs nothing on the client side.
struct RedisScenario {
    let redisServer: String
    let requests: Int
    let messages: Int
    let logDirectory: URL
    static let connections = 50
    static let depth = 16
    static let rounds = 3

    func run() async throws -> [RedisRun] {
        guard let benchmark = Self.executable(named: "redis-benchmark", besides: self.redisServer) else {
            throw BenchError("redis-benchmark not found beside \(self.redisServer) or on PATH")
        }
        let port = try freePort()
        let server = try spawnServer(
            Self.executable(named: "redis-server", besides: self.redisServer) ?? self.redisServer,
            ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            log: self.logDirectory.appendingPathComponent("redis-client-comparison.log").path
        )
        defer { stopChild(server) }
        let configuration = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port))
        var logger = Logger(label: "switchboard-bench.redis")
        logger.logLevel = .warning
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        var connections: [RedisConnection] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while connections.isEmpty {
            do {
                connections.append(try await RedisConnection.connect(configuration: configuration, eventLoop: group.next(), logger: logger))
            } catch {
                guard ContinuousClock.now < deadline else { throw BenchError("redis-server did not start: \(error)") }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        for _ in 1..<Self.connections {
            connections.append(try await RedisConnection.connect(configuration: configuration, eventLoop: group.next(), logger: logger))
        }
        // Warm-up (allocator, connection buffers) before anything is timed.
        _ = try await self.measure(connections, command: "SET", total: 50_000)

        var ours: [String: [Double]] = [:]
        var theirs: [String: [Double]] = [:]
        for round in 0..<Self.rounds {
            let reference = try Self.runRedisBenchmark(benchmark, port: port, requests: self.requests)
            for command in ["SET", "GET"] {
                theirs[command, default: []].append(reference[command] ?? .nan)
                ours[command, default: []].append(try await self.measure(connections, command: command, total: self.requests))
            }
            Progress.update("  redis SET/GET round \(round + 1)/\(Self.rounds)")
        }
        for connection in connections { try await connection.close().get() }
        var runs = ["SET", "GET"].map { command in
            let a = Self.median(ours[command] ?? [])
            let b = Self.median(theirs[command] ?? [])
            return RedisRun(
                comparison: "\(command), \(Self.connections) connections × \(Self.depth) in flight",
                switchboardClient: a,
                reference: b,
                unit: "requests/s",
                ratio: a / b,
                note: "reference: redis-benchmark -P \(Self.depth) -c \(Self.connections); median of \(Self.rounds) alternating rounds"
            )
        }
        runs.append(try await self.pubSub(configuration: configuration, logger: logger))
        for run in runs {
            Progress.finish(
                "  redis \(run.comparison): \(Int(run.switchboardClient)) \(run.unit)"
                    + (run.reference > 0 ? String(format: ", %.2f× redis-benchmark", run.ratio) : "")
            )
        }
        return runs
    }

    /// Requests per second for `total` commands in pipelined batches of `depth` on every connection.
    private func measure(_ connections: [RedisConnection], command: String, total: Int) async throws -> Double {
        let perConnection = total / connections.count
        let start = ContinuousClock.now
        let futures = connections.map { connection in
            connection.eventLoop.flatSubmit {
                PipelineDriver.run(connection: connection, command: command, total: perConnection, depth: Self.depth)
            }
        }
        let errors = try await EventLoopFuture.whenAllSucceed(futures, on: connections[0].eventLoop).get().reduce(0, +)
        guard errors == 0 else { throw BenchError("\(errors) \(command) commands failed") }
        return Double(perConnection * connections.count) / seconds(ContinuousClock.now - start)
    }

    private func pubSub(configuration: RedisConfiguration, logger: Logger) async throws -> RedisRun {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let received = NIOLockedValueBox(0)
        let connected = loop.makePromise(of: Void.self)
        let announced = NIOLockedValueBox(false)
        let subscriber = try RedisSubscriber(
            configuration: configuration,
            eventLoop: loop,
            logger: logger,
            onStateChange: { state in
                // Once: a reconnect would report `.connected` again.
                if state == .connected, announced.withLockedValue({ let first = !$0; $0 = true; return first }) {
                    connected.succeed()
                }
            },
            onMessage: { _ in received.withLockedValue { $0 += 1 } }
        )
        subscriber.start()
        try await connected.futureResult.get()
        // Subscribed on the server before the first publish, or the messages would go to nobody.
        try await subscriber.subscribe(channels: "bench")
        let publisher = try await RedisConnection.connect(configuration: configuration, eventLoop: loop, logger: logger)
        let script = RedisScript("for i = 1, tonumber(ARGV[1]) do redis.call('PUBLISH', KEYS[1], ARGV[2]) end")
        let payload = String(repeating: "p", count: 100)
        let perCall = 1000
        // At most `window` messages between publisher and subscriber (~6.5 MB): what is measured is the
        // drain rate, not Redis dropping a subscriber over its output buffer limit.
        let window = 50_000
        let start = ContinuousClock.now
        for call in 0..<(self.messages / perCall) {
            let stalled = ContinuousClock.now + .seconds(30)
            while call * perCall - received.withLockedValue({ $0 }) > window {
                guard ContinuousClock.now < stalled else { throw BenchError("the subscriber stopped draining") }
                try await Task.sleep(for: .milliseconds(1))
            }
            _ = try await publisher.evaluate(script, keys: ["bench"], arguments: [perCall, payload]).get()
        }
        let total = (self.messages / perCall) * perCall
        let deadline = ContinuousClock.now + .seconds(60)
        while received.withLockedValue({ $0 }) < total, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(1))
        }
        let drained = received.withLockedValue { $0 }
        let rate = Double(drained) / seconds(ContinuousClock.now - start)
        await subscriber.shutdown()
        try await publisher.close().get()
        guard drained == total else { throw BenchError("the subscriber drained \(drained) of \(total) messages") }
        return RedisRun(
            comparison: "pub/sub drain, one subscriber, 100-byte messages",
            switchboardClient: rate,
            reference: 0,
            unit: "messages/s",
            ratio: 0,
            note: "\(total) messages published by a Lua loop inside Redis; no reference tool subscribes"
        )
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
    }

    static func executable(named name: String, besides sibling: String) -> String? {
        let candidates =
            [URL(fileURLWithPath: sibling).deletingLastPathComponent().appendingPathComponent(name).path]
            + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map { "\($0)/\(name)" }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs redis-benchmark and returns requests per second by test name.
    static func runRedisBenchmark(_ executable: String, port: Int, requests: Int) throws -> [String: Double] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "-h", "127.0.0.1", "-p", "\(port)", "-q", "-P", "\(depth)", "-c", "\(connections)", "-t", "set,get", "-n", "\(requests)",
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        _ = waitForExit(process.processIdentifier, timeout: 30)
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

/// Keeps a pipeline of `depth` commands in flight on one connection until `total` were answered,
/// like redis-benchmark -P. Lives on the connection's event loop.
private final class PipelineDriver {
    let connection: RedisConnection
    let command: String
    var remaining: Int
    let depth: Int
    var errors = 0
    let promise: EventLoopPromise<Int>

    private init(connection: RedisConnection, command: String, total: Int, depth: Int) {
        self.connection = connection
        self.command = command
        self.remaining = total
        self.depth = depth
        self.promise = connection.eventLoop.makePromise()
    }

    static func run(connection: RedisConnection, command: String, total: Int, depth: Int) -> EventLoopFuture<Int> {
        let driver = PipelineDriver(connection: connection, command: command, total: total, depth: depth)
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
