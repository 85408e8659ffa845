import RedisTestSupport
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import Redis
import Testing

@testable import Presence

/// A lock in memory, on the test's loop, that the test can steal or expire.
final class FakeLock: PresenceSweepLock {
    let eventLoop: any EventLoop
    let holder = NIOLockedValueBox<String?>(nil)
    let failing = NIOLockedValueBox(false)

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    private func answer(_ body: (inout String?) -> Bool) -> EventLoopFuture<Bool> {
        if self.failing.withLockedValue({ $0 }) {
            return self.eventLoop.makeFailedFuture(RedisError(code: .connectionUnavailable, message: "down"))
        }
        return self.eventLoop.makeSucceededFuture(self.holder.withLockedValue(body))
    }

    func acquire(owner: String, ttl: Int) -> EventLoopFuture<Bool> {
        self.answer { holder in
            guard holder == nil else { return false }
            holder = owner
            return true
        }
    }

    func renew(owner: String, ttl: Int) -> EventLoopFuture<Bool> {
        self.answer { $0 == owner }
    }

    func release(owner: String) -> EventLoopFuture<Bool> {
        self.answer { holder in
            guard holder == owner else { return false }
            holder = nil
            return true
        }
    }
}

/// A store whose sweeps can fail or hang, around an in-memory store.
final class FlakyStore: PresenceStore {
    let inner: InMemoryPresenceStore
    let failing = NIOLockedValueBox(false)
    /// When set, the next usage sweep waits for this promise.
    let hold = NIOLockedValueBox<EventLoopPromise<Void>?>(nil)

    init(inner: InMemoryPresenceStore) {
        self.inner = inner
    }

    private func failIfNeeded<T>(_ body: () -> EventLoopFuture<T>) -> EventLoopFuture<T> {
        if self.failing.withLockedValue({ $0 }) {
            return self.inner.eventLoop.makeFailedFuture(RedisError(code: .connectionClosed, message: "gone"))
        }
        return body()
    }

    func addSession(sid: String, userID: String, userJSON: String, now: Int) -> EventLoopFuture<Void> {
        self.inner.addSession(sid: sid, userID: userID, userJSON: userJSON, now: now)
    }
    func touchSession(sid: String, now: Int) -> EventLoopFuture<Bool> { self.inner.touchSession(sid: sid, now: now) }
    func setSessionMember(sid: String, name: String, json: String) -> EventLoopFuture<Bool> {
        self.inner.setSessionMember(sid: sid, name: name, json: json)
    }
    func allSessions() -> EventLoopFuture<[String]> { self.inner.allSessions() }
    func recordUsage(sid: String, model: String, now: Int) -> EventLoopFuture<Void> {
        self.inner.recordUsage(sid: sid, model: model, now: now)
    }
    func removeSession(sid: String) -> EventLoopFuture<SessionRemoval> { self.inner.removeSession(sid: sid) }
    func removeSessions(withPrefix prefix: String) -> EventLoopFuture<Int> {
        self.inner.removeSessions(withPrefix: prefix)
    }
    func session(sid: String) -> EventLoopFuture<String?> { self.inner.session(sid: sid) }
    func sessions(ofUser userID: String) -> EventLoopFuture<[String]> { self.inner.sessions(ofUser: userID) }
    func usersOnline() -> EventLoopFuture<[String]> { self.inner.usersOnline() }
    func modelsInUse() -> EventLoopFuture<[String]> { self.inner.modelsInUse() }

    func sweepUsage(now: Int, maxAge: Int) -> EventLoopFuture<UsageSweep> {
        self.failIfNeeded {
            if let hold = self.hold.withLockedValue({ value in
                defer { value = nil }
                return value
            }) {
                return hold.futureResult.flatMap { self.inner.sweepUsage(now: now, maxAge: maxAge) }
            }
            return self.inner.sweepUsage(now: now, maxAge: maxAge)
        }
    }

    func sweepSessions(now: Int, maxAge: Int) -> EventLoopFuture<[String]> {
        self.failIfNeeded { self.inner.sweepSessions(now: now, maxAge: maxAge) }
    }
}

/// A sweeper on an `EmbeddedEventLoop` whose clock follows the loop's virtual time from epoch second 100.
struct EmbeddedSweeper {
    let loop = EmbeddedEventLoop()
    let store: FlakyStore
    let lock: FakeLock?
    let sweeper: PresenceSweeper
    let outcomes = NIOLockedValueBox<[PresenceSweeper.Outcome]>([])
    let logs: @Sendable () -> [RecordingLogHandler.Entry]

