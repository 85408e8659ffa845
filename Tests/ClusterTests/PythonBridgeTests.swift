import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import Redis
import RedisTestSupport
import SocketIO
import Synchronization
import XCTest

@testable import Cluster
@testable import EngineIO
import EngineIOTestSupport

/// Messages exactly as python-socketio 5.18.1's `AsyncPubSubManager` publishes them (captured from its `_publish`).
private enum PythonFixture {
    static let emitToRoom = """
        {"method": "emit", "event": "chat", "data": [{"text": "hi"}], "binary": false, "namespace": "/", \
        "room": "room1", "skip_sid": "sidX", "callback": null, "host_id": "python-origin"}
        """
    static let emitToRooms = """
        {"method": "emit", "event": "many", "data": ["a", 1, null, [true]], "binary": false, "namespace": "/", \
        "room": ["r1", "r2"], "skip_sid": ["s1", "s2"], "callback": null, "host_id": "python-origin"}
        """
    static let emitToAll = """
        {"method": "emit", "event": "all", "data": ["x"], "binary": false, "namespace": "/", "room": null, \
        "skip_sid": null, "callback": null, "host_id": "python-origin"}
        """
    static let emitBinary = """
        {"method": "emit", "event": "file", "data": [[{"_placeholder": true, "num": 0}, "text", \
        {"k": {"_placeholder": true, "num": 1}}], "aGVsbG8=", "AAEC"], "binary": true, "namespace": "/", \
        "room": "room1", "skip_sid": null, "callback": null, "host_id": "python-origin"}
        """
    static let emitWithCallback = """
        {"method": "emit", "event": "ask", "data": ["question"], "binary": false, "namespace": "/", "room": "sidC", \
        "skip_sid": null, "callback": ["sidC", "/", 1], "host_id": "python-origin"}
        """
    static let disconnect = #"{"method": "disconnect", "sid": "sid1", "namespace": "/", "host_id": "python-origin"}"#
    static let enterRoom = """
        {"method": "enter_room", "sid": "sid1", "room": "r9", "namespace": "/", "host_id": "python-origin"}
        """
    static let leaveRoom = """
        {"method": "leave_room", "sid": "sid1", "room": "r9", "namespace": "/", "host_id": "python-origin"}
        """
    static let closeRoom = #"{"method": "close_room", "room": "r9", "namespace": "/", "host_id": "python-origin"}"#
    static let callback = """
        {"method": "callback", "host_id": "python-origin", "sid": "sidC", "namespace": "/", "id": 1, \
        "args": ["yes", 42]}
        """
}

/// An `emit` message as python-socketio writes it, with the fields a test varies.
private func emitJSON(
    event: String = "news",
    data: String = #"["hello"]"#,
    room: String = "null",
    skipSID: String = "null",
    callback: String = "null",
    hostID: String = "python-origin",
    namespace: String = "/"
) -> String {
    """
    {"method": "emit", "event": "\(event)", "data": \(data), "binary": false, "namespace": "\(namespace)", \
    "room": \(room), "skip_sid": \(skipSID), "callback": \(callback), "host_id": "\(hostID)"}
    """
}

/// An emit to `sid` that asks for its ack, as python's `sio.call(event, to=sid)` publishes it.
private func callJSON(to sid: String, id: Int = 1, event: String = "ask", data: String = #"["hello"]"#) -> String {
    emitJSON(event: event, data: data, room: "\"\(sid)\"", callback: "[\"\(sid)\", \"/\", \(id)]")
}

private func decode(_ text: String) throws -> PythonBridgeMessage {
    try PythonBridgeMessage.decode(ByteBuffer(string: text))
}

private func decodedEmit(
    _ text: String,
    file: StaticString = #filePath,
    line: UInt = #line
) throws -> PythonBridgeEmit {
    guard case .emit(let emit) = try decode(text).action else {
        XCTFail("not an emit", file: file, line: line)
        throw CancellationError()
    }
    return emit
}

