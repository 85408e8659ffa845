import Foundation
import Logging
import NIOCore
import NIOPosix
import Redis

#if canImport(Glibc)
import Glibc
#endif

/// faults: `clients` authenticated clients round-robin over 3 nodes, each in its channel room (rooms span the
/// nodes); the backend emits a numbered tick to every room every `tick` through node 0's API. Then, one after
/// another: node 2 is SIGKILLed (its clients come back on the others after 0.5–1.5 s), Redis is paused with
/// SIGSTOP for `pause` seconds, and Redis is killed and started again empty on the same port. Each phase
/// reports the ticks lost to the clients it should not have touched, what the others saw, and how long
/// recovery took, as measured.
struct FaultsScenario {
    let clients: Int
    let rooms: Int
    let tick: TimeAmount
    let pause: Double
    let loop: any EventLoop
    let minter: TokenMinter
    let apiKey: String
    let launcher: Launcher

    /// Everything the clients received, by user, and what was emitted when; confined to the client loop.
    final class Ledger: @unchecked Sendable {
        var emittedAt: [UInt64] = []
        var received: [Set<Int>]
        var firstAfter: [Int: UInt64] = [:]
        var watching: (since: UInt64, users: Set<Int>)?
        var sendErrors = 0
        /// Deliveries of ticks emitted during a pause, counted when they arrive before or after its end.
        var pause: (from: UInt64, until: UInt64, users: Set<Int>)?
        var deliveredInPause = 0
        var deliveredAfterPause = 0

        init(users: Int) { self.received = Array(repeating: [], count: users) }

        func record(user: Int, sequence: Int) {
            self.received[user].insert(sequence)
            if let pause, pause.users.contains(user), sequence < self.emittedAt.count,
                self.emittedAt[sequence] >= pause.from, self.emittedAt[sequence] < pause.until
            {
                if monotonicNanoseconds() < pause.until { self.deliveredInPause += 1 } else { self.deliveredAfterPause += 1 }
            }
            if let watching, watching.users.contains(user), self.firstAfter[user] == nil,
                sequence < self.emittedAt.count, self.emittedAt[sequence] >= watching.since
            {
                self.firstAfter[user] = monotonicNanoseconds()
            }
        }

        /// Ticks emitted in `window` that `user` did not get.
        func missing(user: Int, in window: Range<UInt64>) -> Int {
            self.emittedAt.indices.filter { window.contains(self.emittedAt[$0]) && !self.received[user].contains($0) }.count
        }

        func emitted(in window: Range<UInt64>) -> Int { self.emittedAt.filter { window.contains($0) }.count }
    }

