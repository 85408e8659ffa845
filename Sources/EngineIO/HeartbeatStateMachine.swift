import NIOCore

/// Server-driven heartbeat of Engine.IO v4: a ping every `interval`, and the session ends when a
/// ping goes unanswered for `timeout`.
///
/// One timer serves both phases: the owner arms it at `nextDeadline` and calls `timerFired`
/// whenever it fires. A pong only updates state; a timer that fires early is simply re-armed, so
/// nothing is ever cancelled on the hot path.
public struct HeartbeatStateMachine: Sendable {
    enum State: Sendable, Equatable {
        case waitingToPing(at: NIODeadline)
        case awaitingPong(until: NIODeadline)
        case stopped
    }

    public enum Action: Sendable, Equatable {
        /// Send a ping, then arm the timer for `deadline`.
        case sendPing(rearmAt: NIODeadline)
        /// Nothing due yet; arm the timer for `deadline`.
        case rearm(at: NIODeadline)
        /// The client missed its pong: close the session.
        case timeout
        /// Stopped; arm nothing.
        case none
    }

    let interval: TimeAmount
    let timeout: TimeAmount
    private(set) var state: State

    public init(interval: TimeAmount, timeout: TimeAmount, now: NIODeadline) {
        self.interval = interval
        self.timeout = timeout
        self.state = .waitingToPing(at: now + interval)
    }

    /// When the timer should next fire, if at all.
    public var nextDeadline: NIODeadline? {
        switch state {
        case .waitingToPing(let at): return at
        case .awaitingPong(let until): return until
        case .stopped: return nil
        }
    }

    public mutating func timerFired(now: NIODeadline) -> Action {
        switch state {
        case .waitingToPing(let at):
            guard now >= at else { return .rearm(at: at) }
            let until = now + timeout
            state = .awaitingPong(until: until)
            return .sendPing(rearmAt: until)
        case .awaitingPong(let until):
            guard now >= until else { return .rearm(at: until) }
            state = .stopped
            return .timeout
        case .stopped:
            return .none
        }
    }

    /// A pong arrived. Returns false if none was expected (a protocol error the caller may ignore).
    @discardableResult
    public mutating func pongReceived(now: NIODeadline) -> Bool {
        guard case .awaitingPong = state else { return false }
        state = .waitingToPing(at: now + interval)
        return true
    }

    public mutating func stop() {
        state = .stopped
    }
}