final class PythonBridgeDecodingTests: XCTestCase {
    func testDecodesEveryMethodAsPythonSocketIOPublishesIt() throws {
        let origin = "python-origin"
        XCTAssertEqual(
            try decode(PythonFixture.emitToRoom),
            PythonBridgeMessage(
                hostID: origin,
                action: .emit(
                    PythonBridgeEmit(event: "chat", args: [["text": "hi"]], rooms: ["room1"], skipSIDs: ["sidX"])
                )
            )
        )
        XCTAssertEqual(
            try decode(PythonFixture.emitWithCallback),
            PythonBridgeMessage(
                hostID: origin,
                action: .emit(
                    PythonBridgeEmit(
                        event: "ask",
                        args: ["question"],
                        rooms: ["sidC"],
                        callback: .init(room: "sidC", namespace: "/", id: 1)
                    )
                )
            )
        )
        XCTAssertEqual(
            try decode(PythonFixture.disconnect),
            PythonBridgeMessage(hostID: origin, action: .disconnect(sid: "sid1", namespace: "/"))
        )
        XCTAssertEqual(
            try decode(PythonFixture.enterRoom),
            PythonBridgeMessage(hostID: origin, action: .enterRoom(sid: "sid1", namespace: "/", room: "r9"))
        )
        XCTAssertEqual(
            try decode(PythonFixture.leaveRoom),
            PythonBridgeMessage(hostID: origin, action: .leaveRoom(sid: "sid1", namespace: "/", room: "r9"))
        )
        XCTAssertEqual(
            try decode(PythonFixture.closeRoom),
            PythonBridgeMessage(hostID: origin, action: .closeRoom(room: "r9", namespace: "/"))
        )
        XCTAssertEqual(try decode(PythonFixture.callback), PythonBridgeMessage(hostID: origin, action: .callback))
    }

