import Foundation
import Histogram
import NIOCore
import NIOPosix

struct FanoutOptions: Sendable {
    var clients: Int
    var rooms: Int
    var publishers: Int
    var stepSeconds: Double
    /// Publishes per second of the first step; each next step multiplies it by `growth`.
    var startRate: Double
    var growth: Double
    var maxSteps: Int
    var latencyBoundMillis: Double
    var drainSeconds: Double
}

/// Where a fan-out message comes from.
enum FanoutOrigin: Sendable {
    /// A client's `events:channel` typing event, relayed by the contract to the channel's room.
    case client
    /// The backend: Switchboard's `POST /api/v1/emit`, or for the baseline a python-socketio
    /// `AsyncRedisManager(write_only=True)` emitter process.
    case backend

    var name: String { self == .client ? "client" : "backend" }
}

/// Sends at a fixed rate and counts every delivery, on the client event loop.
///
/// Each message carries `bench_t`, the CLOCK_MONOTONIC time it was due to be sent (not when the
/// loop got round to it), so a stalled sender shows up as latency instead of hiding it.
final class FanoutMeter: @unchecked Sendable {
    let loop: any EventLoop
    let rooms: Int
    var members: [Int]
    var histogram = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
    var delivered = 0
    var stale = 0
    var timeline: [Int] = []
    var stepStart: UInt64 = 0
    var published = 0
    var expected = 0
    var target = 0
    var rate = 0.0
    var sendErrors = 0
    private var timer: RepeatedTask?
    var send: ((_ sequence: Int, _ dueAt: UInt64) -> Bool)?
    var flush: (() -> Void)?

    init(loop: any EventLoop, rooms: Int, members: [Int]) {
        self.loop = loop
        self.rooms = rooms
        self.members = members
    }

    func received(_ payload: UnsafeRawBufferPointer) {
        guard let sent = payload.integer(after: "\"bench_t\":") else { return }
        guard sent >= self.stepStart else {
            self.stale += 1
            return
        }
        let now = monotonicNanoseconds()
        _ = self.histogram.record(now > sent ? (now - sent) / 1000 : 0)
        self.delivered += 1
        let bucket = Int((now - self.stepStart) / 100_000_000)
        if bucket < 10_000 {
            while self.timeline.count <= bucket { self.timeline.append(0) }
            self.timeline[bucket] += 1
        }
    }

    /// Starts a step: sending (when `send` is set) at `rate` per second for `seconds`.
    func start(rate: Double, seconds: Double) {
        self.histogram.reset()
        self.delivered = 0
        self.stale = 0
        self.timeline = []
        self.published = 0
        self.expected = 0
        self.sendErrors = 0
        self.rate = rate
        self.target = Int(rate * seconds)
        self.stepStart = monotonicNanoseconds()
        guard self.send != nil else { return }
        self.timer = self.loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { [unowned self] _ in
            self.tick()
        }
    }

    private func tick() {
        let elapsed = monotonicNanoseconds() - self.stepStart
        let due = min(self.target, Int(Double(elapsed) * self.rate / 1e9) + 1)
        guard due > self.published, let send = self.send else { return }
        while self.published < due {
            let sequence = self.published
            let dueAt = self.stepStart + UInt64(Double(sequence) * 1e9 / self.rate)
            guard send(sequence, dueAt) else { break }
            self.expected += self.members[sequence % self.rooms]
            self.published += 1
        }
        self.flush?()
    }

    func stopSending() {
        self.timer?.cancel()
        self.timer = nil
    }

    /// Expected deliveries for `count` messages sent to rooms round-robin from the first.
    func expectedDeliveries(forMessages count: Int) -> Int {
        (0..<self.rooms).reduce(0) { total, room in
            total + self.members[room] * (count / self.rooms + (room < count % self.rooms ? 1 : 0))
        }
    }
}

struct FanoutScenario {
    let options: FanoutOptions
    let origin: FanoutOrigin
    let loop: any EventLoop
    let minter: TokenMinter
    let apiKey: String
    let supportDirectory: String
    let python: String

