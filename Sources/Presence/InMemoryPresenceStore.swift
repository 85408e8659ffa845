import NIOConcurrencyHelpers
import NIOCore

/// The presence pools of a node running alone (no Redis): the same observable behaviour as
/// ``RedisPresenceStore``, with the pools held in memory. Futures are already completed, on `eventLoop`.
public final class InMemoryPresenceStore: PresenceStore {
    struct Session {
        /// Exactly what Redis would hold in SESSION_POOL.
        var json: String
        var userID: String
        var lastSeenAt: Int
    }

    struct Pools {
        var sessions: [String: Session] = [:]
        /// USER_POOL: sids in connection order, never empty.
        var users: [String: [String]] = [:]
        /// USAGE_POOL: model → sid → updated_at, never empty.
        var usage: [String: [String: Int]] = [:]

        mutating func dropFromUser(_ userID: String, where shouldDrop: (String) -> Bool) -> Int {
            guard var list = self.users[userID] else { return 0 }
            list.removeAll(where: shouldDrop)
            self.users[userID] = list.isEmpty ? nil : list
            return list.count
        }

        mutating func dropFromUsage(where shouldDrop: (String) -> Bool) {
            for (model, var entries) in self.usage {
                let before = entries.count
                entries = entries.filter { !shouldDrop($0.key) }
                if entries.count != before {
                    self.usage[model] = entries.isEmpty ? nil : entries
                }
            }
        }

        /// Removes the sessions matching `shouldRemove`, with their user and usage entries; returns their sids.
        mutating func removeSessions(where shouldRemove: (String, Session) -> Bool) -> [String] {
            let doomed = self.sessions.filter { shouldRemove($0.key, $0.value) }
            guard !doomed.isEmpty else { return [] }
            for sid in doomed.keys { self.sessions[sid] = nil }
            for userID in Set(doomed.values.map(\.userID)) {
                _ = self.dropFromUser(userID) { doomed[$0] != nil }
            }
            self.dropFromUsage { doomed[$0] != nil }
            return doomed.keys.sorted()
        }
    }

    public let eventLoop: any EventLoop
    /// All pools behind one lock: each operation is one critical section, as each Redis update is one script.
    private let pools = NIOLockedValueBox(Pools())

    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func addSession(sid: String, userID: String, userJSON: String, now: Int) -> EventLoopFuture<Void> {
        let value: String
        do {
            value = try Self.sessionValue(userID: userID, userJSON: userJSON, now: now)
        } catch {
            return self.eventLoop.makeFailedFuture(error)
        }
        self.pools.withLockedValue { pools in
            if let previous = pools.sessions[sid]?.userID, previous != userID {
                _ = pools.dropFromUser(previous) { $0 == sid }
            }
            pools.sessions[sid] = Session(json: value, userID: userID, lastSeenAt: now)
            var list = pools.users[userID, default: []]
            if !list.contains(sid) { list.append(sid) }
            pools.users[userID] = list
        }
        return self.eventLoop.makeSucceededVoidFuture()
    }

    public func touchSession(sid: String, now: Int) -> EventLoopFuture<Bool> {
        let touched = self.pools.withLockedValue { pools in
            guard var session = pools.sessions[sid],
                let updated = JSONMemberSetter.setting("last_seen_at", to: String(now), in: session.json)
            else { return false }
            session.json = updated
            session.lastSeenAt = now
            pools.sessions[sid] = session
            return true
        }
        return self.eventLoop.makeSucceededFuture(touched)
    }

    public func setSessionMember(sid: String, name: String, json: String) -> EventLoopFuture<Bool> {
        let set = self.pools.withLockedValue { pools in
            guard var session = pools.sessions[sid],
                let updated = JSONMemberSetter.setting(name, to: json, in: session.json)
            else { return false }
            session.json = updated
            pools.sessions[sid] = session
            return true
        }
        return self.eventLoop.makeSucceededFuture(set)
    }

    public func allSessions() -> EventLoopFuture<[String]> {
        self.eventLoop.makeSucceededFuture(self.pools.withLockedValue { $0.sessions.values.map(\.json) })
    }

