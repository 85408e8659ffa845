import Foundation
import Histogram
import NIOCore

/// connect-storm: `connections` clients as fast as the cluster accepts them, each a full
/// authenticated handshake (WebSocket upgrade, Engine.IO open, Socket.IO connect, `user-join`
/// with its token answered).
struct StormScenario {
    let connections: Int
    let concurrency: Int
    let loop: any EventLoop
    let minter: TokenMinter

    func run(on cluster: Cluster) async throws -> StormRun {
        let pool = ClientPool(loop: self.loop, cluster: cluster, minter: self.minter)
        let cpu = CPUMeter(pids: cluster.nodePIDs)
        try await self.loop.flatSubmit { pool.open(count: self.connections, concurrency: self.concurrency) }.get()
        let serverCPU = cpu.elapsed()
        let run = try await self.loop.submit {
            StormRun(
                system: cluster.kind,
                connections: self.connections,
                nodes: cluster.nodes.count,
                concurrency: self.concurrency,
                ready: pool.ready,
                failed: pool.failed,
                failures: pool.failures,
                seconds: Double(pool.lastReady - pool.firstStart) / 1e9,
                handshakesPerSecond: pool.handshakeRate,
                handshakesPerSecondPerNode: pool.handshakeRate / Double(cluster.nodes.count),
                latency: LatencySummary(pool.handshakes),
                serverCPUSeconds: serverCPU,
                serverCPUMicrosPerHandshake: pool.ready > 0 ? serverCPU * 1e6 / Double(pool.ready) : 0
            )
        }.get()
        Progress.finish(
            "  \(cluster.kind.title) connect-storm: \(run.ready)/\(self.connections) in "
                + String(format: "%.2f s, %.0f handshakes/s per node, ", run.seconds, run.handshakesPerSecondPerNode)
                + "\(run.latency.text)" + (run.failed > 0 ? ", failed \(run.failures)" : "")
        )
        try await self.loop.flatSubmit { pool.closeAll() }.get()
        return run
    }
}

/// idle: `connections` authenticated clients held on one node with heartbeats; the node's resident
/// memory grows by what each connection costs.
struct IdleScenario {
    let connections: Int
    let concurrency: Int
    let holdSeconds: Double
    let loop: any EventLoop
    let minter: TokenMinter

    func run(on cluster: Cluster) async throws -> IdleRun {
        guard let pid = cluster.nodes.first?.pid else { throw BenchError("idle needs a node the bench started") }
        let pool = ClientPool(loop: self.loop, cluster: cluster, minter: self.minter)
        // Settle the fresh node (allocator, first Redis round trips) before the reference sample.
        try await Task.sleep(for: .seconds(1))
        let before = ProcessSample.read(pid: pid)?.residentBytes ?? 0
        try await self.loop.flatSubmit { pool.open(count: self.connections, concurrency: self.concurrency, node: 0) }.get()
        let cpu = CPUMeter(pids: [pid])
        var held = 0.0
        while held < self.holdSeconds {
            try await Task.sleep(for: .seconds(1))
            held += 1
            let heldSoFar = held
            let (ready, dropped) = try await self.loop.submit { (pool.ready, pool.droppedAfterReady) }.get()
            Progress.update(
                "  \(cluster.kind.title) idle: holding \(ready - dropped) connections, \(Int(heldSoFar))/\(Int(self.holdSeconds)) s, RSS "
                    + "\((ProcessSample.read(pid: pid)?.residentBytes ?? 0) / 1_048_576) MiB"
            )
        }
        let after = ProcessSample.read(pid: pid)?.residentBytes ?? 0
        let heldSeconds = held
        let run = try await self.loop.submit {
            IdleRun(
                system: cluster.kind,
                connections: self.connections,
                ready: pool.ready,
                failed: pool.failed,
                residentBytesBefore: before,
                residentBytesAfter: after,
                bytesPerConnection: pool.ready > 0 ? Double(after - before) / Double(pool.ready) : 0,
                heldSeconds: heldSeconds,
                droppedDuringHold: pool.droppedAfterReady,
                dropReasons: pool.dropReasons,
                serverCPUSecondsDuringHold: cpu.elapsed()
            )
        }.get()
        Progress.finish(
            "  \(cluster.kind.title) idle: \(run.ready) connections held \(Int(heldSeconds)) s, "
                + String(format: "%.0f bytes RSS each", run.bytesPerConnection)
                + ", \(run.droppedDuringHold) dropped" + (run.failed > 0 ? ", \(run.failed) failed to open" : "")
        )
        try await self.loop.flatSubmit { pool.closeAll() }.get()
        return run
    }
}

/// ack: a server emits `bench-ack` with an acknowledgement to a sid and waits for the client's
/// answer, for sids on every node. The same python-socketio `AsyncServer.call` through Redis
/// drives both clusters (Switchboard serves python-socketio's pub/sub protocol); Switchboard's
/// HTTP `POST /api/v1/call` on one node to sids on the other is measured too.
struct AckScenario {
    let targets: Int
    let calls: Int
    let concurrency: Int
    let loop: any EventLoop
    let minter: TokenMinter
    let apiKey: String
    let supportDirectory: String
    let python: String
    let workDirectory: URL

