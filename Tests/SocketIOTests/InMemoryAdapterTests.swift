import EngineIOTestSupport
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import EngineIO
@testable import SocketIO

/// Rooms sharded over two `EmbeddedEventLoop`s: sockets a1, a2 on loop 0 and b1, b2 on loop 1, each
/// with its own polling session, connected to `/` through the engine pipeline.
@Suite("In-memory adapter across two event loops")
struct InMemoryAdapterTests {
    final class Fixture {
        let harness = SocketIOHarness(loopCount: 2)
        var clients: [String: PollingClient] = [:]
        var sockets: [String: Socket] = [:]

        init() throws {
            for (name, loop) in [("a1", 0), ("a2", 0), ("b1", 1), ("b2", 1)] {
                let (client, socket) = try harness.connectedClient(loop: loop)
                clients[name] = client
                sockets[name] = socket
                #expect(socket.eventLoop === harness.loops[loop])
            }
        }

        var adapter: SocketIOAdapter { harness.root.adapter }

        func socket(_ name: String) -> Socket { sockets[name]! }

        /// Broadcasts `["m", tag]` and returns what each client received (nil: nothing).
        func broadcast(
            _ tag: String,
            to rooms: Set<String> = [],
            except: Set<String> = []
        ) throws -> [String: String] {
            harness.root.emit("m", [.string(tag)], to: rooms, except: except)
            harness.runAll()
            var received: [String: String] = [:]
            for (name, client) in clients {
                if let payload = try client.receive() { received[name] = payload }
            }
            return received
        }

        /// Who got exactly one `42["m",tag]` (and nothing else).
        func recipients(
            _ tag: String,
            to rooms: Set<String> = [],
            except: Set<String> = [],
            sourceLocation: SourceLocation = #_sourceLocation
        ) throws -> Set<String> {
            let received = try broadcast(tag, to: rooms, except: except)
            for (name, payload) in received {
                #expect(payload == #"42["m","\#(tag)"]"#, "\(name) got \(payload)", sourceLocation: sourceLocation)
            }
            return Set(received.keys)
        }

        func ids(_ options: BroadcastOptions) throws -> Set<String> {
            try harness.value(adapter.socketIDs(matching: options))
        }

        func names(_ ids: Set<String>) -> Set<String> {
            Set(sockets.filter { ids.contains($0.value.id) }.map(\.key))
        }
    }

    @Test func broadcastToAllReachesEverySocketOnBothLoopsOnce() throws {
        let fixture = try Fixture()
        #expect(try fixture.recipients("all") == ["a1", "a2", "b1", "b2"])
    }

    @Test func roomBroadcastReachesExactlyItsMembersOnBothLoops() throws {
        let fixture = try Fixture()
        fixture.socket("a1").join("r")
        fixture.socket("b1").join("r")
        fixture.socket("b1").join("r")  // joining twice is a no-op
        #expect(try fixture.recipients("room", to: ["r"]) == ["a1", "b1"])
        #expect(try fixture.recipients("nobody", to: ["empty"]).isEmpty)
        #expect(fixture.socket("b1").rooms == ["r"])
        #expect(fixture.socket("a1").isIn("r"))
        #expect(!fixture.socket("a2").isIn("r"))
        #expect(fixture.socket("a2").isIn(fixture.socket("a2").id))
    }

