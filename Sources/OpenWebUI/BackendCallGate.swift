import CoreMetrics
import DequeModule
import NIOConcurrencyHelpers
import NIOCore

/// The decisions of ``BackendCallGate``: a call starts when fewer than `maxConcurrent` are in flight and the
/// rate allows it (a generic cell rate algorithm: `callsPerSecond` on average, `burst` at once after a quiet
/// spell). Other calls wait in arrival order; a call that would be the `maxQueued + 1`-th waiter, or that has
/// waited `maxWait`, is refused, so a node whose clients all reconnect at once asks the backend at a bounded
/// rate and tells the clients it is busy instead of piling up work nobody waits for any more.
package struct BackendCallGateStateMachine<Waiter> {
    package struct Limits: Sendable, Equatable {
        package var callsPerSecond: Int
        package var burst: Int
        package var maxConcurrent: Int
        package var maxQueued: Int
        package var maxWait: TimeAmount

        /// One call at a time is the least a limit can allow.
        package init(callsPerSecond: Int, burst: Int, maxConcurrent: Int, maxQueued: Int, maxWait: TimeAmount) {
            self.callsPerSecond = max(callsPerSecond, 1)
            self.burst = max(burst, 1)
            self.maxConcurrent = max(maxConcurrent, 1)
            self.maxQueued = max(maxQueued, 0)
            self.maxWait = maxWait
        }
    }

    enum Refusal: String, Equatable, Sendable {
        /// `maxQueued` calls were already waiting.
        case queueFull = "queue_full"
        /// The call waited `maxWait` without starting.
        case waitedTooLong = "waited_too_long"
    }

    enum Admission: Equatable {
        case start
        /// Queued; arm a timer for `wakeAt` if given (the gate then calls ``timerFired(now:)``).
        case wait(wakeAt: NIODeadline?)
        case refuse(Refusal)
    }

    /// What a completion or a timer releases: calls to start, waiters to refuse, and a timer to arm.
    struct Release {
        var start: [Waiter] = []
        var expired: [Waiter] = []
        var wakeAt: NIODeadline?
    }

    let limits: Limits
    /// Nanoseconds between two calls at the sustained rate.
    private let emissionInterval: Int64
    /// How far ahead of `now` the theoretical arrival time may run: the burst.
    private let tolerance: Int64
    /// The theoretical arrival time of the next call (GCRA), in `NIODeadline` nanoseconds.
    private var theoreticalArrival: Int64 = 0
    private var queue: Deque<(waiter: Waiter, since: NIODeadline)> = []
    private var armedWake: NIODeadline?
    private(set) var inFlight = 0

    var waiting: Int { queue.count }

    init(limits: Limits) {
        self.limits = limits
        self.emissionInterval = max(1_000_000_000 / Int64(limits.callsPerSecond), 1)
        self.tolerance = emissionInterval * Int64(limits.burst - 1)
    }

    mutating func request(_ waiter: Waiter, now: NIODeadline) -> Admission {
        if queue.isEmpty, inFlight < limits.maxConcurrent, takeRate(now: now) {
            inFlight += 1
            return .start
        }
        guard queue.count < limits.maxQueued else { return .refuse(.queueFull) }
        queue.append((waiter, now))
        return .wait(wakeAt: wake(now: now))
    }

    /// A started call finished (answered, failed or timed out).
    mutating func finished(now: NIODeadline) -> Release {
        precondition(inFlight > 0, "finished without a started call")
        inFlight -= 1
        return release(now: now)
    }

    mutating func timerFired(now: NIODeadline) -> Release {
        if let armed = armedWake, armed <= now { armedWake = nil }
        return release(now: now)
    }

    private mutating func release(now: NIODeadline) -> Release {
        var result = Release()
        while let first = queue.first, first.since + limits.maxWait <= now {
            result.expired.append(queue.removeFirst().waiter)
        }
        while !queue.isEmpty, inFlight < limits.maxConcurrent, takeRate(now: now) {
            inFlight += 1
            result.start.append(queue.removeFirst().waiter)
        }
        result.wakeAt = wake(now: now)
        return result
    }

    private mutating func takeRate(now: NIODeadline) -> Bool {
        let now = now.uptimeNanoseconds > UInt64(Int64.max) ? Int64.max : Int64(now.uptimeNanoseconds)
        guard now >= theoreticalArrival - tolerance else { return false }
        theoreticalArrival = max(theoreticalArrival, now) + emissionInterval
        return true
    }

    /// The timer the queue needs, if it is earlier than the one armed: when the rate next allows a call
    /// (unless only a completion can start one) or when the oldest waiter expires.
    private mutating func wake(now: NIODeadline) -> NIODeadline? {
        guard let first = queue.first else { return nil }
        var due = first.since + limits.maxWait
        if inFlight < limits.maxConcurrent {
            let rateAllows = NIODeadline.uptimeNanoseconds(UInt64(max(theoreticalArrival - tolerance, 0)))
            due = min(due, max(rateAllows, now))
        }
        if let armed = armedWake, armed <= due { return nil }
        armedWake = due
        return due
    }
}

