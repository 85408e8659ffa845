import NIOCore
import Redis

/// The presence pools in Redis, in Open WebUI's `RedisDict` layout; every update is one Lua script.
///
/// Needs Redis 5 or later (scripts that write after `HSCAN` rely on effects replication). On Redis Cluster the
/// three pool keys must share a slot: see ``PresenceConfiguration/keyPrefix``.
public struct RedisPresenceStore: PresenceStore {
    public let redis: any RedisCommandSending
    public let configuration: PresenceConfiguration

    private var poolKeys: [String] {
        [self.configuration.sessionPoolKey, self.configuration.userPoolKey, self.configuration.usagePoolKey]
    }

    /// - Parameter redis: a ``RedisClient`` (or a single ``RedisConnection``); futures complete on its event loop.
    public init(redis: any RedisCommandSending, configuration: PresenceConfiguration = PresenceConfiguration()) {
        self.redis = redis
        self.configuration = configuration
    }

    private func command(_ name: String, _ arguments: [any RESPArgument]) -> EventLoopFuture<RESPValue> {
        self.redis.send(RESPCommand(name, arguments: arguments), timeout: nil)
    }

    private func unexpected<T>(_ what: String, _ reply: RESPValue) -> EventLoopFuture<T> {
        self.redis.eventLoop.makeFailedFuture(
            PresenceError(code: .unexpectedReply, message: "unexpected reply to \(what): \(reply)")
        )
    }

    public func addSession(sid: String, userID: String, userJSON: String, now: Int) -> EventLoopFuture<Void> {
        let value: String
        do {
            value = try Self.sessionValue(userID: userID, userJSON: userJSON, now: now)
        } catch {
            return self.redis.eventLoop.makeFailedFuture(error)
        }
        return self.redis.evaluate(
            PresenceScripts.addSession,
            keys: self.poolKeys,
            arguments: [sid, userID, value, self.configuration.writesUserPool ? "1" : "0"]
        ).map { _ in }
    }

    public func touchSession(sid: String, now: Int) -> EventLoopFuture<Bool> {
        self.redis.evaluate(
            PresenceScripts.touchSession,
            keys: [self.configuration.sessionPoolKey],
            arguments: [sid, now]
        ).map { $0.int == 1 }
    }

    public func setSessionMember(sid: String, name: String, json: String) -> EventLoopFuture<Bool> {
        self.redis.evaluate(
            PresenceScripts.setSessionMember,
            keys: [self.configuration.sessionPoolKey],
            arguments: [sid, PresenceJSON.quoted(name), json]
        ).map { $0.int == 1 }
    }

    public func allSessions() -> EventLoopFuture<[String]> {
        let promise = self.redis.eventLoop.makePromise(of: [String].self)
        let key = self.configuration.sessionPoolKey
        let count = String(max(1, self.configuration.scanBatchSize))
        @Sendable func batch(cursor: String, values: [String]) {
            self.redis.send(RESPCommand("HSCAN", key, cursor, "COUNT", count), timeout: nil).whenComplete { result in
                switch result {
                case .failure(let error):
                    promise.fail(error)
                case .success(let reply):
                    guard let parts = reply.array, parts.count == 2, let next = parts[0].string,
                        let members = parts[1].array
                    else {
                        promise.fail(PresenceError(code: .unexpectedReply, message: "unexpected HSCAN reply: \(reply)"))
                        return
                    }
                    // HSCAN answers field, value, field, value, …
                    let found = stride(from: 1, to: members.count, by: 2).compactMap { members[$0].string }
                    if next == "0" {
                        promise.succeed(values + found)
                    } else {
                        batch(cursor: next, values: values + found)
                    }
                }
            }
        }
        batch(cursor: "0", values: [])
        return promise.futureResult
    }

    public func recordUsage(sid: String, model: String, now: Int) -> EventLoopFuture<Void> {
        self.redis.evaluate(
            PresenceScripts.recordUsage,
            keys: [self.configuration.usagePoolKey],
            arguments: [model, sid, now]
        ).map { _ in }
    }

    public func removeSession(sid: String) -> EventLoopFuture<SessionRemoval> {
        self.redis.evaluate(PresenceScripts.removeSession, keys: self.poolKeys, arguments: [sid]).flatMap { reply in
            guard let values = reply.array, values.count == 4, let removed = values[0].int,
                let hasUser = values[1].int, let remaining = values[3].int
            else { return self.unexpected("the remove-session script", reply) }
            let userID = hasUser == 1 ? values[2].string : nil
            return self.redis.eventLoop.makeSucceededFuture(
                SessionRemoval(removed: removed == 1, userID: userID, userStillOnline: userID != nil && remaining > 0)
            )
        }
    }

    public func removeSessions(withPrefix prefix: String) -> EventLoopFuture<Int> {
        self.removeBatches(mode: "prefix", parameters: [prefix]).flatMap { removed in
            self.redis.evaluate(PresenceScripts.removeOrphansWithPrefix, keys: self.poolKeys, arguments: [prefix])
                .map { _ in removed.count }
        }
    }

