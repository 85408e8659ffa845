import NIOCore

/// The state of a reconnecting client, as readiness checks and dashboards see it.
public enum RedisConnectionState: Sendable, Hashable, CustomStringConvertible {
    /// Not started yet, or the first connection is being made.
    case connecting
    /// Connected and set up (for a subscriber: its subscriptions restored).
    case connected
    /// The connection was lost or cannot be made; retrying with backoff. Commands fail fast with
    /// ``RedisError/Code/connectionUnavailable``.
    case disconnected
    /// Shut down for good.
    case shutdown

    public var description: String {
        switch self {
        case .connecting: return "connecting"
        case .connected: return "connected"
        case .disconnected: return "disconnected"
        case .shutdown: return "shutdown"
        }
    }
}

/// When to connect, when to retry and what state to publish. No I/O, no clock, no randomness of its own: the
/// caller passes a uniform random number for the jitter.
struct ReconnectStateMachine {
    private enum State {
        case idle
        case connecting(attempt: Int)
        case connected
        case waiting(attempt: Int)
        case shutdown
    }

    enum Action: Equatable {
        case none
        /// Open a connection now.
        case connect
        /// Retry after `delay`.
        case scheduleRetry(delay: TimeAmount, attempt: Int)
        /// Close the connection that was just made (shutdown happened meanwhile).
        case closeConnection
        /// Cancel the retry timer (shutdown while waiting).
        case cancelRetry
    }

    private var state: State = .idle
    private(set) var published: RedisConnectionState = .connecting
    let policy: ReconnectPolicy

    init(policy: ReconnectPolicy) {
        self.policy = policy
    }

    /// The published state changes to `state`; returns it if that is a change.
    private mutating func publish(_ state: RedisConnectionState) -> RedisConnectionState? {
        guard state != self.published else { return nil }
        self.published = state
        return state
    }

    mutating func start() -> Action {
        guard case .idle = self.state else { return .none }
        self.state = .connecting(attempt: 0)
        return .connect
    }

    /// A connection is up and set up.
    mutating func connected() -> (Action, RedisConnectionState?) {
        switch self.state {
        case .connecting:
            self.state = .connected
            return (.none, self.publish(.connected))
        case .shutdown:
            return (.closeConnection, nil)
        case .idle, .connected, .waiting:
            preconditionFailure("connected while \(self.state)")
        }
    }

    /// Connecting (or setting up) failed.
    mutating func connectFailed(random: Double) -> (Action, RedisConnectionState?) {
        switch self.state {
        case .connecting(let attempt):
            self.state = .waiting(attempt: attempt)
            let delay = self.policy.delay(attempt: attempt, random: random)
            return (.scheduleRetry(delay: delay, attempt: attempt + 1), self.publish(.disconnected))
        case .shutdown:
            return (.none, nil)
        case .idle, .connected, .waiting:
            preconditionFailure("connect failed while \(self.state)")
        }
    }

    /// The connection closed: after it was set up, or while it was being set up (e.g. while a subscriber restored
    /// its subscriptions), which counts as a failed attempt.
    mutating func connectionLost(random: Double) -> (Action, RedisConnectionState?) {
        switch self.state {
        case .connected:
            self.state = .waiting(attempt: 0)
            let delay = self.policy.delay(attempt: 0, random: random)
            return (.scheduleRetry(delay: delay, attempt: 1), self.publish(.disconnected))
        case .connecting:
            return self.connectFailed(random: random)
        case .shutdown, .idle, .waiting:
            return (.none, nil)
        }
    }

    mutating func retryTimerFired() -> Action {
        guard case .waiting(let attempt) = self.state else { return .none }
        self.state = .connecting(attempt: attempt + 1)
        return .connect
    }

    mutating func shutdown() -> (Action, RedisConnectionState?) {
        let previous = self.state
        self.state = .shutdown
        let published = self.publish(.shutdown)
        switch previous {
        case .waiting: return (.cancelRetry, published)
        case .connected: return (.closeConnection, published)
        case .idle, .connecting, .shutdown: return (.none, published)
        }
    }
}
