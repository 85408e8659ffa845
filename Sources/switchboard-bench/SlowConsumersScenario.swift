import Foundation
import Histogram
import NIOCore
import NIOPosix

/// slow: `clients` well-behaved clients on one node, each in one of `rooms` channel rooms, and a tick of
/// `payloadBytes` to every room every `tick` through the node's API. First the clients alone for
/// `phaseSeconds`; then `slowClients` more join the same rooms and stop reading (with a 4 KiB receive
/// buffer, so the kernel holds little for them), for another `phaseSeconds`. The node must cut each slow
/// one off at its outbound bound (`outboundBound`) while the others' latency stays what it was.
struct SlowConsumersScenario {
    let clients: Int
    let slowClients: Int
    let rooms: Int
    let tick: TimeAmount
    let payloadBytes: Int
    let outboundBound: Int
    let phaseSeconds: Double
    let loop: any EventLoop
    let minter: TokenMinter
    let apiKey: String

    /// The node's flags for this scenario.
    var nodeArguments: [String] {
        ["--max-outbound-bytes", "\(outboundBound)", "--max-payload", "\(min(outboundBound, 1_000_000))"]
    }

    /// Ticks emitted and what the well-behaved clients received of them; confined to the client loop.
    final class Ledger: @unchecked Sendable {
        var emittedAt: [UInt64] = []
        var receivedCount: [Int] = []
        var latency: [Histogram<UInt64>] = []
        /// The phase each tick belongs to (by when it was emitted), or nil between phases.
        var phaseOf: [Int?] = []
        var currentPhase: Int?
        var sendErrors = 0

        func emitted() -> Int {
            self.emittedAt.append(monotonicNanoseconds())
            self.receivedCount.append(0)
            self.phaseOf.append(self.currentPhase)
            return self.emittedAt.count - 1
        }

        func received(sequence: Int) {
            guard sequence < self.emittedAt.count else { return }
            self.receivedCount[sequence] += 1
            guard let phase = self.phaseOf[sequence] else { return }
            let now = monotonicNanoseconds()
            _ = self.latency[phase].record(now > self.emittedAt[sequence] ? (now - self.emittedAt[sequence]) / 1000 : 0)
        }

        func summary(phase: Int, clients: Int) -> SlowConsumersPhase {
            let ticks = self.phaseOf.indices.filter { self.phaseOf[$0] == phase }
            let delivered = ticks.map { self.receivedCount[$0] }.reduce(0, +)
            let histogram = self.latency[phase]
            return SlowConsumersPhase(
                ticks: ticks.count,
                expected: ticks.count * clients,
                delivered: delivered,
                p50Micros: Int(histogram.valueAtPercentile(50)),
                p99Micros: Int(histogram.valueAtPercentile(99)),
                maxMicros: Int(histogram.max)
            )
        }
    }