    func run(on cluster: Cluster) async throws -> FanoutRun {
        let pool = ClientPool(loop: self.loop, cluster: cluster, minter: self.minter)
        try await self.loop.flatSubmit { pool.open(count: self.options.clients, concurrency: 200) }.get()
        let (ready, failures) = try await self.loop.submit { (pool.ready, pool.failures) }.get()
        guard ready == self.options.clients else {
            throw BenchError("\(cluster.kind.title): only \(ready) of \(self.options.clients) clients joined: \(failures)")
        }
        Progress.finish("  \(cluster.kind.title): \(ready) clients joined over \(cluster.nodes.count) nodes")

        let rooms = self.options.rooms
        var members = Array(repeating: 0, count: rooms)
        for index in 0..<self.options.clients { members[index % rooms] += 1 }
        let meter = FanoutMeter(loop: self.loop, rooms: rooms, members: members)
        let via: String
        var apiConnections: [HTTPConnection] = []
        switch (self.origin, cluster.kind) {
        case (.client, _):
            via = "client emits events:channel typing; the relay fans it out to channel:<id>"
            try await self.loop.submit {
                pool.onEvent = { _, payload, _ in meter.received(payload) }
                // Publisher p is client p: user u<p>, member of c<p % rooms>; its messages go round the rooms.
                let publishers = Array(pool.clients.prefix(max(rooms, self.options.publishers)))
                // The publishers of room r are the clients r, r + rooms, …
                let publishersOfRoom = (0..<rooms).map { room in
                    stride(from: room, to: publishers.count, by: rooms).map { publishers[$0] }
                }
                meter.send = { sequence, dueAt in
                    let room = sequence % rooms
                    let candidates = publishersOfRoom[room]
                    let client = candidates[(sequence / rooms) % candidates.count]
                    client.emit(
                        #""events:channel",{"channel_id":"c\#(room)","message_id":"m\#(sequence)","data":{"type":"typing","data":{"typing":true,"bench_t":\#(dueAt)}}}"#,
                        flush: false
                    )
                    return true
                }
                meter.flush = { for client in publishers { client.flush() } }
            }.get()
        case (.backend, .switchboard):
            via = "POST /api/v1/emit to channel:<id>, spread over the nodes"
            for node in cluster.nodes {
                for _ in 0..<4 {
                    apiConnections.append(try await HTTPConnection.connect(host: node.host, port: node.port, on: self.loop).get())
                }
            }
            let connections = apiConnections
            let authorization = "Bearer \(self.apiKey)"
            try await self.loop.submit {
                pool.onEvent = { _, payload, _ in meter.received(payload) }
                meter.send = { sequence, dueAt in
                    let connection = connections[sequence % connections.count]
                    // An API that cannot keep up shows as a publisher short of its rate.
                    guard connection.queued < 256 else { return false }
                    let room = sequence % rooms
                    let body = ByteBuffer(
                        string: #"{"event":"events:channel","to":{"room":"channel:c\#(room)"},"args":[{"channel_id":"c\#(room)","message_id":"m\#(sequence)","data":{"type":"typing","data":{"typing":true,"bench_t":\#(dueAt)}}}]}"#
                    )
                    connection.send(method: .POST, path: "/api/v1/emit", authorization: authorization, body: body) { status, _ in
                        if status != 200 { meter.sendErrors += 1 }
                    }
                    return true
                }
            }.get()
        case (.backend, .baseline):
            via = "python-socketio AsyncRedisManager(write_only=True).emit to channel:<id>"
            try await self.loop.submit { pool.onEvent = { _, payload, _ in meter.received(payload) } }.get()
        }

        let idleCPU = CPUMeter(pids: cluster.nodePIDs)
        try await Task.sleep(for: .seconds(2))
        let idleRate = idleCPU.elapsed() / 2

        // One unrecorded step at the first rate: first-message costs (caches, allocators, lazy setup
        // in either relay) are not a property of any rate.
        _ = try await self.step(rate: self.options.startRate, meter: meter, cluster: cluster, idleCPUPerSecond: idleRate)

        var steps: [FanoutStep] = []
        var rate = self.options.startRate
        for _ in 0..<self.options.maxSteps {
            let step = try await self.step(rate: rate, meter: meter, cluster: cluster, idleCPUPerSecond: idleRate)
            steps.append(step)
            Progress.finish(
                "  \(cluster.kind.title) \(self.origin.name) fan-out \(Int(rate)) msg/s: "
                    + "\(Int(step.deliveriesPerSecond)) deliveries/s, \(step.latency.text), "
                    + String(format: "%.2f µs CPU/delivery, ", step.serverCPUMicrosPerDelivery) + step.verdict
            )
            let droppedClients = try await self.loop.submit { pool.droppedAfterReady }.get()
            guard step.passed, droppedClients == 0 else { break }
            rate *= self.options.growth
        }
        for connection in apiConnections { self.loop.execute { connection.close() } }
        try await self.loop.flatSubmit { pool.closeAll() }.get()
        return FanoutRun(
            system: cluster.kind,
            origin: self.origin.name,
            via: via,
            clients: self.options.clients,
            nodes: cluster.nodes.count,
            rooms: rooms,
            publishers: self.origin == .client ? max(rooms, self.options.publishers) : 1,
            stepSeconds: self.options.stepSeconds,
            latencyBoundMillis: self.options.latencyBoundMillis,
            idleServerCPUPerSecond: idleRate,
            steps: steps
        )
    }

