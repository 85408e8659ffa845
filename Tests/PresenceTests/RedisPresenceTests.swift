import RedisTestSupport
import Foundation
import NIOCore
import NIOPosix
import Redis
import Testing

@testable import Presence

@Suite("Presence on Redis: scripts, foreign values, atomicity, Python", .timeLimit(.minutes(1)))
struct RedisPresenceTests {
    /// Stored values the heartbeat script may meet; the Lua and Swift member setters must agree byte for byte.
    static let touchInputs: [String] = [
        #"{"id":"u1","last_seen_at":5}"#,
        #"{"id":"u1"}"#,
        #"{}"#,
        #"  { }  "#,
        #"{"id": "u1", "last_seen_at": 5, "name": "x"}"#,
        #"{"id":"u1","info":{"last_seen_at":1},"tags":["a","}",{"b":"]"}]}"#,
        #"{"last_seen_at":1,"id":"u1","last_seen_at":2}"#,
        #"{"id":"u\"1\\","last_seen_at":null}"#,
        #"{"id":"u1","last_seen_at":1.5e3 }"#,
        #"{"id":"u1","last_seen_at":"yesterday"}"#,
        #"{"id":"ü→😀","n":[1,2,[3]],"t":true}"#,
        #"{"id":"u1"} trailing"#,
        #"["not","an","object"]"#,
        #"{"id":"u1","#,
        #"{"id":}"#,
        #"{"id" "u1"}"#,
        "not json",
        "",
    ]

    @Test("the heartbeat script and the in-memory twin rewrite last_seen_at identically")
    func touchMatchesSwift() async throws {
        try await withStore(.redis) { pools in
            let client = try #require(pools.client)
            for (index, input) in Self.touchInputs.enumerated() {
                let sid = "sid\(index)"
                try await client.execute("HSET", pools.configuration.sessionPoolKey, sid, input)
                let touched = try await pools.store.touchSession(sid: sid, now: 1_700_000_123).get()
                let expected = JSONMemberSetter.setting("last_seen_at", to: "1700000123", in: input)
                #expect(touched == (expected != nil), "\(input)")
                #expect(try await pools.store.session(sid: sid).get() == (expected ?? input), "\(input)")
            }
            // Spot checks of the expected results themselves.
            #expect(
                JSONMemberSetter.setting("last_seen_at", to: "9", in: #"{"id":"u1","info":{"last_seen_at":1}}"#)
                    == #"{"id":"u1","info":{"last_seen_at":1},"last_seen_at":9}"#
            )
            #expect(JSONMemberSetter.setting("last_seen_at", to: "9", in: "  { }  ") == #"  { "last_seen_at":9}  "#)
            #expect(
                JSONMemberSetter.setting("last_seen_at", to: "9", in: #"{"last_seen_at":1,"id":"u1","last_seen_at":2}"#)
                    == #"{"last_seen_at":1,"id":"u1","last_seen_at":9}"#
            )
        }
    }

