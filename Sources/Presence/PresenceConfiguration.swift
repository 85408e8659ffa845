import NIOCore

/// Settings of the shared presence pools and their sweeps. Every field documents its default; the defaults are
/// Open WebUI's.
///
/// Ages and the lock TTL are whole seconds: the pools store epoch seconds and `SET … EX` takes seconds.
public struct PresenceConfiguration: Sendable, Hashable {
    /// Prefix of every key, Open WebUI's `REDIS_KEY_PREFIX`. Default: `open-webui`.
    ///
    /// The pool scripts touch three keys at once; on Redis Cluster give the prefix a hash tag (`{open-webui}`, set
    /// the same `REDIS_KEY_PREFIX` on the Python side) so that all keys live in one slot.
    public var keyPrefix: String
    /// Usage entries (`USAGE_POOL[model][sid]`) older than this are removed. Default: 3 s (Open WebUI's
    /// `TIMEOUT_DURATION`).
    public var usageMaxAge: TimeAmount
    /// How often the lock holder sweeps the usage pool (and renews the lock). Default: 3 s.
    public var usageSweepInterval: TimeAmount
    /// The client's heartbeat period (the `heartbeat` event). Default: 30 s. Only used for ``sessionMaxAge``.
    public var heartbeatInterval: TimeAmount
    /// How often the lock holder sweeps the session pool. Default: 30 s. Each session sweep reads every session
    /// (in batches of ``scanBatchSize``), so it runs less often than the usage sweep.
    public var sessionSweepInterval: TimeAmount
    /// Time for which the sweep lock is held after each acquire or renewal. Default: 60 s. The holder renews it on
    /// every tick (every ``usageSweepInterval``), far within the TTL.
    public var lockTTL: TimeAmount
    /// Sessions read per script call when sweeping or removing by prefix (`HSCAN … COUNT`). Default: 500. Each
    /// call is atomic, and small enough not to block Redis for long.
    public var scanBatchSize: Int
    /// Whether new sessions are listed in USER_POOL (`{p}:user_pool`). Default false: Open WebUI 0.12 neither
    /// reads nor writes it, and each connect would pay a hash write for nothing. Without it, a user's sessions
    /// and the users online are read from SESSION_POOL. Removals always clean USER_POOL, so turning it off
    /// leaves no stale entries behind.
    public var writesUserPool: Bool

    public init(
        keyPrefix: String = "open-webui",
        usageMaxAge: TimeAmount = .seconds(3),
        usageSweepInterval: TimeAmount = .seconds(3),
        heartbeatInterval: TimeAmount = .seconds(30),
        sessionSweepInterval: TimeAmount = .seconds(30),
        lockTTL: TimeAmount = .seconds(60),
        scanBatchSize: Int = 500,
        writesUserPool: Bool = false
    ) {
        self.keyPrefix = keyPrefix
        self.usageMaxAge = usageMaxAge
        self.usageSweepInterval = usageSweepInterval
        self.heartbeatInterval = heartbeatInterval
        self.sessionSweepInterval = sessionSweepInterval
        self.lockTTL = lockTTL
        self.scanBatchSize = scanBatchSize
        self.writesUserPool = writesUserPool
    }

    /// Sessions whose `last_seen_at` is older than this are reaped: max(4 × ``heartbeatInterval``, 120 s), so
    /// 120 s by default.
    public var sessionMaxAge: TimeAmount {
        max(self.heartbeatInterval * 4, .seconds(120))
    }

    /// `{p}:session_pool`: sid → user object JSON with `last_seen_at`.
    public var sessionPoolKey: String { "\(self.keyPrefix):session_pool" }
    /// `{p}:user_pool`: user id → JSON list of sids.
    public var userPoolKey: String { "\(self.keyPrefix):user_pool" }
    /// `{p}:usage_pool`: model id → JSON `{sid: {"updated_at": epoch_s}}`.
    public var usagePoolKey: String { "\(self.keyPrefix):usage_pool" }
    /// `{p}:usage_cleanup_lock`: the sweep lock, holding the holder's node id.
    public var lockKey: String { "\(self.keyPrefix):usage_cleanup_lock" }
}

extension TimeAmount {
    /// Whole seconds, rounded down (at least 1 for positive amounts below a second).
    var wholeSeconds: Int {
        let seconds = Int(self.nanoseconds / 1_000_000_000)
        return seconds == 0 && self.nanoseconds > 0 ? 1 : seconds
    }
}
