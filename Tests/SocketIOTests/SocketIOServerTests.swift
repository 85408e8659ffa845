import EngineIOTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import EngineIO
@testable import SocketIO

private let placeholder0 = #"{"_placeholder":true,"num":0}"#
private let placeholder1 = #"{"_placeholder":true,"num":1}"#

/// Socket.IO over Engine.IO long-polling on `EmbeddedChannel`s. Payloads are raw polling bodies: an
/// Engine.IO message `4` followed by the Socket.IO packet, records joined by `\x1e`.
@Suite("Socket.IO server over polling")
struct SocketIOServerTests {
    // MARK: CONNECT

    @Test func connectToRootAnswersWithTheSocketID() throws {
        let harness = SocketIOHarness()
        let client = try harness.client()
        try client.send("0")
        let reply = try #require(try client.receive())
        let socket = try #require(harness.recorder.sockets.first)
        #expect(reply == #"40{"sid":"\#(socket.id)"}"#)
        #expect(socket.id.count == 20)
        #expect(socket.id != client.sid, "the socket id is not the Engine.IO session id")
        #expect(socket.namespace.name == "/")
        #expect(socket.isConnected)
        #expect(socket.session.id == client.sid)
        #expect(harness.recorder.auths.count == 1)
        #expect(harness.recorder.auths.first! == nil)
    }

    @Test func sidPrefixNamesTheNode() throws {
        let harness = SocketIOHarness(configuration: SocketIOConfiguration(sidPrefix: "node7."))
        let (_, socket) = try harness.connectedClient()
        #expect(socket.id.hasPrefix("node7."))
        #expect(socket.id.count == 20)
    }

    @Test func connectToUnknownNamespaceIsRefused() throws {
        let harness = SocketIOHarness()
        let client = try harness.client()
        try client.send("0/random,")
        #expect(try client.receive() == #"44/random,{"message":"Invalid namespace"}"#)
        #expect(harness.recorder.sockets.isEmpty)
        #expect(harness.recorder.engineCloseReasons.isEmpty, "the session stays open")
        // It may still connect to a namespace that exists.
        try client.send("0")
        #expect(try client.receive()?.hasPrefix(#"40{"sid":"#) == true)
    }

