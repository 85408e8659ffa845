import RedisTestSupport
import NIOCore
import Redis
import Testing

@testable import Presence

/// The same scenarios against both stores, asserting the exact Redis layout (raw hash fields and JSON values).
@Suite("Presence store scenarios (Redis and in-memory)", .timeLimit(.minutes(1)))
struct PresenceStoreTests {
    static let ann = #"{"id":"u1","name":"Ann","settings":{"models":[]},"info":null}"#

    @Test(
        "addSession: SESSION_POOL holds the user object with last_seen_at, USER_POOL the list of sids",
        arguments: StoreKind.allCases
    )
    func addSession(kind: StoreKind) async throws {
        try await withStore(kind) { pools in
            try await pools.store.addSession(sid: "s1", userID: "u1", userJSON: Self.ann, now: 100).get()
            // The user object is kept byte for byte (its empty list stays a list), last_seen_at appended.
            #expect(
                try await pools.sessionPool() == [
                    "s1": #"{"id":"u1","name":"Ann","settings":{"models":[]},"info":null,"last_seen_at":100}"#
                ]
            )
            expectJSON(try await pools.userPool()["u1"], #"["s1"]"#)

            try await pools.store.addSession(sid: "s2", userID: "u1", userJSON: Self.ann, now: 101).get()
            expectJSON(try await pools.userPool()["u1"], #"["s1","s2"]"#)
            // Adding again (user-join after connect) neither duplicates the sid nor loses last_seen_at.
            try await pools.store.addSession(sid: "s1", userID: "u1", userJSON: Self.ann, now: 105).get()
            expectJSON(try await pools.userPool()["u1"], #"["s1","s2"]"#)
            expectJSON(
                try await pools.sessionPool()["s1"],
                #"{"id":"u1","name":"Ann","settings":{"models":[]},"info":null,"last_seen_at":105}"#
            )

            // Python's json.dumps spacing and an existing last_seen_at: replaced in place.
            let python = #"{"id": "u2", "last_seen_at": 1, "name": "B\"o"}"#
            try await pools.store.addSession(sid: "s3", userID: "u2", userJSON: python, now: 200).get()
            #expect(try await pools.sessionPool()["s3"] == #"{"id": "u2", "last_seen_at": 200, "name": "B\"o"}"#)

            #expect(
                try await pools.store.session(sid: "s3").get() == #"{"id": "u2", "last_seen_at": 200, "name": "B\"o"}"#
            )
            #expect(try await pools.store.session(sid: "nope").get() == nil)
            #expect(try await pools.store.sessions(ofUser: "u1").get() == ["s1", "s2"])
            #expect(try await pools.store.sessions(ofUser: "nobody").get() == [])
            #expect(try await pools.store.usersOnline().get() == ["u1", "u2"])
            #expect(try await pools.userPool().count == 2)
        }
    }

    @Test(
        "without USER_POOL (Open WebUI 0.12): no user_pool key; sessions and users online read from SESSION_POOL",
        arguments: StoreKind.allCases
    )
    func withoutUserPool(kind: StoreKind) async throws {
        var configuration = PresenceConfiguration()
        #expect(!configuration.writesUserPool)
        configuration.scanBatchSize = 3
        try await withStore(kind, configuration: configuration) { pools in
            let store = pools.store
            // More than 128 fields, so the Redis hash is a real table and HSCAN pages through it.
            for index in 0..<200 {
                let user = "u\(index % 4)"
                try await store.addSession(sid: "s\(index)", userID: user, userJSON: #"{"id":"\#(user)"}"#, now: 1).get()
            }
            #expect(try await pools.userPool().isEmpty)
            #expect(try await pools.sessionPool().count == 200)
            #expect(try await store.usersOnline().get() == ["u0", "u1", "u2", "u3"])
            let expected = stride(from: 1, to: 200, by: 4).map { "s\($0)" }
            #expect(Set(try await store.sessions(ofUser: "u1").get()) == Set(expected))
            #expect(try await store.sessions(ofUser: "u1").get().count == expected.count)
            #expect(try await store.sessions(ofUser: "nobody").get() == [])
            // A value without a user id is nobody's session.
            if let client = pools.client {
                _ = try await client.execute("HSET", configuration.sessionPoolKey, "odd", #"{"name":"x"}"#)
                #expect(try await store.usersOnline().get() == ["u0", "u1", "u2", "u3"])
            }
            let removal = try await store.removeSession(sid: "s1").get()
            #expect(removal.removed && removal.userID == "u1")
            #expect(try await store.sessions(ofUser: "u1").get().count == expected.count - 1)
            #expect(try await store.removeSessions(withPrefix: "s").get() == 199)
            #expect(try await store.usersOnline().get() == [])
            #expect(try await pools.userPool().isEmpty)
        }
    }

    @Test(
        "addSession refuses what Open WebUI could not read back",
        arguments: StoreKind.allCases,
        [#"{"id":"u3""#, #"{"id":"other"}"#, #"["u3"]"#, #"{"name":"no id"}"#, #"{"id":3}"#, "", #"{"id":"u3"} x"#]
    )
    func addSessionValidates(kind: StoreKind, userJSON: String) async throws {
        try await withStore(kind) { (pools: StoreFixture) async throws in
            let error = await #expect(throws: PresenceError.self) {
                try await pools.store.addSession(sid: "s1", userID: "u3", userJSON: userJSON, now: 1).get()
            }
            #expect(error?.code == .invalidUserJSON)
            #expect(try await pools.sessionPool().isEmpty)
            #expect(try await pools.userPool().isEmpty)
        }
    }

    @Test("a sid registered again for another user leaves the first user's list", arguments: StoreKind.allCases)
    func addSessionMovesSid(kind: StoreKind) async throws {
        try await withStore(kind) { pools in
            try await pools.store.addSession(sid: "s1", userID: "u1", userJSON: #"{"id":"u1"}"#, now: 1).get()
            try await pools.store.addSession(sid: "s2", userID: "u1", userJSON: #"{"id":"u1"}"#, now: 1).get()
            try await pools.store.addSession(sid: "s1", userID: "u2", userJSON: #"{"id":"u2"}"#, now: 2).get()
            var users = try await pools.userPool()
            expectJSON(users["u1"], #"["s2"]"#)
            expectJSON(users["u2"], #"["s1"]"#)
            try await pools.store.addSession(sid: "s2", userID: "u2", userJSON: #"{"id":"u2"}"#, now: 3).get()
            users = try await pools.userPool()
            #expect(users["u1"] == nil)
            expectJSON(users["u2"], #"["s1","s2"]"#)
        }
    }

    @Test("touchSession updates last_seen_at of existing sessions only", arguments: StoreKind.allCases)
    func touchSession(kind: StoreKind) async throws {
        try await withStore(kind) { pools in
            try await pools.store.addSession(sid: "s1", userID: "u1", userJSON: Self.ann, now: 100).get()
            #expect(try await pools.store.touchSession(sid: "s1", now: 130).get())
            #expect(
                try await pools.sessionPool()["s1"]
                    == #"{"id":"u1","name":"Ann","settings":{"models":[]},"info":null,"last_seen_at":130}"#
            )
            #expect(try await pools.store.touchSession(sid: "ghost", now: 130).get() == false)
            #expect(try await pools.sessionPool().keys.sorted() == ["s1"])
        }
    }

    @Test("setSessionMember sets one member in place (Open WebUI's chat_ids) and reads every session back", arguments: StoreKind.allCases)
    func setSessionMember(kind: StoreKind) async throws {
        try await withStore(kind) { pools in
            try await pools.store.addSession(sid: "s1", userID: "u1", userJSON: Self.ann, now: 100).get()
            #expect(try await pools.store.setSessionMember(sid: "s1", name: "chat_ids", json: #"["c1","c2"]"#).get())
            #expect(
                try await pools.sessionPool()["s1"]
                    == #"{"id":"u1","name":"Ann","settings":{"models":[]},"info":null,"last_seen_at":100,"chat_ids":["c1","c2"]}"#
            )
            #expect(try await pools.store.setSessionMember(sid: "s1", name: "chat_ids", json: "[]").get())
            #expect(try await pools.store.touchSession(sid: "s1", now: 130).get())
            #expect(
                try await pools.sessionPool()["s1"]
                    == #"{"id":"u1","name":"Ann","settings":{"models":[]},"info":null,"last_seen_at":130,"chat_ids":[]}"#
            )
            #expect(try await pools.store.setSessionMember(sid: "ghost", name: "chat_ids", json: "[]").get() == false)
            #expect(try await pools.sessionPool().keys.sorted() == ["s1"])
            try await pools.store.addSession(sid: "s2", userID: "u2", userJSON: #"{"id":"u2"}"#, now: 100).get()
            let stored = try await pools.sessionPool().values.sorted()
            #expect(try await pools.store.allSessions().get().sorted() == stored)
        }
    }

    @Test("recordUsage merges {sid: {updated_at}} per model, times as integers", arguments: StoreKind.allCases)
    func recordUsage(kind: StoreKind) async throws {
        try await withStore(kind) { pools in
            try await pools.store.recordUsage(sid: "s1", model: "gpt-4o", now: 1_700_000_000).get()
            try await pools.store.recordUsage(sid: "s2", model: "gpt-4o", now: 1_700_000_001).get()
            try await pools.store.recordUsage(sid: "s1", model: "llama3:8b", now: 1_700_000_002).get()
            try await pools.store.recordUsage(sid: "s1", model: "gpt-4o", now: 1_700_000_003).get()
            let usage = try await pools.usagePool()
            #expect(usage.count == 2)
            expectJSON(usage["gpt-4o"], #"{"s1":{"updated_at":1700000003},"s2":{"updated_at":1700000001}}"#)
            expectJSON(usage["llama3:8b"], #"{"s1":{"updated_at":1700000002}}"#)
            // Integers, never 1.7e+09 or 1700000003.0.
            #expect(PresenceJSON.parse(usage["gpt-4o"]!)?["s1"]?["updated_at"] == .integer(1_700_000_003))
            #expect(!usage.values.contains { $0.contains("00.") || $0.contains("e+") })
            #expect(try await pools.store.modelsInUse().get() == ["gpt-4o", "llama3:8b"])
        }
    }

    @Test(
        "removeSession cleans all three pools and tells whether the user is still online",
        arguments: StoreKind.allCases
    )
    func removeSession(kind: StoreKind) async throws {
        try await withStore(kind) { pools in
            try await pools.store.addSession(sid: "s1", userID: "u1", userJSON: Self.ann, now: 1).get()
            try await pools.store.addSession(sid: "s2", userID: "u1", userJSON: Self.ann, now: 1).get()
            try await pools.store.addSession(sid: "s3", userID: "u2", userJSON: #"{"id":"u2"}"#, now: 1).get()
            try await pools.store.recordUsage(sid: "s1", model: "gpt", now: 1).get()
            try await pools.store.recordUsage(sid: "s1", model: "llama", now: 1).get()
            try await pools.store.recordUsage(sid: "s2", model: "llama", now: 1).get()

            var removal = try await pools.store.removeSession(sid: "s1").get()
            #expect(removal == SessionRemoval(removed: true, userID: "u1", userStillOnline: true))
            #expect(try await pools.sessionPool().keys.sorted() == ["s2", "s3"])
            expectJSON(try await pools.userPool()["u1"], #"["s2"]"#)
            var usage = try await pools.usagePool()
            #expect(usage["gpt"] == nil)
            expectJSON(usage["llama"], #"{"s2":{"updated_at":1}}"#)

            removal = try await pools.store.removeSession(sid: "s2").get()
            #expect(removal == SessionRemoval(removed: true, userID: "u1", userStillOnline: false))
            #expect(try await pools.userPool().keys.sorted() == ["u2"])
            usage = try await pools.usagePool()
            #expect(usage.isEmpty)
            #expect(try await pools.store.usersOnline().get() == ["u2"])
            #expect(try await pools.store.modelsInUse().get() == [])

            removal = try await pools.store.removeSession(sid: "s2").get()
            #expect(removal == SessionRemoval(removed: false, userID: nil, userStillOnline: false))
        }
    }

    @Test("removeSessions(withPrefix:) removes a dead node's sockets everywhere", arguments: StoreKind.allCases)
    func removeSessionsWithPrefix(kind: StoreKind) async throws {
        try await withStore(kind) { pools in
            let store = pools.store
            try await store.addSession(sid: "nodeA.1", userID: "u1", userJSON: #"{"id":"u1"}"#, now: 1).get()
            try await store.addSession(sid: "nodeA.2", userID: "u1", userJSON: #"{"id":"u1"}"#, now: 1).get()
            try await store.addSession(sid: "nodeB.1", userID: "u1", userJSON: #"{"id":"u1"}"#, now: 1).get()
            try await store.addSession(sid: "nodeA.3", userID: "u2", userJSON: #"{"id":"u2"}"#, now: 1).get()
            try await store.recordUsage(sid: "nodeA.1", model: "gpt", now: 1).get()
            try await store.recordUsage(sid: "nodeB.1", model: "gpt", now: 1).get()
            try await store.recordUsage(sid: "nodeA.3", model: "llama", now: 1).get()
            // Usage of a socket that has no session (never authenticated): removed too.
            try await store.recordUsage(sid: "nodeA.9", model: "mistral", now: 1).get()

            #expect(try await store.removeSessions(withPrefix: "nodeA.").get() == 3)
            #expect(try await pools.sessionPool().keys.sorted() == ["nodeB.1"])
            let users = try await pools.userPool()
            #expect(users.keys.sorted() == ["u1"])
            expectJSON(users["u1"], #"["nodeB.1"]"#)
            let usage = try await pools.usagePool()
            #expect(usage.keys.sorted() == ["gpt"])
            expectJSON(usage["gpt"], #"{"nodeB.1":{"updated_at":1}}"#)
            #expect(try await store.removeSessions(withPrefix: "nodeA.").get() == 0)
        }
    }

    @Test(
        "sweepUsage removes entries older than max age and empty models, keeps fresh ones",
        arguments: StoreKind.allCases
    )
    func sweepUsage(kind: StoreKind) async throws {
        try await withStore(kind) { pools in
            let store = pools.store
            try await store.recordUsage(sid: "old", model: "gpt", now: 96).get()
            try await store.recordUsage(sid: "edge", model: "gpt", now: 97).get()
            try await store.recordUsage(sid: "new", model: "gpt", now: 100).get()
            try await store.recordUsage(sid: "old", model: "llama", now: 90).get()
            let sweep = try await store.sweepUsage(now: 100, maxAge: 3).get()
            #expect(sweep == UsageSweep(removedEntries: 2, removedModels: 1))
            let usage = try await pools.usagePool()
            #expect(usage.keys.sorted() == ["gpt"])
            // Older than 3 s goes; exactly 3 s old stays (Open WebUI: now - updated_at > TIMEOUT_DURATION).
            expectJSON(usage["gpt"], #"{"edge":{"updated_at":97},"new":{"updated_at":100}}"#)
            #expect(
                try await store.sweepUsage(now: 100, maxAge: 3).get() == UsageSweep(removedEntries: 0, removedModels: 0)
            )
            #expect(
                try await store.sweepUsage(now: 200, maxAge: 3).get() == UsageSweep(removedEntries: 2, removedModels: 1)
            )
            #expect(try await pools.usagePool().isEmpty)
        }
    }

    @Test(
        "sweepSessions reaps sessions whose heartbeats stopped, with their user and usage entries",
        arguments: StoreKind.allCases
    )
    func sweepSessions(kind: StoreKind) async throws {
        try await withStore(kind) { pools in
            let store = pools.store
            let maxAge = pools.configuration.sessionMaxAge.wholeSeconds
            #expect(maxAge == 120)
            try await store.addSession(sid: "gone", userID: "u1", userJSON: #"{"id":"u1"}"#, now: 0).get()
            try await store.addSession(sid: "alive", userID: "u1", userJSON: #"{"id":"u1"}"#, now: 0).get()
            try await store.addSession(sid: "edge", userID: "u2", userJSON: #"{"id":"u2"}"#, now: 80).get()
            try await store.addSession(sid: "lost", userID: "u3", userJSON: #"{"id":"u3"}"#, now: 10).get()
            #expect(try await store.touchSession(sid: "alive", now: 150).get())
            try await store.recordUsage(sid: "gone", model: "gpt", now: 199).get()
            try await store.recordUsage(sid: "alive", model: "gpt", now: 199).get()

            #expect(try await store.sweepSessions(now: 200, maxAge: maxAge).get() == ["gone", "lost"])
            #expect(try await pools.sessionPool().keys.sorted() == ["alive", "edge"])
            let users = try await pools.userPool()
            #expect(users.keys.sorted() == ["u1", "u2"])
            expectJSON(users["u1"], #"["alive"]"#)
            expectJSON(try await pools.usagePool()["gpt"], #"{"alive":{"updated_at":199}}"#)
            #expect(try await store.sweepSessions(now: 200, maxAge: maxAge).get() == [])
        }
    }

    @Test("sweeps and prefix removal over many sessions, in several batches", arguments: StoreKind.allCases)
    func manySessions(kind: StoreKind) async throws {
        var configuration = PresenceConfiguration(writesUserPool: true)
        configuration.scanBatchSize = 7
        try await withStore(kind, configuration: configuration) { pools in
            let store = pools.store
            // More than 128 fields: Redis stores a real hash table, so HSCAN pages through it.
            for index in 0..<300 {
                let user = "u\(index % 5)"
                try await store.addSession(
                    sid: "n\(index % 3).\(index)",
                    userID: user,
                    userJSON: #"{"id":"\#(user)"}"#,
                    now: index.isMultiple(of: 2) ? 0 : 500
                ).get()
                try await store.recordUsage(sid: "n\(index % 3).\(index)", model: "m\(index % 4)", now: 500).get()
            }
            let reaped = try await store.sweepSessions(now: 500, maxAge: 120).get()
            #expect(reaped.count == 150)
            #expect(try await store.removeSessions(withPrefix: "n1.").get() == 50)
            try await expectConsistent(pools)
            #expect(try await pools.sessionPool().count == 100)
            #expect(try await pools.usagePool().values.map { PresenceJSON.parse($0)!.objectCount }.reduce(0, +) == 100)
        }
    }
}

extension PresenceJSON {
    var objectCount: Int {
        if case .object(let members) = self { return members.count }
        return 0
    }
}

/// USER_POOL lists exactly the sessions of SESSION_POOL, by the `id` of each session; no empty list or map is
/// stored; with `usageNeedsSessions`, USAGE_POOL names no sid without a session. (Usage is recorded without
/// looking at SESSION_POOL, as Open WebUI does, so a usage write racing a removal from another connection may
/// leave an entry that the next usage sweep removes.)
func expectConsistent(
    _ pools: StoreFixture,
    usageNeedsSessions: Bool = true,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let sessions = try await pools.sessionPool()
    var expected: [String: Set<String>] = [:]
    for (sid, json) in sessions {
        let user = try #require(PresenceJSON.parse(json)?["id"]?.stringValue, sourceLocation: sourceLocation)
        expected[user, default: []].insert(sid)
    }
    var actual: [String: Set<String>] = [:]
    for (user, json) in try await pools.userPool() {
        let list = try #require(PresenceJSON.parse(json)?.arrayValue, sourceLocation: sourceLocation)
        #expect(!list.isEmpty, sourceLocation: sourceLocation)
        let sids = list.compactMap(\.stringValue)
        #expect(Set(sids).count == sids.count, "duplicate sids for \(user)", sourceLocation: sourceLocation)
        actual[user] = Set(sids)
    }
    #expect(actual == expected, sourceLocation: sourceLocation)
    for (model, json) in try await pools.usagePool() {
        guard case .object(let entries)? = PresenceJSON.parse(json) else {
            Issue.record("usage of \(model) is not an object: \(json)", sourceLocation: sourceLocation)
            continue
        }
        #expect(!entries.isEmpty, sourceLocation: sourceLocation)
        for sid in entries.keys where usageNeedsSessions {
            #expect(
                sessions[sid] != nil,
                "usage of \(model) names \(sid) without a session",
                sourceLocation: sourceLocation
            )
        }
    }
}
