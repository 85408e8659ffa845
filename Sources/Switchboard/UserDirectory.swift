import Auth
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Redis
import SocketIO

/// An authenticated user: the verified token's user and the user object stored in the pools.
struct AuthenticatedUser: Sendable, Equatable {
    var id: String
    var name: String
    /// The user object (a JSON object whose `id` is `id`), as SESSION_POOL stores it.
    var object: JSONValue
}

/// Why a token was not accepted; `reason` is logged and shown to strict-mode clients.
struct AuthenticationFailure: Error, Equatable, CustomStringConvertible {
    var reason: String
    /// The backend or Redis failed, not the client's token: worth an operator's attention.
    var isInfrastructure = false
    var description: String { reason }
}

/// A small time-bounded cache. Entries are keyed by the token itself (kept in memory only, never
/// logged); the bound keeps a flood of distinct tokens from growing it without limit.
final class ExpiringCache<Value: Sendable>: Sendable {
    private struct Entry {
        var value: Value
        var expires: NIODeadline
    }

    private let entries = NIOLockedValueBox<[String: Entry]>([:])
    let ttl: TimeAmount
    let capacity: Int

    init(ttl: TimeAmount, capacity: Int = 10_000) {
        self.ttl = ttl
        self.capacity = capacity
    }

    func value(for key: String, now: NIODeadline) -> Value? {
        entries.withLockedValue { entries in
            guard let entry = entries[key] else { return nil }
            guard entry.expires > now else {
                entries[key] = nil
                return nil
            }
            return entry.value
        }
    }

    func store(_ value: Value, for key: String, now: NIODeadline) {
        guard ttl > .zero else { return }
        entries.withLockedValue { entries in
            if entries.count >= capacity {
                entries = entries.filter { $0.value.expires > now }
                if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            }
            entries[key] = Entry(value: value, expires: now + ttl)
        }
    }
}

/// Turns a client's token into a user: JWT verification, revocation keys in Redis, and the user's
/// details and channels from the backend (or from the token's claims without one).
final class UserDirectory: Sendable {
    private let currentVerifier: NIOLockedValueBox<JWTVerifier?>
    let revocation: RevocationKeys
    let redis: RedisClient?
    let backend: BackendClient?
    let userPath: String
    let channelsPath: String
    let users: ExpiringCache<AuthenticatedUser>
    let channels: ExpiringCache<[String]>
    let logger: Logger
    /// Epoch seconds, injectable for tests.
    let now: @Sendable () -> Int

    init(
        verifier: JWTVerifier?,
        revocation: RevocationKeys,
        redis: RedisClient?,
        backend: BackendClient?,
        userPath: String,
        channelsPath: String,
        cacheTTL: TimeAmount,
        logger: Logger,
        now: @escaping @Sendable () -> Int
    ) {
        self.currentVerifier = NIOLockedValueBox(verifier)
        self.revocation = revocation
        self.redis = redis
        self.backend = backend
        self.userPath = userPath
        self.channelsPath = channelsPath
        self.users = ExpiringCache(ttl: cacheTTL)
        self.channels = ExpiringCache(ttl: cacheTTL)
        self.logger = logger
        self.now = now
    }

    /// The keys tokens are verified with; replaced on SIGHUP without touching connections.
    var verifier: JWTVerifier? {
        get { currentVerifier.withLockedValue { $0 } }
        set { currentVerifier.withLockedValue { $0 = newValue } }
    }

    /// The user of `token`, or why not. Never fails the future with anything but
    /// `AuthenticationFailure`.
    func authenticate(token: String?, on eventLoop: EventLoop) -> EventLoopFuture<AuthenticatedUser> {
        guard let token, !token.isEmpty else {
            return eventLoop.makeFailedFuture(AuthenticationFailure(reason: "no token"))
        }
        guard let verifier else {
            return eventLoop.makeFailedFuture(AuthenticationFailure(reason: "no JWT key configured"))
        }
        let verified: VerifiedToken
        do {
            verified = try verifier.verify(token: token, now: now())
        } catch {
            return eventLoop.makeFailedFuture(AuthenticationFailure(reason: "invalid token: \(error.code)"))
        }
        return checkRevocation(verified, on: eventLoop).flatMap { () -> EventLoopFuture<AuthenticatedUser> in
            if let cached = self.users.value(for: token, now: .now()) {
                return eventLoop.makeSucceededFuture(cached)
            }
            return self.loadUser(verified, token: token, on: eventLoop).map { user in
                self.users.store(user, for: token, now: .now())
                return user
            }
        }
    }