    private func step(rate: Double, meter: FanoutMeter, cluster: Cluster, idleCPUPerSecond: Double) async throws -> FanoutStep {
        let began = ContinuousClock.now
        let serverCPU = CPUMeter(pids: cluster.nodePIDs)
        let redisCPU = CPUMeter(pids: cluster.redisPID.map { [$0] } ?? [])
        let benchCPU = CPUMeter(pids: [getpid()])
        try await self.loop.submit { meter.start(rate: rate, seconds: self.options.stepSeconds) }.get()
        var published: Int
        var expected: Int
        if self.origin == .backend, cluster.kind == .baseline {
            let emitted = try await self.pythonEmitter(cluster: cluster, rate: rate)
            published = emitted
            expected = meter.expectedDeliveries(forMessages: emitted)
        } else {
            try await Task.sleep(for: .seconds(self.options.stepSeconds))
            (published, expected) = try await self.loop.submit {
                meter.stopSending()
                return (meter.published, meter.expected)
            }.get()
        }
        let sendingEnded = ContinuousClock.now
        let drainDeadline = sendingEnded + .seconds(self.options.drainSeconds)
        while ContinuousClock.now < drainDeadline {
            let delivered = try await self.loop.submit { meter.delivered }.get()
            if delivered >= expected { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let (histogram, delivered, timeline, sendErrors) = try await self.loop.submit {
            (meter.histogram, meter.delivered, meter.timeline, meter.sendErrors)
        }.get()
        let cpu = serverCPU.elapsed()
        let aboveIdle = max(0, cpu - idleCPUPerSecond * seconds(ContinuousClock.now - began))
        let latency = LatencySummary(histogram)
        let target = Int(rate * self.options.stepSeconds)
        let lost = max(0, expected - delivered)
        var verdict: [String] = []
        if Double(latency.p99) > self.options.latencyBoundMillis * 1000 {
            verdict.append("p99 over \(Int(self.options.latencyBoundMillis)) ms")
        }
        if lost > 0 { verdict.append("\(lost) lost") }
        if sendErrors > 0 { verdict.append("\(sendErrors) emits refused") }
        if Double(published) < Double(target) * 0.98 { verdict.append("sent \(published) of \(target)") }
        return FanoutStep(
            offeredPublishesPerSecond: rate,
            published: published,
            expectedDeliveries: expected,
            delivered: delivered,
            lost: lost,
            duplicates: max(0, delivered - expected),
            seconds: self.options.stepSeconds,
            deliveriesPerSecond: Double(delivered) / self.options.stepSeconds,
            latency: latency,
            serverCPUSeconds: cpu,
            serverCPUMicrosPerDelivery: delivered > 0 ? cpu * 1e6 / Double(delivered) : 0,
            serverCPUMicrosPerDeliveryAboveIdle: delivered > 0 ? aboveIdle * 1e6 / Double(delivered) : 0,
            redisCPUSeconds: redisCPU.elapsed(),
            benchCPUSeconds: benchCPU.elapsed(),
            passed: verdict.isEmpty,
            verdict: verdict.isEmpty ? "ok" : verdict.joined(separator: "; "),
            timeline: timeline
        )
    }

    /// The baseline's backend path: a python-socketio write-only manager publishing through Redis.
    private func pythonEmitter(cluster: Cluster, rate: Double) async throws -> Int {
        guard let redisURL = cluster.redisURL else { throw BenchError("the python emitter needs the cluster's Redis: --target-redis") }
        let output = try await runPython(
            self.python,
            script: "\(self.supportDirectory)/redis_emitter.py",
            arguments: [
                "--redis", redisURL, "--rate", "\(rate)", "--seconds", "\(self.options.stepSeconds)",
                "--rooms", "\(self.options.rooms)",
            ]
        )
        guard let published = output["published"] as? Int else {
            throw BenchError("the python emitter printed no count: \(output)")
        }
        return published
    }
}

/// Runs a support script and parses the JSON object it prints last.
func runPython(_ python: String, script: String, arguments: [String]) async throws -> [String: Any] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: resolveExecutable(python))
    process.arguments = [script] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = await Task.detached { pipe.fileHandleForReading.readDataToEndOfFile() }.value
    _ = waitForExit(process.processIdentifier, timeout: 30)
    guard
        let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    else {
        throw BenchError("\(script) printed no result")
    }
    return object
}
