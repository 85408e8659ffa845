import Logging
import NIOCore
import Presence
import Redis
import SocketIO

/// A lock that interoperates with redis-py's `Lock`, which Open WebUI takes around the same work: `SET key token NX
/// PX ttl` to take it (retried every 100 ms), `GET` to check it is still held, and a compare-and-delete to release.
struct RedisPyLock: Sendable {
    static let release = RedisScript(
        #"""
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """#
    )

    let redis: RedisClient
    let key: String
    let token: String

    init(redis: RedisClient, key: String) {
        self.redis = redis
        self.key = key
        var generator = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef".utf8)
        self.token = String(decoding: (0..<32).map { _ in hex[Int(generator.next(upperBound: UInt8(16)))] }, as: UTF8.self)
    }

    /// Takes the lock for `ttl`, trying until `deadline`; false when it stayed taken by someone else.
    func acquire(ttl: TimeAmount, deadline: NIODeadline, on eventLoop: EventLoop) -> EventLoopFuture<Bool> {
        redis.send("SET", key, token, "NX", "PX", String(ttl.nanoseconds / 1_000_000)).hop(to: eventLoop).flatMap {
            reply in
            if reply.string == "OK" { return eventLoop.makeSucceededFuture(true) }
            guard NIODeadline.now() + .milliseconds(100) < deadline else { return eventLoop.makeSucceededFuture(false) }
            return eventLoop.scheduleTask(in: .milliseconds(100)) {}.futureResult.flatMap {
                acquire(ttl: ttl, deadline: deadline, on: eventLoop)
            }
        }
    }

    func owned(on eventLoop: EventLoop) -> EventLoopFuture<Bool> {
        redis.send("GET", key).hop(to: eventLoop).map { $0.string == token }
    }

    func release(on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        redis.evaluate(Self.release, keys: [key], arguments: [token]).hop(to: eventLoop).map { _ in }
    }
}

/// Open WebUI's `publish_chat_presence`: who has a shared chat open, from SESSION_POOL's `chat_ids` across the whole
/// cluster (and Open WebUI's own workers), sent as `events {chat_id, shared, data: {type: "chat:presence", …}}` to
/// `chat:{id}`. Under the same Redis lock Python takes, so the two never publish a stale list over a fresh one.
package struct ChatPresence: Sendable {
    /// `WEBSOCKET_REDIS_LOCK_TIMEOUT`'s default: the lock's lifetime and how long to wait for it.
    static let lockTimeout: TimeAmount = .seconds(60)

    let presence: any PresenceStore
    let redis: RedisClient?
    let keyPrefix: String
    /// Sessions seen longer ago than this are not present (Open WebUI's `SESSION_POOL_TIMEOUT`).
    let sessionMaxAge: Int
    let logger: Logger
    /// Every open shared chat publishes on join, leave and disconnect: one failing Redis fails them all.
    let warnings: ThrottledWarnings
    let now: @Sendable () -> Int

    package init(
        presence: any PresenceStore,
        redis: RedisClient?,
        keyPrefix: String,
        sessionMaxAge: Int,
        logger: Logger,
        now: @escaping @Sendable () -> Int
    ) {
        self.presence = presence
        self.redis = redis
        self.keyPrefix = keyPrefix
        self.sessionMaxAge = sessionMaxAge
        self.logger = logger
        self.warnings = ThrottledWarnings(logger: logger)
        self.now = now
    }

    /// The users in the SESSION_POOL values that hold `chatID` and were seen recently, sorted by id.
    static func users(in sessions: [String], chatID: String, now: Int, maxAge: Int) -> [JSONValue] {
        var people: [String: String] = [:]
        for text in sessions {
            guard let session = try? JSONParser.parse(text), let id = session["id"]?.stringValue,
                session["chat_ids"]?.arrayValue?.contains(.string(chatID)) == true
            else { continue }
            let lastSeen = session["last_seen_at"].flatMap { value -> Double? in
                if case .number(let digits) = value { return Double(digits) }
                return nil
            } ?? 0
            guard Double(now) - lastSeen <= Double(maxAge) else { continue }
            people[id] = session["name"]?.stringValue ?? ""
        }
        return people.keys.sorted().map { id in ["id": .string(id), "name": .string(people[id] ?? "")] }
    }

    static func event(chatID: String, users: [JSONValue]) -> JSONValue {
        [
            "chat_id": .string(chatID), "shared": true,
            "data": ["type": "chat:presence", "data": ["users": .array(users)]],
        ]
    }

    /// Publishes the chat's presence; failures are logged, as Python logs them.
    func publish(chatID: String, namespace: Namespace, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        let emit: @Sendable ([String]) -> Void = { sessions in
            let users = Self.users(in: sessions, chatID: chatID, now: now(), maxAge: sessionMaxAge)
            namespace.emit("events", [Self.event(chatID: chatID, users: users)], to: ["chat:\(chatID)"])
        }
        guard let redis else {
            return presence.allSessions().hop(to: eventLoop).map(emit).recover { error in
                warnings.warning("chat presence not published", metadata: ["reason": "\(error)"])
            }
        }
        let lock = RedisPyLock(redis: redis, key: "\(keyPrefix):chat:\(chatID):presence:lock")
        // Python gives the whole publication half the lock's lifetime.
        let deadline = NIODeadline.now() + .nanoseconds(Self.lockTimeout.nanoseconds / 2)
        return lock.acquire(ttl: Self.lockTimeout, deadline: deadline, on: eventLoop).flatMap { acquired in
            guard acquired else {
                warnings.warning("chat presence not published: its lock stayed taken")
                return eventLoop.makeSucceededVoidFuture()
            }
            return presence.allSessions().hop(to: eventLoop).flatMap { sessions in
                lock.owned(on: eventLoop).map { owned in
                    if owned { emit(sessions) }
                }
            }.always { _ in
                lock.release(on: eventLoop).whenFailure { error in
                    logger.debug("chat presence lock not released (it expires)", metadata: ["reason": "\(error)"])
                }
            }
        }.recover { error in
            warnings.warning("chat presence not published", metadata: ["reason": "\(error)"])
        }
    }
}