    init(withLock: Bool) {
        let loop = self.loop
        self.store = FlakyStore(inner: InMemoryPresenceStore(eventLoop: loop))
        self.lock = withLock ? FakeLock(eventLoop: loop) : nil
        let (logger, logs) = recordingLogger()
        self.logs = logs
        let outcomes = self.outcomes
        self.sweeper = PresenceSweeper(
            store: self.store,
            lock: self.lock,
            nodeID: "node-1",
            eventLoop: loop,
            clock: { 100 + Int(loop.now.uptimeNanoseconds / 1_000_000_000) },
            logger: logger,
            onTick: { outcome in outcomes.withLockedValue { $0.append(outcome) } }
        )
    }

    /// Advances virtual time and returns the outcomes of the ticks that ran meanwhile.
    func advance(seconds: Int64) -> [PresenceSweeper.Outcome] {
        let before = self.outcomes.withLockedValue { $0.count }
        self.loop.advanceTime(by: .seconds(seconds))
        return self.outcomes.withLockedValue { Array($0[before...]) }
    }

    func count(_ level: Logger.Level, containing text: String) -> Int {
        self.logs().filter { $0.level == level && $0.message.contains(text) }.count
    }

    /// Runs the loop's pending work, then the future's result: never blocks (an embedded loop does not run by
    /// itself), failing if the future is still pending.
    func wait<T: Sendable>(_ future: EventLoopFuture<T>) throws -> T {
        self.loop.run()
        let result = NIOLockedValueBox<Result<T, any Error>?>(nil)
        future.whenComplete { value in result.withLockedValue { $0 = value } }
        return try #require(result.withLockedValue { $0 }).get()
    }
}

@Suite("Presence sweeper", .timeLimit(.minutes(1)))
struct PresenceSweeperTests {
    @Test("alone (no lock): sweeps usage every 3 s and sessions every 30 s, by the injected clock")
    func schedulingWithoutLock() throws {
        let fixture = EmbeddedSweeper(withLock: false)
        try fixture.wait(fixture.store.addSession(sid: "s1", userID: "u1", userJSON: #"{"id":"u1"}"#, now: 100))
        try fixture.wait(fixture.store.recordUsage(sid: "s1", model: "gpt", now: 100))
        fixture.sweeper.start()
        #expect(
            fixture.advance(seconds: 0) == [
                .swept(usage: UsageSweep(removedEntries: 0, removedModels: 0), reapedSessions: [])
            ]
        )
        // 2.9 s later nothing has run; at 3 s the usage (updated at 100, now 103) is exactly 3 s old: kept.
        #expect(fixture.advance(seconds: 2) == [])
        #expect(
            fixture.advance(seconds: 1) == [
                .swept(usage: UsageSweep(removedEntries: 0, removedModels: 0), reapedSessions: nil)
            ]
        )
        #expect(
            fixture.advance(seconds: 3) == [
                .swept(usage: UsageSweep(removedEntries: 1, removedModels: 1), reapedSessions: nil)
            ]
        )
        #expect(try fixture.wait(fixture.store.modelsInUse()) == [])

        // Up to 150 s: session sweeps at 30, 60, …; s1 (last seen at 100) is reaped once older than 120 s.
        var outcomes: [PresenceSweeper.Outcome] = []
        for _ in 0..<48 { outcomes += fixture.advance(seconds: 3) }
        #expect(outcomes.count == 48)
        let sessionSweeps = outcomes.compactMap { outcome -> [String]? in
            if case .swept(_, let reaped) = outcome { return reaped }
            return nil
        }
        #expect(sessionSweeps == [[], [], [], [], ["s1"]])
        #expect(try fixture.wait(fixture.store.usersOnline()) == [])