    func run(on cluster: Cluster) async throws -> [AckRun] {
        let pool = ClientPool(loop: self.loop, cluster: cluster, minter: self.minter)
        try await self.loop.flatSubmit { pool.open(count: self.targets, concurrency: 100) }.get()
        let sids = try await self.loop.submit {
            pool.onEvent = { client, _, ackID in
                if let ackID { client.acknowledge(ackID, arguments: #"{"ok":true}"#) }
            }
            return pool.readyClients.map { (sid: $0.sid, port: $0.port) }
        }.get()
        guard sids.count == self.targets else { throw BenchError("only \(sids.count) of \(self.targets) ack targets joined") }
        var runs: [AckRun] = []

        guard let redisURL = cluster.redisURL else { throw BenchError("ack needs the cluster's Redis: --target-redis") }
        let sidFile = self.workDirectory.appendingPathComponent("ack-sids-\(cluster.kind.rawValue).txt")
        try sids.map(\.sid).joined(separator: "\n").write(to: sidFile, atomically: true, encoding: .utf8)
        let cpu = CPUMeter(pids: cluster.nodePIDs)
        let output = try await runPython(
            self.python,
            script: "\(self.supportDirectory)/ack_caller.py",
            arguments: [
                "--redis", redisURL, "--sids", sidFile.path, "--calls", "\(self.calls)",
                "--concurrency", "\(self.concurrency)",
            ]
        )
        var histogram = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
        for value in output["latencies_us"] as? [Int] ?? [] { _ = histogram.record(UInt64(max(0, value))) }
        let seconds = output["seconds"] as? Double ?? 0
        runs.append(
            AckRun(
                system: cluster.kind,
                via: "python-socketio AsyncServer.call through Redis",
                targets: self.targets,
                calls: self.calls,
                answered: output["answered"] as? Int ?? 0,
                failed: output["failed"] as? Int ?? 0,
                concurrency: self.concurrency,
                seconds: seconds,
                callsPerSecond: seconds > 0 ? Double(output["answered"] as? Int ?? 0) / seconds : 0,
                latency: LatencySummary(histogram),
                serverCPUSeconds: cpu.elapsed()
            )
        )
        if cluster.kind == .switchboard {
            runs.append(try await self.httpCalls(cluster: cluster, sids: sids))
        }
        for run in runs {
            Progress.finish(
                "  \(cluster.kind.title) ack via \(run.via): \(run.answered)/\(run.calls) answered, "
                    + String(format: "%.0f calls/s, ", run.callsPerSecond) + run.latency.text
            )
        }
        try await self.loop.flatSubmit { pool.closeAll() }.get()
        return runs
    }

    /// `POST /api/v1/call` on each node for the sids held by the other node.
    private func httpCalls(cluster: Cluster, sids: [(sid: String, port: Int)]) async throws -> AckRun {
        var opened: [HTTPConnection] = []
        for index in 0..<self.concurrency {
            let node = cluster.nodes[index % cluster.nodes.count]
            opened.append(try await HTTPConnection.connect(host: node.host, port: node.port, on: self.loop).get())
        }
        let connections = opened
        let cpu = CPUMeter(pids: cluster.nodePIDs)
        let promise = self.loop.makePromise(of: Void.self)
        let start = monotonicNanoseconds()
        let tally = try await self.loop.submit { () -> AckTally in
            let tally = AckTally()
            let remote = connections.map { connection in sids.filter { $0.port != connection.port }.map(\.sid) }
            func next(_ index: Int) {
                guard tally.issued < self.calls else {
                    if tally.answered + tally.failed == self.calls { promise.succeed() }
                    return
                }
                let call = tally.issued
                tally.issued += 1
                let targets = remote[index].isEmpty ? sids.map(\.sid) : remote[index]
                let body = ByteBuffer(
                    string: #"{"sid":"\#(targets[call % targets.count])","event":"bench-ack","args":[{"n":\#(call)}],"timeout":10}"#
                )
                let sent = monotonicNanoseconds()
                connections[index].send(method: .POST, path: "/api/v1/call", authorization: "Bearer \(self.apiKey)", body: body) {
                    status, _ in
                    if status == 200 {
                        tally.answered += 1
                        _ = tally.histogram.record((monotonicNanoseconds() - sent) / 1000)
                    } else {
                        tally.failed += 1
                    }
                    next(index)
                }
            }
            for index in connections.indices { next(index) }
            return tally
        }.get()
        try await promise.futureResult.get()
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        for connection in connections { self.loop.execute { connection.close() } }
        return try await self.loop.submit {
            AckRun(
                system: cluster.kind,
                via: "HTTP POST /api/v1/call to sids on the other node",
                targets: self.targets,
                calls: self.calls,
                answered: tally.answered,
                failed: tally.failed,
                concurrency: self.concurrency,
                seconds: seconds,
                callsPerSecond: Double(tally.answered) / seconds,
                latency: LatencySummary(tally.histogram),
                serverCPUSeconds: cpu.elapsed()
            )
        }.get()
    }
}

/// Counts of the HTTP calls, on the client event loop.
final class AckTally: @unchecked Sendable {
    var issued = 0
    var answered = 0
    var failed = 0
    var histogram = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
}
