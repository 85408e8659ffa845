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
    var role: String
    /// The user object (a JSON object whose `id` is `id`), as SESSION_POOL stores it.
    var object: JSONValue

    /// The roles Open WebUI lets onto its socket (`VERIFIED_USER_ROLES`); a `pending` user gets nothing.
    static let allowedRoles: Set<String> = ["user", "admin"]
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

    func removeAll(where shouldRemove: (Value) -> Bool) {
        entries.withLockedValue { entries in entries = entries.filter { !shouldRemove($0.value.value) } }
    }

    func remove(_ key: String) {
        _ = entries.withLockedValue { $0.removeValue(forKey: key) }
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

/// What a re-validation of a held token found.
enum RevalidationOutcome: Sendable, Equatable {
    /// The token still authenticates its user.
    case valid
    /// The token no longer does (expired, revoked, refused by the backend): its user's sockets go.
    case refused(String)
    /// Not known this time (backend or Redis failure, or another node is checking it now): keep the sockets.
    case unknown(String)
}

/// Turns a client's token into a user: JWT verification, revocation keys in Redis, and the user's
/// details and channels from the backend (or from the token's claims without one).
package final class UserDirectory: Sendable {
    /// A cached user and when it was stored (epoch seconds), so a later server-side disconnect can outdate it.
    struct CachedUser: Sendable {
        var user: AuthenticatedUser
        var storedAt: Int
    }

    /// How long a re-validation result is shared with the other nodes.
    static let sharedValidTTLSeconds = 20
    static let sharedRefusedTTLSeconds = 60
    /// How long one node holds the cluster-wide right to check a token.
    static let checkLeaseMilliseconds = 10_000
    /// How long a user stays marked for a fresh check after a server-side disconnect.
    static let recheckMarkerTTLSeconds = 300
    /// Cache entries stored this close after a recheck mark are distrusted too (clock skew between nodes).
    static let recheckSkewSeconds = 2

    private let currentVerifier: NIOLockedValueBox<JWTVerifier?>
    let revocation: RevocationKeys
    /// Switchboard's own keys: shared check answers, recheck marks.
    let redis: RedisClient?
    /// Where Open WebUI writes its revocation keys (its `REDIS_URL`); `redis` when it is the same.
    let authRedis: RedisClient?
    let backend: BackendClient?
    let userPath: String
    let channelsPath: String
    let revalidatePath: String
    let users: ExpiringCache<CachedUser>
    let channels: ExpiringCache<[String]>
    let chatWriteAccess: ExpiringCache<Bool>
    let logger: Logger
    /// Epoch seconds, injectable for tests.
    let now: @Sendable () -> Int

    package init(
        verifier: JWTVerifier?,
        revocation: RevocationKeys,
        redis: RedisClient?,
        authRedis: RedisClient? = nil,
        backend: BackendClient?,
        userPath: String,
        channelsPath: String,
        revalidatePath: String = "/api/v1/users/user/info",
        cacheTTL: TimeAmount,
        logger: Logger,
        now: @escaping @Sendable () -> Int
    ) {
        self.currentVerifier = NIOLockedValueBox(verifier)
        self.revocation = revocation
        self.redis = redis
        self.authRedis = authRedis
        self.backend = backend
        self.userPath = userPath
        self.channelsPath = channelsPath
        self.revalidatePath = revalidatePath
        self.users = ExpiringCache(ttl: cacheTTL)
        self.channels = ExpiringCache(ttl: cacheTTL)
        self.chatWriteAccess = ExpiringCache(ttl: cacheTTL)
        self.logger = logger
        self.now = now
    }

    /// The keys tokens are verified with; replaced on SIGHUP without touching connections.
    package var verifier: JWTVerifier? {
        get { currentVerifier.withLockedValue { $0 } }
        set { currentVerifier.withLockedValue { $0 = newValue } }
    }

    /// `{prefix}:switchboard:user:{id}:recheck`: epoch seconds of the user's last server-side disconnect.
    func recheckKey(userID: String) -> String {
        "\(revocation.prefix):switchboard:user:\(userID):recheck"
    }

    /// `{prefix}:switchboard:token:{sha256}:check`: the cluster's latest re-validation of a token (`ok`/`refused`).
    func checkKey(token: String) -> String {
        "\(revocation.prefix):switchboard:token:\(TokenDigest.sha256Hex(token)):check"
    }

    /// The user of `token`, or why not. Never fails the future with anything but
    /// `AuthenticationFailure`.
    func authenticate(token: String?, on eventLoop: EventLoop) -> EventLoopFuture<AuthenticatedUser> {
        guard let token, !token.isEmpty else {
            return eventLoop.makeFailedFuture(AuthenticationFailure(reason: "no token"))
        }
        let verified: VerifiedToken
        switch verify(token) {
        case .success(let token): verified = token
        case .failure(let failure): return eventLoop.makeFailedFuture(failure)
        }
        return checkRevocation(verified, token: token, on: eventLoop).flatMap { recheckAfter -> EventLoopFuture<AuthenticatedUser> in
            if let cached = self.users.value(for: token, now: .now()),
                recheckAfter.map({ cached.storedAt > $0 + Self.recheckSkewSeconds }) ?? true
            {
                return eventLoop.makeSucceededFuture(cached.user)
            }
            return self.loadUser(verified, token: token, on: eventLoop).map { user in
                self.users.store(CachedUser(user: user, storedAt: self.now()), for: token, now: .now())
                return user
            }
        }
    }

    private func verify(_ token: String) -> Result<VerifiedToken, AuthenticationFailure> {
        guard let verifier else { return .failure(AuthenticationFailure(reason: "no JWT key configured")) }
        do {
            return .success(try verifier.verify(token: token, now: now()))
        } catch {
            return .failure(AuthenticationFailure(reason: "invalid token: \(error.code)"))
        }
    }

    /// After the server disconnected a user's socket (Open WebUI does so on sign-out, role change or deletion),
    /// the user's next authentication on any node asks the backend again instead of trusting a cache.
    func markForRecheck(userID: String, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        users.removeAll { $0.user.id == userID }
        guard let redis else { return eventLoop.makeSucceededVoidFuture() }
        return redis.send(
            "SET", recheckKey(userID: userID), String(now()), "EX", String(Self.recheckMarkerTTLSeconds)
        ).hop(to: eventLoop).flatMapThrowing { reply in
            _ = try reply.throwingServerError()
        }
    }

    /// Checks a token a socket already holds, as Open WebUI re-checks each of its sockets: still a valid JWT,
    /// not revoked, and (with a backend) accepted by `revalidatePath` with the user's own token. With Redis,
    /// one node checks a token at a time and the others reuse its answer for a few seconds.
    func revalidate(token: String, on eventLoop: EventLoop) -> EventLoopFuture<RevalidationOutcome> {
        let verified: VerifiedToken
        switch verify(token) {
        case .success(let token): verified = token
        case .failure(let failure): return eventLoop.makeSucceededFuture(.refused(failure.reason))
        }
        guard let redis else {
            return askBackend(token, on: eventLoop)
        }
        let checkKey = checkKey(token: token)
        return readRevocation(verified, with: checkKey, redis: redis, on: eventLoop).flatMap {
            read -> EventLoopFuture<RevalidationOutcome> in
            if read.revoked { return eventLoop.makeSucceededFuture(.refused("token revoked")) }
            switch read.value {
            case "ok"?: return eventLoop.makeSucceededFuture(.valid)
            case "refused"?: return eventLoop.makeSucceededFuture(.refused("refused by the backend"))
            default: break
            }
            guard self.backend != nil else { return eventLoop.makeSucceededFuture(.valid) }
            return redis.send("SET", checkKey + ":lease", "1", "NX", "PX", String(Self.checkLeaseMilliseconds))
                .hop(to: eventLoop)
                .flatMap { lease -> EventLoopFuture<RevalidationOutcome> in
                    guard lease.string == "OK" else {
                        return eventLoop.makeSucceededFuture(.unknown("another node is checking this token"))
                    }
                    return self.askBackend(token, on: eventLoop).flatMap { outcome in
                        let value: (String, Int)?
                        switch outcome {
                        case .valid: value = ("ok", Self.sharedValidTTLSeconds)
                        case .refused: value = ("refused", Self.sharedRefusedTTLSeconds)
                        case .unknown: value = nil
                        }
                        guard let value else { return eventLoop.makeSucceededFuture(outcome) }
                        return redis.send("SET", checkKey, value.0, "EX", String(value.1)).hop(to: eventLoop)
                            .map { _ in outcome }
                            .recover { _ in outcome }
                    }
                }
        }.recover { error in .unknown("revocation check failed: \(error)") }
    }

    /// The backend's verdict on a token: 2xx valid, 401/403 refused, anything else unknown.
    private func askBackend(_ token: String, on eventLoop: EventLoop) -> EventLoopFuture<RevalidationOutcome> {
        guard let backend else { return eventLoop.makeSucceededFuture(.valid) }
        return backend.get(revalidatePath, bearer: token, on: eventLoop).map { _ in
            RevalidationOutcome.valid
        }.recover { error in
            if let failure = error as? BackendFailure, let status = failure.status, status == 401 || status == 403 {
                self.users.remove(token)
                return .refused("the backend answered \(status)")
            }
            return .unknown("\(error)")
        }
    }

    /// The channel ids of the token's user (empty without a backend). `fresh` skips the cache: the
    /// client asks right after creating a channel, which a cached list cannot hold yet.
    func channelIDs(token: String, fresh: Bool = false, on eventLoop: EventLoop) -> EventLoopFuture<[String]> {
        guard let backend else { return eventLoop.makeSucceededFuture([]) }
        if !fresh, let cached = channels.value(for: token, now: .now()) {
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

    /// Whether the backend lets the token's user read note `id` (`GET /api/v1/notes/{id}`: 2xx yes, 401/403/404
    /// no). Without a backend no note can be checked, so none is joined.
    func canReadNote(_ id: String, token: String, on eventLoop: EventLoop) -> EventLoopFuture<Bool> {
        guard let backend else {
            return eventLoop.makeFailedFuture(AuthenticationFailure(reason: "no backend to check note access"))
        }
        return backend.get("/api/v1/notes/\(id)", bearer: token, on: eventLoop).map { _ in true }.flatMapError { error in
            if let status = (error as? BackendFailure)?.status, (400..<500).contains(status) {
                return eventLoop.makeSucceededFuture(false)
            }
            return eventLoop.makeFailedFuture(AuthenticationFailure(reason: "\(error)", isInfrastructure: true))
        }
    }

    /// A whole chat (`GET /api/v1/chats/{id}`) can hold a long history; it is read only to learn write access.
    static let maxChatAnswerBytes = 64 << 20

    /// Whether the token's user may read chat `id`: `GET /api/v1/chats/{id}/tags` runs exactly Open WebUI's read
    /// check (`get_accessible_chat_by_id`) and answers little.
    func canReadChat(_ id: String, token: String, on eventLoop: EventLoop) -> EventLoopFuture<Bool> {
        accessCheck("/api/v1/chats/\(id)/tags", token: token, on: eventLoop).map { $0 != nil }
    }

    /// Whether the token's user may write to chat `id`: Open WebUI's chat answer says `share_mode: "continue"`
    /// exactly when its write check passes. Cached per token and chat like users are.
    func canWriteChat(_ id: String, token: String, on eventLoop: EventLoop) -> EventLoopFuture<Bool> {
        let key = id + "\u{0}" + token
        if let cached = chatWriteAccess.value(for: key, now: .now()) { return eventLoop.makeSucceededFuture(cached) }
        return accessCheck("/api/v1/chats/\(id)", token: token, maxBytes: Self.maxChatAnswerBytes, on: eventLoop).map {
            answer in
            let allowed = answer?["chat"]?["share_mode"]?.stringValue == "continue"
            self.chatWriteAccess.store(allowed, for: key, now: .now())
            return allowed
        }
    }

    /// The answer of an access-checked GET, nil when the backend refuses (4xx); fails when it cannot tell.
    private func accessCheck(_ path: String, token: String, maxBytes: Int = BackendClient.maxAnswerBytes, on eventLoop: EventLoop)
        -> EventLoopFuture<JSONValue?>
    {
        guard let backend else {
            return eventLoop.makeFailedFuture(AuthenticationFailure(reason: "no backend to check access"))
        }
        return backend.getJSON(path, bearer: token, maxBytes: maxBytes, on: eventLoop).map { Optional($0) }.flatMapError {
            error in
            if let status = (error as? BackendFailure)?.status, (400..<500).contains(status) {
                return eventLoop.makeSucceededFuture(nil)
            }
            return eventLoop.makeFailedFuture(AuthenticationFailure(reason: "\(error)", isInfrastructure: true))
        }
    }

    /// Open WebUI's revocation of `token` (its jti's key, and the user's revoked-at stamp), read with one of
    /// Switchboard's own keys, `key`: one round trip when both live in one Redis, two at once otherwise.
    private func readRevocation(_ token: VerifiedToken, with key: String, redis: RedisClient, on eventLoop: EventLoop)
        -> EventLoopFuture<(revoked: Bool, value: String?)>
    {
        var reads = [RESPCommand("GET", arguments: [revocation.userRevokedAtKey(userID: token.userID)])]
        if let jti = token.tokenID { reads.append(RESPCommand("EXISTS", arguments: [revocation.tokenRevokedKey(jti: jti)])) }
        let expected = reads.count
        let revoked = { @Sendable (replies: ArraySlice<RESPValue>) throws -> Bool in
            guard replies.count == expected else { throw RevocationReadFailure() }
            let first = replies.startIndex
            let revokedAt = try replies[first].throwingServerError().string.flatMap { Int($0) ?? Double($0).map { Int($0) } }
            let tokenRevoked = expected > 1 ? (try replies[first + 1].throwingServerError().int ?? 0) > 0 : false
            return RevocationKeys.isRevoked(token, tokenRevoked: tokenRevoked, userRevokedAt: revokedAt)
        }
        guard let authRedis, authRedis !== redis else {
            var pipeline = RedisPipeline()
            pipeline.append("GET", key)
            for read in reads { pipeline.append(read) }
            return redis.send(pipeline).hop(to: eventLoop).flatMapThrowing { replies in
                guard let own = replies.first else { throw RevocationReadFailure() }
                return (try revoked(replies.dropFirst()), try own.throwingServerError().string)
            }
        }
        var revocationReads = RedisPipeline()
        for read in reads { revocationReads.append(read) }
        let own = redis.send("GET", key).hop(to: eventLoop)
        return authRedis.send(revocationReads).hop(to: eventLoop).and(own).flatMapThrowing { replies, own in
            (try revoked(replies[...]), try own.throwingServerError().string)
        }
    }

    /// Fails when the token is revoked; otherwise answers the user's recheck mark (epoch seconds), if any.
    private func checkRevocation(_ token: VerifiedToken, token raw: String, on eventLoop: EventLoop)
        -> EventLoopFuture<Int?>
    {
        guard let redis else { return eventLoop.makeSucceededFuture(nil) }
        return readRevocation(token, with: recheckKey(userID: token.userID), redis: redis, on: eventLoop)
            .flatMapThrowing { read -> Int? in
                if read.revoked { throw AuthenticationFailure(reason: "token revoked") }
                return read.value.flatMap { Int($0) }
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
            return eventLoop.makeCompletedFuture { try Self.admitted(Self.user(fromClaims: token)) }
        }
        return backend.getJSON(userPath, bearer: raw, on: eventLoop).flatMapThrowing { answer in
            guard answer.isObject, let id = Self.identifier(answer["id"]) else {
                throw BackendFailure(kind: .invalidAnswer, detail: "user answer has no id")
            }
            guard id == token.userID else {
                throw AuthenticationFailure(reason: "the backend's user is not the token's user")
            }
            return try Self.admitted(
                AuthenticatedUser(
                    id: id,
                    name: answer["name"]?.stringValue ?? id,
                    role: answer["role"]?.stringValue ?? "pending",
                    object: Self.sessionObject(answer, id: id)
                )
            )
        }.flatMapErrorThrowing { error in
            if error is AuthenticationFailure { throw error }
            let refused = (error as? BackendFailure)?.status.map { $0 == 401 || $0 == 403 } ?? false
            throw AuthenticationFailure(reason: "\(error)", isInfrastructure: !refused)
        }
    }

    /// Refuses a user whose role Open WebUI keeps off its socket.
    static func admitted(_ user: AuthenticatedUser) throws -> AuthenticatedUser {
        guard AuthenticatedUser.allowedRoles.contains(user.role) else {
            throw AuthenticationFailure(reason: "role \(user.role) is not allowed")
        }
        return user
    }

    /// The user object from the token alone: `id` and the usual profile claims.
    static func user(fromClaims token: VerifiedToken) -> AuthenticatedUser {
        let name = token.claims["name"]?.stringValue ?? token.userID
        var members: [(key: String, value: JSONValue)] = [("id", .string(token.userID)), ("name", .string(name))]
        if let email = token.claims["email"]?.stringValue { members.append(("email", .string(email))) }
        let role = token.claims["role"]?.stringValue ?? "user"
        members.append(("role", .string(role)))
        return AuthenticatedUser(id: token.userID, name: name, role: role, object: .object(members))
    }

    /// The fields of Open WebUI's `UserModel` that its socket layer stores in SESSION_POOL: the model dump less
    /// the five fields it excludes. Anything else in a backend answer (the bearer `token`, `token_type`,
    /// `expires_at`, `permissions`, …) never reaches Redis.
    static let sessionFields: [String] = [
        "id", "email", "username", "role", "name", "timezone", "presence_state", "status_emoji", "status_message",
        "status_expires_at", "info", "settings", "oauth", "scim", "last_active_at", "updated_at", "created_at",
    ]
    private static let sessionFieldSet = Set(sessionFields)

    /// The backend's user answer reduced to `sessionFields`, with `id` as a string (Open WebUI reads it back as one).
    static func sessionObject(_ object: JSONValue, id: String) -> JSONValue {
        guard case .object(let members) = object else { return ["id": .string(id)] }
        return .object(
            members.compactMap { member in
                guard sessionFieldSet.contains(member.key) else { return nil }
                return member.key == "id" ? (key: "id", value: .string(id)) : member
            }
        )
    }

    package static func identifier(_ value: JSONValue?) -> String? {
        switch value {
        case .string(let text)? where !text.isEmpty: return text
        case .number(let digits)?: return digits
        default: return nil
        }
    }
}

private struct RevocationReadFailure: Error, CustomStringConvertible {
    var description: String { "revocation check failed: incomplete answer" }
}
