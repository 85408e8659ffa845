/// The decisions of ``PresenceSweeper``: whether a tick runs, what it does about the lock, when the session pool
/// is due, and which transitions are worth a log line (each one once, not on every tick).
struct SweeperStateMachine {
    enum Lifecycle: Equatable {
        case idle
        case running
        case stopped
    }

    enum LockState: Equatable {
        /// No lock configured: a single node sweeps alone.
        case notNeeded
        case notHeld
        case held
    }

    enum TickStart: Equatable {
        /// Not running, or the previous tick is still waiting for Redis.
        case skip
        case acquire
        case renew
        case sweep
    }

    enum Event: Equatable {
        case acquired
        case lost
        /// Another node holds the lock (reported once until something changes).
        case heldElsewhere
        /// Redis (or the store) failed after having worked, or at the first try.
        case failing(String)
        case recovered
    }

    private(set) var lifecycle: Lifecycle = .idle
    private(set) var lock: LockState
    private(set) var tickInFlight = false
    private var failing = false
    private var reportedHeldElsewhere = false
    private var lastSessionSweep: Int?
    let sessionSweepInterval: Int

    init(usesLock: Bool, sessionSweepInterval: Int) {
        self.lock = usesLock ? .notHeld : .notNeeded
        self.sessionSweepInterval = sessionSweepInterval
    }

    /// Returns false if the sweeper was already started or stopped.
    mutating func start() -> Bool {
        guard self.lifecycle == .idle else { return false }
        self.lifecycle = .running
        return true
    }

    mutating func tickStarted() -> TickStart {
        guard self.lifecycle == .running, !self.tickInFlight else { return .skip }
        self.tickInFlight = true
        switch self.lock {
        case .notNeeded: return .sweep
        case .notHeld: return .acquire
        case .held: return .renew
        }
    }

    /// After a renewal: on false the lock is gone and the tick tries to take it again.
    mutating func renewed(_ stillHeld: Bool) -> (next: TickStart, event: Event?) {
        if stillHeld { return (.sweep, nil) }
        self.lock = .notHeld
        return (.acquire, .lost)
    }

    /// After an acquire attempt. The tick sweeps if it returns `.sweep`, and ends otherwise.
    mutating func acquired(_ acquired: Bool) -> (next: TickStart, event: Event?) {
        if acquired {
            self.lock = .held
            self.reportedHeldElsewhere = false
            return (.sweep, .acquired)
        }
        if self.reportedHeldElsewhere { return (.skip, nil) }
        self.reportedHeldElsewhere = true
        return (.skip, .heldElsewhere)
    }

    /// Whether this tick also sweeps the session pool (the first tick does); marks it done.
    mutating func sessionSweepDue(now: Int) -> Bool {
        if let last = self.lastSessionSweep, now - last < self.sessionSweepInterval, now >= last { return false }
        self.lastSessionSweep = now
        return true
    }

    /// The tick ended, successfully or with `error`.
    mutating func tickFinished(failure: String?) -> Event? {
        self.tickInFlight = false
        if let failure {
            guard !self.failing else { return nil }
            self.failing = true
            return .failing(failure)
        }
        guard self.failing else { return nil }
        self.failing = false
        return .recovered
    }

    /// Stops for good: no tick starts after this.
    mutating func stop() {
        self.lifecycle = .stopped
    }

    /// Whether this node (thinks it) holds the lock, so should release it on stop.
    var holdsLock: Bool { self.lock == .held }

    /// After releasing on stop.
    mutating func released() {
        if self.lock == .held { self.lock = .notHeld }
    }
}
