import Auth
import Logging
import NIOCore
import NIOEmbedded
import SocketIO
import Testing

@testable import OpenWebUI

@Suite("UserDirectory: token → user, without a backend")
struct UserDirectoryTests {
    static let secret = "switchboard-unit-test-secret-0123456789"
    /// PyJWT HS256: {"id":"42","jti":"j-1","iat":1700000000,"name":"Ada","email":"ada@example.com"}.
    static let adaToken =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6IjQyIiwianRpIjoiai0xIiwiaWF0IjoxNzAwMDAwMDAwLCJuYW1lIjoiQWRhIiwiZW1haWwiOiJhZGFAZXhhbXBsZS5jb20ifQ.7g80eAk0OkoBfbJVRB_vqnBw4PKjLxWGyGDgOtHy8ek"
    /// PyJWT HS256: {"sub":"7","iat":1700000000}.
    static let subjectToken =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI3IiwiaWF0IjoxNzAwMDAwMDAwfQ.G7aBIGfxMVFDt796JWhtmHDIlCDxlVeR1wooKRYjyh4"
    /// PyJWT HS256: {"id":"42","iat":1700000000,"exp":1700000100}.
    static let expiringToken =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6IjQyIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDAxMDB9.Nc_RJC3_dcBJ3BI4eK2pV-rRRReYNJLB1FEggYH7724"

    func directory(keys: Bool = true, now: Int = 1_700_000_050) throws -> UserDirectory {
        let verifier =
            keys
            ? try JWTVerifier(configuration: .init(keys: [JWTKey.hmac(secret: Array(Self.secret.utf8), algorithms: [.hs256])]))
            : nil
        return UserDirectory(
            verifier: verifier,
            revocation: RevocationKeys(),
            redis: nil,
            backend: nil,
            userPath: "/api/v1/auths/",
            channelsPath: "/api/v1/channels/",
            cacheTTL: .seconds(60),
            logger: Logger(label: "test"),
            now: { now }
        )
    }

    func outcome(_ directory: UserDirectory, _ token: String?) throws -> Result<AuthenticatedUser, AuthenticationFailure> {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let future = directory.authenticate(token: token, on: loop)
        loop.run()
        do {
            return .success(try future.wait())
        } catch let failure as AuthenticationFailure {
            return .failure(failure)
        }
    }

    @Test("the user object comes from the claims: id, name, email, role")
    func userFromClaims() throws {
        let user = try outcome(directory(), Self.adaToken).get()
        #expect(user.id == "42")
        #expect(user.name == "Ada")
        #expect(JSONWriter.serialize(user.object) == #"{"id":"42","name":"Ada","email":"ada@example.com","role":"user"}"#)
    }

    @Test("the user id falls back to sub, and the name to the id")
    func subjectClaim() throws {
        let user = try outcome(directory(), Self.subjectToken).get()
        #expect(user.id == "7")
        #expect(user.name == "7")
    }

    @Test(
        "refusals name their reason",
        arguments: [
            (nil, "no token"),
            ("", "no token"),
            ("not.a.token", "invalid token: malformed"),
            (expiringToken.dropLast(2) + "AA", "invalid token: badSignature"),
        ] as [(String?, String)]
    )
    func refusals(token: String?, reason: String) throws {
        #expect(try outcome(directory(), token.map { String($0) }) == .failure(AuthenticationFailure(reason: reason)))
    }

