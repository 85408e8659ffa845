import NIOCore

/// Open WebUI's shared presence pools: SESSION_POOL, USER_POOL and USAGE_POOL.
///
/// ``RedisPresenceStore`` keeps them in Redis in exactly the `RedisDict` layout (hashes of JSON values, see
/// ``PresenceConfiguration``), so a Python backend reading them keeps working; ``InMemoryPresenceStore`` is its
/// single-node twin with the same observable behaviour. Every update is atomic.
///
/// Times are epoch seconds given by the caller (an injected clock). A sid's entries are consistent across the
/// pools: USER_POOL lists exactly the sids whose SESSION_POOL entry names that user, and a removed session leaves
/// nothing behind in any pool.
public protocol PresenceStore: Sendable {
    /// SESSION_POOL[sid] = `userJSON` with `last_seen_at` = now; appends sid to USER_POOL[userID] if absent. If
    /// the sid was registered to another user before, it leaves that user's list.
    ///
    /// - Parameter userJSON: the user object; it must be a JSON object whose top-level `id` is the string `userID`
    ///   (Open WebUI reads the user id of a session from there). Fails with ``PresenceError/Code/invalidUserJSON``
    ///   otherwise.
    func addSession(sid: String, userID: String, userJSON: String, now: Int) -> EventLoopFuture<Void>

    /// Heartbeat: sets `last_seen_at` of an existing session to now, rewriting only that member of the stored
    /// object (or appending it). Returns false, changing and creating nothing, if the session does not exist (or its
    /// stored value is not a JSON object).
    func touchSession(sid: String, now: Int) -> EventLoopFuture<Bool>

    /// Sets member `name` of an existing session to `json` (a JSON value), rewriting only that member of the stored
    /// object (or appending it), e.g. Open WebUI's `chat_ids`. Returns false, changing nothing, if the session does
    /// not exist (or its stored value is not a JSON object).
    func setSessionMember(sid: String, name: String, json: String) -> EventLoopFuture<Bool>

    /// Every SESSION_POOL value, read in bounded batches (not one snapshot: a session may come or go meanwhile).
    func allSessions() -> EventLoopFuture<[String]>

    /// USAGE_POOL[model][sid] = {"updated_at": now}, keeping the model's other entries.
    func recordUsage(sid: String, model: String, now: Int) -> EventLoopFuture<Void>

    /// Removes the sid from SESSION_POOL, from its user's USER_POOL list (deleting the user when the list empties)
    /// and from every model of USAGE_POOL (deleting models left empty).
    func removeSession(sid: String) -> EventLoopFuture<SessionRemoval>

    /// Removes every session whose sid starts with `prefix` (the sockets of a dead node), like
    /// ``removeSession(sid:)``, and any USER_POOL / USAGE_POOL entry with such a sid. Returns how many sessions
    /// SESSION_POOL held.
    func removeSessions(withPrefix prefix: String) -> EventLoopFuture<Int>

    /// The stored SESSION_POOL value (user object JSON with `last_seen_at`), or nil.
    func session(sid: String) -> EventLoopFuture<String?>

    /// The user's sids (empty if none): USER_POOL[userID], in the order they connected, when USER_POOL is written
    /// (see ``PresenceConfiguration/writesUserPool``); otherwise read from SESSION_POOL, sorted.
    func sessions(ofUser userID: String) -> EventLoopFuture<[String]>

    /// The ids of users with a session, sorted (USER_POOL's keys, or SESSION_POOL's owners without it).
    func usersOnline() -> EventLoopFuture<[String]>

    /// USAGE_POOL's model ids, sorted.
    func modelsInUse() -> EventLoopFuture<[String]>

    /// Removes usage entries whose `updated_at` is more than `maxAge` seconds before `now`, and models left empty.
    func sweepUsage(now: Int, maxAge: Int) -> EventLoopFuture<UsageSweep>

    /// Reaps sessions whose `last_seen_at` is more than `maxAge` seconds before `now`, with their USER_POOL and
    /// USAGE_POOL entries. Returns the reaped sids, sorted. Sessions without a numeric `last_seen_at` (not written
    /// by this store) are left alone.
    func sweepSessions(now: Int, maxAge: Int) -> EventLoopFuture<[String]>
}

/// What ``PresenceStore/removeSession(sid:)`` found.
public struct SessionRemoval: Sendable, Hashable {
    /// Whether SESSION_POOL held the sid.
    public var removed: Bool
    /// The user the session belonged to, when known.
    public var userID: String?
    /// Whether that user still has other sessions (false when ``userID`` is nil). Open WebUI broadcasts
    /// `user-list` when a user's last session goes.
    public var userStillOnline: Bool

    public init(removed: Bool, userID: String?, userStillOnline: Bool) {
        self.removed = removed
        self.userID = userID
        self.userStillOnline = userStillOnline
    }
}

/// What a usage sweep removed; a non-empty sweep is worth a `usage` broadcast.
public struct UsageSweep: Sendable, Hashable {
    /// Usage entries (model, sid) removed.
    public var removedEntries: Int
    /// Models deleted from USAGE_POOL.
    public var removedModels: Int

    public init(removedEntries: Int, removedModels: Int) {
        self.removedEntries = removedEntries
        self.removedModels = removedModels
    }
}

/// An error of the presence layer. Redis failures are passed through as the Redis layer's own errors.
public struct PresenceError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Base: Hashable, Sendable {
            case invalidUserJSON, unexpectedReply
        }
        fileprivate let base: Base

        /// The user JSON given to `addSession` is not a JSON object whose `id` is the user id.
        public static let invalidUserJSON = Code(base: .invalidUserJSON)
        /// Redis answered with a reply of the wrong shape.
        public static let unexpectedReply = Code(base: .unexpectedReply)

        public var description: String {
            switch self.base {
            case .invalidUserJSON: return "invalidUserJSON"
            case .unexpectedReply: return "unexpectedReply"
            }
        }
    }

    public let code: Code
    public let message: String

    package init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(self.code): \(self.message)" }
}

extension PresenceStore {
    /// Checks a user object for ``addSession(sid:userID:userJSON:now:)`` and returns it with `last_seen_at` set.
    package static func sessionValue(userID: String, userJSON: String, now: Int) throws(PresenceError) -> String {
        guard case .object(let members)? = PresenceJSON.parse(userJSON) else {
            throw PresenceError(code: .invalidUserJSON, message: "the user is not a JSON object")
        }
        guard members["id"]?.stringValue == userID else {
            throw PresenceError(code: .invalidUserJSON, message: "the user object's \"id\" is not the user id")
        }
        guard let value = JSONMemberSetter.setting("last_seen_at", to: String(now), in: userJSON) else {
            throw PresenceError(code: .invalidUserJSON, message: "the user is not a JSON object")
        }
        return value
    }
}
