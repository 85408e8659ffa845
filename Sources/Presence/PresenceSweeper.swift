import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Sweeps the presence pools every ``PresenceConfiguration/usageSweepInterval``, on one node of the cluster at a
/// time: the node holding the sweep lock (see ``RedisSweepLock``). Each tick the holder renews the lock, removes
/// stale usage entries and, every ``PresenceConfiguration/sessionSweepInterval``, reaps sessions whose
/// heartbeats stopped. Other nodes try to take the lock on each tick, so one takes over within a tick of the
/// lock expiring or being released.
///
/// The sweeper never stops on its own: a Redis error ends the tick (logged once per transition, not per tick) and
/// the next tick retries; a lost lock just makes it a follower until it can take the lock again. Without a lock
/// (a node running alone with ``InMemoryPresenceStore``) it sweeps on every tick.
///
/// Time is injected: `clock` returns epoch seconds, and ticks are scheduled on `eventLoop` (so a test drives them
/// with `EmbeddedEventLoop.advanceTime`, or calls ``tick()``).
public final class PresenceSweeper: Sendable {
    /// What one tick did.
    public enum Outcome: Sendable, Hashable {
        /// Swept the usage pool, and the session pool when it was due (`reapedSessions` nil when it was not).
        case swept(usage: UsageSweep, reapedSessions: [String]?)
        /// Another node holds the lock; nothing swept.
        case notLockHolder
        /// Redis (or the store) failed; retried on the next tick.
        case failed(String)
        /// The sweeper is not running, or the previous tick is still waiting for Redis.
        case skipped
    }

    private struct LoopState {
        var machine: SweeperStateMachine
        var timer: RepeatedTask?
        var currentTick: EventLoopFuture<Outcome>?
    }

    public let eventLoop: any EventLoop
    public let nodeID: String
    private let store: any PresenceStore
    private let lock: (any PresenceSweepLock)?
    private let configuration: PresenceConfiguration
    private let clock: @Sendable () -> Int
    private let logger: Logger
    private let onTick: (@Sendable (Outcome) -> Void)?
    private let state: NIOLoopBoundBox<LoopState>

    /// - Parameters:
    ///   - lock: the cluster lock (``RedisSweepLock`` with a ``RedisPresenceStore``), or nil for a node alone.
    ///   - nodeID: the lock's value while this node holds it; unique per running node.
    ///   - clock: epoch seconds now. Default: the system's real-time clock.
    ///   - onTick: called on `eventLoop` with the outcome of every tick (metrics, tests).
    public init(
        store: any PresenceStore,
        lock: (any PresenceSweepLock)?,
        configuration: PresenceConfiguration = PresenceConfiguration(),
        nodeID: String,
        eventLoop: any EventLoop,
        clock: @escaping @Sendable () -> Int = PresenceSweeper.systemClock,
        logger: Logger,
        onTick: (@Sendable (Outcome) -> Void)? = nil
    ) {
        self.store = store
        self.lock = lock
        self.configuration = configuration
        self.nodeID = nodeID
        self.eventLoop = eventLoop
        self.clock = clock
        var logger = logger
        logger[metadataKey: "presence.node"] = "\(nodeID)"
        self.logger = logger
        self.onTick = onTick
        self.state = .makeBoxSendingValue(
            LoopState(
                machine: SweeperStateMachine(
                    usesLock: lock != nil,
                    sessionSweepInterval: configuration.sessionSweepInterval.wholeSeconds
                )
            ),
            eventLoop: eventLoop
        )
    }

    /// Epoch seconds from the system's real-time clock.
    public static let systemClock: @Sendable () -> Int = {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int(now.tv_sec)
    }

