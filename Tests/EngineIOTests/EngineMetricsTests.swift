import EngineIOTestSupport
import MetricsTestKit
import NIOCore
import Testing

@testable import EngineIO

/// Each test records into its own `TestMetrics`, injected through the server: no process-wide
/// bootstrap, so the tests run in parallel.
@Suite("Engine.IO metrics")
struct EngineMetricsTests {
    final class Fixture {
        let metrics = TestMetrics()
        let harness: EngineHarness

        init(echo: Bool = false) {
            harness = EngineHarness(echo: echo, metrics: EngineMetrics(factory: metrics))
        }

        func connections(_ transport: String) throws -> Double {
            try metrics.expectMeter(EngineMetrics.connectionsLabel, [("transport", transport)]).lastValue ?? 0
        }

        func disconnects(_ reason: DisconnectReason) -> Int64 {
            metrics.counterTotal(label: EngineMetrics.disconnectsLabel, dimensions: [("reason", reason.rawValue)])
        }

        var allDisconnects: Int64 { metrics.counterTotal(label: EngineMetrics.disconnectsLabel) }

        func bytes(_ label: String, _ transport: String) -> Int64 {
            metrics.counterTotal(label: label, dimensions: [("transport", transport)])
        }

        /// A WebSocket session opened directly; returns its connection and open packet's size.
        func openWebSocket() throws -> (TestConnection, openBytes: Int) {
            let connection = try harness.connect()
            try connection.upgrade(Target.websocket)
            #expect(try connection.expectResponse().status == 101)
            let open = try #require(try connection.readFrames().first)
            return (connection, open.payload.count)
        }
    }

    @Test func everyDisconnectReasonHasASeriesFromTheStart() {
        let fixture = Fixture()
        let reasons = fixture.metrics.counters(label: EngineMetrics.disconnectsLabel).compactMap { counter in
            counter.dimensions.first(where: { $0.0 == "reason" })?.1
        }
        #expect(Set(reasons) == Set(DisconnectReason.allCases.map(\.rawValue)))
        #expect(fixture.allDisconnects == 0)
    }

    @Test func anUpgradeMovesTheSessionFromPollingToWebSocketAndTheCloseCountsItsReason() throws {
        let fixture = Fixture()
        let (sid, _) = try fixture.harness.handshake()
        #expect(try fixture.connections("polling") == 1)
        #expect(try fixture.connections("websocket") == 0)

        let probe = try fixture.harness.connect()
        try probe.upgrade(Target.websocket(sid))
        #expect(try probe.expectResponse().status == 101)
        try probe.sendText("2probe")
        _ = try probe.readFrames()
        #expect(try fixture.connections("polling") == 1, "a probe is not an upgrade yet")
        try probe.sendText("5")
        #expect(try fixture.connections("polling") == 0)
        #expect(try fixture.connections("websocket") == 1)

        try probe.sendText("1")
        #expect(fixture.harness.application.closeReasons == [.clientClose])
        #expect(try fixture.connections("websocket") == 0)
        #expect(fixture.disconnects(.clientClose) == 1)
        #expect(fixture.allDisconnects == 1)
    }

    @Test func aPollingSessionClosedByTheServerLeavesTheGaugeAndCountsOnce() throws {
        let fixture = Fixture()
        _ = try fixture.harness.handshake()
        _ = try fixture.harness.handshake()
        #expect(try fixture.connections("polling") == 2)
        fixture.harness.server.closeAll(reason: .serverShutdown)
        fixture.harness.loop.run()
        #expect(try fixture.connections("polling") == 0)
        #expect(fixture.disconnects(.serverShutdown) == 2)
        #expect(fixture.allDisconnects == 2)
    }

    @Test func aWebSocketThatGoesAwayCountsATransportClose() throws {
        let fixture = Fixture()
        let (connection, _) = try fixture.openWebSocket()
        #expect(try fixture.connections("websocket") == 1)
        try connection.channel.close().wait()
        fixture.harness.loop.run()
        #expect(try fixture.connections("websocket") == 0)
        #expect(fixture.disconnects(.transportClose) == 1)
        #expect(fixture.allDisconnects == 1)
    }

    @Test func webSocketBytesAreTheMessagePayloadsEachWay() throws {
        let fixture = Fixture(echo: true)
        let (connection, openBytes) = try fixture.openWebSocket()
        #expect(fixture.bytes(EngineMetrics.sentBytesLabel, "websocket") == Int64(openBytes))
        #expect(fixture.bytes(EngineMetrics.receivedBytesLabel, "websocket") == 0)

        try connection.sendText("4hello")
        _ = try connection.readFrames()
        try connection.sendBinary([1, 2, 3])
        _ = try connection.readFrames()
        #expect(fixture.bytes(EngineMetrics.receivedBytesLabel, "websocket") == 6 + 3)
        #expect(fixture.bytes(EngineMetrics.sentBytesLabel, "websocket") == Int64(openBytes + 6 + 3))
        #expect(fixture.bytes(EngineMetrics.sentBytesLabel, "polling") == 0)
    }

    @Test func pollingBytesAreTheRequestAndResponseBodies() throws {
        let fixture = Fixture(echo: true)
        let (sid, open) = try fixture.harness.handshake()
        #expect(fixture.bytes(EngineMetrics.sentBytesLabel, "polling") == Int64(open.body.count))

        let connection = try fixture.harness.connect()
        try connection.post(Target.polling(sid), body: "4hi")
        #expect(try connection.expectResponse().status == 200)
        #expect(fixture.bytes(EngineMetrics.receivedBytesLabel, "polling") == 3)

        try connection.get(Target.polling(sid))
        #expect(try connection.expectResponse().bodyString == "4hi")
        #expect(fixture.bytes(EngineMetrics.sentBytesLabel, "polling") == Int64(open.body.count + 3))
        #expect(fixture.bytes(EngineMetrics.receivedBytesLabel, "websocket") == 0)
    }
}