    @Test("an expired token is refused once its exp (plus leeway) has passed")
    func expiry() throws {
        #expect(try outcome(directory(now: 1_700_000_120), Self.expiringToken).get().id == "42")
        #expect(
            try outcome(directory(now: 1_700_000_200), Self.expiringToken)
                == .failure(AuthenticationFailure(reason: "invalid token: expired"))
        )
    }

    /// PyJWT-shaped HS256: {"id":"9","iat":1700000000,"name":"Pat","role":"pending"}.
    static let pendingToken =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6IjkiLCJpYXQiOjE3MDAwMDAwMDAsIm5hbWUiOiJQYXQiLCJyb2xlIjoicGVuZGluZyJ9.AdGbwCpzoNXt3zkPx6f01gf2IxUEa1cwVviOH-FiriM"

    @Test("a user whose role is neither user nor admin is refused, as Open WebUI refuses pending users")
    func pendingRole() throws {
        #expect(
            try outcome(directory(), Self.pendingToken) == .failure(AuthenticationFailure(reason: "role pending is not allowed"))
        )
        #expect(throws: AuthenticationFailure.self) {
            try UserDirectory.admitted(AuthenticatedUser(id: "1", name: "x", role: "", object: ["id": "1"]))
        }
        #expect(try UserDirectory.admitted(AuthenticatedUser(id: "1", name: "x", role: "admin", object: ["id": "1"])).id == "1")
    }

    @Test("re-validation without a backend or Redis: a token valid until its exp, then refused")
    func revalidateWithoutBackend() throws {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let valid = try directory(now: 1_700_000_120).revalidate(token: Self.expiringToken, on: loop)
        let expired = try directory(now: 1_700_000_200).revalidate(token: Self.expiringToken, on: loop)
        loop.run()
        #expect(try valid.wait() == .valid)
        #expect(try expired.wait() == .refused("invalid token: expired"))
    }

    @Test("the shared keys name the token by its SHA-256, never by the token itself")
    func sharedKeys() throws {
        let directory = try directory()
        let key = directory.checkKey(token: "abc")
        #expect(key == "open-webui:switchboard:token:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad:check")
        #expect(directory.recheckKey(userID: "42") == "open-webui:switchboard:user:42:recheck")
    }

    @Test("without a configured key every token is refused")
    func noKeys() throws {
        #expect(try outcome(directory(keys: false), Self.adaToken) == .failure(AuthenticationFailure(reason: "no JWT key configured")))
    }

    @Test("SESSION_POOL gets Open WebUI's UserModel fields only: never the token, its expiry or the permissions")
    func sessionObject() throws {
        // Open WebUI 0.12.4's `GET /api/v1/auths/` answer, which carries the caller's bearer token.
        let answer = try JSONParser.parse(
            #"""
            {"token":"eyJhbGciOi.secret.token","token_type":"Bearer","expires_at":1700003600,"id":42,"email":"ada@example.com",
             "name":"Ada","role":"admin","profile_image_url":"/user.png","bio":"b","gender":"g","date_of_birth":"1815-12-10",
             "status_emoji":null,"status_message":"busy","status_expires_at":null,"permissions":{"chat":{"file_upload":true}},
             "api_key":"sk-123","profile_banner_image_url":"/banner.png","last_active_at":1700000000}
            """#
        )
        #expect(UserDirectory.identifier(answer["id"]) == "42")
        let stored = JSONWriter.serialize(UserDirectory.sessionObject(answer, id: "42"))
        #expect(
            stored
                == #"{"id":"42","email":"ada@example.com","name":"Ada","role":"admin","status_emoji":null,"status_message":"busy","status_expires_at":null,"last_active_at":1700000000}"#
        )
        #expect(JSONWriter.serialize(UserDirectory.sessionObject(.string("x"), id: "42")) == #"{"id":"42"}"#)
        #expect(UserDirectory.identifier(.string("")) == nil)
        #expect(UserDirectory.identifier(.bool(true)) == nil)
    }
}

@Suite("ExpiringCache")
struct ExpiringCacheTests {
    @Test("an entry lives for its TTL, then is gone")
    func ttl() {
        let cache = ExpiringCache<Int>(ttl: .seconds(60))
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        cache.store(1, for: "a", now: start)
        #expect(cache.value(for: "a", now: start + .seconds(59)) == 1)
        #expect(cache.value(for: "a", now: start + .seconds(60)) == nil)
    }

    @Test("a zero TTL caches nothing")
    func zeroTTL() {
        let cache = ExpiringCache<Int>(ttl: .zero)
        cache.store(1, for: "a", now: .now())
        #expect(cache.value(for: "a", now: .now()) == nil)
    }

    @Test("at capacity, expired entries go first; a cache full of live entries starts over")
    func capacity() {
        let cache = ExpiringCache<Int>(ttl: .seconds(10), capacity: 2)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        cache.store(1, for: "old", now: start)
        cache.store(2, for: "live", now: start + .seconds(9))
        cache.store(3, for: "new", now: start + .seconds(11))
        #expect(cache.value(for: "old", now: start + .seconds(11)) == nil)
        #expect(cache.value(for: "live", now: start + .seconds(11)) == 2)
        #expect(cache.value(for: "new", now: start + .seconds(11)) == 3)
        cache.store(4, for: "newest", now: start + .seconds(12))
        #expect(cache.value(for: "newest", now: start + .seconds(12)) == 4)
        #expect(cache.value(for: "live", now: start + .seconds(12)) == nil)
    }
}

@Suite("ForwardedEvent")
struct ForwardedEventTests {
    @Test("the forwarded body names the event, its sender and node; binary arguments become base64")
    func body() {
        var bytes = ByteBuffer()
        bytes.writeBytes([0, 1, 2, 255])
        let event = ForwardedEvent(
            event: "events:chat",
            args: [["chat_id": "c1", "file": .binary(bytes)], "text"],
            sid: "sid1",
            userID: nil,
            namespace: "/",
            node: "node01",
            wantsAck: true
        )
        #expect(
            JSONWriter.serialize(event.json)
                == #"{"event":"events:chat","args":[{"chat_id":"c1","file":{"base64":"AAEC/w=="}},"text"],"sid":"sid1","user_id":null,"namespace":"/","node":"node01","rooms":[]}"#
        )
    }

    @Test("an authenticated sender's token and rooms go with the event, for the receiver's own checks")
    func tokenAndRooms() {
        let event = ForwardedEvent(
            event: "ydoc:document:join",
            args: [["document_id": "note:n1"]],
            sid: "sid1",
            userID: "u1",
            namespace: "/",
            node: "node01",
            wantsAck: false,
            token: "tok",
            rooms: ["channel:c1", "user:u1"]
        )
        #expect(
            JSONWriter.serialize(event.json)
                == #"{"event":"ydoc:document:join","args":[{"document_id":"note:n1"}],"sid":"sid1","user_id":"u1","namespace":"/","node":"node01","rooms":["channel:c1","user:u1"],"token":"tok"}"#
        )
    }

    @Test(
        "events are counted by the Open WebUI family they belong to",
        arguments: [
            ("ydoc:document:update", [JSONValue]([["document_id": "note:n"]]), "ydoc"),
            ("encryption:packet", [], "encryption"),
            ("events:chat", [["chat_id": "c", "data": ["type": "last_read_at"]]], "last_read_at"),
            ("events:channel", [["channel_id": "c", "data": ["type": "last_read_at"]]], "last_read_at"),
            ("events:channel", [["channel_id": "c", "data": ["type": "reaction"]]], "other"),
            ("disconnect", ["transport close"], "disconnect"),
            ("custom", [], "other"),
        ] as [(String, [JSONValue], String)]
    )
    func family(event: String, args: [JSONValue], family: String) {
        let forwarded = ForwardedEvent(event: event, args: args, sid: "s", userID: nil, namespace: "/", node: "n", wantsAck: false)
        #expect(forwarded.family == family)
        #expect(EventForwarder.families.contains(family))
    }

    @Test("without a target the client is told the event was not handled")
    func noTarget() throws {
        let loop = EmbeddedEventLoop()
        let event = ForwardedEvent(event: "x", args: [], sid: "s", userID: "u", namespace: "/", node: "n", wantsAck: true)
        let answer = EventForwarder.none.forward(event, on: loop, logger: Logger(label: "test"))
        #expect(try answer.wait() == [["error": "event not handled"]])
    }
}