    @Test func connectToACustomNamespace() throws {
        let harness = SocketIOHarness()
        harness.io.addNamespace("/admin", handlers: harness.recorder.handlers())
        let client = try harness.client()
        try client.send("0/admin,")
        let socket = try #require(harness.recorder.sockets.first)
        #expect(try client.receive() == #"40/admin,{"sid":"\#(socket.id)"}"#)
        #expect(socket.namespace.name == "/admin")

        // Two namespaces multiplexed on one session.
        try client.send("0")
        let root = try #require(harness.recorder.sockets.last)
        #expect(try client.receive() == #"40{"sid":"\#(root.id)"}"#)
        #expect(root !== socket)

        try client.send(#"2/admin,1["echo","a"]"#, #"22["echo","b"]"#)
        #expect(try client.receive() == "43/admin,1[\"a\"]\u{1E}432[\"b\"]")
    }

    @Test func authPayloadIsHandedToTheConnectedHandler() throws {
        let harness = SocketIOHarness()
        let client = try harness.client()
        try client.send(#"0{"token":"abc","n":[1,2]}"#)
        _ = try client.receive()
        #expect(harness.recorder.auths == [["token": "abc", "n": [1, 2]]])
    }

    static let badAuth: [String] = [#"0"token""#, "0[1]", "01", "0{", "0null", #"0{"a":1}x"#]

    @Test("a CONNECT payload that is not a JSON object closes with invalid_packet", arguments: badAuth)
    func badAuthPayload(packet: String) throws {
        let harness = SocketIOHarness()
        let client = try harness.client()
        #expect(try client.receive() == nil)
        try client.send(packet)
        #expect(harness.recorder.sockets.isEmpty)
        #expect(harness.recorder.engineCloseReasons == [.invalidPacket])
        #expect(try client.receive() == "1")
    }

    @Test func authorizeFailureSendsConnectError() throws {
        let harness = SocketIOHarness(rootHandlers: { recorder in
            recorder.handlers {
                $0.authorize = { socket, auth in
                    if auth?["token"] == "generic" {
                        return socket.eventLoop.makeFailedFuture(HarnessError(description: "nope"))
                    }
                    if auth?["token"] == "data" {
                        return socket.eventLoop.makeFailedFuture(
                            ConnectionRefused(message: "Bad token", data: ["retry": false])
                        )
                    }
                    return socket.eventLoop.makeFailedFuture(ConnectionRefused(message: "Unauthorized"))
                }
            }
        })
        let client = try harness.client()
        try client.send("0")
        #expect(try client.receive() == #"44{"message":"Unauthorized"}"#)
        try client.send(#"0{"token":"data"}"#)
        #expect(try client.receive() == #"44{"message":"Bad token","data":{"retry":false}}"#)
        try client.send(#"0{"token":"generic"}"#)
        #expect(try client.receive() == #"44{"message":"Not authorized"}"#)
        #expect(harness.recorder.sockets.isEmpty)
        #expect(harness.recorder.engineCloseReasons.isEmpty)
        // Events for a namespace that was refused are a protocol violation.
        try client.send(#"2["echo"]"#)
        #expect(harness.recorder.engineCloseReasons == [.invalidPacket])
    }

    @Test func authorizeDeferralClosesTheTransportWithItsReason() throws {
        let harness = SocketIOHarness(rootHandlers: { recorder in
            recorder.handlers {
                $0.authorize = { socket, _ in
                    socket.eventLoop.makeFailedFuture(
                        ConnectionDeferred(reason: .backendUnavailable, detail: "backend_busy: queue full")
                    )
                }
            }
        })
        let client = try harness.client()
        #expect(try client.receive() == nil)
        try client.send("0")
        // No CONNECT_ERROR, which clients take as final: the Engine.IO session closes and the client reconnects.
        #expect(try client.receive() == "1")
        #expect(harness.recorder.sockets.isEmpty)
        #expect(harness.recorder.engineCloseReasons == [.backendUnavailable])
    }

    @Test func eventsBeforeAnAsynchronousAuthorizeAreHeldThenDispatched() throws {
        let loop = EmbeddedEventLoop()
        let promise = loop.makePromise(of: Void.self)
        defer { promise.succeed(()) }
        let gate = PromiseBox(promise)
        let harness = SocketIOHarness(
            loopsOverride: [loop],
            rootHandlers: { recorder in
                recorder.handlers { $0.authorize = { _, _ in gate.promise.futureResult } }
            }
        )
        let client = try harness.client()
        try client.send("0", #"21["echo","early"]"#)
        #expect(try client.receive() == nil)
        #expect(harness.recorder.events.isEmpty)
        gate.promise.succeed(())
        harness.runAll()
        let socket = try #require(harness.recorder.sockets.first)
        #expect(try client.receive() == "40{\"sid\":\"\(socket.id)\"}\u{1E}431[\"early\"]")
        #expect(harness.recorder.events.map(\.name) == ["echo"])
    }

    @Test func connectTimeoutClosesAClientThatNeverConnects() throws {
        let harness = SocketIOHarness(configuration: SocketIOConfiguration(connectTimeout: .seconds(5)))
        let client = try harness.client()
        #expect(try client.receive() == nil)
        harness.advanceTime(by: .milliseconds(4_999))
        #expect(harness.recorder.engineCloseReasons.isEmpty)
        harness.advanceTime(by: .milliseconds(1))
        #expect(harness.recorder.engineCloseReasons == [.connectTimeout])
        #expect(try client.receive() == "1")
        #expect(harness.engine.sessionCount == 0)
    }

    @Test func connectingInTimeCancelsTheConnectTimeout() throws {
        let harness = SocketIOHarness(configuration: SocketIOConfiguration(connectTimeout: .seconds(5)))
        _ = try harness.connectedClient()
        harness.advanceTime(by: .seconds(10))
        #expect(harness.recorder.engineCloseReasons.isEmpty)
        #expect(harness.engine.sessionCount == 1)
    }

    // MARK: Events and acks

    @Test func eventWithAckIsAnswered() throws {
        let harness = SocketIOHarness()
        let (client, socket) = try harness.connectedClient()
        try client.send(#"21["echo","x",{"n":1.50},[true,null]]"#)
        #expect(try client.receive() == #"431["x",{"n":1.50},[true,null]]"#)
        let event = try #require(harness.recorder.events.first)
        #expect(event.socket === socket)
        #expect(event.args == ["x", ["n": .number("1.50")], [true, nil]])

        try client.send(#"29007199254740991["echo"]"#)
        #expect(try client.receive() == "439007199254740991[]")
    }

    @Test func eventWithoutAckAndUnhandledEvents() throws {
        let harness = SocketIOHarness()
        let (client, _) = try harness.connectedClient()
        try client.send(#"2["other",1,"two"]"#, #"27["other"]"#)
        let events = harness.recorder.events
        #expect(events.map(\.name) == ["other", "other"])
        #expect(events.first?.args == [1, "two"])
        #expect(events.first?.ack == nil)
        #expect(events.last?.ack?.id == 7)
        #expect(try client.receive() == nil, "nothing answered an event nobody acked")
        if let ack = events.last?.ack { ack(["late"]) }
        harness.runAll()
        #expect(try client.receive() == #"437["late"]"#)
    }

    @Test func serverEmitWithAckGetsTheClientAnswer() throws {
        let harness = SocketIOHarness()
        let (client, socket) = try harness.connectedClient()
        let recorder = harness.recorder
        socket.emit("question", [1, "two"]) { recorder.ack($0) }
        socket.emit("second", []) { recorder.ack($0) }
        harness.runAll()
        #expect(try client.receive() == "420[\"question\",1,\"two\"]\u{1E}421[\"second\"]")
        try client.send(#"31["b"]"#, #"30["a",{"k":2}]"#)
        #expect(recorder.acks == [.success(["b"]), .success(["a", ["k": 2]])])
        // A duplicate or unknown ack is ignored.
        try client.send(#"30["again"]"#, #"399[]"#)
        #expect(recorder.acks.count == 2)
        #expect(harness.recorder.engineCloseReasons.isEmpty)
    }

    @Test func serverEmitWithoutAckAndPlainEmit() throws {
        let harness = SocketIOHarness()
        let (client, socket) = try harness.connectedClient()
        socket.emit("hello", ["world", ["nested": [1, 2]]])
        socket.emit("bare")
        harness.runAll()
        #expect(try client.receive() == "42[\"hello\",\"world\",{\"nested\":[1,2]}]\u{1E}42[\"bare\"]")
    }

    @Test func ackTimeoutFailsTheCallback() throws {
        let harness = SocketIOHarness(configuration: SocketIOConfiguration(ackTimeout: .seconds(30)))
        let (client, socket) = try harness.connectedClient()
        let recorder = harness.recorder
        socket.emit("q", [], ackTimeout: .seconds(5)) { recorder.ack($0) }
        socket.emit("default", []) { recorder.ack($0) }
        harness.runAll()
        _ = try client.receive()

        harness.advanceTime(by: .milliseconds(4_999))
        #expect(recorder.acks.isEmpty)
        harness.advanceTime(by: .milliseconds(1))
        #expect(recorder.acks == [.failure(.timeout)])
        harness.advanceTime(by: .seconds(25))
        #expect(recorder.acks == [.failure(.timeout), .failure(.timeout)])

        // The late answer is ignored.
        try client.send(#"30["late"]"#)
        #expect(recorder.acks.count == 2)
        #expect(harness.recorder.engineCloseReasons.isEmpty)
    }

    @Test func pendingAcksFailWhenTheClientDisconnects() throws {
        let harness = SocketIOHarness()
        let (client, socket) = try harness.connectedClient()
        let recorder = harness.recorder
        socket.emit("q", []) { recorder.ack($0) }
        harness.runAll()
        try client.sendRaw("1")
        #expect(recorder.acks == [.failure(.disconnected)])
        #expect(harness.recorder.disconnectReasons == [.clientClose])
        socket.emit("after", []) { recorder.ack($0) }
        #expect(recorder.acks == [.failure(.disconnected), .failure(.disconnected)])
    }

    // MARK: Binary

    @Test func binaryEventIsReassembledFromItsAttachments() throws {
        let harness = SocketIOHarness()
        let (client, _) = try harness.connectedClient()
        try client.sendRaw("451-[\"upload\",\(placeholder0)]\u{1E}bAQID")
        let event = try #require(harness.recorder.events.first)
        #expect(event.name == "upload")
        #expect(event.args == [.binary(ByteBuffer(bytes: [1, 2, 3]))])
    }

    @Test func binaryEventWithAckAcrossSeveralPayloads() throws {
        let harness = SocketIOHarness()
        harness.io.addNamespace("/files", handlers: harness.recorder.handlers())
        let (client, _) = try harness.connectedClient(namespace: "/files")
        try client.sendRaw("452-/files,7[\"echo\",{\"a\":\(placeholder1)},\(placeholder0)]")
        #expect(harness.recorder.events.isEmpty, "waits for its attachments")
        try client.sendRaw("bAA==")
        #expect(harness.recorder.events.isEmpty)
        try client.sendRaw("b/w==")
        let event = try #require(harness.recorder.events.first)
        #expect(event.args == [["a": .binary(ByteBuffer(bytes: [255]))], .binary(ByteBuffer(bytes: [0]))])
        // The ack carries the binaries back as a BINARY_ACK with its attachments.
        #expect(
            try client.receive()
                == "462-/files,7[{\"a\":\(placeholder0)},\(placeholder1)]\u{1E}b/w==\u{1E}bAA=="
        )
    }

    @Test func serverEmitsBinaryAsPlaceholdersAndAttachments() throws {
        let harness = SocketIOHarness()
        let (client, socket) = try harness.connectedClient()
        socket.emit("file", [.binary(ByteBuffer(bytes: [1, 2, 3])), "name"])
        harness.runAll()
        #expect(try client.receive() == "451-[\"file\",\(placeholder0),\"name\"]\u{1E}bAQID")
    }

    // MARK: Invalid packets

    /// Raw Engine.IO payloads, each carrying one offending Socket.IO packet (or binary record).
    static let invalidPackets: [(payload: String, name: String)] = [
        ("47", "unknown Socket.IO type 7"),
        ("49[]", "unknown Socket.IO type 9"),
        ("4", "empty Socket.IO packet"),
        (#"42["a""#, "broken JSON"),
        (#"42["a",]"#, "trailing comma"),
        (#"42{"a":1}"#, "payload not an array"),
        (#"42"a""#, "payload a string"),
        ("42[]", "event without a name"),
        ("42[1]", "event name not a string"),
        (#"42["connect"]"#, "reserved event name"),
        (#"42["disconnect"]"#, "reserved event name"),
        (#"43["a"]"#, "ack without id"),
        (#"42"#, "event without payload"),
        (#"42/other,["a"]"#, "event for a namespace not joined"),
        ("41/other,", "disconnect from a namespace not joined"),
        (#"44{"message":"x"}"#, "CONNECT_ERROR from a client"),
        ("40", "duplicate CONNECT"),
        ("bAQID", "attachment without a binary packet"),
        ("451-[\"a\",\(placeholder1)]\u{1E}bAQID", "placeholder out of range"),
        ("451-[\"a\",{\"_placeholder\":true,\"num\":\"0\"}]\u{1E}bAQID", "placeholder num not a number"),
        ("451-[\"a\",\(placeholder0)]\u{1E}42[\"b\"]", "text while awaiting attachments"),
        ("4565-[\"a\"]", "too many attachments"),
        ("42" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100), "nesting too deep"),
        ("42[\"a\",\"\u{01}\"]", "control character in a string"),
    ]

    @Test("an invalid packet closes the session with invalid_packet", arguments: invalidPackets)
    func invalidPacket(payload: String, name: String) throws {
        let harness = SocketIOHarness()
        let (client, socket) = try harness.connectedClient()
        // A parked poll sees the session end.
        #expect(try client.receive() == nil)
        try client.sendRaw(payload)
        #expect(harness.recorder.engineCloseReasons == [.invalidPacket], "\(name)")
        #expect(harness.recorder.disconnectReasons == [.invalidPacket], "\(name)")
        #expect(harness.recorder.events.isEmpty, "\(name)")
        #expect(!socket.isConnected)
        #expect(try client.receive() == "1", "\(name)")
        #expect(harness.engine.sessionCount == 0)
    }

    @Test func tooManyPacketsBeforeTheNamespaceConnects() throws {
        let loop = EmbeddedEventLoop()
        let promise = loop.makePromise(of: Void.self)
        defer { promise.succeed(()) }
        let gate = PromiseBox(promise)
        let harness = SocketIOHarness(
            loopsOverride: [loop],
            configuration: SocketIOConfiguration(maxPendingPackets: 2),
            rootHandlers: { recorder in
                recorder.handlers { $0.authorize = { _, _ in gate.promise.futureResult } }
            }
        )
        let client = try harness.client()
        try client.send("0", #"2["a"]"#, #"2["b"]"#)
        #expect(harness.recorder.engineCloseReasons.isEmpty)
        try client.send(#"2["c"]"#)
        #expect(harness.recorder.engineCloseReasons == [.invalidPacket])
    }

    // MARK: Disconnect

    @Test func clientDisconnectLeavesTheNamespaceButKeepsTheSession() throws {
        let harness = SocketIOHarness()
        let (client, socket) = try harness.connectedClient()
        socket.join("room")
        try client.send("1")
        #expect(harness.recorder.disconnectReasons == [.clientClose])
        #expect(!socket.isConnected)
        #expect(socket.rooms.isEmpty)
        #expect(harness.recorder.engineCloseReasons.isEmpty)
        #expect(try harness.value(harness.root.adapter.socketIDs(matching: BroadcastOptions())).isEmpty)
        // And it may connect again.
        try client.send("0")
        #expect(try client.receive()?.hasPrefix(#"40{"sid":"#) == true)
    }

    @Test func serverDisconnectSendsDisconnectPacket() throws {
        let harness = SocketIOHarness()
        let (client, socket) = try harness.connectedClient()
        socket.disconnect()
        harness.runAll()
        #expect(try client.receive() == "41")
        #expect(harness.recorder.disconnectReasons == [.serverDisconnect])
        #expect(harness.recorder.engineCloseReasons.isEmpty)

        let (other, otherSocket) = try harness.connectedClient()
        #expect(try other.receive() == nil)  // parked
        otherSocket.disconnect(closeClient: true)
        harness.runAll()
        #expect(try other.receive() == "41\u{1E}1")
        #expect(harness.recorder.engineCloseReasons == [.serverDisconnect])
    }

    /// Without a parked GET, the DISCONNECT and the Engine.IO close must wait for the client's next poll
    /// (as Engine.IO does), or the client sees a 400, takes it for a transport error and reconnects.
    @Test func serverDisconnectWithCloseReachesAClientThatIsNotPolling() throws {
        let harness = SocketIOHarness()
        let (client, socket) = try harness.connectedClient()
        socket.disconnect(closeClient: true)
        harness.runAll()
        #expect(harness.recorder.engineCloseReasons == [.serverDisconnect])
        #expect(try client.receive() == "41\u{1E}1", "DISCONNECT and close were dropped")
    }

    @Test func engineCloseTearsDownEverySocket() throws {
        let harness = SocketIOHarness()
        harness.io.addNamespace("/admin", handlers: harness.recorder.handlers())
        let (client, root) = try harness.connectedClient()
        try client.send("0/admin,")
        _ = try client.receive()
        let admin = try #require(harness.recorder.sockets.last)
        try client.sendRaw("1")
        #expect(!root.isConnected)
        #expect(!admin.isConnected)
        #expect(harness.recorder.disconnectReasons == [.clientClose, .clientClose])
    }
}

/// Hands a promise to `@Sendable` handlers; only used on the test's thread.
final class PromiseBox: Sendable {
    let promise: EventLoopPromise<Void>
    init(_ promise: EventLoopPromise<Void>) { self.promise = promise }
}