    func run(on cluster: Cluster) async throws -> SlowConsumersRun {
        guard let node = cluster.nodes.first, let pid = node.pid else { throw BenchError("slow needs a node started by the bench") }
        let ledger = Ledger()
        ledger.latency = [Self.histogram(), Self.histogram()]
        let pool = ClientPool(loop: self.loop, cluster: cluster, minter: self.minter)
        let slow = ClientPool(loop: self.loop, cluster: cluster, minter: self.minter)
        try await self.loop.submit {
            pool.onEvent = { _, payload, _ in
                if let sequence = payload.integer(after: "\"slow_seq\":") { ledger.received(sequence: Int(sequence)) }
            }
            slow.receiveBufferBytes = 4096
        }.get()
        try await self.loop.flatSubmit { pool.open(count: self.clients, concurrency: 500) }.get()
        guard try await self.loop.submit({ pool.ready }).get() == self.clients else {
            throw BenchError("only some of the \(self.clients) well-behaved clients joined")
        }

        var connections: [HTTPConnection] = []
        for _ in 0..<4 { connections.append(try await HTTPConnection.connect(host: node.host, port: node.port, on: self.loop).get()) }
        let api = connections
        let authorization = "Bearer \(self.apiKey)"
        let padding = String(repeating: "x", count: self.payloadBytes)
        let ticker = try await self.loop.submit {
            self.loop.scheduleRepeatedTask(initialDelay: .zero, delay: self.tick) { _ in
                let sequence = ledger.emitted()
                for room in 0..<self.rooms {
                    let body = ByteBuffer(
                        string: #"{"event":"slow:tick","to":{"room":"channel:c\#(room)"},"args":[{"slow_seq":\#(sequence),"pad":"\#(padding)"}]}"#
                    )
                    api[room % api.count].send(method: .POST, path: "/api/v1/emit", authorization: authorization, body: body) { status, _ in
                        if status != 200 { ledger.sendErrors += 1 }
                    }
                }
            }
        }.get()
        defer { ticker.cancel() }
        try await Task.sleep(for: .seconds(2))

        // 1. The well-behaved clients alone.
        Progress.update("  slow: \(self.clients) clients alone")
        try await self.loop.submit { ledger.currentPhase = 0 }.get()
        let rssAlone = try await self.peakResidentBytes(of: pid, for: self.phaseSeconds)
        try await self.loop.submit { ledger.currentPhase = nil }.get()

        // 2. Slow consumers join the same rooms and stop reading.
        Progress.update("  slow: \(self.slowClients) clients that stop reading join")
        let before = try await self.slowConsumerDisconnects(node)
        try await self.loop.flatSubmit { slow.open(count: self.slowClients, concurrency: 100, firstUser: self.clients) }.get()
        let stalled = try await self.loop.submit { () -> Int in
            for client in slow.readyClients { client.stopReading() }
            return slow.ready
        }.get()
        let stalledAt = monotonicNanoseconds()
        try await self.loop.submit { ledger.currentPhase = 1 }.get()
        var cutOff = 0
        var allCutOffSeconds: Double?
        var rssWithSlow = 0
        let phaseEnd = ContinuousClock.now + .milliseconds(Int64(self.phaseSeconds * 1000))
        while ContinuousClock.now < phaseEnd {
            rssWithSlow = max(rssWithSlow, ProcessSample.read(pid: pid)?.residentBytes ?? 0)
            cutOff = try await self.slowConsumerDisconnects(node) - before
            if allCutOffSeconds == nil, cutOff >= stalled { allCutOffSeconds = Double(monotonicNanoseconds() - stalledAt) / 1e9 }
            try await Task.sleep(for: .milliseconds(250))
        }
        try await self.loop.submit { ledger.currentPhase = nil }.get()
        ticker.cancel()
        // What was sent in the phases has arrived by now, or never will.
        try await Task.sleep(for: .seconds(2))
        let (alone, withSlow, sendErrors) = try await self.loop.submit {
            (ledger.summary(phase: 0, clients: self.clients), ledger.summary(phase: 1, clients: self.clients), ledger.sendErrors)
        }.get()
        try await self.loop.flatSubmit { pool.closeAll().and(slow.closeAll()).map { _ in } }.get()
        for connection in api { connection.close() }
        return SlowConsumersRun(
            clients: self.clients,
            slowClients: stalled,
            rooms: self.rooms,
            tickMillis: Int(self.tick.nanoseconds / 1_000_000),
            payloadBytes: self.payloadBytes,
            outboundBoundBytes: self.outboundBound,
            alone: alone,
            withSlow: withSlow,
            slowCutOff: cutOff,
            allCutOffSeconds: allCutOffSeconds,
            residentBytesAlone: rssAlone,
            residentBytesWithSlow: rssWithSlow,
            emitErrors: sendErrors
        )
    }

    private static func histogram() -> Histogram<UInt64> {
        Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
    }

    private func peakResidentBytes(of pid: Int32, for seconds: Double) async throws -> Int {
        var peak = 0
        let end = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < end {
            peak = max(peak, ProcessSample.read(pid: pid)?.residentBytes ?? 0)
            try await Task.sleep(for: .milliseconds(250))
        }
        return peak
    }

    /// The node's count of sessions closed as slow consumers, from /metrics (on a fresh connection: an idle
    /// one would be closed by the node's request-head deadline between two phases).
    private func slowConsumerDisconnects(_ node: NodeEndpoint) async throws -> Int {
        let connection = try await HTTPConnection.connect(host: node.host, port: node.port, on: self.loop).get()
        let promise = self.loop.makePromise(of: ByteBuffer?.self)
        self.loop.execute {
            connection.send(method: .GET, path: "/metrics", body: nil) { status, body in promise.succeed(status == 200 ? body : nil) }
        }
        let answer = try await promise.futureResult.get()
        self.loop.execute { connection.close() }
        guard let body = answer else { throw BenchError("/metrics did not answer") }
        return String(buffer: body).split(separator: "\n")
            .filter { $0.hasPrefix("switchboard_engineio_disconnects_total{") && $0.contains(#"reason="slow_consumer""#) }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
            .reduce(0) { $0 + Int($1) }
    }
}
