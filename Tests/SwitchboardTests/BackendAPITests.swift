import EngineIO
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Presence
import SocketIO
import Testing

@testable import OpenWebUI
@testable import Switchboard

@Suite("BackendAPI: routes, keys and errors (no sockets connected)")
struct BackendAPITests {
    static let key = "api-key-0123456789abcdef"

    final class Fixture {
        let loop = EmbeddedEventLoop()
        let presence: InMemoryPresenceStore
        let api: BackendAPI

        init(key: String? = BackendAPITests.key) {
            presence = InMemoryPresenceStore(eventLoop: loop)
            let loop = self.loop
            let server = SocketIOServer(configuration: SocketIOConfiguration(), logger: Logger(label: "test")) { name in
                InMemoryAdapter(namespace: name, eventLoops: [loop])
            }
            server.addNamespace("/", handlers: NamespaceHandlers())
            api = BackendAPI(keys: SecretBox(key), socketIO: server, presence: presence, logger: Logger(label: "test"))
        }

        func send(
            _ method: HTTPMethod,
            _ uri: String,
            body: String? = nil,
            authorization: String? = "Bearer \(BackendAPITests.key)"
        ) throws -> (status: HTTPResponseStatus, json: JSONValue) {
            var headers = HTTPHeaders()
            if let authorization { headers.add(name: "Authorization", value: authorization) }
            let parts = uri.split(separator: "?", maxSplits: 1)
            var query: [String: String] = [:]
            if parts.count == 2 {
                for pair in parts[1].split(separator: "&") {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    query[String(kv[0])] = kv.count == 2 ? String(kv[1]) : ""
                }
            }
            let request = HTTPRequest(
                head: HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers),
                path: parts[0],
                query: query,
                body: ByteBuffer(string: body ?? "")
            )
            let future = api.respond(to: request, on: loop)
            loop.run()
            let response = try future.wait()
            #expect(response.headers.first(name: "Content-Type") == "application/json")
            return (response.status, try JSONParser.parse(response.body))
        }
    }

    @Test(
        "the key: missing 401, wrong 403, right 200",
        arguments: [
            (nil, HTTPResponseStatus.unauthorized),
            ("Bearer wrong-key-0123456789abcdef", .forbidden),
            ("Bearer \(key)x", .forbidden),
            ("Bearer \(key)", .ok),
            ("bearer \(key)", .ok),
        ] as [(String?, HTTPResponseStatus)]
    )
    func keys(authorization: String?, status: HTTPResponseStatus) throws {
        let fixture = Fixture()
        #expect(try fixture.send(.GET, "/api/v1/users/online", authorization: authorization).status == status)
    }

    @Test("a node without a key refuses every request with 403")
    func disabled() throws {
        let fixture = Fixture(key: nil)
        let answer = try fixture.send(.GET, "/api/v1/users/online")
        #expect(answer.status == .forbidden)
        #expect(answer.json["error"]?.stringValue?.contains("no API key") == true)
    }

    @Test(
        "bad requests are 400, 404 or 405 with a JSON error",
        arguments: [
            (HTTPMethod.POST, "/api/v1/emit", "{not json", HTTPResponseStatus.badRequest),
            (.POST, "/api/v1/emit", "[1]", .badRequest),
            (.POST, "/api/v1/emit", #"{"to":"all"}"#, .badRequest),
            (.POST, "/api/v1/emit", #"{"event":"e"}"#, .badRequest),
            (.POST, "/api/v1/emit", #"{"event":"e","to":{"room":"a","sid":"b"}}"#, .badRequest),
            (.POST, "/api/v1/emit", #"{"event":"e","to":{"rooms":[]}}"#, .badRequest),
            (.POST, "/api/v1/emit", #"{"event":"e","to":"all","args":{}}"#, .badRequest),
            (.POST, "/api/v1/emit", #"{"event":"connect","to":"all"}"#, .badRequest),
            (.POST, "/api/v1/emit", #"{"event":"e","to":"all","except":[1]}"#, .badRequest),
            (.POST, "/api/v1/emit", #"{"event":"e","to":"all","namespace":"/nope"}"#, .notFound),
            (.POST, "/api/v1/call", #"{"event":"e"}"#, .badRequest),
            (.POST, "/api/v1/call", #"{"event":"e","sid":"s","timeout":0}"#, .badRequest),
            (.POST, "/api/v1/call", #"{"event":"e","sid":"s","timeout":301}"#, .badRequest),
            (.POST, "/api/v1/rooms/join", #"{"sids":["s"]}"#, .badRequest),
            (.POST, "/api/v1/rooms/join", #"{"room":"r"}"#, .badRequest),
            (.POST, "/api/v1/rooms/leave", #"{"room":"r","sids":[]}"#, .badRequest),
            (.POST, "/api/v1/disconnect", #"{}"#, .badRequest),
            (.GET, "/api/v1/emit", nil, .methodNotAllowed),
            (.POST, "/api/v1/usage", "{}", .methodNotAllowed),
            (.GET, "/api/v1/nothing", nil, .notFound),
            (.GET, "/api/v1/rooms/a/b", nil, .notFound),
            (.GET, "/api/v1/rooms/bad%zz", nil, .badRequest),
            (.GET, "/api/v1/rooms/", nil, .notFound),
            (.GET, "/api/v1/users//sessions", nil, .notFound),
        ] as [(HTTPMethod, String, String?, HTTPResponseStatus)]
    )
    func badRequests(method: HTTPMethod, uri: String, body: String?, status: HTTPResponseStatus) throws {
        let answer = try Fixture().send(method, uri, body: body)
        #expect(answer.status == status)
        #expect(answer.json["error"]?.stringValue?.isEmpty == false)
    }

    @Test(
        "emits, membership changes and disconnects are accepted",
        arguments: [
            ("/api/v1/emit", #"{"event":"e","args":[1,"two"],"to":"all"}"#),
            ("/api/v1/emit", #"{"event":"e","to":{"room":"channel:1"},"except":["sid1"]}"#),
            ("/api/v1/emit", #"{"event":"e","to":{"rooms":["a","b"]}}"#),
            ("/api/v1/emit", #"{"event":"e","to":{"sid":"sid1"}}"#),
            ("/api/v1/emit", #"{"event":"e","to":{"user":42}}"#),
            ("/api/v1/rooms/join", #"{"room":"r","sids":["s1","s2"]}"#),
            ("/api/v1/rooms/join", #"{"room":"r","user":"u1"}"#),
            ("/api/v1/rooms/leave", #"{"room":"r","from_room":"x"}"#),
            ("/api/v1/disconnect", #"{"sids":["s1"]}"#),
            ("/api/v1/disconnect", #"{"room":"r"}"#),
            ("/api/v1/disconnect", #"{"user":"u1"}"#),
        ]
    )
    func accepted(path: String, body: String) throws {
        let answer = try Fixture().send(.POST, path, body: body)
        #expect(answer.status == .ok)
        #expect(answer.json == ["ok": true])
    }

    @Test("a call to a sid nobody holds is 404")
    func callUnknownSid() throws {
        let answer = try Fixture().send(.POST, "/api/v1/call", body: #"{"event":"e","sid":"nobody","timeout":1}"#)
        #expect(answer.status == .notFound)
    }

    @Test("queries read the pools and the rooms")
    func queries() throws {
        let fixture = Fixture()
        _ = fixture.presence.addSession(sid: "s1", userID: "u1", userJSON: #"{"id":"u1"}"#, now: 100)
        _ = fixture.presence.addSession(sid: "s2", userID: "u1", userJSON: #"{"id":"u1"}"#, now: 100)
        _ = fixture.presence.recordUsage(sid: "s1", model: "llama", now: 100)
        fixture.loop.run()
        #expect(try fixture.send(.GET, "/api/v1/users/online").json == ["user_ids": ["u1"]])
        #expect(try fixture.send(.GET, "/api/v1/users/u1/sessions").json == ["user_id": "u1", "sids": ["s1", "s2"]])
        #expect(try fixture.send(.GET, "/api/v1/users/nobody/sessions").json == ["user_id": "nobody", "sids": []])
        #expect(try fixture.send(.GET, "/api/v1/usage").json == ["models": ["llama"]])
        let room = try fixture.send(.GET, "/api/v1/rooms/channel%3Ax%20y?namespace=/")
        #expect(room.status == .ok)
        #expect(room.json == ["room": "channel:x y", "sids": []])
        #expect(try fixture.send(.GET, "/api/v1/rooms/r?namespace=/other").status == .notFound)
    }

    @Test("percent-decoding of path segments")
    func percentDecoding() {
        #expect(BackendAPI.percentDecoded("a%20b%3Ac") == "a b:c")
        #expect(BackendAPI.percentDecoded("%E2%9C%93") == "✓")
        #expect(BackendAPI.percentDecoded("%") == nil)
        #expect(BackendAPI.percentDecoded("%4") == nil)
        #expect(BackendAPI.percentDecoded("%FF") == nil)
    }

    @Test("key comparison")
    func keyComparison() {
        #expect(BackendAPI.constantTimeEqual("abc", "abc"))
        #expect(!BackendAPI.constantTimeEqual("abc", "abd"))
        #expect(!BackendAPI.constantTimeEqual("abc", "abcd"))
        #expect(!BackendAPI.constantTimeEqual("", "a"))
    }
}