    /// Starts ticking: the first tick at once, then every ``PresenceConfiguration/usageSweepInterval``. Does
    /// nothing if already started; a stopped sweeper does not start again (make a new one).
    public func start() {
        self.onLoop {
            guard self.state.value.machine.start() else { return }
            self.logger.debug("presence sweeper started")
            let interval = self.configuration.usageSweepInterval
            self.state.value.timer = self.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: interval) { _ in
                _ = self.runTick()
            }
        }
    }

    /// Stops ticking, waits for a tick in flight, and releases the lock if this node holds it.
    public func stop() -> EventLoopFuture<Void> {
        self.eventLoop.flatSubmit {
            self.state.value.timer?.cancel()
            self.state.value.timer = nil
            self.state.value.machine.stop()
            let pending = self.state.value.currentTick ?? self.eventLoop.makeSucceededFuture(.skipped)
            return pending.flatMap { _ in
                guard self.state.value.machine.holdsLock, let lock = self.lock else {
                    return self.eventLoop.makeSucceededVoidFuture()
                }
                return lock.release(owner: self.nodeID).hop(to: self.eventLoop).map { released in
                    self.state.value.machine.released()
                    self.logger.info("presence sweep lock released", metadata: ["presence.released": "\(released)"])
                }.recover { error in
                    self.logger.debug("presence sweep lock not released", metadata: ["presence.error": "\(error)"])
                }
            }.map {
                self.logger.debug("presence sweeper stopped")
            }
        }
    }

    /// Runs one tick now (as the timer does); `.skipped` unless started and idle.
    public func tick() -> EventLoopFuture<Outcome> {
        self.eventLoop.flatSubmit { self.runTick() }
    }

    private func onLoop(_ body: @escaping @Sendable () -> Void) {
        if self.eventLoop.inEventLoop { body() } else { self.eventLoop.execute(body) }
    }

    private func runTick() -> EventLoopFuture<Outcome> {
        let start = self.state.value.machine.tickStarted()
        guard start != .skip else {
            self.logger.trace("presence sweep tick skipped")
            let outcome = self.eventLoop.makeSucceededFuture(Outcome.skipped)
            self.onTick?(.skipped)
            return outcome
        }
        let tick = self.step(start).hop(to: self.eventLoop).flatMapErrorThrowing { error in
            Outcome.failed("\(error)")
        }.map { outcome in
            var failure: String?
            if case .failed(let message) = outcome { failure = message }
            self.state.value.currentTick = nil
            if let event = self.state.value.machine.tickFinished(failure: failure) { self.log(event) }
            self.onTick?(outcome)
            return outcome
        }
        // A tick that completed synchronously (an in-memory store) has already finished.
        if self.state.value.machine.tickInFlight { self.state.value.currentTick = tick }
        return tick
    }

    /// One step of the tick's lock / sweep sequence; runs on the loop.
    private func step(_ action: SweeperStateMachine.TickStart) -> EventLoopFuture<Outcome> {
        switch action {
        case .skip:
            return self.eventLoop.makeSucceededFuture(.notLockHolder)
        case .acquire:
            guard let lock = self.lock else { return self.step(.sweep) }
            return lock.acquire(owner: self.nodeID, ttl: self.configuration.lockTTL.wholeSeconds)
                .hop(to: self.eventLoop)
                .flatMap { acquired in
                    let (next, event) = self.state.value.machine.acquired(acquired)
                    if let event { self.log(event) }
                    return self.step(next)
                }
        case .renew:
            guard let lock = self.lock else { return self.step(.sweep) }
            return lock.renew(owner: self.nodeID, ttl: self.configuration.lockTTL.wholeSeconds)
                .hop(to: self.eventLoop)
                .flatMap { renewed in
                    let (next, event) = self.state.value.machine.renewed(renewed)
                    if let event { self.log(event) }
                    return self.step(next)
                }
        case .sweep:
            let now = self.clock()
            let sessionsDue = self.state.value.machine.sessionSweepDue(now: now)
            let usage = self.store.sweepUsage(now: now, maxAge: self.configuration.usageMaxAge.wholeSeconds)
            return usage.flatMap { swept -> EventLoopFuture<Outcome> in
                guard sessionsDue else {
                    return usage.eventLoop.makeSucceededFuture(.swept(usage: swept, reapedSessions: nil))
                }
                return self.store.sweepSessions(now: now, maxAge: self.configuration.sessionMaxAge.wholeSeconds)
                    .map { .swept(usage: swept, reapedSessions: $0) }
            }.hop(to: self.eventLoop).map { outcome in
                if case .swept(let usage, let reaped) = outcome,
                    usage.removedEntries > 0 || !(reaped ?? []).isEmpty
                {
                    self.logger.debug(
                        "presence pools swept",
                        metadata: [
                            "presence.usage_removed": "\(usage.removedEntries)",
                            "presence.models_removed": "\(usage.removedModels)",
                            "presence.sessions_reaped": "\(reaped?.count ?? 0)",
                        ]
                    )
                }
                return outcome
            }
        }
    }

    private func log(_ event: SweeperStateMachine.Event) {
        switch event {
        case .acquired:
            self.logger.info("presence sweep lock acquired; this node sweeps the pools")
        case .lost:
            self.logger.warning("presence sweep lock lost (expired or taken by another node)")
        case .heldElsewhere:
            self.logger.debug("presence sweep lock held by another node")
        case .failing(let error):
            self.logger.warning("presence sweep failing; retrying every tick", metadata: ["presence.error": "\(error)"])
        case .recovered:
            self.logger.info("presence sweep recovered")
        }
    }
}
