import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import OpenWebUI

@Suite("BackendCallGate: rate, concurrency and queue bounds on backend calls")
struct BackendCallGateTests {
    typealias Machine = BackendCallGateStateMachine<String>

    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    static func limits(
        rate: Int = 10,
        burst: Int = 2,
        concurrent: Int = 100,
        queued: Int = 100,
        maxWait: TimeAmount = .seconds(5)
    ) -> Machine.Limits {
        .init(callsPerSecond: rate, burst: burst, maxConcurrent: concurrent, maxQueued: queued, maxWait: maxWait)
    }

    @Test("a burst starts at once; the next call waits for the rate, and the timer starts it")
    func rateLimited() {
        var machine = Machine(limits: Self.limits(rate: 10, burst: 2))
        #expect(machine.request("a", now: Self.t0) == .start)
        #expect(machine.request("b", now: Self.t0) == .start)
        #expect(machine.request("c", now: Self.t0) == .wait(wakeAt: Self.t0 + .milliseconds(100)))
        // The timer is armed: a second waiter needs no earlier one.
        #expect(machine.request("d", now: Self.t0 + .milliseconds(10)) == .wait(wakeAt: nil))
        var release = machine.timerFired(now: Self.t0 + .milliseconds(99))
        #expect(release.start.isEmpty)
        release = machine.timerFired(now: Self.t0 + .milliseconds(100))
        #expect(release.start == ["c"])
        #expect(release.wakeAt == Self.t0 + .milliseconds(200))
        release = machine.timerFired(now: Self.t0 + .milliseconds(200))
        #expect(release.start == ["d"])
        #expect(release.wakeAt == nil)
        #expect(machine.inFlight == 4)
        #expect(machine.waiting == 0)
    }

    @Test("at most maxConcurrent calls are in flight; a completion starts the next waiter in order")
    func concurrencyLimited() {
        var machine = Machine(limits: Self.limits(rate: 1000, burst: 100, concurrent: 2))
        #expect(machine.request("a", now: Self.t0) == .start)
        #expect(machine.request("b", now: Self.t0) == .start)
        // Only a completion (or the wait bound) can start it: the timer is for the wait bound.
        #expect(machine.request("c", now: Self.t0) == .wait(wakeAt: Self.t0 + .seconds(5)))
        #expect(machine.request("d", now: Self.t0) == .wait(wakeAt: nil))
        var release = machine.finished(now: Self.t0 + .milliseconds(5))
        #expect(release.start == ["c"])
        release = machine.finished(now: Self.t0 + .milliseconds(6))
        #expect(release.start == ["d"])
        release = machine.finished(now: Self.t0 + .milliseconds(7))
        #expect(release.start.isEmpty)
        #expect(machine.inFlight == 1)
    }

    @Test("a new call never overtakes one already waiting")
    func firstComeFirstServed() {
        var machine = Machine(limits: Self.limits(rate: 1000, burst: 100, concurrent: 1))
        #expect(machine.request("a", now: Self.t0) == .start)
        #expect(machine.request("b", now: Self.t0) == .wait(wakeAt: Self.t0 + .seconds(5)))
        let release = machine.finished(now: Self.t0 + .milliseconds(1))
        #expect(release.start == ["b"])
        // A slot and a token are free now, yet b holds the slot: c waits.
        #expect(machine.request("c", now: Self.t0 + .milliseconds(1)) != .start)
    }

    @Test("a full queue refuses at once; a waiter past maxWait is refused by the timer")
    func refusals() {
        var machine = Machine(limits: Self.limits(rate: 1000, burst: 100, concurrent: 1, queued: 2, maxWait: .seconds(1)))
        #expect(machine.request("a", now: Self.t0) == .start)
        #expect(machine.request("b", now: Self.t0) == .wait(wakeAt: Self.t0 + .seconds(1)))
        #expect(machine.request("c", now: Self.t0 + .milliseconds(500)) == .wait(wakeAt: nil))
        #expect(machine.request("d", now: Self.t0 + .milliseconds(500)) == .refuse(.queueFull))
        var release = machine.timerFired(now: Self.t0 + .seconds(1))
        #expect(release.expired == ["b"])
        #expect(release.start.isEmpty)
        #expect(release.wakeAt == Self.t0 + .milliseconds(1500))
        release = machine.finished(now: Self.t0 + .milliseconds(1200))
        #expect(release.start == ["c"])
        #expect(release.expired.isEmpty)
        #expect(machine.waiting == 0)
    }

    @Test("no queue at all: a call that cannot start at once is refused")
    func zeroQueue() {
        var machine = Machine(limits: Self.limits(rate: 1, burst: 1, queued: 0))
        #expect(machine.request("a", now: Self.t0) == .start)
        #expect(machine.request("b", now: Self.t0) == .refuse(.queueFull))
        #expect(machine.request("c", now: Self.t0 + .seconds(1)) == .start)
    }