    func run(on cluster: Cluster) async throws -> FaultsRun {
        guard cluster.nodes.count == 3, let victim = cluster.nodes[2].pid, let redisPID = cluster.redisPID,
            let redisURL = cluster.redisURL
        else { throw BenchError("faults needs 3 nodes and a Redis started by the bench") }
        let redisPort = Int(redisURL.split(separator: ":").last!.split(separator: "/").first!)!
        let ledger = Ledger(users: self.clients)
        let pool = ClientPool(loop: self.loop, cluster: cluster, minter: self.minter)
        let moved = ClientPool(loop: self.loop, cluster: cluster, minter: self.minter)
        try await self.loop.submit {
            pool.onEvent = { client, payload, _ in
                if let sequence = payload.integer(after: "\"fault_seq\":") {
                    ledger.record(user: pool.users[client.index], sequence: Int(sequence))
                }
            }
            moved.onEvent = { client, payload, _ in
                if let sequence = payload.integer(after: "\"fault_seq\":") {
                    ledger.record(user: moved.users[client.index], sequence: Int(sequence))
                }
            }
        }.get()
        try await self.loop.flatSubmit { pool.open(count: self.clients, concurrency: 500) }.get()
        let opened = try await self.loop.submit { pool.ready }.get()
        guard opened == self.clients else { throw BenchError("only \(opened) of \(self.clients) clients joined") }
        // Client i is on node i % 3.
        let node0 = (0..<self.clients).filter { $0 % 3 == 0 }
        let node1 = (0..<self.clients).filter { $0 % 3 == 1 }
        let victims = (0..<self.clients).filter { $0 % 3 == 2 }

        // The backend's ticks, through node 0's API (the node no fault kills).
        var connections: [HTTPConnection] = []
        for _ in 0..<4 {
            connections.append(try await HTTPConnection.connect(host: cluster.nodes[0].host, port: cluster.nodes[0].port, on: self.loop).get())
        }
        let api = connections
        let authorization = "Bearer \(self.apiKey)"
        let ticker = try await self.loop.submit {
            self.loop.scheduleRepeatedTask(initialDelay: .zero, delay: self.tick) { _ in
                let sequence = ledger.emittedAt.count
                ledger.emittedAt.append(monotonicNanoseconds())
                for room in 0..<self.rooms {
                    let body = ByteBuffer(
                        string: #"{"event":"fault:tick","to":{"room":"channel:c\#(room)"},"args":[{"fault_seq":\#(sequence)}]}"#
                    )
                    api[room % api.count].send(method: .POST, path: "/api/v1/emit", authorization: authorization, body: body) {
                        status,
                        _ in
                        if status != 200 { ledger.sendErrors += 1 }
                    }
                }
            }
        }.get()
        defer { ticker.cancel() }
        let settle = TimeAmount.seconds(2)
        try await Task.sleep(for: .seconds(3))
        var phases: [FaultPhase] = []

        // 1. SIGKILL node 2: its clients come back on nodes 0 and 1.
        Progress.update("  faults: SIGKILL node 2 under load")
        let killedAt = monotonicNanoseconds()
        kill(victim, SIGKILL)
        try await self.loop.submit { ledger.watching = (killedAt, Set(victims)) }.get()
        let delays = victims.map { _ in TimeAmount.milliseconds(Int64.random(in: 500...1500)) }
        try await self.loop.flatSubmit { moved.reconnect(count: victims.count, over: [0, 1], delays: delays, users: victims) }.get()
        let victimID = "ench02"
        var nodeGoneAt: UInt64?
        var sessionsGoneAt: UInt64?
        let reapDeadline = ContinuousClock.now + .seconds(30)
        while (nodeGoneAt == nil || sessionsGoneAt == nil), ContinuousClock.now < reapDeadline {
            let (nodes, sessions) = try await self.registry(port: redisPort)
            let now = monotonicNanoseconds()
            if nodeGoneAt == nil, !nodes.contains(victimID) { nodeGoneAt = now }
            if sessionsGoneAt == nil, !sessions.contains(where: { $0.hasPrefix(victimID) }) { sessionsGoneAt = now }
            try await Task.sleep(for: .milliseconds(250))
        }
        try await Task.sleep(for: .seconds(3))
        let killEnd = monotonicNanoseconds()
        let (movedReady, movedFirst, survivorsLost, killEmitted, movedMissed) = try await self.loop.submit {
            let window = killedAt..<(killEnd - UInt64(settle.nanoseconds))
            let survivorsLost = (node0 + node1).map { ledger.missing(user: $0, in: window) }.reduce(0, +)
            let firsts = victims.compactMap { ledger.firstAfter[$0] }.map { Double($0 - killedAt) / 1e9 }.sorted()
            let missed = victims.map { ledger.missing(user: $0, in: window) }.reduce(0, +)
            return (moved.ready, firsts, survivorsLost, ledger.emitted(in: window), missed)
        }.get()
        phases.append(
            FaultPhase(
                fault: "SIGKILL one of 3 nodes",
                clients: self.clients,
                survivors: node0.count + node1.count,
                ticksEmitted: killEmitted,
                deliveriesExpectedBySurvivors: killEmitted * (node0.count + node1.count),
                lostToSurvivors: survivorsLost,
                affected: victims.count,
                affectedRecovered: movedReady,
                lostToAffected: movedMissed,
                recoverySeconds: movedFirst.last ?? -1,
                recoveryMedianSeconds: movedFirst.isEmpty ? -1 : movedFirst[movedFirst.count / 2],
                notes: [
                    "node out of the node set after \(format(nodeGoneAt, since: killedAt)) s",
                    "its sessions out of SESSION_POOL after \(format(sessionsGoneAt, since: killedAt)) s",
                    "\(movedReady) of \(victims.count) moved clients reconnected; each got ticks again within the recovery time",
                ]
            )
        )

        // 2. Redis paused: local delivery on node 0 must go on; /ready must say not ready.
        Progress.update("  faults: Redis SIGSTOP for \(self.pause) s")
        let stoppedAt = monotonicNanoseconds()
        try await self.loop.submit { ledger.pause = (stoppedAt, .max, Set(node0)) }.get()
        kill(redisPID, SIGSTOP)
        try await Task.sleep(for: .seconds(min(3, self.pause / 2)))
        var readyAnswers: [Int?] = []
        for node in cluster.nodes.prefix(2) {
            readyAnswers.append(try? await HTTPConnection.get(host: node.host, port: node.port, path: "/ready"))
        }
        let readyDuring = readyAnswers
        try await Task.sleep(for: .seconds(max(0, self.pause - min(3, self.pause / 2))))
        let resumedAt = monotonicNanoseconds()
        try await self.loop.submit {
            ledger.watching = (resumedAt, Set(node1))
            ledger.firstAfter = [:]
            ledger.pause?.until = resumedAt
        }.get()
        kill(redisPID, SIGCONT)
        let readyAgain = try await self.waitReady(cluster.nodes.prefix(2), since: resumedAt)
        try await Task.sleep(for: .seconds(4))
        let pauseEnd = monotonicNanoseconds()
        let pausedPhase = try await self.loop.submit {
            let during = stoppedAt..<resumedAt
            let local = node0.map { ledger.missing(user: $0, in: during) }.reduce(0, +)
            let remote = node1.map { ledger.missing(user: $0, in: during) }.reduce(0, +)
            let after = resumedAt..<(pauseEnd - UInt64(settle.nanoseconds))
            let lostAfter = (0..<self.clients).map { ledger.missing(user: $0, in: after) }.reduce(0, +)
            let firsts = node1.compactMap { ledger.firstAfter[$0] }.map { Double($0 - resumedAt) / 1e9 }.sorted()
            let emitted = ledger.emitted(in: during)
            return FaultPhase(
                fault: "Redis SIGSTOP \(Int(self.pause)) s, then SIGCONT",
                clients: self.clients,
                survivors: node0.count,
                ticksEmitted: emitted,
                deliveriesExpectedBySurvivors: emitted * node0.count,
                lostToSurvivors: local,
                affected: node1.count,
                affectedRecovered: node1.count - node1.filter { ledger.firstAfter[$0] == nil }.count,
                lostToAffected: remote,
                recoverySeconds: firsts.last ?? -1,
                recoveryMedianSeconds: firsts.isEmpty ? -1 : firsts[firsts.count / 2],
                notes: [
                    "/ready during the pause: \(readyDuring.map { $0.map(String.init) ?? "no answer" }.joined(separator: ", "))",
                    "node 0's clients got \(ledger.deliveredInPause) of their \(emitted * node0.count) pause-time ticks during the pause, "
                        + "\(ledger.deliveredAfterPause) only after it",
                    "/ready 200 again \(String(format: "%.2f", readyAgain)) s after SIGCONT",
                    "survivors: node 0's clients, served by the emitting node itself; affected: node 1's, reached through Redis",
                    "ticks lost by anyone after the pause: \(lostAfter)",
                ]
            )
        }.get()
        phases.append(pausedPhase)

        // 3. Redis restarted empty on the same port.
        Progress.update("  faults: Redis killed and restarted empty")
        let restartedAt = monotonicNanoseconds()
        kill(redisPID, SIGKILL)
        _ = waitForExit(redisPID, timeout: 5)
        try await Task.sleep(for: .seconds(1))
        try self.launcher.restartRedis(port: redisPort)
        let upAt = monotonicNanoseconds()
        try await self.loop.submit { ledger.watching = (upAt, Set(node1)); ledger.firstAfter = [:] }.get()
        let readyAfterRestart = try await self.waitReady(cluster.nodes.prefix(2), since: upAt)
        var poolBack: Double?
        let connected = node0.count + node1.count + movedReady
        let poolDeadline = ContinuousClock.now + .seconds(15)
        var poolCount = 0
        while poolBack == nil, ContinuousClock.now < poolDeadline {
            poolCount = (try? await self.registry(port: redisPort).sessions.count) ?? 0
            if poolCount >= connected { poolBack = Double(monotonicNanoseconds() - upAt) / 1e9 }
            try await Task.sleep(for: .milliseconds(250))
        }
        let poolRestored = poolBack
        let poolNote =
            "SESSION_POOL "
            + (poolBack.map { "held every connected session again after \(String(format: "%.2f", $0)) s" }
                ?? "held \(poolCount) of \(connected) connected sessions 15 s after Redis came back")
        // At least 3 s more, and a window of 5 s from 2 s after Redis came back, whatever the pools took.
        let windowEnd = upAt + 2_000_000_000 + 5_000_000_000 + UInt64(settle.nanoseconds)
        let now = monotonicNanoseconds()
        try await Task.sleep(for: .nanoseconds(Int64(max(3_000_000_000, windowEnd > now ? windowEnd - now : 0))))
        let restartEnd = monotonicNanoseconds()
        let restartPhase = try await self.loop.submit {
            let during = restartedAt..<upAt
            let local = node0.map { ledger.missing(user: $0, in: during) }.reduce(0, +)
            let after = (upAt + 2_000_000_000)..<(restartEnd - UInt64(settle.nanoseconds))
            let lostAfter = (0..<self.clients).map { ledger.missing(user: $0, in: after) }.reduce(0, +)
            let firsts = node1.compactMap { ledger.firstAfter[$0] }.map { Double($0 - upAt) / 1e9 }.sorted()
            let emitted = ledger.emitted(in: during)
            return FaultPhase(
                fault: "Redis killed, restarted empty 1 s later",
                clients: self.clients,
                survivors: node0.count,
                ticksEmitted: emitted,
                deliveriesExpectedBySurvivors: emitted * node0.count,
                lostToSurvivors: local,
                affected: node1.count,
                affectedRecovered: node1.count - node1.filter { ledger.firstAfter[$0] == nil }.count,
                lostToAffected: node1.map { ledger.missing(user: $0, in: during) }.reduce(0, +),
                recoverySeconds: firsts.last ?? -1,
                recoveryMedianSeconds: firsts.isEmpty ? -1 : firsts[firsts.count / 2],
                notes: [
                    "/ready 200 again \(String(format: "%.2f", readyAfterRestart)) s after Redis came back",
                    poolNote,
                    "ticks lost by anyone from 2 s after Redis came back: \(lostAfter)",
                ],
                sessionPoolRestoredSeconds: poolRestored
            )
        }.get()
        phases.append(restartPhase)
        let sendErrors = try await self.loop.submit { ledger.sendErrors }.get()
        try await self.loop.flatSubmit { pool.closeAll().and(moved.closeAll()).map { _ in } }.get()
        for connection in api { connection.close() }
        return FaultsRun(clients: self.clients, nodes: 3, rooms: self.rooms, tickMillis: Int(self.tick.nanoseconds / 1_000_000),
                         emitErrors: sendErrors, phases: phases)
    }