        try fixture.wait(fixture.sweeper.stop())
        #expect(fixture.advance(seconds: 60) == [])
        #expect(try fixture.wait(fixture.sweeper.tick()) == .skipped)
    }

    @Test("survives store errors and lock loss, logging each transition once, and never stops on its own")
    func errorsAndLockLoss() throws {
        let fixture = EmbeddedSweeper(withLock: true)
        let lock = try #require(fixture.lock)
        let idle = PresenceSweeper.Outcome.swept(
            usage: UsageSweep(removedEntries: 0, removedModels: 0),
            reapedSessions: nil
        )
        fixture.sweeper.start()
        #expect(
            fixture.advance(seconds: 0) == [
                .swept(usage: UsageSweep(removedEntries: 0, removedModels: 0), reapedSessions: [])
            ]
        )
        #expect(lock.holder.withLockedValue { $0 } == "node-1")
        #expect(fixture.count(.info, containing: "acquired") == 1)

        fixture.store.failing.withLockedValue { $0 = true }
        for _ in 0..<3 {
            let outcomes = fixture.advance(seconds: 3)
            #expect(outcomes.count == 1)
            guard case .failed? = outcomes.first else {
                Issue.record("expected a failed tick, got \(outcomes)")
                continue
            }
        }
        #expect(fixture.count(.warning, containing: "failing") == 1)
        fixture.store.failing.withLockedValue { $0 = false }
        #expect(fixture.advance(seconds: 3) == [idle])
        #expect(fixture.count(.info, containing: "recovered") == 1)

        // Lock errors count as failures too, and the lock is kept (renewed once Redis answers again).
        lock.failing.withLockedValue { $0 = true }
        #expect(fixture.advance(seconds: 3).count == 1)
        lock.failing.withLockedValue { $0 = false }
        #expect(fixture.advance(seconds: 3) == [idle])
        #expect(fixture.count(.warning, containing: "failing") == 2)

        // Another node took the lock (ours expired): this one stops sweeping, says so once.
        lock.holder.withLockedValue { $0 = "node-2" }
        try fixture.wait(fixture.store.recordUsage(sid: "s1", model: "gpt", now: 0))
        for _ in 0..<3 { #expect(fixture.advance(seconds: 3) == [.notLockHolder]) }
        #expect(try fixture.wait(fixture.store.modelsInUse()) == ["gpt"])
        #expect(fixture.count(.warning, containing: "lost") == 1)
        #expect(fixture.count(.debug, containing: "held by another node") == 1)

        // The other node released it: this one takes over on its next tick.
        // 30 s after the last session sweep: this tick sweeps sessions too.
        lock.holder.withLockedValue { $0 = nil }
        #expect(
            fixture.advance(seconds: 3) == [
                .swept(usage: UsageSweep(removedEntries: 1, removedModels: 1), reapedSessions: [])
            ]
        )
        #expect(fixture.count(.info, containing: "acquired") == 2)

        try fixture.wait(fixture.sweeper.stop())
        #expect(lock.holder.withLockedValue { $0 } == nil)
        #expect(fixture.advance(seconds: 30) == [])
    }

    @Test("a tick still waiting for Redis makes the next one skip; stop waits for it, then releases")
    func overlappingTicks() throws {
        let fixture = EmbeddedSweeper(withLock: true)
        let lock = try #require(fixture.lock)
        fixture.sweeper.start()
        _ = fixture.advance(seconds: 0)
        let hold = fixture.loop.makePromise(of: Void.self)
        fixture.store.hold.withLockedValue { $0 = hold }
        #expect(fixture.advance(seconds: 3) == [])
        #expect(fixture.advance(seconds: 3) == [.skipped])
        let stopped = fixture.sweeper.stop()
        fixture.loop.run()
        #expect(lock.holder.withLockedValue { $0 } == "node-1")
        hold.succeed()
        try fixture.wait(stopped)
        #expect(lock.holder.withLockedValue { $0 } == nil)
        #expect(fixture.outcomes.withLockedValue { $0.count } == 3)
    }
}

/// Two or more sweepers against a real Redis, ticked by hand (the timer's first tick runs at start).
@Suite("Presence sweeper on Redis", .timeLimit(.minutes(1)))
struct RedisSweeperTests {
    final class Node: Sendable {
        let sweeper: PresenceSweeper
        let outcomes: AsyncStream<PresenceSweeper.Outcome>
        let logs: @Sendable () -> [RecordingLogHandler.Entry]

        init(client: RedisClient, nodeID: String, clock: NIOLockedValueBox<Int>) {
            var configuration = PresenceConfiguration()
            // Only the first tick comes from the timer; the test runs the others with tick().
            configuration.usageSweepInterval = .hours(1)
            let (stream, continuation) = AsyncStream<PresenceSweeper.Outcome>.makeStream()
            let (logger, logs) = recordingLogger()
            self.outcomes = stream
            self.logs = logs
            self.sweeper = PresenceSweeper(
                store: RedisPresenceStore(redis: client, configuration: configuration),
                lock: RedisSweepLock(redis: client, configuration: configuration),
                configuration: configuration,
                nodeID: nodeID,
                eventLoop: client.eventLoop,
                clock: { clock.withLockedValue { $0 } },
                logger: logger,
                onTick: { continuation.yield($0) }
            )
        }