    public func recordUsage(sid: String, model: String, now: Int) -> EventLoopFuture<Void> {
        self.pools.withLockedValue { $0.usage[model, default: [:]][sid] = now }
        return self.eventLoop.makeSucceededVoidFuture()
    }

    public func removeSession(sid: String) -> EventLoopFuture<SessionRemoval> {
        let removal = self.pools.withLockedValue { pools in
            var removal = SessionRemoval(removed: false, userID: nil, userStillOnline: false)
            if let session = pools.sessions.removeValue(forKey: sid) {
                let remaining = pools.dropFromUser(session.userID) { $0 == sid }
                removal = SessionRemoval(removed: true, userID: session.userID, userStillOnline: remaining > 0)
            }
            pools.dropFromUsage { $0 == sid }
            return removal
        }
        return self.eventLoop.makeSucceededFuture(removal)
    }

    public func removeSessions(withPrefix prefix: String) -> EventLoopFuture<Int> {
        let count = self.pools.withLockedValue { pools in
            let removed = pools.removeSessions { sid, _ in sid.hasPrefix(prefix) }
            for userID in Array(pools.users.keys) {
                _ = pools.dropFromUser(userID) { $0.hasPrefix(prefix) }
            }
            pools.dropFromUsage { $0.hasPrefix(prefix) }
            return removed.count
        }
        return self.eventLoop.makeSucceededFuture(count)
    }

    public func session(sid: String) -> EventLoopFuture<String?> {
        self.eventLoop.makeSucceededFuture(self.pools.withLockedValue { $0.sessions[sid]?.json })
    }

    public func sessions(ofUser userID: String) -> EventLoopFuture<[String]> {
        self.eventLoop.makeSucceededFuture(self.pools.withLockedValue { $0.users[userID] ?? [] })
    }

    public func usersOnline() -> EventLoopFuture<[String]> {
        self.eventLoop.makeSucceededFuture(self.pools.withLockedValue { $0.users.keys.sorted() })
    }

    public func modelsInUse() -> EventLoopFuture<[String]> {
        self.eventLoop.makeSucceededFuture(self.pools.withLockedValue { $0.usage.keys.sorted() })
    }

    public func sweepUsage(now: Int, maxAge: Int) -> EventLoopFuture<UsageSweep> {
        let sweep = self.pools.withLockedValue { pools in
            var sweep = UsageSweep(removedEntries: 0, removedModels: 0)
            for (model, entries) in pools.usage {
                let fresh = entries.filter { now - $0.value <= maxAge }
                sweep.removedEntries += entries.count - fresh.count
                if fresh.isEmpty { sweep.removedModels += 1 }
                pools.usage[model] = fresh.isEmpty ? nil : fresh
            }
            return sweep
        }
        return self.eventLoop.makeSucceededFuture(sweep)
    }

    public func sweepSessions(now: Int, maxAge: Int) -> EventLoopFuture<[String]> {
        let reaped = self.pools.withLockedValue { pools in
            pools.removeSessions { _, session in now - session.lastSeenAt > maxAge }
        }
        return self.eventLoop.makeSucceededFuture(reaped)
    }

    /// The pools as Redis would hold them (hash field → JSON text), keyed like
    /// ``PresenceConfiguration/sessionPoolKey`` and friends, for tests and debugging.
    package func snapshot(
        configuration: PresenceConfiguration = PresenceConfiguration()
    ) -> [String: [String: String]] {
        self.pools.withLockedValue { pools in
            var hashes: [String: [String: String]] = [:]
            hashes[configuration.sessionPoolKey] = pools.sessions.mapValues(\.json)
            if configuration.writesUserPool {
                hashes[configuration.userPoolKey] = pools.users.mapValues(PresenceJSON.encodeStringList)
            }
            hashes[configuration.usagePoolKey] = pools.usage.mapValues(PresenceJSON.encodeUsage)
            return hashes.filter { !$0.value.isEmpty }
        }
    }
}
