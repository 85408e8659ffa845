import Auth
import EngineIO
import EngineIOTestSupport
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Presence
import SocketIO
import Testing

@testable import OpenWebUI

/// The in-memory pools, except that heartbeats can be held back (a slow Redis) to observe ordering.
final class StallablePresenceStore: PresenceStore {
    let inner: InMemoryPresenceStore
    let eventLoop: EventLoop
    private let held = NIOLockedValueBox<[EventLoopPromise<Void>]?>(nil)

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
        self.inner = InMemoryPresenceStore(eventLoop: eventLoop)
    }

    /// From now on heartbeats wait until `release()`.
    func stall() { held.withLockedValue { $0 = [] } }

    func release() {
        let promises = held.withLockedValue { held -> [EventLoopPromise<Void>] in
            defer { held = nil }
            return held ?? []
        }
        for promise in promises { promise.succeed() }
    }

    func touchSession(sid: String, now: Int) -> EventLoopFuture<Bool> {
        let promise = eventLoop.makePromise(of: Void.self)
        let stalled = held.withLockedValue { held -> Bool in
            guard held != nil else { return false }
            held!.append(promise)
            return true
        }
        if !stalled { promise.succeed() }
        return promise.futureResult.flatMap { self.inner.touchSession(sid: sid, now: now) }
    }

    func addSession(sid: String, userID: String, userJSON: String, now: Int) -> EventLoopFuture<Void> {
        inner.addSession(sid: sid, userID: userID, userJSON: userJSON, now: now)
    }
    func recordUsage(sid: String, model: String, now: Int) -> EventLoopFuture<Void> {
        inner.recordUsage(sid: sid, model: model, now: now)
    }
    func setSessionMember(sid: String, name: String, json: String) -> EventLoopFuture<Bool> {
        inner.setSessionMember(sid: sid, name: name, json: json)
    }
    func allSessions() -> EventLoopFuture<[String]> { inner.allSessions() }
    func removeSession(sid: String) -> EventLoopFuture<SessionRemoval> { inner.removeSession(sid: sid) }
    func removeSessions(withPrefix prefix: String) -> EventLoopFuture<Int> { inner.removeSessions(withPrefix: prefix) }
    func session(sid: String) -> EventLoopFuture<String?> { inner.session(sid: sid) }
    func sessions(ofUser userID: String) -> EventLoopFuture<[String]> { inner.sessions(ofUser: userID) }
    func usersOnline() -> EventLoopFuture<[String]> { inner.usersOnline() }
    func modelsInUse() -> EventLoopFuture<[String]> { inner.modelsInUse() }
    func sweepUsage(now: Int, maxAge: Int) -> EventLoopFuture<UsageSweep> { inner.sweepUsage(now: now, maxAge: maxAge) }
    func sweepSessions(now: Int, maxAge: Int) -> EventLoopFuture<[String]> {
        inner.sweepSessions(now: now, maxAge: maxAge)
    }
}

/// The contract's handlers on a real Socket.IO server, reached over Engine.IO polling on an
/// `EmbeddedEventLoop`, with users from token claims and the in-memory pools.
final class ContractFixture {
    let loop = EmbeddedEventLoop()
    let presence: StallablePresenceStore
    let io: SocketIOServer
    let router: EngineRouter
    let clock = NIOLockedValueBox(1_700_000_050)
    let revalidator: SessionRevalidator
    let events: OpenWebUIEvents
    private var clients: [PollingClient] = []
    /// Packets that came in the same poll as a CONNECT answer, by client.
    private var leftover: [ObjectIdentifier: [String]] = [:]

