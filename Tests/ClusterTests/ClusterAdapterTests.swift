import NIOConcurrencyHelpers
import NIOCore
import SocketIO
import XCTest

@testable import Cluster

final class ClusterAdapterTests: XCTestCase {
    private func threeNodes() -> (ClusterHarness, TestNode, TestNode, TestNode) {
        let harness = ClusterHarness()
        let a = harness.addNode("nodeAA")
        let b = harness.addNode("nodeBB")
        let c = harness.addNode("nodeCC")
        return (harness, a, b, c)
    }

    func testLocalRoomChangesReachTheListenerOncePerRoomAndPerSocket() throws {
        let harness = ClusterHarness()
        let a = harness.addNode("nodeAA")
        // @unchecked: the harness runs every node on one embedded loop.
        final class Seen: @unchecked Sendable { var changes: [String] = [] }
        let seen = Seen()
        a.cluster.onLocalRoomChange = { namespace, room, occupied in
            seen.changes.append("\(occupied ? "+" : "-")\(namespace)#\(room)")
        }
        let a1 = try a.connect(), a2 = try a.connect()
        a1.join("r1")
        a2.join("r1")
        harness.settle()
        XCTAssertEqual(seen.changes, ["+/#\(a1.sid)", "+/#\(a2.sid)", "+/#r1"])

        seen.changes = []
        a1.send("1")  // Socket.IO DISCONNECT: r1 keeps a2
        harness.settle()
        XCTAssertEqual(seen.changes, ["-/#\(a1.sid)"])
        a2.send("1")
        harness.settle()
        XCTAssertEqual(seen.changes, ["-/#\(a1.sid)", "-/#r1", "-/#\(a2.sid)"])
    }