    @Test func severalRoomsReachEachSocketOnce() throws {
        let fixture = try Fixture()
        fixture.socket("a1").join("r1")
        fixture.socket("a1").join("r2")
        fixture.socket("b1").join("r2")
        fixture.socket("b1").join("r3")
        // a1 is in r1 and r2, b1 in r2 and r3: each gets exactly one copy (checked in `recipients`).
        #expect(try fixture.recipients("multi", to: ["r1", "r2", "r3"]) == ["a1", "b1"])
        // A sid next to a room counts once as well.
        #expect(
            try fixture.recipients("mixed", to: ["r2", fixture.socket("a1").id, fixture.socket("b2").id]) == [
                "a1", "b1", "b2",
            ]
        )
    }

    @Test func exceptByRoomAndBySid() throws {
        let fixture = try Fixture()
        fixture.socket("a1").join("r")
        fixture.socket("b1").join("r")
        fixture.socket("b2").join("s")
        #expect(try fixture.recipients("x1", except: ["r"]) == ["a2", "b2"])
        #expect(try fixture.recipients("x2", to: ["r"], except: [fixture.socket("a1").id]) == ["b1"])
        #expect(try fixture.recipients("x3", except: ["r", "s"]) == ["a2"])
        #expect(try fixture.recipients("x4", to: ["r", "s"], except: ["s", fixture.socket("b1").id]) == ["a1"])
        #expect(try fixture.recipients("x5", except: ["no-such-room"]) == ["a1", "a2", "b1", "b2"])
    }

    @Test func sidIsARoom() throws {
        let fixture = try Fixture()
        #expect(try fixture.recipients("direct", to: [fixture.socket("b2").id]) == ["b2"])
        #expect(try fixture.recipients("direct2", to: [fixture.socket("a1").id]) == ["a1"])
        // Joining one's own id is a no-op: it is always a member.
        fixture.socket("a1").join(fixture.socket("a1").id)
        #expect(fixture.socket("a1").rooms.isEmpty)
    }

    @Test func leave() throws {
        let fixture = try Fixture()
        fixture.socket("a1").join("r")
        fixture.socket("b1").join("r")
        fixture.socket("a1").leave("r")
        fixture.socket("a1").leave("r")  // leaving twice is a no-op
        fixture.socket("a2").leave("r")  // leaving a room never joined too
        #expect(try fixture.recipients("after-leave", to: ["r"]) == ["b1"])
        fixture.socket("b1").leave("r")
        #expect(try fixture.recipients("empty", to: ["r"]).isEmpty)
        let sizes = try fixture.harness.value((fixture.adapter as! InMemoryAdapter).roomSizes())
        #expect(sizes.isEmpty)
    }

    @Test func disconnectRemovesTheSocketFromItsRooms() throws {
        let fixture = try Fixture()
        fixture.socket("a1").join("r")
        fixture.socket("b1").join("r")
        fixture.socket("b2").join("r")
        let adapter = try #require(fixture.adapter as? InMemoryAdapter)
        #expect(try fixture.harness.value(adapter.roomSizes()) == ["r": 3])

        try fixture.clients["b1"]!.send("1")  // Socket.IO DISCONNECT
        try fixture.clients["b2"]!.sendRaw("1")  // Engine.IO close
        #expect(try fixture.harness.value(adapter.roomSizes()) == ["r": 1])
        fixture.clients["b1"] = nil
        fixture.clients["b2"] = nil
        #expect(try fixture.recipients("after-disconnect", to: ["r"]) == ["a1"])
        #expect(try fixture.recipients("all") == ["a1", "a2"])
        #expect(fixture.names(try fixture.ids(BroadcastOptions())) == ["a1", "a2"])
    }

    @Test func socketIDsMatching() throws {
        let fixture = try Fixture()
        fixture.socket("a1").join("r")
        fixture.socket("b1").join("r")
        fixture.socket("b2").join("s")
        #expect(fixture.names(try fixture.ids(BroadcastOptions())) == ["a1", "a2", "b1", "b2"])
        #expect(fixture.names(try fixture.ids(BroadcastOptions(rooms: ["r"]))) == ["a1", "b1"])
        #expect(fixture.names(try fixture.ids(BroadcastOptions(rooms: ["r", "s"]))) == ["a1", "b1", "b2"])
        #expect(fixture.names(try fixture.ids(BroadcastOptions(except: ["r"]))) == ["a2", "b2"])
        #expect(
            fixture.names(try fixture.ids(BroadcastOptions(rooms: ["r"], except: [fixture.socket("b1").id])))
                == ["a1"]
        )
        #expect(fixture.names(try fixture.ids(BroadcastOptions(rooms: [fixture.socket("a2").id]))) == ["a2"])
        #expect(try fixture.ids(BroadcastOptions(rooms: ["none"])).isEmpty)
    }

    @Test func remoteJoinLeaveAndDisconnect() throws {
        let fixture = try Fixture()
        fixture.socket("a1").join("r")
        fixture.socket("b1").join("r")
        // Remote join: every member of r joins "t".
        fixture.adapter.addSockets(matching: BroadcastOptions(rooms: ["r"]), to: ["t", "u"])
        fixture.harness.runAll()
        #expect(try fixture.recipients("t", to: ["t"]) == ["a1", "b1"])
        // Remote disconnect.
        fixture.adapter.removeSockets(matching: BroadcastOptions(rooms: ["r"]), from: ["u"])
        fixture.harness.runAll()
        #expect(try fixture.recipients("u", to: ["u"]).isEmpty)
        // Remote disconnect.
        fixture.adapter.disconnectSockets(
            matching: BroadcastOptions(rooms: [fixture.socket("b1").id]),
            closeClient: false
        )
        fixture.harness.runAll()
        #expect(try fixture.clients["b1"]!.receive() == "41")
        fixture.clients["b1"] = nil
        #expect(try fixture.recipients("t2", to: ["t"]) == ["a1"])
    }

    @Test func namespacesHaveSeparateRooms() throws {
        let fixture = try Fixture()
        let admin = fixture.harness.io.addNamespace("/admin", handlers: fixture.harness.recorder.handlers())
        let client = fixture.clients["a2"]!
        try client.send("0/admin,")
        _ = try client.receive()
        let adminSocket = try #require(fixture.harness.recorder.sockets.last)
        adminSocket.join("r")
        fixture.socket("a1").join("r")
        admin.emit("m", ["admin"], to: ["r"])
        fixture.harness.runAll()
        #expect(try client.receive() == #"42/admin,["m","admin"]"#)
        #expect(try fixture.clients["a1"]!.receive() == nil)
    }

    @Test func broadcastWithAcksCollectsEveryAnswerAcrossLoops() throws {
        let fixture = try Fixture()
        fixture.socket("a1").join("r")
        fixture.socket("b1").join("r")
        let result = Mutex<[BroadcastAckResult]>([])
        fixture.harness.root.emit("q", [1], to: ["r"], ackTimeout: .seconds(5)) { answer in
            result.withLock { $0.append(answer) }
        }
        fixture.harness.runAll()
        let a1 = try #require(try fixture.clients["a1"]!.receive())
        let b1 = try #require(try fixture.clients["b1"]!.receive())
        #expect(a1 == b1, "one packet, one ack id, for every recipient")
        let ackID = try #require(Int(a1.dropFirst(2).prefix(while: \.isNumber)))
        #expect(ackID >= BroadcastAckIDs.base)
        #expect(a1 == #"42\#(ackID)["q",1]"#)
        #expect(try fixture.clients["a2"]!.receive() == nil)

        try fixture.clients["b1"]!.send(#"3\#(ackID)["from b1"]"#)
        #expect(result.withLock { $0 }.isEmpty)
        try fixture.clients["a1"]!.send(#"3\#(ackID)["from a1",{"k":true}]"#)
        fixture.harness.runAll()
        #expect(
            result.withLock { $0 } == [
                BroadcastAckResult(responses: [["from b1"], ["from a1", ["k": true]]], recipients: 2, timedOut: false)
            ]
        )
        fixture.harness.advanceTime(by: .seconds(10))
        #expect(result.withLock { $0 }.count == 1, "completion runs once")
    }

    @Test func broadcastWithAcksTimesOutWithThePartialAnswers() throws {
        let fixture = try Fixture()
        let result = Mutex<[BroadcastAckResult]>([])
        fixture.harness.root.emit("q", [], ackTimeout: .seconds(5)) { answer in
            result.withLock { $0.append(answer) }
        }
        fixture.harness.runAll()
        let packet = try #require(try fixture.clients["a1"]!.receive())
        let ackID = try #require(Int(packet.dropFirst(2).prefix(while: \.isNumber)))
        try fixture.clients["a1"]!.send(#"3\#(ackID)[]"#)
        fixture.harness.advanceTime(by: .milliseconds(4_999))
        #expect(result.withLock { $0 }.isEmpty)
        fixture.harness.advanceTime(by: .milliseconds(1))
        #expect(result.withLock { $0 } == [BroadcastAckResult(responses: [[]], recipients: 4, timedOut: true)])
        #expect(fixture.harness.recorder.engineCloseReasons.isEmpty)
    }
}