        func start() async -> PresenceSweeper.Outcome? {
            self.sweeper.start()
            for await outcome in self.outcomes { return outcome }
            return nil
        }

        func count(_ level: Logger.Level, containing text: String) -> Int {
            self.logs().filter { $0.level == level && $0.message.contains(text) }.count
        }
    }

    @Test("only the lock holder sweeps; when its lock goes, another node takes over")
    func twoNodes() async throws {
        try await withRedisServer { server in
            let group = MultiThreadedEventLoopGroup.singleton
            let clientA = try await connectedClient(server, eventLoop: group.next())
            let clientB = try await connectedClient(server, eventLoop: group.next())
            let clock = NIOLockedValueBox(1000)
            let a = Node(client: clientA, nodeID: "node-a", clock: clock)
            let b = Node(client: clientB, nodeID: "node-b", clock: clock)
            let store = RedisPresenceStore(redis: clientA)
            let lockKey = PresenceConfiguration().lockKey
            let none = UsageSweep(removedEntries: 0, removedModels: 0)

            #expect(await a.start() == .swept(usage: none, reapedSessions: []))
            #expect(await b.start() == .notLockHolder)
            #expect(try await clientA.execute("GET", lockKey).string == "node-a")
            let ttl = try #require(try await clientA.execute("TTL", lockKey).int)
            #expect((1...60).contains(ttl))

            try await store.recordUsage(sid: "s1", model: "gpt", now: 900).get()
            #expect(try await b.sweeper.tick().get() == .notLockHolder)
            #expect(try await store.modelsInUse().get() == ["gpt"])
            #expect(
                try await a.sweeper.tick().get()
                    == .swept(usage: UsageSweep(removedEntries: 1, removedModels: 1), reapedSessions: nil)
            )

            // node-a's lock disappears (expired): node-b takes it on its next tick, node-a becomes a follower.
            try await clientA.execute("DEL", lockKey)
            try await store.recordUsage(sid: "s1", model: "gpt", now: 900).get()
            // node-b never swept before: its first sweep includes the session pool.
            #expect(
                try await b.sweeper.tick().get()
                    == .swept(usage: UsageSweep(removedEntries: 1, removedModels: 1), reapedSessions: [])
            )
            #expect(try await a.sweeper.tick().get() == .notLockHolder)
            #expect(try await a.sweeper.tick().get() == .notLockHolder)
            #expect(try await clientA.execute("GET", lockKey).string == "node-b")
            #expect(a.count(.warning, containing: "lost") == 1)
            #expect(b.count(.info, containing: "acquired") == 1)

            // Stopping a follower leaves the holder's lock alone; stopping the holder releases it.
            try await a.sweeper.stop().get()
            #expect(try await clientA.execute("GET", lockKey).string == "node-b")
            try await b.sweeper.stop().get()
            #expect(try await clientA.execute("GET", lockKey).isNull)
            await clientA.shutdown()
            await clientB.shutdown()
        }
    }

    @Test("a sweeper whose Redis goes away keeps ticking and resumes when Redis is back")
    func redisOutage() async throws {
        try await withRedisServer { server in
            let watcher = StateWatcher()
            let client = try await connectedClient(server, watcher: watcher)
            let clock = NIOLockedValueBox(1000)
            let node = Node(client: client, nodeID: "node-a", clock: clock)
            #expect(
                await node.start() == .swept(usage: UsageSweep(removedEntries: 0, removedModels: 0), reapedSessions: [])
            )

            await server.stop()
            try await watcher.next(.disconnected)
            for _ in 0..<3 {
                let outcome = try await node.sweeper.tick().get()
                guard case .failed = outcome else {
                    Issue.record("expected a failed tick, got \(outcome)")
                    continue
                }
            }
            #expect(node.count(.warning, containing: "failing") == 1)

            // A new server (empty: the lock is gone too) on the same port.
            try await server.restart()
            try await watcher.next(.connected)
            try await RedisPresenceStore(redis: client).recordUsage(sid: "s1", model: "gpt", now: 1).get()
            #expect(
                try await node.sweeper.tick().get()
                    == .swept(usage: UsageSweep(removedEntries: 1, removedModels: 1), reapedSessions: nil)
            )
            #expect(node.count(.info, containing: "recovered") == 1)
            #expect(node.count(.warning, containing: "lost") == 1)
            #expect(try await client.execute("GET", PresenceConfiguration().lockKey).string == "node-a")
            try await node.sweeper.stop().get()
            await client.shutdown()
        }
    }
}
