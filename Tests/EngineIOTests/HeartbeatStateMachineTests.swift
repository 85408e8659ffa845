import EngineIOTestSupport
import NIOCore
import Testing

@testable import EngineIO

@Suite("Heartbeat state machine")
struct HeartbeatStateMachineTests {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func at(_ seconds: Int64, ms: Int64 = 0) -> NIODeadline {
        t0 + .seconds(seconds) + .milliseconds(ms)
    }

    func machine() -> HeartbeatStateMachine {
        HeartbeatStateMachine(interval: .seconds(25), timeout: .seconds(20), now: t0)
    }

    @Test func firstPingIsDueOneIntervalAfterStart() {
        let heartbeat = machine()
        #expect(heartbeat.nextDeadline == at(25))
        #expect(heartbeat.state == .waitingToPing(at: at(25)))
    }

    @Test func pingsWhenTheIntervalHasPassed() {
        var heartbeat = machine()
        do {
            let result = heartbeat.timerFired(now: at(25))
            #expect(result == .sendPing(rearmAt: at(45)))
        }
        #expect(heartbeat.nextDeadline == at(45))
        #expect(heartbeat.state == .awaitingPong(until: at(45)))
    }

    @Test func aLateTimerMeasuresThePongTimeoutFromNow() {
        var heartbeat = machine()
        do {
            let result = heartbeat.timerFired(now: at(30))
            #expect(result == .sendPing(rearmAt: at(50)))
        }
    }

    @Test func rearmsWhenFiredEarly() {
        var heartbeat = machine()
        do {
            let result = heartbeat.timerFired(now: at(10))
            #expect(result == .rearm(at: at(25)))
        }
        do {
            let result = heartbeat.timerFired(now: at(24, ms: 999))
            #expect(result == .rearm(at: at(25)))
        }
        #expect(heartbeat.state == .waitingToPing(at: at(25)))
        _ = heartbeat.timerFired(now: at(25))
        do {
            let result = heartbeat.timerFired(now: at(44, ms: 999))
            #expect(result == .rearm(at: at(45)))
        }
        #expect(heartbeat.state == .awaitingPong(until: at(45)))
    }

    @Test func pongResetsToTheNextInterval() {
        var heartbeat = machine()
        _ = heartbeat.timerFired(now: at(25))
        do {
            let result = heartbeat.pongReceived(now: at(26))
            #expect(result)
        }
        #expect(heartbeat.nextDeadline == at(51))
        // The timer armed for the pong deadline fires early and is re-armed for the next ping.
        do {
            let result = heartbeat.timerFired(now: at(45))
            #expect(result == .rearm(at: at(51)))
        }
        do {
            let result = heartbeat.timerFired(now: at(51))
            #expect(result == .sendPing(rearmAt: at(71)))
        }
    }

    @Test func timesOutWithoutPong() {
        var heartbeat = machine()
        _ = heartbeat.timerFired(now: at(25))
        do {
            let result = heartbeat.timerFired(now: at(45))
            #expect(result == .timeout)
        }
        #expect(heartbeat.state == .stopped)
        #expect(heartbeat.nextDeadline == nil)
        do {
            let result = heartbeat.timerFired(now: at(100))
            #expect(result == HeartbeatStateMachine.Action.none)
        }
    }

    @Test func unexpectedPongReturnsFalseAndChangesNothing() {
        var heartbeat = machine()
        do {
            let result = heartbeat.pongReceived(now: at(5))
            #expect(!result)
        }
        #expect(heartbeat.state == .waitingToPing(at: at(25)))
        _ = heartbeat.timerFired(now: at(25))
        do {
            let result = heartbeat.pongReceived(now: at(26))
            #expect(result)
        }
        // A second pong for the same ping is unexpected too.
        do {
            let result = heartbeat.pongReceived(now: at(27))
            #expect(!result)
        }
        #expect(heartbeat.nextDeadline == at(51))
    }

    @Test func stopDisarms() {
        var heartbeat = machine()
        heartbeat.stop()
        #expect(heartbeat.nextDeadline == nil)
        do {
            let result = heartbeat.timerFired(now: at(25))
            #expect(result == HeartbeatStateMachine.Action.none)
        }
        do {
            let result = heartbeat.pongReceived(now: at(26))
            #expect(!result)
        }

        var awaiting = machine()
        _ = awaiting.timerFired(now: at(25))
        awaiting.stop()
        do {
            let result = awaiting.timerFired(now: at(45))
            #expect(result == HeartbeatStateMachine.Action.none)
        }
        do {
            let result = awaiting.pongReceived(now: at(30))
            #expect(!result)
        }
    }

    @Test func manyCyclesKeepTheirCadence() {
        var heartbeat = HeartbeatStateMachine(interval: .seconds(1), timeout: .milliseconds(500), now: t0)
        var now = t0
        for _ in 0..<100 {
            now = now + .seconds(1)
            do {
                let result = heartbeat.timerFired(now: now)
                #expect(result == .sendPing(rearmAt: now + .milliseconds(500)))
            }
            do {
                let result = heartbeat.pongReceived(now: now)
                #expect(result)
            }
            do {
                let result = heartbeat.timerFired(now: now + .milliseconds(500))
                #expect(result == .rearm(at: now + .seconds(1)))
            }
        }
    }
}
