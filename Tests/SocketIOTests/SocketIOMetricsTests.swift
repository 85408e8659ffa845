import EngineIOTestSupport
import MetricsTestKit
import NIOCore
import Testing

@testable import EngineIO
@testable import SocketIO

/// Each test records into its own `TestMetrics`, injected through the server and its adapter.
@Suite("Socket.IO metrics")
struct SocketIOMetricsTests {
    final class Fixture {
        let metrics = TestMetrics()
        let harness: SocketIOHarness

        init(loopCount: Int = 1) {
            harness = SocketIOHarness(loopCount: loopCount, metrics: SocketIOMetrics(factory: metrics))
        }

        func gauge(_ label: String, namespace: String = "/") throws -> Double {
            try metrics.expectMeter(label, [("namespace", namespace)]).lastValue ?? 0
        }

        func count(_ label: String) -> Int64 { metrics.counterTotal(label: label) }

        var fanOuts: [Double] {
            get throws { try metrics.expectRecorder(SocketIOMetrics.broadcastRecipientsLabel).values }
        }
    }

    @Test func aBroadcastToThreeSocketsRecordsAFanOutOfThreeAndThreeEventsSent() throws {
        let fixture = Fixture()
        let clients = try (0..<3).map { _ in try fixture.harness.connectedClient().0 }
        #expect(try fixture.gauge(SocketIOMetrics.socketsLabel) == 3)
        #expect(fixture.count(SocketIOMetrics.eventsSentLabel) == 0, "CONNECT answers are not events")

        fixture.harness.root.emit("news", ["hi"])
        fixture.harness.runAll()
        for client in clients { #expect(try client.receive() == #"42["news","hi"]"#) }
        #expect(try fixture.fanOuts == [3])
        #expect(fixture.count(SocketIOMetrics.eventsSentLabel) == 3)

        fixture.harness.root.emit("nobody", [], to: ["empty-room"])
        fixture.harness.runAll()
        #expect(try fixture.fanOuts == [3, 0])
        #expect(fixture.count(SocketIOMetrics.eventsSentLabel) == 3)
    }

    @Test func aBroadcastOverTwoLoopsRecordsOneFanOutForTheNode() throws {
        let fixture = Fixture(loopCount: 2)
        for loop in [0, 0, 1] { _ = try fixture.harness.connectedClient(loop: loop) }
        fixture.harness.root.emit("news", [])
        fixture.harness.runAll()
        #expect(try fixture.fanOuts == [3])
        #expect(fixture.count(SocketIOMetrics.eventsSentLabel) == 3)
    }

    @Test func eventsFromClientsAndDirectEmitsAreCounted() throws {
        let fixture = Fixture()
        let (client, socket) = try fixture.harness.connectedClient()
        try client.send(#"2["hello",1]"#, #"2["echo",2]"#)
        #expect(fixture.count(SocketIOMetrics.eventsReceivedLabel) == 2)

        socket.emit("direct", [])
        fixture.harness.runAll()
        _ = try client.receive()
        #expect(fixture.count(SocketIOMetrics.eventsSentLabel) == 1)
    }

    @Test func ackTimeoutsAreCountedAndAnsweredAcksAreNot() throws {
        let fixture = Fixture()
        let (client, socket) = try fixture.harness.connectedClient()
        socket.emit("answered", [], ackTimeout: .seconds(5)) { _ in }
        socket.emit("ignored", [], ackTimeout: .seconds(5)) { _ in }
        fixture.harness.runAll()
        _ = try client.receive()
        try client.send(#"30[]"#)
        fixture.harness.advanceTime(by: .seconds(5))
        #expect(fixture.count(SocketIOMetrics.ackTimeoutsLabel) == 1)
    }

    @Test func socketsLeaveTheGaugeWhenTheyDisconnect() throws {
        let fixture = Fixture()
        let (client, _) = try fixture.harness.connectedClient()
        _ = try fixture.harness.connectedClient()
        #expect(try fixture.gauge(SocketIOMetrics.socketsLabel) == 2)
        try client.send("1")
        #expect(try fixture.gauge(SocketIOMetrics.socketsLabel) == 1)
    }

    @Test func aRoomHeldOnTwoLoopsCountsOnce() throws {
        let fixture = Fixture(loopCount: 2)
        let (_, a) = try fixture.harness.connectedClient(loop: 0)
        let (_, b) = try fixture.harness.connectedClient(loop: 1)
        a.join("shared")
        b.join("shared")
        b.join("only-b")
        fixture.harness.runAll()
        #expect(try fixture.gauge(SocketIOMetrics.roomsLabel) == 2)

        a.leave("shared")
        fixture.harness.runAll()
        #expect(try fixture.gauge(SocketIOMetrics.roomsLabel) == 2, "b still holds it")
        b.disconnect()
        fixture.harness.runAll()
        #expect(try fixture.gauge(SocketIOMetrics.roomsLabel) == 0)
    }
}