extension BackendCallGateStateMachine: Sendable where Waiter: Sendable {}

/// Bounds the node's calls to one backend (``BackendClient``): how many per second, how many at once, how many
/// may wait. Shared by every event loop; its lock is held only to update the state machine.
package final class BackendCallGate: Sendable {
    package typealias Limits = BackendCallGateStateMachine<EventLoopPromise<Void>>.Limits

    private let state: NIOLockedValueBox<BackendCallGateStateMachine<EventLoopPromise<Void>>>
    private let timerLoop: EventLoop
    private let clock: @Sendable () -> NIODeadline
    private let metrics: Metrics

    struct Metrics: Sendable {
        let waiting: Gauge
        let inFlight: Gauge
        let queued: Counter
        let refused: [BackendCallGateStateMachine<EventLoopPromise<Void>>.Refusal: Counter]

        init(target: String) {
            let dimensions = [("target", target)]
            waiting = Gauge(label: "switchboard_backend_calls_waiting", dimensions: dimensions)
            inFlight = Gauge(label: "switchboard_backend_calls_in_flight", dimensions: dimensions)
            queued = Counter(label: "switchboard_backend_calls_queued_total", dimensions: dimensions)
            refused = Dictionary(
                uniqueKeysWithValues: [.queueFull, .waitedTooLong].map {
                    ($0, Counter(label: "switchboard_backend_calls_refused_total", dimensions: dimensions + [("reason", $0.rawValue)]))
                }
            )
        }
    }

    package init(
        limits: Limits,
        target: String,
        timerLoop: EventLoop,
        clock: @escaping @Sendable () -> NIODeadline = { .now() }
    ) {
        self.state = NIOLockedValueBox(BackendCallGateStateMachine(limits: limits))
        self.timerLoop = timerLoop
        self.clock = clock
        self.metrics = Metrics(target: target)
    }

    var limits: Limits { state.withLockedValue { $0.limits } }
    var waiting: Int { state.withLockedValue { $0.waiting } }
    var inFlight: Int { state.withLockedValue { $0.inFlight } }

    /// Runs `call` once the gate admits it, and counts it in flight until its future completes. A refused call
    /// fails with ``BackendFailure/Kind/busy`` and never reaches the backend.
    func run<Value: Sendable>(
        on eventLoop: EventLoop,
        _ call: @escaping @Sendable () -> EventLoopFuture<Value>
    ) -> EventLoopFuture<Value> {
        let admitted = eventLoop.makePromise(of: Void.self)
        let (admission, waiting, inFlight) = state.withLockedValue {
            ($0.request(admitted, now: clock()), $0.waiting, $0.inFlight)
        }
        record(waiting: waiting, inFlight: inFlight)
        switch admission {
        case .start:
            admitted.succeed()
        case .wait(let wakeAt):
            metrics.queued.increment()
            if let wakeAt { arm(wakeAt) }
        case .refuse(let refusal):
            admitted.fail(refused(refusal))
        }
        return admitted.futureResult.flatMap {
            let result = call()
            result.whenComplete { _ in self.finished() }
            return result
        }
    }

    private func finished() {
        let (release, waiting, inFlight) = state.withLockedValue {
            ($0.finished(now: clock()), $0.waiting, $0.inFlight)
        }
        apply(release, waiting: waiting, inFlight: inFlight)
    }

    private func arm(_ deadline: NIODeadline) {
        timerLoop.scheduleTask(deadline: deadline) {
            let (release, waiting, inFlight) = self.state.withLockedValue {
                ($0.timerFired(now: self.clock()), $0.waiting, $0.inFlight)
            }
            self.apply(release, waiting: waiting, inFlight: inFlight)
        }
    }

    private func apply(_ release: BackendCallGateStateMachine<EventLoopPromise<Void>>.Release, waiting: Int, inFlight: Int) {
        record(waiting: waiting, inFlight: inFlight)
        if let wakeAt = release.wakeAt { arm(wakeAt) }
        for waiter in release.expired { waiter.fail(refused(.waitedTooLong)) }
        for waiter in release.start { waiter.succeed() }
    }

    private func refused(_ refusal: BackendCallGateStateMachine<EventLoopPromise<Void>>.Refusal) -> BackendFailure {
        metrics.refused[refusal]?.increment()
        let detail: String
        switch refusal {
        case .queueFull: detail = "the node's backend call queue is full"
        case .waitedTooLong: detail = "queued for the backend longer than \(limits.maxWait.nanoseconds / 1_000_000) ms"
        }
        return BackendFailure(kind: .busy, detail: detail)
    }

    private func record(waiting: Int, inFlight: Int) {
        metrics.waiting.record(waiting)
        metrics.inFlight.record(inFlight)
    }
}