    func testRoomBroadcastReachesExactlyItsMembersOnEveryNodeOnce() throws {
        let (harness, a, b, c) = threeNodes()
        let a1 = try a.connect(), a2 = try a.connect()
        let b1 = try b.connect(), b2 = try b.connect()
        let c1 = try c.connect()
        for client in [a1, b1, b2, c1] { client.join("channel:42") }
        harness.settle()
        for client in [a1, a2, b1, b2, c1] { _ = client.received() }

        b.namespace.emit("typing", ["hello"], to: ["channel:42"])
        harness.settle()

        for client in [a1, b1, b2, c1] {
            XCTAssertEqual(client.events(), [#"2["typing","hello"]"#])
        }
        XCTAssertEqual(a2.events(), [])
    }

    func testEmitCostsOnePublishPerOtherNodeHoldingTheRoomAndNoneForALocalRoom() throws {
        let (harness, a, b, c) = threeNodes()
        let a1 = try a.connect()
        a1.join("local-only")
        let b1 = try b.connect(), c1 = try c.connect()
        for client in [a1, b1, c1] { client.join("everywhere") }
        harness.settle()
        harness.hub.resetPublishCounts()

        a.namespace.emit("x", [], to: ["local-only"])
        harness.settle()
        XCTAssertEqual(harness.hub.publishCounts.values.reduce(0, +), 0, "a room on the emitting node alone costs no publish")

        a.namespace.emit("x", [], to: ["nobody-here"])
        harness.settle()
        XCTAssertEqual(harness.hub.publishCounts.values.reduce(0, +), 0, "an empty room costs no publish")

        a.namespace.emit("x", [], to: ["everywhere"])
        harness.settle()
        XCTAssertEqual(
            harness.hub.publishCounts,
            ["switchboard:node:nodeBB": 1, "switchboard:node:nodeCC": 1],
            "a room on three nodes costs one publish to each other node"
        )
    }

    func testSidTargetingAndExceptionsAcrossNodes() throws {
        let (harness, a, b, c) = threeNodes()
        let a1 = try a.connect()
        let b1 = try b.connect(), b2 = try b.connect()
        let c1 = try c.connect()
        for client in [a1, b1, b2, c1] { client.join("room") }
        harness.settle()
        for client in [a1, b1, b2, c1] { _ = client.received() }

        // To one sid on another node.
        a.namespace.emit("direct", [1], to: [b2.sid])
        harness.settle()
        XCTAssertEqual(b2.events(), [#"2["direct",1]"#])
        XCTAssertEqual(b1.events() + a1.events() + c1.events(), [])

        // To a room except one remote sid.
        c.namespace.emit("most", [], to: ["room"], except: [b1.sid])
        harness.settle()
        XCTAssertEqual(a1.events(), [#"2["most"]"#])
        XCTAssertEqual(b2.events(), [#"2["most"]"#])
        XCTAssertEqual(c1.events(), [#"2["most"]"#])
        XCTAssertEqual(b1.events(), [])

        // To everyone.
        b.namespace.emit("all", [])
        harness.settle()
        for client in [a1, b1, b2, c1] { XCTAssertEqual(client.events(), [#"2["all"]"#]) }
    }

    func testUserRoomIsAnOrdinaryRegisteredRoom() throws {
        let (harness, a, b, _) = threeNodes()
        let a1 = try a.connect(), b1 = try b.connect(), b2 = try b.connect()
        a1.join("user:7")
        b1.join("user:7")
        harness.settle()
        _ = (a1.received(), b1.received(), b2.received())
        a.namespace.emit("events", ["chunk"], to: ["user:7"])
        harness.settle()
        XCTAssertEqual(a1.events(), [#"2["events","chunk"]"#])
        XCTAssertEqual(b1.events(), [#"2["events","chunk"]"#])
        XCTAssertEqual(b2.events(), [])
    }

    func testRemoteJoinLeaveAndDisconnect() throws {
        let (harness, a, b, _) = threeNodes()
        let b1 = try b.connect(), b2 = try b.connect()
        b1.join("user:1")
        harness.settle()
        _ = (b1.received(), b2.received())

        // Node A makes every socket of user 1 (on B) join a channel, then emits to it.
        a.adapter.addSockets(matching: BroadcastOptions(rooms: ["user:1"]), to: ["channel:9"])
        harness.settle()
        a.namespace.emit("hi", [], to: ["channel:9"])
        harness.settle()
        XCTAssertEqual(b1.events(), [#"2["hi"]"#])
        XCTAssertEqual(b2.events(), [])

        // A sid held by B joins a room by A's command.
        a.adapter.addSockets(matching: BroadcastOptions(rooms: [b2.sid]), to: ["channel:9"])
        harness.settle()
        a.adapter.removeSockets(matching: BroadcastOptions(rooms: [b1.sid]), from: ["channel:9"])
        harness.settle()
        a.namespace.emit("again", [], to: ["channel:9"])
        harness.settle()
        XCTAssertEqual(b1.events(), [])
        XCTAssertEqual(b2.events(), [#"2["again"]"#])

        // Disconnect a remote sid.
        a.adapter.disconnectSockets(matching: BroadcastOptions(rooms: [b2.sid]), closeClient: false)
        harness.settle()
        XCTAssertEqual(b2.received(), ["1"])
        XCTAssertEqual(try harness.value(a.adapter.socketIDs(matching: BroadcastOptions(rooms: ["channel:9"]))), [])
    }

    func testCloseRoomEmptiesItOnEveryNode() throws {
        let (harness, a, b, c) = threeNodes()
        let a1 = try a.connect(), b1 = try b.connect(), c1 = try c.connect()
        for client in [a1, b1, c1] { client.join("doc_1", "keep") }
        harness.settle()
        c.namespace.closeRoom("doc_1")
        harness.settle()
        XCTAssertEqual(try harness.value(a.adapter.socketIDs(matching: BroadcastOptions(rooms: ["doc_1"]))), [])
        XCTAssertEqual(
            try harness.value(a.adapter.socketIDs(matching: BroadcastOptions(rooms: ["keep"]))),
            [a1.sid, b1.sid, c1.sid]
        )
        harness.hub.resetPublishCounts()
        b.namespace.emit("x", [], to: ["doc_1"])
        harness.settle()
        XCTAssertEqual(harness.hub.publishCounts.values.reduce(0, +), 0, "the closed room is unregistered everywhere")
    }

    func testClusterWideSocketIDsAndConnections() throws {
        let (harness, a, b, c) = threeNodes()
        let a1 = try a.connect(), b1 = try b.connect(), c1 = try c.connect(), c2 = try c.connect()
        a1.join("r")
        c2.join("r")
        harness.settle()
        let future = b.adapter.socketIDs(matching: BroadcastOptions(rooms: ["r"]))
        harness.settle()
        XCTAssertEqual(try harness.value(future), [a1.sid, c2.sid])
        let all = b.adapter.socketIDs(matching: BroadcastOptions())
        harness.settle()
        XCTAssertEqual(try harness.value(all), [a1.sid, b1.sid, c1.sid, c2.sid])
        let perNode = a.adapter.connectionsPerNode()
        harness.settle()
        XCTAssertEqual(try harness.value(perNode), ["nodeAA": 1, "nodeBB": 1, "nodeCC": 2])
    }

    func testAckFromASidOnAnotherNode() throws {
        let (harness, a, b, _) = threeNodes()
        let b1 = try b.connect()
        harness.settle()
        _ = b1.received()
        let result = harness.loop.makePromise(of: BroadcastAckResult.self)
        a.namespace.emit("confirm", ["ok?"], to: [b1.sid], ackTimeout: .seconds(5)) { result.succeed($0) }
        harness.settle()
        let event = try XCTUnwrap(b1.events().first)
        // `2<ackID>["confirm","ok?"]`: answer with the same id.
        let ackID = String(event.dropFirst().prefix(while: \.isNumber))
        XCTAssertFalse(ackID.isEmpty)
        b1.send("3\(ackID)[\"yes\",{\"n\":1}]")
        harness.settle()
        let answer = try harness.value(result.futureResult)
        XCTAssertEqual(answer.recipients, 1)
        XCTAssertEqual(answer.responses, [["yes", ["n": 1]]])
        XCTAssertFalse(answer.timedOut)
    }

    func testBroadcastWithAcksCollectsEveryNodeAndTimesOutMissingAnswers() throws {
        let (harness, a, b, c) = threeNodes()
        let a1 = try a.connect(), b1 = try b.connect(), c1 = try c.connect()
        for client in [a1, b1, c1] { client.join("poll") }
        harness.settle()
        _ = (a1.received(), b1.received(), c1.received())
        let result = harness.loop.makePromise(of: BroadcastAckResult.self)
        a.namespace.emit("vote", [], to: ["poll"], ackTimeout: .seconds(2)) { result.succeed($0) }
        harness.settle()
        for (client, answer) in [(a1, "1"), (b1, "2")] {
            let event = try XCTUnwrap(client.events().first)
            let ackID = String(event.dropFirst().prefix(while: \.isNumber))
            client.send("3\(ackID)[\(answer)]")
        }
        _ = c1.events()  // c1 never answers
        harness.settle()
        harness.advance(by: .seconds(3))
        let answer = try harness.value(result.futureResult)
        XCTAssertEqual(answer.recipients, 3)
        XCTAssertEqual(Set(answer.responses.map { $0.first?.intValue ?? -1 }), [1, 2])
        XCTAssertTrue(answer.timedOut)
    }

    func testAckFromASilentLocalSocketTimesOut() throws {
        let (harness, a, _, _) = threeNodes()
        let a1 = try a.connect()
        harness.settle()
        _ = a1.received()
        let result = harness.loop.makePromise(of: BroadcastAckResult.self)
        a.namespace.emit("confirm", [], to: [a1.sid], ackTimeout: .seconds(2)) { result.succeed($0) }
        harness.settle()
        XCTAssertEqual(a1.events().count, 1)
        harness.advance(by: .seconds(3))
        let answer = try harness.value(result.futureResult)
        XCTAssertEqual(answer.recipients, 1)
        XCTAssertEqual(answer.responses, [])
        XCTAssertTrue(answer.timedOut)
    }

    func testDeadNodeIsDetectedWithinTheBoundAndItsRoomsForgotten() throws {
        let (harness, a, b, c) = threeNodes()
        let c1 = try c.connect()
        c1.join("doomed")
        harness.settle()
        XCTAssertEqual(harness.hub.publishCounts["switchboard:node:nodeCC"] ?? 0, 0)

        // C dies: no more heartbeats, nothing it writes lands.
        harness.hub.sever(c.transport)
        let reaped = harness.loop.makePromise(of: String.self)
        a.cluster.onNodeReaped = { reaped.succeed($0) }
        b.cluster.onNodeReaped = { reaped.succeed($0) }
        harness.advance(by: .seconds(12))
        XCTAssertEqual(try harness.value(reaped.futureResult), "nodeCC")

        harness.hub.resetPublishCounts()
        a.namespace.emit("x", [], to: ["doomed"])
        harness.settle()
        XCTAssertEqual(harness.hub.publishCounts.values.reduce(0, +), 0, "no publish to a dead node's room")
        let ids = a.adapter.socketIDs(matching: BroadcastOptions())
        harness.settle()
        XCTAssertEqual(try harness.value(ids), [])
    }

    func testWhileUntrustedTheNodeFallsBackToTheClusterChannelAndResyncs() throws {
        let (harness, a, b, _) = threeNodes()
        let b1 = try b.connect()
        harness.settle()
        _ = b1.received()

        harness.hub.setConnected(false)
        harness.settle()
        XCTAssertFalse(try harness.value(a.cluster.isReady))
        // B's member joins while the registry cannot be trusted; A must not lose the message.
        b1.join("late")
        harness.settle()
        harness.hub.resetPublishCounts()
        a.namespace.emit("m", [], to: ["late"])
        harness.settle()
        XCTAssertEqual(harness.hub.publishCounts, ["switchboard:all": 1])
        XCTAssertEqual(b1.events(), [#"2["m"]"#])

        harness.hub.setConnected(true)
        harness.settle()
        XCTAssertTrue(try harness.value(a.cluster.isReady))
        harness.hub.resetPublishCounts()
        a.namespace.emit("n", [], to: ["late"])
        harness.settle()
        XCTAssertEqual(harness.hub.publishCounts, ["switchboard:node:nodeBB": 1], "routed again after the resync")
        XCTAssertEqual(b1.events(), [#"2["n"]"#])
    }

    func testANodeReapedDuringAPartitionJoinsAgainOnceItHeals() throws {
        let (harness, a, _, c) = threeNodes()
        let c1 = try c.connect()
        c1.join("cut")
        harness.settle()
        _ = c1.received()
        let restored = NIOLockedValueBox(0)
        c.cluster.onTransportRestored = { restored.withLockedValue { $0 += 1 } }

        // Partitioned from the medium without a disconnect: the others reap it.
        harness.hub.sever(c.transport)
        let reaped = harness.loop.makePromise(of: String.self)
        a.cluster.onNodeReaped = { reaped.succeed($0) }
        harness.advance(by: .seconds(12))
        XCTAssertEqual(try harness.value(reaped.futureResult), "nodeCC")
        a.namespace.emit("lost", [], to: ["cut"])
        harness.settle()
        XCTAssertEqual(c1.events(), [], "reaped: no longer routed to")

        // Healed: its next heartbeat finds it unlisted, and it writes its rooms (and sessions) again.
        harness.hub.heal(c.transport)
        harness.advance(by: .seconds(3))
        XCTAssertEqual(restored.withLockedValue { $0 }, 1)
        harness.advance(by: .seconds(3))
        a.namespace.emit("back", [], to: ["cut"])
        harness.settle()
        XCTAssertEqual(c1.events(), [#"2["back"]"#])
        XCTAssertEqual(restored.withLockedValue { $0 }, 1, "once, not on every beat")
    }

    func testTransportRestoredIsCalledOnEveryReconnectButNotTheFirstConnect() throws {
        let (harness, a, _, _) = threeNodes()
        let restored = NIOLockedValueBox(0)
        a.cluster.onTransportRestored = { restored.withLockedValue { $0 += 1 } }
        harness.settle()
        XCTAssertEqual(restored.withLockedValue { $0 }, 0, "the first connect is not a restore")
        harness.hub.setConnected(false)
        harness.settle()
        XCTAssertEqual(restored.withLockedValue { $0 }, 0)
        harness.hub.setConnected(true)
        harness.settle()
        XCTAssertEqual(restored.withLockedValue { $0 }, 1)
        harness.hub.setConnected(true)
        harness.settle()
        XCTAssertEqual(restored.withLockedValue { $0 }, 1, "no change, no call")
        harness.hub.setConnected(false)
        harness.hub.setConnected(true)
        harness.settle()
        XCTAssertEqual(restored.withLockedValue { $0 }, 2)
    }

    func testDelayedTransportKeepsOrderAndDroppedRegistryIsRepairedByResync() throws {
        let (harness, a, b, _) = threeNodes()
        let b1 = try b.connect()
        b1.join("r")
        harness.settle()
        _ = b1.received()

        var faults = InMemoryClusterHub.Faults()
        faults.delay = .milliseconds(50)
        harness.hub.setFaults(faults)
        a.namespace.emit("first", [], to: ["r"])
        a.namespace.emit("second", [], to: ["r"])
        harness.settle()
        XCTAssertEqual(b1.events(), [], "not yet delivered")
        harness.advance(by: .milliseconds(100))
        XCTAssertEqual(b1.events(), [#"2["first"]"#, #"2["second"]"#])

        // Registry announcements lost: A does not know B holds "lost".
        faults = InMemoryClusterHub.Faults()
        faults.drop = { $0 == "switchboard:registry" }
        harness.hub.setFaults(faults)
        b1.join("lost")
        harness.settle()
        harness.hub.setFaults(InMemoryClusterHub.Faults())
        // A reconnect makes A reload the registry from the store, where B's record is.
        harness.hub.setConnected(false)
        harness.settle()
        harness.hub.setConnected(true)
        harness.settle()
        a.namespace.emit("found", [], to: ["lost"])
        harness.settle()
        XCTAssertEqual(b1.events(), [#"2["found"]"#])
    }

    func testClusterMessageCodecRoundTripsAndRejectsTruncation() throws {
        let packet = EncodedPacket(text: ByteBuffer(string: "451-[\"a\",{\"_placeholder\":true,\"num\":0}]"), attachments: [ByteBuffer(bytes: [1, 2, 3])])
        let messages: [ClusterMessage] = [
            .broadcast(namespace: "/", options: BroadcastOptions(rooms: ["a", "b"], except: ["c"]), packet: packet, ack: nil),
            .broadcast(
                namespace: "/x",
                options: BroadcastOptions(),
                packet: packet,
                ack: .init(ackID: 1 << 40, requestID: 7, timeoutMilliseconds: 500)
            ),
            .socketsJoin(namespace: "/", options: BroadcastOptions(rooms: ["user:1"]), rooms: ["channel:1"]),
            .socketsLeave(namespace: "/", options: BroadcastOptions(rooms: ["s"]), rooms: ["r"]),
            .disconnectSockets(namespace: "/", options: BroadcastOptions(rooms: ["s"]), closeClient: true),
            .ackResult(requestID: 9, recipients: 2, responses: [packet], timedOut: true),
            .query(requestID: 3, query: .socketIDs(namespace: "/", options: BroadcastOptions(rooms: ["r"]))),
            .query(requestID: 4, query: .rooms(namespace: "/")),
            .query(requestID: 5, query: .connectionCount),
            .reply(requestID: 3, values: ["a", "b"]),
            .registry(added: ["/\u{0}r"], removed: ["/\u{0}s"]),
            .nodeGone(node: "nodeXY"),
        ]
        for message in messages {
            let bytes = message.encoded(origin: "nodeAA")
            let (origin, decoded) = try ClusterMessage.decode(bytes)
            XCTAssertEqual(origin, "nodeAA")
            XCTAssertEqual(decoded, message)
            for cut in [0, 1, bytes.readableBytes / 2, bytes.readableBytes - 1] where cut < bytes.readableBytes {
                XCTAssertThrowsError(try ClusterMessage.decode(bytes.getSlice(at: 0, length: cut)!), "\(message) cut at \(cut)")
            }
        }
        var trailing = messages[0].encoded(origin: "n")
        trailing.writeInteger(UInt8(0))
        XCTAssertThrowsError(try ClusterMessage.decode(trailing))
        XCTAssertThrowsError(try ClusterMessage.decode(ByteBuffer(bytes: [9, 0, 0])))
    }
}