    /// 5,000 callers arrive within 2 s (a failed node's clients reconnecting); each call takes 20 ms. Whatever
    /// the arrivals, no second starts more than rate + burst calls, and the backend never has more than
    /// maxConcurrent at once; every caller starts or is refused, none is forgotten.
    @Test("a reconnect storm is served at the configured rate")
    func storm() {
        let rate = 200
        let burst = 50
        var machine = BackendCallGateStateMachine<Int>(
            limits: .init(callsPerSecond: rate, burst: burst, maxConcurrent: 32, maxQueued: 10_000, maxWait: .seconds(5))
        )
        var generator = SplitMix(seed: 7)
        let arrivals = (0..<5000).map { _ in Int64(generator.next() % 2_000_000_000) }.sorted()
        var nextArrival = 0
        var timers: [NIODeadline] = []
        var completions: [NIODeadline] = []
        var startsPerSecond: [Int64: Int] = [:]
        var started = 0
        var refused = 0
        var peakInFlight = 0
        func begin(_ count: Int, at now: NIODeadline) {
            started += count
            startsPerSecond[Int64(now.uptimeNanoseconds - Self.t0.uptimeNanoseconds) / 1_000_000_000, default: 0] += count
            completions += Array(repeating: now + .milliseconds(20), count: count)
            peakInFlight = max(peakInFlight, machine.inFlight)
        }
        func apply(_ release: BackendCallGateStateMachine<Int>.Release, at now: NIODeadline) {
            begin(release.start.count, at: now)
            refused += release.expired.count
            if let wake = release.wakeAt { timers.append(wake) }
        }
        // One millisecond at a time for 40 s of simulated time.
        for step in 0..<40_000 {
            let now = Self.t0 + .milliseconds(Int64(step))
            while nextArrival < arrivals.count, Self.t0 + .nanoseconds(arrivals[nextArrival]) <= now {
                switch machine.request(nextArrival, now: now) {
                case .start: begin(1, at: now)
                case .wait(let wake): if let wake { timers.append(wake) }
                case .refuse: refused += 1
                }
                nextArrival += 1
            }
            let done = completions.filter { $0 <= now }.count
            completions.removeAll { $0 <= now }
            for _ in 0..<done { apply(machine.finished(now: now), at: now) }
            if timers.contains(where: { $0 <= now }) {
                timers.removeAll { $0 <= now }
                apply(machine.timerFired(now: now), at: now)
            }
        }
        #expect(started + refused == 5000)
        #expect(machine.waiting == 0)
        #expect(peakInFlight <= 32)
        #expect(startsPerSecond.values.max()! <= rate + burst)
        // Served at the full rate while the queue lasts: 5 s of waiting at 200/s, plus the burst.
        #expect(started >= 5 * rate)
        #expect(refused > 0)
    }

    @Test("the gate runs admitted calls, fails refused ones as backend_busy, and drains by its timer")
    func gateOnAnEventLoop() async throws {
        let loop = NIOAsyncTestingEventLoop()
        let gate = BackendCallGate(
            limits: .init(callsPerSecond: 10, burst: 1, maxConcurrent: 4, maxQueued: 1, maxWait: .seconds(5)),
            target: "test",
            timerLoop: loop,
            clock: { loop.now }
        )
        let calls = NIOLockedValueBox(0)
        let call: @Sendable () -> EventLoopFuture<Int> = {
            loop.makeSucceededFuture(calls.withLockedValue { $0 += 1; return $0 })
        }
        let first = gate.run(on: loop, call)
        let second = gate.run(on: loop, call)
        let third = gate.run(on: loop, call)
        await loop.run()
        #expect(try await first.get() == 1)
        do {
            _ = try await third.get()
            Issue.record("the call past a full queue ran")
        } catch let failure as BackendFailure {
            #expect(failure.kind == .busy)
        }
        #expect(calls.withLockedValue { $0 } == 1)
        #expect(gate.waiting == 1)
        await loop.advanceTime(by: .milliseconds(100))
        #expect(try await second.get() == 2)
        #expect(gate.waiting == 0)
        #expect(gate.inFlight == 0)
        await loop.shutdownGracefully()
    }
}

@Suite("Which backend failures a socket's step is retried after")
struct BackendRetryTests {
    @Test("no answer, busy, 5xx and 429 are retried; 4xx verdicts and bad answers are not")
    func retryable() {
        #expect(OpenWebUIEvents.isRetryable(BackendFailure(kind: .unavailable, detail: "")))
        #expect(OpenWebUIEvents.isRetryable(BackendFailure(kind: .busy, detail: "")))
        #expect(OpenWebUIEvents.isRetryable(BackendFailure(kind: .refused, detail: "", status: 503)))
        #expect(OpenWebUIEvents.isRetryable(BackendFailure(kind: .refused, detail: "", status: 429)))
        #expect(!OpenWebUIEvents.isRetryable(BackendFailure(kind: .refused, detail: "", status: 403)))
        #expect(!OpenWebUIEvents.isRetryable(BackendFailure(kind: .refused, detail: "", status: 404)))
        #expect(!OpenWebUIEvents.isRetryable(BackendFailure(kind: .invalidAnswer, detail: "")))
        #expect(!OpenWebUIEvents.isRetryable(AuthenticationFailure(reason: "token revoked")))
    }
}

/// A small deterministic generator (SplitMix64), so the storm is the same on every run.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