    public func sweepSessions(now: Int, maxAge: Int) -> EventLoopFuture<[String]> {
        self.removeBatches(mode: "stale", parameters: [now, maxAge]).map { $0.sorted() }
    }

    /// Runs the batch script from cursor 0 until `HSCAN` returns to 0; each batch is atomic on its own.
    private func removeBatches(mode: String, parameters: [any RESPArgument]) -> EventLoopFuture<[String]> {
        let promise = self.redis.eventLoop.makePromise(of: [String].self)
        let count = max(1, self.configuration.scanBatchSize)
        @Sendable func batch(cursor: String, removed: [String]) {
            self.redis.evaluate(
                PresenceScripts.removeSessionBatch,
                keys: self.poolKeys,
                arguments: [mode, cursor, count] + parameters
            ).whenComplete { result in
                switch result {
                case .failure(let error):
                    promise.fail(error)
                case .success(let reply):
                    guard let values = reply.array, values.count == 2, let next = values[0].string,
                        let sids = values[1].array
                    else {
                        promise.fail(PresenceError(code: .unexpectedReply, message: "unexpected batch reply: \(reply)"))
                        return
                    }
                    let all = removed + sids.compactMap(\.string)
                    if next == "0" {
                        promise.succeed(all)
                    } else {
                        batch(cursor: next, removed: all)
                    }
                }
            }
        }
        batch(cursor: "0", removed: [])
        return promise.futureResult
    }

    public func session(sid: String) -> EventLoopFuture<String?> {
        self.command("HGET", [self.configuration.sessionPoolKey, sid]).map { $0.string }
    }

    public func sessions(ofUser userID: String) -> EventLoopFuture<[String]> {
        guard self.configuration.writesUserPool else {
            return self.sessionOwners().map { owners in owners.filter { $0.userID == userID }.map(\.sid).sorted() }
        }
        return self.command("HGET", [self.configuration.userPoolKey, userID]).map { reply in
            guard let raw = reply.string, let list = PresenceJSON.parse(raw)?.arrayValue else { return [] }
            return list.compactMap(\.stringValue)
        }
    }

    public func usersOnline() -> EventLoopFuture<[String]> {
        guard self.configuration.writesUserPool else {
            return self.sessionOwners().map { Set($0.map(\.userID)).sorted() }
        }
        return self.keys(of: self.configuration.userPoolKey)
    }

    /// Every session's sid and user id, read from SESSION_POOL in bounded batches (only the ids cross the wire).
    private func sessionOwners() -> EventLoopFuture<[(sid: String, userID: String)]> {
        let promise = self.redis.eventLoop.makePromise(of: [(sid: String, userID: String)].self)
        let count = max(1, self.configuration.scanBatchSize)
        @Sendable func batch(cursor: String, owners: [(sid: String, userID: String)]) {
            self.redis.evaluate(PresenceScripts.sessionOwnersBatch, keys: self.poolKeys, arguments: [cursor, count])
                .whenComplete { result in
                    switch result {
                    case .failure(let error):
                        promise.fail(error)
                    case .success(let reply):
                        guard let values = reply.array, values.count == 2, let next = values[0].string,
                            let pairs = values[1].array, pairs.count % 2 == 0
                        else {
                            promise.fail(
                                PresenceError(code: .unexpectedReply, message: "unexpected owners batch: \(reply)")
                            )
                            return
                        }
                        var all = owners
                        for index in stride(from: 0, to: pairs.count, by: 2) {
                            if let sid = pairs[index].string, let userID = pairs[index + 1].string {
                                all.append((sid, userID))
                            }
                        }
                        if next == "0" { promise.succeed(all) } else { batch(cursor: next, owners: all) }
                    }
                }
        }
        batch(cursor: "0", owners: [])
        return promise.futureResult
    }

    public func modelsInUse() -> EventLoopFuture<[String]> {
        self.keys(of: self.configuration.usagePoolKey)
    }

    private func keys(of hash: String) -> EventLoopFuture<[String]> {
        self.command("HKEYS", [hash]).flatMap { reply in
            guard let values = reply.array else { return self.unexpected("HKEYS", reply) }
            return self.redis.eventLoop.makeSucceededFuture(values.compactMap(\.string).sorted())
        }
    }

    public func sweepUsage(now: Int, maxAge: Int) -> EventLoopFuture<UsageSweep> {
        self.redis.evaluate(
            PresenceScripts.sweepUsage,
            keys: [self.configuration.usagePoolKey],
            arguments: [now, maxAge]
        ).flatMap { reply in
            guard let values = reply.array, values.count == 2, let entries = values[0].int, let models = values[1].int
            else { return self.unexpected("the usage sweep script", reply) }
            return self.redis.eventLoop.makeSucceededFuture(UsageSweep(removedEntries: entries, removedModels: models))
        }
    }
}