    func testRoomAndSkipSIDForms() throws {
        let many = try decodedEmit(PythonFixture.emitToRooms)
        XCTAssertEqual(many.args, ["a", 1, nil, [true]])
        XCTAssertEqual(many.rooms, ["r1", "r2"])
        XCTAssertEqual(many.skipSIDs, ["s1", "s2"])

        let all = try decodedEmit(PythonFixture.emitToAll)
        XCTAssertNil(all.rooms, "null room is everyone")
        XCTAssertEqual(all.skipSIDs, [])

        XCTAssertEqual(try decodedEmit(emitJSON(room: #""solo""#)).rooms, ["solo"])
        XCTAssertEqual(try decodedEmit(emitJSON(room: "[]")).rooms, [], "an empty list is nobody, not everyone")
        XCTAssertEqual(try decodedEmit(emitJSON(skipSID: #""only""#)).skipSIDs, ["only"])

        // Fields python-socketio always sends may be absent from other publishers: defaults as in its managers.
        let minimal = try decode(#"{"method":"emit","event":"e","data":[]}"#)
        XCTAssertEqual(minimal, PythonBridgeMessage(hostID: nil, action: .emit(PythonBridgeEmit(event: "e", args: []))))
        XCTAssertEqual(
            try decode(#"{"method":"disconnect","sid":"s","namespace":null}"#).action,
            .disconnect(sid: "s", namespace: "/")
        )
        XCTAssertEqual(try decodedEmit(emitJSON(namespace: "/admin")).namespace, "/admin")
    }

    func testBinaryDataBecomesAttachments() throws {
        let emit = try decodedEmit(PythonFixture.emitBinary)
        XCTAssertEqual(emit.event, "file")
        XCTAssertEqual(
            emit.args,
            [.binary(ByteBuffer(string: "hello")), "text", ["k": .binary(ByteBuffer(bytes: [0, 1, 2]))]]
        )
        XCTAssertEqual(emit.rooms, ["room1"])
    }

    /// Inputs that must be ignored: each is rejected with a reason, never crashes, and the handler acts on nothing.
    static let malformed: [(name: String, payload: String)] = [
        ("empty", ""),
        ("not JSON", "emit hello"),
        ("truncated", #"{"method": "emit", "event": "x", "data": ["#),
        ("JSON array", #"["emit", "x"]"#),
        ("JSON string", #""emit""#),
        ("no method", #"{"event": "x", "data": []}"#),
        ("method not a string", #"{"method": 1}"#),
        ("missing event", #"{"method": "emit", "data": ["x"]}"#),
        ("event not a string", #"{"method": "emit", "event": 5, "data": ["x"]}"#),
        ("missing data", #"{"method": "emit", "event": "x"}"#),
        ("data not a list", #"{"method": "emit", "event": "x", "data": "hello"}"#),
        ("data an object", #"{"method": "emit", "event": "x", "data": {"a": 1}}"#),
        ("binary not a boolean", #"{"method": "emit", "event": "x", "data": [], "binary": "yes"}"#),
        ("binary without the argument list", #"{"method": "emit", "event": "x", "data": [], "binary": true}"#),
        ("binary arguments not a list", #"{"method": "emit", "event": "x", "data": ["a", "AAEC"], "binary": true}"#),
        ("bad base64", #"{"method": "emit", "event": "x", "data": [[], "!!!!"], "binary": true}"#),
        ("base64 without padding", #"{"method": "emit", "event": "x", "data": [[], "aGVsbG8"], "binary": true}"#),
        ("attachment not a string", #"{"method": "emit", "event": "x", "data": [[], 12], "binary": true}"#),
        (
            "placeholder num out of range",
            #"{"method":"emit","event":"x","data":[[{"_placeholder":true,"num":1}],"AAEC"],"binary":true}"#
        ),
        (
            "placeholder num negative",
            #"{"method":"emit","event":"x","data":[[{"_placeholder":true,"num":-1}],"AAEC"],"binary":true}"#
        ),
        (
            "placeholder num not a number",
            #"{"method":"emit","event":"x","data":[[{"_placeholder":true,"num":"0"}],"AAEC"],"binary":true}"#
        ),
        ("room a number", emitJSON(room: "7")),
        ("room list with a number", emitJSON(room: #"["a", 7]"#)),
        ("room an object", emitJSON(room: #"{"a": 1}"#)),
        ("skip_sid an object", emitJSON(skipSID: #"{"a": 1}"#)),
        ("skip_sid list with null", emitJSON(skipSID: #"["a", null]"#)),
        ("callback too short", emitJSON(callback: #"["sidC", "/"]"#)),
        ("callback id a string", emitJSON(callback: #"["sidC", "/", "1"]"#)),
        ("callback id fractional", emitJSON(callback: #"["sidC", "/", 1.5]"#)),
        ("callback an object", emitJSON(callback: #"{"id": 1}"#)),
        ("namespace a number", #"{"method": "emit", "event": "x", "data": [], "namespace": 1}"#),
        ("host_id a number", #"{"method": "emit", "event": "x", "data": [], "host_id": 1}"#),
        ("disconnect without sid", #"{"method": "disconnect", "namespace": "/"}"#),
        ("enter_room without room", #"{"method": "enter_room", "sid": "s", "namespace": "/"}"#),
        ("leave_room with a list room", #"{"method": "leave_room", "sid": "s", "room": ["r"]}"#),
        ("close_room with a null room", #"{"method": "close_room", "room": null}"#),
        ("huge nesting", #"{"method": "emit", "event": "x", "data": "# + String(repeating: "[", count: 100_000)),
        (
            "nesting one level too deep",
            #"{"method": "emit", "event": "x", "data": ["#
                + String(repeating: "[", count: PythonBridgeMessage.maxJSONDepth - 1)
                + String(repeating: "]", count: PythonBridgeMessage.maxJSONDepth - 1) + "]}"
        ),
        ("control character in a string", "{\"method\": \"emit\", \"event\": \"a\u{01}b\", \"data\": []}"),
    ]

    func testMalformedInputsAreRejectedWithAReason() {
        for (name, payload) in Self.malformed {
            XCTAssertThrowsError(try decode(payload), name) { error in
                guard let error = error as? PythonBridgeDecodingError else { return XCTFail("\(name): \(error)") }
                XCTAssertFalse(error.isUnknownMethod, name)
                XCTAssertFalse(error.description.isEmpty, name)
            }
        }
        // The deepest nesting accepted still decodes.
        let deepest =
            #"{"method": "emit", "event": "x", "data": ["#
            + String(repeating: "[", count: PythonBridgeMessage.maxJSONDepth - 2)
            + String(repeating: "]", count: PythonBridgeMessage.maxJSONDepth - 2) + "]}"
        XCTAssertNoThrow(try decode(deepest))
    }

    func testInvalidUTF8IsRejected() {
        var payload = ByteBuffer(string: #"{"method": "emit", "event": ""#)
        payload.writeBytes([0xC3, 0x28])
        payload.writeString(#"", "data": []}"#)
        XCTAssertThrowsError(try PythonBridgeMessage.decode(payload))
    }

    func testUnknownMethodIsToldApart() {
        XCTAssertThrowsError(try decode(#"{"method": "shutdown", "host_id": "x"}"#)) { error in
            XCTAssertEqual((error as? PythonBridgeDecodingError)?.isUnknownMethod, true)
        }
    }

    func testReasonsNeverQuoteTheMessage() {
        let secret = "eyJhbGciOiJIUzI1NiJ9.secret-token"
        let payloads = [
            #"{"method": "emit", "event": "x", "data": "\#(secret)"}"#,
            #"{"method": "emit", "event": "x", "data": [[], "\#(secret)"], "binary": true}"#,
            #"{"method": "emit", "event": "x", "data": [], "room": {"\#(secret)": 1}}"#,
            #"{"method": "\#(secret)"}"#,
        ]
        for payload in payloads {
            XCTAssertThrowsError(try decode(payload)) { error in
                XCTAssertFalse("\(error)".contains("secret"), "\(error)")
            }
        }
    }

    func testCallbackReplyIsWhatPythonSocketIOPublishes() throws {
        let reply = PythonBridgeMessage.callbackReply(
            originHostID: "python-origin",
            callback: .init(room: "sidC", namespace: "/", id: 1),
            args: ["yes", 42]
        )
        // python-socketio's `json.dumps` of the same dict, without its spaces.
        XCTAssertEqual(
            String(buffer: reply),
            #"{"method":"callback","host_id":"python-origin","sid":"sidC","namespace":"/","id":1,"args":["yes",42]}"#
        )
        XCTAssertEqual(try JSONParser.parse(reply), try JSONParser.parse(PythonFixture.callback))
    }
}

/// What a bridge handler published.
private final class PublishedPayloads: Sendable {
    private let payloads = Mutex<[ByteBuffer]>([])

    func append(_ payload: ByteBuffer) { payloads.withLock { $0.append(payload) } }

    /// Payloads published since the last call.
    func take() -> [String] {
        payloads.withLock { payloads in
            defer { payloads.removeAll() }
            return payloads.map { String(buffer: $0) }
        }
    }
}

/// One node's sockets (a `ClusterHarness` node) driven by a bridge handler; the answers it publishes are kept.
private final class BridgeFixture {
    static let hostID = "switchboard-nodeAA"
    static let ackTimeout = TimeAmount.seconds(5)

    let harness = ClusterHarness()
    let node: TestNode
    let logs = LogCapture()
    let handler: PythonBridgeHandler
    private let published = PublishedPayloads()

    init() {
        let node = harness.addNode("nodeAA")
        let local = node.adapter.local
        let published = self.published
        self.node = node
        self.handler = PythonBridgeHandler(
            hostID: Self.hostID,
            ackTimeout: Self.ackTimeout,
            logger: logs.logger,
            localAdapter: { namespace in namespace == "/" ? local : nil },
            publish: { payload in published.append(payload) }
        )
    }

    var local: InMemoryAdapter { node.adapter.local }

    /// Payloads published since the last call.
    func takePublished() -> [String] { published.take() }

    func receive(_ json: String) {
        handler.handle(payload: ByteBuffer(string: json))
        harness.settle()
    }

    /// Connected clients with nothing left unread.
    func clients(_ count: Int) throws -> [TestClient] {
        let clients = try (0..<count).map { _ in try node.connect() }
        harness.settle()
        for client in clients { _ = client.received() }
        return clients
    }

    func members(of room: String) throws -> Set<String> {
        try harness.value(local.socketIDs(matching: BroadcastOptions(rooms: [room])))
    }
}

final class PythonBridgeHandlerTests: XCTestCase {
    func testEmitReachesExactlyTheRoomMembersMinusSkipSID() throws {
        let fixture = BridgeFixture()
        let clients = try fixture.clients(4)
        let (a, b, c, d) = (clients[0], clients[1], clients[2], clients[3])
        for client in [a, b, c] { client.join("room1") }
        fixture.harness.settle()
        for client in clients { _ = client.received() }

        fixture.receive(emitJSON(event: "chat", data: #"[{"text": "hi"}]"#, room: #""room1""#, skipSID: "\"\(b.sid)\""))
        XCTAssertEqual(a.events(), [#"2["chat",{"text":"hi"}]"#])
        XCTAssertEqual(c.events(), [#"2["chat",{"text":"hi"}]"#])
        XCTAssertEqual(b.events(), [], "skip_sid")
        XCTAssertEqual(d.events(), [], "not in the room")

        // Several rooms (a sid is a room): each socket once.
        let rooms = "[\"room1\", \"\(d.sid)\", \"\(a.sid)\"]"
        fixture.receive(emitJSON(event: "many", room: rooms, skipSID: "[\"\(c.sid)\"]"))
        XCTAssertEqual(a.events(), [#"2["many","hello"]"#])
        XCTAssertEqual(b.events(), [#"2["many","hello"]"#])
        XCTAssertEqual(d.events(), [#"2["many","hello"]"#])
        XCTAssertEqual(c.events(), [])
        XCTAssertEqual(fixture.takePublished(), [])
    }

    func testEmitToEveryoneAndToNobody() throws {
        let fixture = BridgeFixture()
        let clients = try fixture.clients(3)

        fixture.receive(emitJSON(event: "all", data: #"["x", 1, null]"#, skipSID: "[\"\(clients[2].sid)\"]"))
        XCTAssertEqual(clients[0].events(), [#"2["all","x",1,null]"#])
        XCTAssertEqual(clients[1].events(), [#"2["all","x",1,null]"#])
        XCTAssertEqual(clients[2].events(), [])

        fixture.receive(emitJSON(event: "nobody", room: "[]"))
        fixture.receive(emitJSON(event: "nobody", room: #""empty-room""#))
        for client in clients { XCTAssertEqual(client.events(), []) }
    }

    func testBinaryArgumentsArriveAsAttachments() throws {
        let fixture = BridgeFixture()
        let client = try fixture.clients(1)[0]
        client.join("room1")
        fixture.harness.settle()
        _ = client.received()

        fixture.receive(PythonFixture.emitBinary)
        var frames: [WebSocketFrame] = []
        while let frame = try client.channel.readOutbound(as: WebSocketFrame.self) { frames.append(frame) }
        XCTAssertEqual(frames.map(\.opcode), [.text, .binary, .binary])
        XCTAssertEqual(
            frames.first.map { String(buffer: $0.data) },
            #"452-["file",{"_placeholder":true,"num":0},"text",{"k":{"_placeholder":true,"num":1}}]"#
        )
        XCTAssertEqual(frames.dropFirst().map(\.data), [ByteBuffer(string: "hello"), ByteBuffer(bytes: [0, 1, 2])])
    }

    /// The ack id of the EVENT `packet` (`2<id>[...]`).
    private func ackID(of packet: String) throws -> String {
        let id = packet.dropFirst().prefix(while: \.isNumber)
        XCTAssertFalse(id.isEmpty, "no ack id in \(packet)")
        return String(id)
    }

    func testCallbackPublishesTheClientsAnswerForTheOrigin() throws {
        let fixture = BridgeFixture()
        let clients = try fixture.clients(2)
        let (asked, other) = (clients[0], clients[1])

        fixture.receive(callJSON(to: asked.sid, id: 7, data: #"["question"]"#))
        let event = try XCTUnwrap(asked.events().first)
        XCTAssertTrue(event.hasSuffix(#"["ask","question"]"#), event)
        XCTAssertEqual(other.events(), [])
        XCTAssertEqual(fixture.takePublished(), [], "nothing before the client answers")

        let id = try ackID(of: event)
        asked.send("3\(id)[\"yes\",42]")
        fixture.harness.settle()
        let published = fixture.takePublished()
        XCTAssertEqual(published.count, 1)
        let reply = try JSONParser.parse(try XCTUnwrap(published.first))
        XCTAssertEqual(reply["method"], "callback")
        XCTAssertEqual(reply["host_id"], "python-origin", "addressed to the origin")
        XCTAssertEqual(reply["sid"], .string(asked.sid))
        XCTAssertEqual(reply["namespace"], "/")
        XCTAssertEqual(reply["id"], 7)
        XCTAssertEqual(reply["args"], ["yes", 42])

        // A repeated ack is not answered twice.
        asked.send("3\(id)[\"again\"]")
        fixture.harness.settle()
        XCTAssertEqual(fixture.takePublished(), [])
    }

    func testCallbackToARoomAnswersOncePerMember() throws {
        let fixture = BridgeFixture()
        let clients = try fixture.clients(2)
        for client in clients { client.join("team") }
        fixture.harness.settle()
        for client in clients { _ = client.received() }

        fixture.receive(emitJSON(event: "poll", room: #""team""#, callback: #"["team", "/", 3]"#))
        for (index, client) in clients.enumerated() {
            let id = try ackID(of: try XCTUnwrap(client.events().first))
            client.send("3\(id)[\(index)]")
        }
        fixture.harness.settle()
        let replies = try fixture.takePublished().map { try JSONParser.parse($0) }
        XCTAssertEqual(replies.map { $0["sid"] }, ["team", "team"], "keyed as the origin keyed its call")
        XCTAssertEqual(Set(replies.compactMap { $0["args"] }.map { JSONWriter.serialize($0) }), ["[0]", "[1]"])
    }

    func testCallbackPublishesNothingOnTimeoutOrDisconnect() throws {
        let fixture = BridgeFixture()
        let clients = try fixture.clients(2)
        let (slow, leaving) = (clients[0], clients[1])
        for client in clients {
            fixture.receive(callJSON(to: client.sid))
        }
        let slowID = try ackID(of: try XCTUnwrap(slow.events().first))
        let leavingID = try ackID(of: try XCTUnwrap(leaving.events().first))

        leaving.send("1")
        fixture.harness.settle()
        fixture.harness.advance(by: BridgeFixture.ackTimeout + .seconds(1))
        XCTAssertEqual(fixture.takePublished(), [])

        // Answers after the timeout or the disconnect are too late.
        slow.send("3\(slowID)[\"late\"]")
        leaving.send("3\(leavingID)[\"late\"]")
        fixture.harness.settle()
        XCTAssertEqual(fixture.takePublished(), [])
    }

    func testBinaryAnswerIsNotPublished() throws {
        let fixture = BridgeFixture()
        let client = try fixture.clients(1)[0]
        fixture.receive(callJSON(to: client.sid))
        let id = try ackID(of: try XCTUnwrap(client.events().first))
        client.send("61-\(id)[{\"_placeholder\":true,\"num\":0}]")
        client.session.receive(.binary(ByteBuffer(bytes: [1, 2])))
        fixture.harness.settle()
        XCTAssertEqual(fixture.takePublished(), [])
        XCTAssertTrue(fixture.logs.all.contains { $0.level == .warning && $0.message.contains("binary") })
    }

    func testDisconnectAndRoomsTouchOnlyLocalSIDs() throws {
        let fixture = BridgeFixture()
        let clients = try fixture.clients(2)
        let (a, b) = (clients[0], clients[1])
        let foreign = "nodeBB-elsewhere"

        func message(_ method: String, sid: String) -> String {
            #"{"method": "\#(method)", "sid": "\#(sid)", "room": "r9", "namespace": "/", "host_id": "python-origin"}"#
        }
        fixture.receive(message("enter_room", sid: a.sid))
        fixture.receive(message("enter_room", sid: foreign))
        XCTAssertEqual(try fixture.members(of: "r9"), [a.sid])

        fixture.receive(message("enter_room", sid: b.sid))
        fixture.receive(message("leave_room", sid: a.sid))
        fixture.receive(message("leave_room", sid: foreign))
        XCTAssertEqual(try fixture.members(of: "r9"), [b.sid])

        fixture.receive(message("disconnect", sid: foreign))
        XCTAssertEqual(try fixture.harness.value(fixture.local.socketCount()), 2)
        fixture.receive(message("disconnect", sid: a.sid))
        XCTAssertEqual(a.received(), ["1"], "a namespace DISCONNECT, as python-socketio's server disconnect")
        XCTAssertEqual(b.received(), [])
        XCTAssertEqual(try fixture.harness.value(fixture.local.socketIDs(matching: BroadcastOptions())), [b.sid])
        XCTAssertFalse(a.session.isClosed, "only the namespace disconnects")
    }

    func testSIDCommandsNeverActOnAnotherSocketSharingTheName() throws {
        let fixture = BridgeFixture()
        let clients = try fixture.clients(2)
        let (target, squatter) = (clients[0], clients[1])
        // A room named like another socket's sid: its member must not be taken for that socket.
        squatter.join(target.sid)
        fixture.harness.settle()
        _ = squatter.received()

        fixture.receive(#"{"method": "disconnect", "sid": "\#(target.sid)", "host_id": "python-origin"}"#)
        XCTAssertEqual(squatter.received(), [])
        XCTAssertEqual(try fixture.harness.value(fixture.local.socketCount()), 2)
    }

    func testCloseRoomEmptiesItLocally() throws {
        let fixture = BridgeFixture()
        let clients = try fixture.clients(3)
        clients[0].join("r9")
        clients[1].join("r9", "other")
        clients[2].join("other")
        fixture.harness.settle()

        fixture.receive(PythonFixture.closeRoom)
        XCTAssertEqual(try fixture.members(of: "r9"), [])
        XCTAssertEqual(try fixture.members(of: "other"), [clients[1].sid, clients[2].sid])
    }

    func testOwnHostIDCallbacksAndUnknownNamespacesAreIgnored() throws {
        let fixture = BridgeFixture()
        let client = try fixture.clients(1)[0]

        fixture.receive(emitJSON(hostID: BridgeFixture.hostID))
        fixture.receive(#"{"method": "disconnect", "sid": "\#(client.sid)", "host_id": "\#(BridgeFixture.hostID)"}"#)
        fixture.receive(PythonFixture.callback)
        fixture.receive(emitJSON(namespace: "/missing"))
        XCTAssertEqual(client.received(), [])
        XCTAssertEqual(fixture.takePublished(), [])

        // Another host's message still goes through.
        fixture.receive(emitJSON(hostID: "switchboard-nodeBB"))
        XCTAssertEqual(client.events(), [#"2["news","hello"]"#])
    }

    func testMalformedInputIsLoggedWithItsReasonAndChangesNothing() throws {
        let fixture = BridgeFixture()
        let client = try fixture.clients(1)[0]
        for (_, payload) in PythonBridgeDecodingTests.malformed {
            fixture.handler.handle(payload: ByteBuffer(string: payload))
        }
        fixture.harness.settle()
        XCTAssertEqual(client.received(), [])
        XCTAssertEqual(fixture.takePublished(), [])
        let warnings = fixture.logs.all.filter { $0.level == .warning }
        XCTAssertEqual(warnings.count, PythonBridgeDecodingTests.malformed.count)
        XCTAssertTrue(warnings.allSatisfy { $0.metadata["reason"] != nil })
    }
}

/// A Socket.IO server on a real event loop, its one client reached through a long-polling session (whose parked
/// GET completes when the server sends something: a future to wait on).
private final class LoopSocketFixture: Sendable {
    let loop: EventLoop
    let local: InMemoryAdapter
    let session: EngineSession
    let sid: String

    init(loop: EventLoop, logger: Logger) async throws {
        let local = InMemoryAdapter(namespace: "/", eventLoops: [loop])
        let io = SocketIOServer(configuration: SocketIOConfiguration(), logger: logger) { _ in local }
        _ = io.addNamespace("/", handlers: NamespaceHandlers())
        let engine = EngineServer(
            configuration: EngineConfiguration(pingInterval: .seconds(300), pingTimeout: .seconds(300)),
            application: io,
            logger: logger
        )
        self.loop = loop
        self.local = local
        self.session = try await loop.submit {
            let session = engine.openSession(
                on: loop,
                transport: .polling,
                handshake: EngineHandshakeInfo(query: [:], headers: HTTPHeadersSnapshot(), remoteAddress: nil)
            )
            engine.application.sessionOpened(session)
            session.start()
            session.receive(.text(.message, ByteBuffer(string: "0")))
            return session
        }.get()
        let packets = try await Self.poll(session, on: loop)
        let connect = try XCTUnwrap(packets.first)
        self.sid = try XCTUnwrap(connect.split(separator: "\"").dropFirst(3).first.map(String.init))
    }

    /// The Socket.IO packets of the next poll, waiting at most 10 s for the server to send something.
    static func poll(_ session: EngineSession, on loop: EventLoop) async throws -> [String] {
        let answer = loop.makePromise(of: ByteBuffer.self)
        let deadline = loop.scheduleTask(in: .seconds(10)) { answer.fail(PollTimedOut()) }
        loop.execute {
            let poll = loop.makePromise(of: ByteBuffer.self)
            session.poll(poll)
            poll.futureResult.cascade(to: answer)
        }
        let payload = try await answer.futureResult.get()
        deadline.cancel()
        return String(buffer: payload).split(separator: "\u{1e}").map { String($0.dropFirst()) }
    }

    func poll() async throws -> [String] {
        try await Self.poll(session, on: loop)
    }

    func send(_ packet: String) async throws {
        let session = self.session
        try await loop.submit { session.receive(.text(.message, ByteBuffer(string: packet))) }.get()
    }
}

private struct PollTimedOut: Error {}

/// Waits for `body` at most `seconds`.
private func within<T: Sendable>(
    seconds: Int64 = 10,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw CancellationError()
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

final class PythonBridgeRedisTests: XCTestCase {
    func testDeliversFromTheBaseChannelAndTheRoomPatternAndAnswersCalls() async throws {
        try await withRedisServer { server in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let loop = group.next()
            let sockets = try await LoopSocketFixture(loop: loop, logger: testLogger)
            let local = sockets.local
            let sid = sockets.sid
            try await loop.submit { local.addSockets(matching: BroadcastOptions(rooms: [sid]), to: ["room1"]) }.get()

            let publisherStates = StateWatcher()
            let publisher = try RedisClient(
                configuration: server.configuration,
                eventLoop: loop,
                logger: testLogger,
                onStateChange: publisherStates.handler
            )
            publisher.start()
            let bridgeStates = StateWatcher()
            let bridge = try PythonSocketIOBridge(
                configuration: PythonBridgeConfiguration(hostID: "switchboard-test"),
                redis: server.configuration,
                publisher: publisher,
                eventLoop: loop,
                logger: testLogger,
                localAdapter: { $0 == "/" ? local : nil },
                onStateChange: bridgeStates.handler
            )
            // What the bridge publishes back, as the python origin would read it.
            let (replies, repliesContinuation) = AsyncStream<String>.makeStream()
            let originStates = StateWatcher()
            let origin = try RedisSubscriber(
                configuration: server.configuration,
                eventLoop: loop,
                logger: testLogger,
                onStateChange: originStates.handler,
                onMessage: { message in repliesContinuation.yield(String(buffer: message.payload)) }
            )
            origin.start()
            // Made now if connected, else remembered and made before the state turns connected.
            _ = try? await origin.subscribe(channels: "socketio")
            try await bridge.start().get()
            try await within { try await publisherStates.next(.connected) }
            try await within { try await bridgeStates.next(.connected) }
            try await within { try await originStates.next(.connected) }

            // Redis answers PUBLISH with the number of receivers: the bridge (and the origin on the base channel).
            let toAll = emitJSON(event: "everyone", data: #"["hi"]"#)
            let allReceivers = try await publisher.execute("PUBLISH", "socketio", toAll).int
            XCTAssertEqual(allReceivers, 2)
            let toRoom = emitJSON(event: "in-room", data: #"["hey"]"#, room: #""room1""#)
            let roomReceivers = try await publisher.execute("PUBLISH", "socketio#/#room1", toRoom).int
            XCTAssertEqual(roomReceivers, 1)

            var events: [String] = []
            while events.count < 2 {
                events += try await sockets.poll().filter { $0.hasPrefix("2") }
            }
            XCTAssertEqual(events, [#"2["everyone","hi"]"#, #"2["in-room","hey"]"#])

            // `await sio.call("ask", to=sid)` from python: the client's answer comes back on the base channel.
            let call = callJSON(to: sid, id: 11)
            let callReceivers = try await publisher.execute("PUBLISH", "socketio", call).int
            XCTAssertEqual(callReceivers, 2)
            let askPackets = try await sockets.poll()
            let asked = try XCTUnwrap(askPackets.first)
            let ackID = asked.dropFirst().prefix(while: \.isNumber)
            XCTAssertTrue(asked.hasSuffix(#"["ask","hello"]"#), asked)
            try await sockets.send("3\(ackID)[\"answer\"]")
            let reply = try await within {
                for await payload in replies where payload.contains(#""method":"callback""#) { return payload }
                throw CancellationError()
            }
            XCTAssertEqual(
                reply,
                #"{"method":"callback","host_id":"python-origin","sid":"\#(sid)","namespace":"/","id":11,"#
                    + #""args":["answer"]}"#
            )

            await origin.shutdown()
            await bridge.stop()
            await publisher.shutdown()
            try await group.shutdownGracefully()
        }
    }
}