    /// The node set and the sids in SESSION_POOL, read through a fresh connection (Redis may have restarted).
    private func registry(port: Int) async throws -> (nodes: Set<String>, sessions: [String]) {
        var logger = Logger(label: "switchboard-bench.faults")
        logger.logLevel = .critical
        let connection = try await RedisConnection.connect(
            configuration: RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port)),
            eventLoop: self.loop,
            logger: logger
        )
        defer { _ = connection.close() }
        let nodes = try await connection.execute(RESPCommand("SMEMBERS", "switchboard:nodes")).array?.compactMap(\.string) ?? []
        let sessions = try await connection.execute(RESPCommand("HKEYS", "open-webui:session_pool")).array?.compactMap(\.string) ?? []
        return (Set(nodes), sessions)
    }

    /// Seconds from `since` until every node answers /ready 200 (or 30 s).
    private func waitReady(_ nodes: ArraySlice<NodeEndpoint>, since: UInt64) async throws -> Double {
        let deadline = ContinuousClock.now + .seconds(30)
        var waiting = Array(nodes)
        while !waiting.isEmpty, ContinuousClock.now < deadline {
            var still: [NodeEndpoint] = []
            for node in waiting where (try? await HTTPConnection.get(host: node.host, port: node.port, path: "/ready")) != 200 {
                still.append(node)
            }
            waiting = still
            if !waiting.isEmpty { try await Task.sleep(for: .milliseconds(100)) }
        }
        return Double(monotonicNanoseconds() - since) / 1e9
    }
}

private func format(_ at: UInt64?, since: UInt64) -> String {
    guard let at else { return "never (30 s)" }
    return String(format: "%.2f", Double(at - since) / 1e9)
}
