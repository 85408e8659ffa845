import Foundation
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// reconnect: `clients` authenticated clients on one node; the node is SIGKILLed and every client comes back
/// on the other nodes after Socket.IO's first reconnect delay (1 s ± 50 %), sending its token in the connect
/// as the Open WebUI front end does, then `user-join`. The bench's backend logs every call: how many per second
/// reach it, and when the last user has its channels again (recovered). Run with the node's backend gate and
/// without it, in the same invocation.
struct ReconnectScenario {
    let clients: Int
    let gate: String
    let loop: any EventLoop
    let minter: TokenMinter
    let backend: BenchBackend
    let recoveryTimeout: Double

    func run(on cluster: Cluster) async throws -> ReconnectRun {
        guard cluster.nodes.count >= 2, let victim = cluster.nodes[0].pid else {
            throw BenchError("reconnect needs two nodes or more, started by the bench")
        }
        let before = ClientPool(loop: self.loop, cluster: cluster, minter: self.minter)
        try await self.loop.flatSubmit { before.open(count: self.clients, concurrency: 500, node: 0) }.get()
        let opened = try await self.loop.submit { before.ready }.get()
        guard opened == self.clients else { throw BenchError("only \(opened) of \(self.clients) clients joined node 0") }
        try await Task.sleep(for: .milliseconds(500))
        _ = self.backend.takeLog()

        let killedAt = monotonicNanoseconds()
        kill(victim, SIGKILL)
        let delays = (0..<self.clients).map { _ in TimeAmount.milliseconds(Int64.random(in: 500...1500)) }
        let after = ClientPool(loop: self.loop, cluster: cluster, minter: self.minter)
        let survivors = Array(1..<cluster.nodes.count)
        try await self.loop.flatSubmit { after.reconnect(count: self.clients, over: survivors, delays: delays) }.get()

        // Recovered once every user's channels were answered again: the last step of its user-join.
        var calls: [BenchBackend.Call] = []
        var served = Set<Int>()
        let deadline = ContinuousClock.now + .seconds(self.recoveryTimeout)
        while served.count < self.clients, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            let taken = self.backend.takeLog()
            calls += taken
            for call in taken where call.path == .channels { served.insert(call.user) }
            Progress.update("  reconnect (gate \(self.gate)): \(served.count)/\(self.clients) users have their channels again")
        }
        let recovered = served.count == self.clients
        calls.removeAll { $0.at < killedAt }
        let lastCall = calls.map(\.at).max() ?? killedAt
        let recoverySeconds = Double(lastCall - killedAt) / 1e9
        // Calls per 100 ms from the kill; the peak is the busiest second (ten consecutive buckets).
        var timeline = Array(repeating: 0, count: Int(recoverySeconds * 10) + 1)
        for call in calls { timeline[Int((call.at - killedAt) / 100_000_000)] += 1 }
        var peak = 0
        for start in timeline.indices { peak = max(peak, timeline[start..<min(start + 10, timeline.count)].reduce(0, +)) }
        let firstCall = calls.map(\.at).min() ?? killedAt
        let busySeconds = Double(lastCall - firstCall) / 1e9
        let (reconnected, failed, failures, joinsRefused) = try await self.loop.submit {
            (after.ready, after.failed, after.failures, after.joinsRefused)
        }.get()
        let run = ReconnectRun(
            system: cluster.kind,
            gate: self.gate,
            clients: self.clients,
            nodes: cluster.nodes.count,
            reconnected: reconnected,
            failed: failed,
            failures: failures,
            joinsAnsweredEmpty: joinsRefused,
            backendCalls: calls.count,
            userLookups: calls.filter { $0.path == .user }.count,
            peakCallsPerSecond: Double(peak),
            meanCallsPerSecond: busySeconds > 0 ? Double(calls.count) / busySeconds : Double(calls.count),
            recovered: recovered,
            recoverySeconds: recoverySeconds,
            timeline: timeline
        )
        Progress.finish(
            "  reconnect (gate \(self.gate)): \(reconnected)/\(self.clients) clients back on \(survivors.count) nodes, "
                + (recovered ? String(format: "all users recovered after %.1f s", recoverySeconds) : "\(served.count) users recovered")
                + String(format: "; backend %d calls, peak %.0f/s, mean %.0f/s", calls.count, run.peakCallsPerSecond, run.meanCallsPerSecond)
                + (joinsRefused > 0 ? "; \(joinsRefused) user-joins answered empty, retried by the node" : "")
        )
        try await self.loop.flatSubmit { after.closeAll() }.get()
        try await self.loop.flatSubmit { before.closeAll() }.get()
        return run
    }
}