    /// The channel ids of the token's user (empty without a backend).
    func channelIDs(token: String, on eventLoop: EventLoop) -> EventLoopFuture<[String]> {
        guard let backend else { return eventLoop.makeSucceededFuture([]) }
        if let cached = channels.value(for: token, now: .now()) {
            return eventLoop.makeSucceededFuture(cached)
        }
        return backend.getJSON(channelsPath, bearer: token, on: eventLoop).flatMapThrowing { answer in
            guard let list = answer.arrayValue ?? answer["data"]?.arrayValue ?? answer["channels"]?.arrayValue else {
                throw BackendFailure(kind: .invalidAnswer, detail: "channels answer is not a list")
            }
            let ids = list.compactMap { item in Self.identifier(item["id"] ?? item) }
            self.channels.store(ids, for: token, now: .now())
            return ids
        }
    }

    private func checkRevocation(_ token: VerifiedToken, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        guard let redis else { return eventLoop.makeSucceededVoidFuture() }
        var pipeline = RedisPipeline()
        if let jti = token.tokenID { pipeline.append("EXISTS", revocation.tokenRevokedKey(jti: jti)) }
        pipeline.append("GET", revocation.userRevokedAtKey(userID: token.userID))
        let commands = pipeline.count
        return redis.send(pipeline).flatMapThrowing { replies in
            guard replies.count == commands, let revokedAtReply = replies.last else {
                throw AuthenticationFailure(reason: "revocation check failed")
            }
            _ = try revokedAtReply.throwingServerError()
            var tokenRevoked = false
            if token.tokenID != nil { tokenRevoked = (try replies[0].throwingServerError().int ?? 0) > 0 }
            let revokedAt = revokedAtReply.string.flatMap { Int($0) ?? Double($0).map { Int($0) } }
            if RevocationKeys.isRevoked(token, tokenRevoked: tokenRevoked, userRevokedAt: revokedAt) {
                throw AuthenticationFailure(reason: "token revoked")
            }
        }.flatMapErrorThrowing { error in
            if error is AuthenticationFailure { throw error }
            // Fail closed: a token that cannot be checked is not accepted.
            throw AuthenticationFailure(reason: "revocation check failed: \(error)", isInfrastructure: true)
        }.hop(to: eventLoop)
    }

    private func loadUser(_ token: VerifiedToken, token raw: String, on eventLoop: EventLoop) -> EventLoopFuture<
        AuthenticatedUser
    > {
        guard let backend else {
            return eventLoop.makeSucceededFuture(Self.user(fromClaims: token))
        }
        return backend.getJSON(userPath, bearer: raw, on: eventLoop).flatMapThrowing { answer in
            guard answer.isObject, let id = Self.identifier(answer["id"]) else {
                throw BackendFailure(kind: .invalidAnswer, detail: "user answer has no id")
            }
            guard id == token.userID else {
                throw AuthenticationFailure(reason: "the backend's user is not the token's user")
            }
            return AuthenticatedUser(id: id, name: answer["name"]?.stringValue ?? id, object: Self.normalized(answer, id: id))
        }.flatMapErrorThrowing { error in
            if error is AuthenticationFailure { throw error }
            let refused = (error as? BackendFailure)?.status.map { $0 == 401 || $0 == 403 } ?? false
            throw AuthenticationFailure(reason: "\(error)", isInfrastructure: !refused)
        }
    }

    /// The user object from the token alone: `id` and the usual profile claims.
    static func user(fromClaims token: VerifiedToken) -> AuthenticatedUser {
        let name = token.claims["name"]?.stringValue ?? token.userID
        var members: [(key: String, value: JSONValue)] = [("id", .string(token.userID)), ("name", .string(name))]
        for key in ["email", "profile_image_url"] {
            if let value = token.claims[key]?.stringValue { members.append((key, .string(value))) }
        }
        members.append(("role", .string(token.claims["role"]?.stringValue ?? "user")))
        return AuthenticatedUser(id: token.userID, name: name, object: .object(members))
    }

    /// The backend's user object with `id` as a string (Open WebUI reads it back as one).
    static func normalized(_ object: JSONValue, id: String) -> JSONValue {
        guard case .object(let members) = object else { return object }
        return .object(members.map { $0.key == "id" ? (key: "id", value: .string(id)) : $0 })
    }

    static func identifier(_ value: JSONValue?) -> String? {
        switch value {
        case .string(let text)? where !text.isEmpty: return text
        case .number(let digits)?: return digits
        default: return nil
        }
    }
}
