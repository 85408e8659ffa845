import NIOCore
import Redis

/// The cluster-wide lock under which one node at a time sweeps the pools.
public protocol PresenceSweepLock: Sendable {
    /// Takes the lock for `ttl` seconds if nobody holds it. True if `owner` now holds it.
    func acquire(owner: String, ttl: Int) -> EventLoopFuture<Bool>
    /// Extends the lock to `ttl` seconds if `owner` still holds it. False if it was lost (expired, taken).
    func renew(owner: String, ttl: Int) -> EventLoopFuture<Bool>
    /// Gives the lock up if `owner` holds it. True if it did.
    func release(owner: String) -> EventLoopFuture<Bool>
}

/// Open WebUI's `usage_cleanup_lock`: `SET {p}:usage_cleanup_lock <owner> NX EX <ttl>`, renewed and released by
/// scripts that act only while the key still holds the owner (never extending or deleting another node's lock).
public struct RedisSweepLock: PresenceSweepLock {
    public let redis: any RedisCommandSending
    public let key: String

    public init(redis: any RedisCommandSending, key: String) {
        self.redis = redis
        self.key = key
    }

    /// The lock at ``PresenceConfiguration/lockKey``.
    public init(redis: any RedisCommandSending, configuration: PresenceConfiguration) {
        self.init(redis: redis, key: configuration.lockKey)
    }

    public func acquire(owner: String, ttl: Int) -> EventLoopFuture<Bool> {
        self.redis.send(RESPCommand("SET", self.key, owner, "NX", "EX", ttl), timeout: nil).map { !$0.isNull }
    }

    public func renew(owner: String, ttl: Int) -> EventLoopFuture<Bool> {
        self.redis.evaluate(PresenceScripts.renewLock, keys: [self.key], arguments: [owner, ttl]).map { $0.int == 1 }
    }

    public func release(owner: String) -> EventLoopFuture<Bool> {
        self.redis.evaluate(PresenceScripts.releaseLock, keys: [self.key], arguments: [owner]).map { $0.int == 1 }
    }
}
