import MetricsTestKit
import NIOCore
import SocketIO
import XCTest

@testable import Cluster

/// Every node of `ClusterHarness` records into its own `TestMetrics`.
final class ClusterMetricsTests: XCTestCase {
    private func messages(_ node: TestNode, _ label: String, kind: String) -> Int64 {
        node.metrics.counterTotal(label: label, dimensions: [("kind", kind)])
    }

    func testARoutedBroadcastIsOnePublishAtTheOriginAndOneReceiptAtTheHolder() throws {
        let harness = ClusterHarness()
        let a = harness.addNode("nodeAA")
        let b = harness.addNode("nodeBB")
        let b1 = try b.connect()
        b1.join("room")
        harness.settle()
        _ = b1.received()
        XCTAssertGreaterThan(messages(b, ClusterMetrics.publishedLabel, kind: "registry"), 0)
        XCTAssertGreaterThan(messages(a, ClusterMetrics.receivedLabel, kind: "registry"), 0)

        a.namespace.emit("m", ["x"], to: ["room"])
        harness.settle()
        XCTAssertEqual(b1.events(), [#"2["m","x"]"#])
        XCTAssertEqual(messages(a, ClusterMetrics.publishedLabel, kind: "broadcast"), 1)
        XCTAssertEqual(messages(b, ClusterMetrics.receivedLabel, kind: "broadcast"), 1)
        XCTAssertEqual(messages(a, ClusterMetrics.receivedLabel, kind: "broadcast"), 0)
        // The holder's local delivery is a broadcast of its own: one recipient there, none at the origin.
        XCTAssertEqual(try b.metrics.expectRecorder(SocketIOMetrics.broadcastRecipientsLabel).values, [1])
        XCTAssertEqual(try a.metrics.expectRecorder(SocketIOMetrics.broadcastRecipientsLabel).values, [0])
        XCTAssertEqual(b.metrics.counterTotal(label: SocketIOMetrics.eventsSentLabel), 1)
    }

    func testEveryKindHasASeriesAndUndecodableMessagesAreCounted() throws {
        let harness = ClusterHarness()
        let a = harness.addNode("nodeAA")
        let kinds = Set(a.metrics.counters(label: ClusterMetrics.publishedLabel).flatMap { $0.dimensions.map(\.1) })
        XCTAssertEqual(
            kinds,
            [
                "broadcast", "sockets_join", "sockets_leave", "disconnect_sockets", "ack_result", "query", "reply",
                "registry", "node_gone",
            ]
        )

        let intruder = harness.hub.transport(on: harness.loop)
        _ = intruder.publish(ByteBuffer(string: "not a cluster message"), to: a.cluster.configuration.broadcastChannel)
        harness.settle()
        XCTAssertEqual(a.metrics.counterTotal(label: ClusterMetrics.undecodableLabel), 1)
        XCTAssertEqual(a.metrics.counterTotal(label: ClusterMetrics.receivedLabel), 0)
    }

    func testBridgeMessagesAreCountedByMethodAndRejectsByReason() throws {
        let harness = ClusterHarness()
        let node = harness.addNode("nodeAA")
        let metrics = TestMetrics()
        let local = node.adapter.local
        let handler = PythonBridgeHandler(
            hostID: "switchboard-nodeAA",
            ackTimeout: .seconds(5),
            logger: harness.logger,
            metrics: ClusterMetrics(factory: metrics),
            localAdapter: { $0 == "/" ? local : nil },
            publish: { _ in }
        )
        let emit = #"{"method":"emit","event":"e","data":[1],"namespace":"/","room":null,"skip_sid":null,"#
        handler.handle(payload: ByteBuffer(string: emit + #""callback":null,"host_id":"other"}"#))
        handler.handle(payload: ByteBuffer(string: emit + #""callback":null,"host_id":"switchboard-nodeAA"}"#))
        handler.handle(
            payload: ByteBuffer(string: #"{"method":"enter_room","sid":"s","namespace":"/","room":"r","host_id":"x"}"#)
        )
        handler.handle(payload: ByteBuffer(string: #"{"method":"frobnicate","host_id":"x"}"#))
        handler.handle(payload: ByteBuffer(string: "{"))
        harness.settle()

        func bridge(_ label: String, _ name: String, _ value: String) -> Int64 {
            metrics.counterTotal(label: label, dimensions: [(name, value)])
        }
        XCTAssertEqual(
            bridge(ClusterMetrics.bridgeMessagesLabel, "method", "emit"),
            1,
            "our own host_id is not counted"
        )
        XCTAssertEqual(bridge(ClusterMetrics.bridgeMessagesLabel, "method", "enter_room"), 1)
        XCTAssertEqual(metrics.counterTotal(label: ClusterMetrics.bridgeMessagesLabel), 2)
        XCTAssertEqual(bridge(ClusterMetrics.bridgeRejectedLabel, "reason", "unknown_method"), 1)
        XCTAssertEqual(bridge(ClusterMetrics.bridgeRejectedLabel, "reason", "malformed"), 1)
    }
}