    @Test("values written by others: sessions without last_seen_at are not reaped, bad usage is cleaned")
    func foreignValues() async throws {
        try await withStore(.redis) { pools in
            let client = try #require(pools.client)
            let keys = pools.configuration
            // An older writer's session (no last_seen_at) and garbage.
            try await client.execute("HSET", keys.sessionPoolKey, "py1", #"{"id": "u9", "name": "Py"}"#)
            try await client.execute("HSET", keys.userPoolKey, "u9", #"["py1"]"#)
            try await client.execute("HSET", keys.usagePoolKey, "broken", "not json")
            try await client.execute(
                "HSET",
                keys.usagePoolKey,
                "odd",
                #"{"a": {"no_time": 1}, "b": {"updated_at": 99}}"#
            )
            try await client.execute("HSET", keys.usagePoolKey, "empty", "{}")
            #expect(try await pools.store.sweepSessions(now: 10_000, maxAge: 120).get() == [])
            #expect(try await pools.sessionPool().keys.sorted() == ["py1"])
            #expect(
                try await pools.store.sweepUsage(now: 100, maxAge: 3).get()
                    == UsageSweep(removedEntries: 1, removedModels: 2)
            )
            let usage = try await pools.usagePool()
            #expect(usage.keys.sorted() == ["odd"])
            expectJSON(usage["odd"], #"{"b":{"updated_at":99}}"#)
            // Removing the Python-written session still finds its user through the object's id.
            #expect(
                try await pools.store.removeSession(sid: "py1").get()
                    == SessionRemoval(removed: true, userID: "u9", userStillOnline: false)
            )
            #expect(try await pools.userPool().isEmpty)
            // A USER_POOL value that is not a list of strings is replaced by a clean list on the next add.
            try await client.execute("HSET", keys.userPoolKey, "u8", #"{"weird": true}"#)
            try await pools.store.addSession(sid: "s8", userID: "u8", userJSON: #"{"id":"u8"}"#, now: 1).get()
            expectJSON(try await pools.userPool()["u8"], #"["s8"]"#)
        }
    }

    @Test("orphans of a dead node in USER_POOL and USAGE_POOL (no session) go with removeSessions(withPrefix:)")
    func prefixOrphans() async throws {
        try await withStore(.redis) { pools in
            let client = try #require(pools.client)
            let keys = pools.configuration
            try await pools.store.addSession(sid: "b.1", userID: "u1", userJSON: #"{"id":"u1"}"#, now: 1).get()
            try await client.execute("HSET", keys.userPoolKey, "u1", #"["a.7","b.1"]"#)
            try await client.execute("HSET", keys.userPoolKey, "u2", #"["a.8"]"#)
            #expect(try await pools.store.removeSessions(withPrefix: "a.").get() == 0)
            let users = try await pools.userPool()
            #expect(users.keys.sorted() == ["u1"])
            expectJSON(users["u1"], #"["b.1"]"#)
        }
    }

    @Test("a custom key prefix names every key")
    func keyPrefix() async throws {
        var configuration = PresenceConfiguration(keyPrefix: "{tenant}", writesUserPool: true)
        configuration.lockTTL = .seconds(60)
        #expect(configuration.sessionPoolKey == "{tenant}:session_pool")
        #expect(configuration.userPoolKey == "{tenant}:user_pool")
        #expect(configuration.usagePoolKey == "{tenant}:usage_pool")
        #expect(configuration.lockKey == "{tenant}:usage_cleanup_lock")
        #expect(PresenceConfiguration().lockKey == "open-webui:usage_cleanup_lock")
        #expect(PresenceConfiguration(heartbeatInterval: .seconds(45)).sessionMaxAge == .seconds(180))
        #expect(PresenceConfiguration(heartbeatInterval: .seconds(10)).sessionMaxAge == .seconds(120))
        try await withStore(.redis, configuration: configuration) { pools in
            try await pools.store.addSession(sid: "s", userID: "u", userJSON: #"{"id":"u"}"#, now: 1).get()
            let client = try #require(pools.client)
            let keys = try #require(try await client.execute("KEYS", "*").array).compactMap(\.string).sorted()
            #expect(keys == ["{tenant}:session_pool", "{tenant}:user_pool"])
        }
    }

    @Test("500 interleaved adds and removes for one user from two connections keep USER_POOL exact")
    func atomicity() async throws {
        try await withRedisServer { server in
            let group = MultiThreadedEventLoopGroup.singleton
            let first = try await connectedClient(server, eventLoop: group.next())
            let second = try await connectedClient(server, eventLoop: group.next())
            let configuration = PresenceConfiguration(writesUserPool: true)
            let stores = [
                RedisPresenceStore(redis: first, configuration: configuration),
                RedisPresenceStore(redis: second, configuration: configuration),
            ]
            // Sids 0..<100; each op picks a sid and a connection; all ops in flight at once.
            var generator = SystemRandomNumberGenerator()
            var futures: [EventLoopFuture<Void>] = []
            for index in 0..<500 {
                let store = stores[index % 2]
                let sid = "s\(Int.random(in: 0..<100, using: &generator))"
                if Bool.random(using: &generator) || index < 100 {
                    futures.append(store.addSession(sid: sid, userID: "u1", userJSON: #"{"id":"u1"}"#, now: index))
                    futures.append(store.recordUsage(sid: sid, model: "gpt", now: index))
                } else {
                    futures.append(store.removeSession(sid: sid).map { _ in })
                }
            }
            for future in futures { try await future.get() }
            let pools = StoreFixture(
                store: stores[0],
                configuration: configuration,
                raw: { key in try await hgetall(first, key) },
                client: first
            )
            try await expectConsistent(pools, usageNeedsSessions: false)
            // Usage written after its session was removed is the usage sweep's job; then nothing is left over.
            _ = try await stores[0].sweepUsage(now: 10_000, maxAge: 3).get()
            #expect(try await pools.usagePool().isEmpty)
            let sessions = try await pools.sessionPool()
            #expect(try await stores[1].sessions(ofUser: "u1").get().sorted() == sessions.keys.sorted())
            await first.shutdown()
            await second.shutdown()
        }
    }

    static var pythonAvailable: Bool { TestRedisServer.findExecutable("python3") != nil }

    @Test(
        "Python's json.loads (and redis-py, when installed) read the pools as Open WebUI's RedisDict would",
        .enabled(if: pythonAvailable)
    )
    func pythonReadsPools() async throws {
        try await withStore(.redis) { pools in
            let store = pools.store
            try await store.addSession(
                sid: "s1",
                userID: "u1",
                userJSON:
                    #"{"id":"u1","name":"Zoë \"Z\"","role":"user","settings":{"pins":[]},"info":null,"created_at":1700000000}"#,
                now: 1_700_000_100
            ).get()
            try await store.addSession(sid: "s2", userID: "u1", userJSON: #"{"id":"u1","name":"Zoë \"Z\""}"#, now: 5)
                .get()
            try await store.recordUsage(sid: "s1", model: "gpt/4o", now: 1_700_000_101).get()
            _ = try await store.touchSession(sid: "s2", now: 1_700_000_102).get()
            let script = #"""
                import json, sys
                data = json.load(sys.stdin)
                session = json.loads(data["session"]["s1"])
                assert session == {"id": "u1", "name": "Zoë \"Z\"", "role": "user", "settings": {"pins": []}, "info": None, "created_at": 1700000000, "last_seen_at": 1700000100}, session
                assert json.loads(data["session"]["s2"])["last_seen_at"] == 1700000102
                assert json.loads(data["user"]["u1"]) == ["s1", "s2"], data["user"]
                usage = json.loads(data["usage"]["gpt/4o"])
                assert usage == {"s1": {"updated_at": 1700000101}}, usage
                assert type(usage["s1"]["updated_at"]) is int
                try:
                    import redis
                except ImportError:
                    print("json-only")
                    sys.exit(0)
                r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), decode_responses=True)
                # Open WebUI's RedisDict: hget + json.loads, keys() = hkeys.
                assert json.loads(r.hget("open-webui:user_pool", "u1")) == ["s1", "s2"]
                assert r.hkeys("open-webui:usage_pool") == ["gpt/4o"]
                assert json.loads(r.hget("open-webui:session_pool", "s1"))["settings"] == {"pins": []}
                print("redis-py")
                """#
            let dump: [String: [String: String]] = [
                "session": try await pools.sessionPool(),
                "user": try await pools.userPool(),
                "usage": try await pools.usagePool(),
            ]
            let port = try #require(pools.client?.configuration.endpoint).description.split(separator: ":").last!
            let output = try runPython(script, arguments: [String(port)], input: try JSONEncoder().encode(dump))
            #expect(output.status == 0, "python failed: \(output.text)")
            // With redis-py installed (pip install redis) the script must have used it.
            let redisPy = try runPython("import redis", arguments: [], input: Data()).status == 0
            #expect(output.text.contains(redisPy ? "redis-py" : "json-only"), "\(output.text)")
        }
    }
}

func runPython(_ script: String, arguments: [String], input: Data) throws -> (status: Int32, text: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: TestRedisServer.findExecutable("python3")!)
    process.arguments = ["-c", script] + arguments
    let stdin = Pipe()
    let stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stdout
    try process.run()
    stdin.fileHandleForWriting.write(input)
    try stdin.fileHandleForWriting.close()
    let text = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, text)
}