    init(broadcastPresence: Bool = true, strict: Bool = false, connectionsPerUser: Int = 0) throws {
        let loop = self.loop
        presence = StallablePresenceStore(eventLoop: loop)
        let clock = self.clock
        let now: @Sendable () -> Int = { clock.withLockedValue { $0 } }
        let verifier = try JWTVerifier(
            configuration: .init(keys: [JWTKey.hmac(secret: Array(UserDirectoryTests.secret.utf8), algorithms: [.hs256])])
        )
        let users = UserDirectory(
            verifier: verifier,
            revocation: RevocationKeys(),
            redis: nil,
            backend: nil,
            userPath: "/",
            channelsPath: "/",
            cacheTTL: .seconds(60),
            logger: silentLogger,
            now: now
        )
        let io = SocketIOServer(configuration: SocketIOConfiguration(), logger: silentLogger) { name in
            InMemoryAdapter(namespace: name, eventLoops: [loop])
        }
        self.io = io
        revalidator = SessionRevalidator(users: users, interval: .seconds(30), eventLoop: loop, logger: silentLogger) {
            userID in
            io.namespace("/")?.adapter.disconnectSockets(matching: BroadcastOptions(rooms: ["user:\(userID)"]), closeClient: false)
        }
        var events = OpenWebUIEvents(
            users: users,
            presence: presence,
            forwarder: .none,
            strict: strict,
            broadcastPresence: broadcastPresence,
            nodeID: "local",
            logger: silentLogger,
            now: now
        )
        events.revalidator = revalidator
        if connectionsPerUser > 0 { events.connectionsPerUser = UserConnectionLimit(limit: connectionsPerUser) }
        events.chatPresence = ChatPresence(
            presence: presence,
            redis: nil,
            keyPrefix: "open-webui",
            sessionMaxAge: 120,
            logger: silentLogger,
            now: now
        )
        io.addNamespace("/", handlers: events.handlers())
        self.events = events
        let engine = EngineServer(
            configuration: EngineConfiguration(pingInterval: .seconds(300), pingTimeout: .seconds(300)),
            application: io,
            logger: silentLogger
        )
        router = EngineRouter(endpoints: [engine])
    }

    deinit {
        for client in clients { client.close() }
        try? loop.syncShutdownGracefully()
    }

    /// Opens a session and sends CONNECT with `token`; returns the client and the CONNECT answer.
    func connect(token: String?) throws -> (client: PollingClient, answer: String) {
        let client = try PollingClient(router: router, loop: loop)
        clients.append(client)
        try client.send(token.map { #"0{"token":"\#($0)"}"# } ?? "0")
        loop.run()
        let payload = try #require(try client.receive())
        let records = payload.split(separator: RS).map(String.init)
        leftover[ObjectIdentifier(client)] = records.dropFirst().map { $0.hasPrefix("4") ? String($0.dropFirst()) : String($0) }
        return (client, records[0])
    }

    /// The sid of a CONNECT acknowledgement `40{"sid":"…"}`.
    func sid(_ answer: String) throws -> String {
        let value = try JSONParser.parse(String(answer.dropFirst(2)))
        return try #require(value["sid"]?.stringValue)
    }

    /// The packets that came in the same poll as `client`'s CONNECT answer, without polling again.
    func packetsWithConnect(_ client: PollingClient) -> [String] {
        leftover.removeValue(forKey: ObjectIdentifier(client)) ?? []
    }

    /// Every Socket.IO packet waiting for `client` (the `4` of each Engine.IO message dropped).
    func packets(_ client: PollingClient) throws -> [String] {
        loop.run()
        let earlier = leftover.removeValue(forKey: ObjectIdentifier(client)) ?? []
        guard let payload = try client.receive() else { return earlier }
        return earlier + payload.split(separator: RS).map { $0.hasPrefix("4") ? String($0.dropFirst()) : String($0) }
    }

    func value<T: Sendable>(_ future: EventLoopFuture<T>) throws -> T {
        loop.run()
        return try future.wait()
    }

    func join(_ sid: String, _ room: String) {
        io.namespace("/")!.adapter.addSockets(matching: BroadcastOptions(rooms: [sid]), to: [room])
        loop.run()
    }
}

@Suite("OpenWebUIEvents: the contract over a real Socket.IO server")
struct OpenWebUIEventsTests {
    static let ada = UserDirectoryTests.adaToken
    static let seven = UserDirectoryTests.subjectToken

    @Test("an authenticated connect records the session, joins user:{id} and broadcasts the user list")
    func authenticatedConnect() throws {
        let fixture = try ContractFixture()
        let (client, answer) = try fixture.connect(token: Self.ada)
        let sid = try fixture.sid(answer)
        #expect(try fixture.packets(client) == [#"2["user-list",{"user_ids":["42"]}]"#])
        let stored = try #require(try fixture.value(fixture.presence.session(sid: sid)))
        #expect(stored == #"{"id":"42","name":"Ada","email":"ada@example.com","role":"user","last_seen_at":1700000050}"#)
        #expect(try fixture.value(fixture.presence.sessions(ofUser: "42")) == [sid])
        #expect(try fixture.value(fixture.io.namespace("/")!.adapter.socketIDs(matching: .init(rooms: ["user:42"]))) == [sid])
    }

    @Test("always-connect: a socket without a valid token is connected but anonymous, and its events do nothing")
    func anonymous() throws {
        let fixture = try ContractFixture()
        for token in [nil, "not-a-jwt", String(Self.ada.dropLast(3))] as [String?] {
            let (client, answer) = try fixture.connect(token: token)
            #expect(answer.hasPrefix(#"40{"sid":"#))
            try client.send(#"21["user-join",{"auth":{"token":"bad"}}]"#, #"22["usage",{"model":"m"}]"#, #"23["heartbeat",{}]"#)
            #expect(try fixture.packets(client) == ["31[]", "32[]", "33[]"])
        }
        #expect(try fixture.value(fixture.presence.usersOnline()) == [])
        #expect(try fixture.value(fixture.presence.modelsInUse()) == [])
    }

    @Test("strict mode refuses the CONNECT with 44 and the reason")
    func strictRefusal() throws {
        let fixture = try ContractFixture(strict: true)
        let refused = try fixture.connect(token: "not-a-jwt").answer
        #expect(refused == #"44{"message":"unauthorized","data":{"reason":"invalid token: malformed"}}"#)
        let accepted = try fixture.connect(token: Self.ada)
        #expect(accepted.answer.hasPrefix(#"40{"sid":"#))
        #expect(try fixture.value(fixture.presence.usersOnline()) == ["42"])
    }

    @Test("user-join acks {id, name}; a socket that connected anonymously becomes the user")
    func userJoin() throws {
        let fixture = try ContractFixture()
        let (client, answer) = try fixture.connect(token: nil)
        let sid = try fixture.sid(answer)
        try client.send(#"25["user-join",{"auth":{"token":"\#(Self.ada)"}}]"#)
        #expect(try fixture.packets(client) == [#"2["user-list",{"user_ids":["42"]}]"#, #"35[{"id":"42","name":"Ada"}]"#])
        #expect(try fixture.value(fixture.presence.sessions(ofUser: "42")) == [sid])
    }

    @Test("typing reaches the channel's members with the sender's user; a non-member's typing reaches no one")
    func typing() throws {
        let fixture = try ContractFixture(broadcastPresence: false)
        let (a, answerA) = try fixture.connect(token: Self.ada)
        let (b, answerB) = try fixture.connect(token: Self.seven)
        let (c, _) = try fixture.connect(token: Self.seven)
        fixture.join(try fixture.sid(answerA), "channel:c1")
        fixture.join(try fixture.sid(answerB), "channel:c1")
        for name in ["events:channel", "channel-events"] {
            try a.send(#"2["\#(name)",{"channel_id":"c1","message_id":null,"data":{"type":"typing","data":{"typing":true}}}]"#)
            let relayed =
                #"2["\#(name)",{"channel_id":"c1","message_id":null,"data":{"type":"typing","data":{"typing":true}},"user":{"id":"42","name":"Ada","role":"user"}}]"#
            #expect(try fixture.packets(a) == [relayed])
            #expect(try fixture.packets(b) == [relayed])
            #expect(try fixture.packets(c) == [])
            // c is not in the channel: its typing goes nowhere.
            try c.send(#"29["\#(name)",{"channel_id":"c1","data":{"type":"typing"}}]"#)
            #expect(try fixture.packets(c) == ["39[]"])
            #expect(try fixture.packets(a) == [])
            #expect(try fixture.packets(b) == [])
        }
    }

    @Test("usage records the model and broadcasts the models; heartbeat moves last_seen_at")
    func usageAndHeartbeat() throws {
        let fixture = try ContractFixture()
        let (client, answer) = try fixture.connect(token: Self.ada)
        let sid = try fixture.sid(answer)
        _ = try fixture.packets(client)
        try client.send(#"2["usage",{"model":"llama3","chat_id":"c"}]"#)
        #expect(try fixture.packets(client) == [#"2["usage",{"models":["llama3"]}]"#])
        fixture.clock.withLockedValue { $0 += 30 }
        try client.send(#"27["heartbeat",{}]"#)
        #expect(try fixture.packets(client) == ["37[]"])
        #expect(try fixture.value(fixture.presence.session(sid: sid))?.hasSuffix(#""last_seen_at":1700000080}"#) == true)
    }

    @Test("a disconnect empties the pools and tells the others; the user's other session stays")
    func disconnectCleanup() throws {
        let fixture = try ContractFixture()
        let (first, firstAnswer) = try fixture.connect(token: Self.ada)
        let (second, secondAnswer) = try fixture.connect(token: Self.ada)
        let (other, _) = try fixture.connect(token: Self.seven)
        try first.send(#"2["usage",{"model":"m"}]"#)
        for client in [first, second, other] { _ = try fixture.packets(client) }
        try first.send("1")
        #expect(try fixture.packets(other) == [#"2["user-list",{"user_ids":["42","7"]}]"#])
        #expect(try fixture.value(fixture.presence.sessions(ofUser: "42")) == [try fixture.sid(secondAnswer)])
        #expect(try fixture.value(fixture.presence.session(sid: try fixture.sid(firstAnswer))) == nil)
        #expect(try fixture.value(fixture.presence.modelsInUse()) == [])
        try second.send("1")
        #expect(try fixture.packets(other) == [#"2["user-list",{"user_ids":["7"]}]"#])
    }

    @Test("a socket's events are handled in arrival order even when one waits on the pools")
    func ordering() throws {
        let fixture = try ContractFixture()
        let (client, _) = try fixture.connect(token: Self.ada)
        _ = try fixture.packets(client)
        fixture.presence.stall()
        try client.send(#"21["heartbeat",{}]"#, #"22["events:unknown",{"n":1}]"#, #"23["user-list"]"#)
        #expect(try fixture.packets(client) == [])
        fixture.presence.release()
        #expect(
            try fixture.packets(client) == [
                "31[]", #"32[{"error":"event not handled"}]"#, #"2["user-list",{"user_ids":["42"]}]"#, "33[]",
            ]
        )
    }

    @Test("a socket with too many events waiting is disconnected with reason event_backlog")
    func backlog() throws {
        let fixture = try ContractFixture()
        let (client, _) = try fixture.connect(token: Self.ada)
        let (bystander, _) = try fixture.connect(token: Self.seven)
        _ = try fixture.packets(client)
        _ = try fixture.packets(bystander)
        fixture.presence.stall()
        let flood = Array(repeating: #"2["heartbeat",{}]"#, count: ContractSession.maxWaitingEvents + 1)
        try client.sendRaw(flood.map { "4" + $0 }.joined(separator: RS))
        fixture.loop.run()
        #expect(try fixture.packets(client).last == "1")
        fixture.presence.release()
        // The bystander is untouched, and the flooder's session left the pools.
        let seen = try fixture.packets(bystander)
        #expect(seen == [#"2["user-list",{"user_ids":["7"]}]"#], "\(seen)")
        #expect(try fixture.value(fixture.presence.usersOnline()) == ["7"])
    }

    @Test("a pending user's socket stays anonymous; strict mode refuses it")
    func pendingUser() throws {
        let fixture = try ContractFixture(broadcastPresence: false)
        let (client, _) = try fixture.connect(token: UserDirectoryTests.pendingToken)
        try client.send(#"21["user-join",{"auth":{"token":"\#(UserDirectoryTests.pendingToken)"}}]"#)
        #expect(try fixture.packets(client) == ["31[]"])
        #expect(try fixture.value(fixture.presence.usersOnline()) == [])
        let strict = try ContractFixture(strict: true)
        #expect(
            try strict.connect(token: UserDirectoryTests.pendingToken).answer
                == #"44{"message":"unauthorized","data":{"reason":"role pending is not allowed"}}"#
        )
    }

    @Test("re-validation disconnects every socket of a user whose token no longer holds, once per token, and no one else")
    func revalidation() throws {
        let fixture = try ContractFixture(broadcastPresence: false)
        let (first, firstAnswer) = try fixture.connect(token: UserDirectoryTests.expiringToken)
        let (second, _) = try fixture.connect(token: UserDirectoryTests.expiringToken)
        let (other, otherAnswer) = try fixture.connect(token: Self.seven)
        for client in [first, second, other] { #expect(try fixture.packets(client) == []) }
        #expect(fixture.revalidator.trackedTokens == 2)
        // Still valid: nothing happens.
        _ = try fixture.value(fixture.revalidator.runRound())
        for client in [first, second, other] { #expect(try fixture.packets(client) == []) }
        // Past exp and the leeway.
        fixture.clock.withLockedValue { $0 = 1_700_000_200 }
        _ = try fixture.value(fixture.revalidator.runRound())
        #expect(try fixture.packets(first) == ["1"])
        #expect(try fixture.packets(second) == ["1"])
        #expect(try fixture.packets(other) == [])
        #expect(try fixture.value(fixture.presence.session(sid: try fixture.sid(firstAnswer))) == nil)
        #expect(try fixture.value(fixture.presence.usersOnline()) == ["7"])
        #expect(try fixture.value(fixture.presence.session(sid: try fixture.sid(otherAnswer))) != nil)
        #expect(fixture.revalidator.trackedTokens == 1)
    }

    @Test("a heartbeat brings back a session entry that a reaper removed")
    func heartbeatRecreatesSession() throws {
        let fixture = try ContractFixture(broadcastPresence: false)
        let (client, answer) = try fixture.connect(token: Self.ada)
        let sid = try fixture.sid(answer)
        _ = try fixture.packets(client)
        _ = try fixture.value(fixture.presence.removeSession(sid: sid))
        fixture.clock.withLockedValue { $0 += 200 }
        try client.send(#"24["heartbeat",{}]"#)
        #expect(try fixture.packets(client) == ["34[]"])
        let stored = try #require(try fixture.value(fixture.presence.session(sid: sid)))
        #expect(stored == #"{"id":"42","name":"Ada","email":"ada@example.com","role":"user","last_seen_at":1700000250}"#)
    }

    @Test("when Redis comes back empty, every authenticated socket is written into the pools again, with its chats")
    func restoreSessionsAfterDataLoss() throws {
        let fixture = try ContractFixture(broadcastPresence: false)
        let (adaClient, adaAnswer) = try fixture.connect(token: Self.ada)
        let ada = try fixture.sid(adaAnswer)
        let (sevenClient, sevenAnswer) = try fixture.connect(token: Self.seven)
        let seven = try fixture.sid(sevenAnswer)
        let (anonymousClient, anonymousAnswer) = try fixture.connect(token: nil)
        let anonymous = try fixture.sid(anonymousAnswer)
        for client in [adaClient, sevenClient, anonymousClient] { _ = try fixture.packets(client) }
        let local = try #require(fixture.io.namespace("/")?.adapter as? InMemoryAdapter)
        // Ada has a shared chat open (joining one needs the backend, which this fixture has not).
        local.forEachSocket(matching: BroadcastOptions(rooms: [ada])) { ContractSession.of($0).chatIDs = ["c1", "c2"] }
        // Redis restarted without its data; Seven's client goes while it was away.
        for sid in [ada, seven] { _ = try fixture.value(fixture.presence.removeSession(sid: sid)) }
        try sevenClient.send("1")
        fixture.loop.run()
        fixture.clock.withLockedValue { $0 += 30 }

        fixture.events.restoreSessions(local: local)
        fixture.loop.run()
        let stored = try #require(try fixture.value(fixture.presence.session(sid: ada)))
        #expect(
            stored
                == #"{"id":"42","name":"Ada","email":"ada@example.com","role":"user","last_seen_at":1700000080,"chat_ids":["c1","c2"]}"#
        )
        #expect(try fixture.value(fixture.presence.sessions(ofUser: "42")) == [ada])
        #expect(try fixture.value(fixture.presence.session(sid: seven)) == nil, "a socket that left stays out")
        #expect(try fixture.value(fixture.presence.session(sid: anonymous)) == nil, "anonymous sockets are never pooled")
        #expect(try fixture.value(fixture.presence.usersOnline()) == ["42"])

        // Nothing was lost (a reconnect without a restart): the same entry, written again.
        fixture.events.restoreSessions(local: local)
        fixture.loop.run()
        #expect(try fixture.value(fixture.presence.session(sid: ada)) == stored)
    }

    @Test("over its user's limit, a socket is disconnected unpooled; a user under it and an anonymous socket are not")
    func connectionsPerUser() throws {
        let fixture = try ContractFixture(broadcastPresence: false, connectionsPerUser: 2)
        let (first, firstAnswer) = try fixture.connect(token: Self.ada)
        let (_, secondAnswer) = try fixture.connect(token: Self.ada)
        for _ in 0..<2 { _ = try fixture.connect(token: Self.seven) }
        let (anonymous, _) = try fixture.connect(token: nil)
        let (third, thirdAnswer) = try fixture.connect(token: Self.ada)
        let refused = try fixture.sid(thirdAnswer)
        // In the poll that carried the CONNECT answer: a Socket.IO DISCONNECT (after which the stock client does
        // not retry), then the Engine.IO close.
        #expect(fixture.packetsWithConnect(third) == ["1", "1"])
        #expect(try fixture.value(fixture.presence.session(sid: refused)) == nil)
        let admitted = Set([try fixture.sid(firstAnswer), try fixture.sid(secondAnswer)])
        #expect(Set(try fixture.value(fixture.presence.sessions(ofUser: "42"))) == admitted)
        #expect(try fixture.value(fixture.io.namespace("/")!.adapter.socketIDs(matching: .init(rooms: ["user:42"]))) == admitted)
        #expect(try fixture.value(fixture.presence.sessions(ofUser: "7")).count == 2, "the limit is per user")
        // An anonymous socket counts only once it signs in, and then like any other.
        try anonymous.send(#"21["user-join",{"auth":{"token":"\#(Self.ada)"}}]"#)
        #expect(try fixture.packets(anonymous) == ["1", "1"], "refused before it is answered or joins anything")

        // One of Ada's sockets goes: the next one gets in.
        try first.send("1")
        fixture.loop.run()
        let (fourth, fourthAnswer) = try fixture.connect(token: Self.ada)
        #expect(try fixture.packets(fourth) == [])
        #expect(try fixture.value(fixture.presence.session(sid: try fixture.sid(fourthAnswer))) != nil)
        #expect(try fixture.value(fixture.presence.sessions(ofUser: "42")).count == 2)
    }

    @Test("a server-side disconnect drops the user's cached answer, so the reconnect is checked afresh")
    func serverDisconnectOutdatesCache() throws {
        let fixture = try ContractFixture(broadcastPresence: false)
        let (client, answer) = try fixture.connect(token: Self.ada)
        _ = try fixture.packets(client)
        #expect(fixture.revalidator.users.users.value(for: Self.ada, now: .now()) != nil)
        fixture.io.namespace("/")!.adapter.disconnectSockets(
            matching: BroadcastOptions(rooms: [try fixture.sid(answer)]),
            closeClient: false
        )
        #expect(try fixture.packets(client) == ["1"])
        #expect(fixture.revalidator.users.users.value(for: Self.ada, now: .now()) == nil)
    }
}

@Suite("Open WebUI's direct completions and note ids")
struct DirectCompletionTests {
    @Test(
        "a {user}:{session}:{request} name that no Open WebUI handler has is a direct completion",
        arguments: [
            ("42:sid:req", true), ("a:b:", true), ("42:sid", false), ("a:b:c:d", false), ("ydoc:document:join", false),
            ("ydoc:awareness:update", false), ("events:chat", false),
        ]
    )
    func names(event: String, isDirect: Bool) {
        #expect(OpenWebUIEvents.isDirectCompletion(event) == isDirect)
    }

    @Test("the published message is Python's {channel, data}, binary as byte lists")
    func message() {
        var bytes = ByteBuffer()
        bytes.writeBytes([0, 7, 255])
        #expect(
            DirectCompletionChannel.message(channel: "42:s:r", data: "data: {\"x\":1}")
                == #"{"channel":"42:s:r","data":"data: {\"x\":1}"}"#
        )
        #expect(
            DirectCompletionChannel.message(channel: "42:s:r", data: ["done": true, "blob": .binary(bytes)])
                == #"{"channel":"42:s:r","data":{"done":true,"blob":[0,7,255]}}"#
        )
    }

    @Test("note ids go into a backend path only when they are made of URL-safe id characters")
    func noteIDs() {
        for id in ["0b8e2c1a-6a0e-4c7e-9d6f-3f3d2c1b0a99", "abc_DEF-123"] { #expect(OpenWebUIEvents.isPathSafe(id)) }
        for id in ["", "../users", "a/b", "a?b", "a%2Fb", "é", String(repeating: "a", count: 129)] {
            #expect(!OpenWebUIEvents.isPathSafe(id))
        }
    }

    @Test("without a backend no note access can be checked, so join-note joins nothing")
    func joinNoteWithoutBackend() throws {
        let fixture = try ContractFixture(broadcastPresence: false)
        let (client, answer) = try fixture.connect(token: OpenWebUIEventsTests.ada)
        try client.send(#"21["join-note",{"note_id":"n1","auth":{"token":"\#(OpenWebUIEventsTests.ada)"}}]"#)
        #expect(try fixture.packets(client) == ["31[]"])
        let members = try fixture.value(fixture.io.namespace("/")!.adapter.socketIDs(matching: .init(rooms: ["note:n1"])))
        #expect(members.isEmpty)
        _ = answer
    }
}

@Suite("Open WebUI's shared-chat presence and events:chat")
struct ChatPresenceTests {
    @Test("present: the sessions holding the chat and seen within the timeout, one entry per user, sorted by id")
    func users() {
        let sessions = [
            #"{"id":"u2","name":"Grace","chat_ids":["c1","c2"],"last_seen_at":1000}"#,
            #"{"id":"u1","name":"Ada","chat_ids":["c1"],"last_seen_at":990.5}"#,
            #"{"id":"u1","name":"Ada","chat_ids":["c1"],"last_seen_at":1000}"#,
            #"{"id":"u3","name":"Alan","chat_ids":["c1"],"last_seen_at":800}"#,
            #"{"id":"u4","chat_ids":["c1"],"last_seen_at":1000}"#,
            #"{"id":"u5","name":"Ken","chat_ids":["c2"],"last_seen_at":1000}"#,
            #"{"id":"u6","name":"Ed","last_seen_at":1000}"#,
            "not json",
        ]
        let users = ChatPresence.users(in: sessions, chatID: "c1", now: 1010, maxAge: 120)
        #expect(
            JSONWriter.serialize(.array(users))
                == #"[{"id":"u1","name":"Ada"},{"id":"u2","name":"Grace"},{"id":"u4","name":""}]"#
        )
        #expect(
            JSONWriter.serialize(ChatPresence.event(chatID: "c1", users: []))
                == #"{"chat_id":"c1","shared":true,"data":{"type":"chat:presence","data":{"users":[]}}}"#
        )
    }

    @Test("saved chat ids are neither temporary nor channel chats", arguments: [
        ("0b8e2c1a", true), ("temporary:abc", false), ("local:abc", false), ("channel:abc", false), ("", false),
    ])
    func savedChatIDs(id: String, saved: Bool) {
        #expect(OpenWebUIEvents.isSavedChatID(id) == saved)
    }

    @Test("join is refused when access cannot be checked; bad payloads are refused; leave is accepted")
    func joinAndLeaveWithoutBackend() throws {
        let fixture = try ContractFixture(broadcastPresence: false)
        let (client, answer) = try fixture.connect(token: OpenWebUIEventsTests.ada)
        let sid = try fixture.sid(answer)
        try client.send(
            #"21["events:chat",{"chat_id":"c1","data":{"type":"join"}}]"#,
            #"22["events:chat",{"chat_id":"temporary:x","data":{"type":"join"}}]"#,
            #"23["events:chat",{"chat_id":"c1","data":{"type":"typing","data":{"typing":"yes"}}}]"#,
            #"24["events:chat",{"chat_id":"c1","data":{"type":"typing","data":{"typing":true}}}]"#,
            #"25["events:chat",{"chat_id":"c1","data":{"type":"leave"}}]"#
        )
        // Typing needs the room (and write access); the one who left is not told the chat's presence.
        #expect(try fixture.packets(client) == ["31[false]", "32[false]", "33[false]", "34[false]", "35[true]"])
        let stored = try #require(try fixture.value(fixture.presence.session(sid: sid)))
        #expect(stored.hasSuffix(#""chat_ids":[]}"#), "\(stored)")
    }
}
