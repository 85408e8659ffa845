import NIOCore
import XCTest

@testable import Cluster

final class ReadinessProbeTests: XCTestCase {
    func testProbeMakesARoundTripThroughTheMedium() throws {
        let harness = ClusterHarness()
        let a = harness.addNode("nodeAA")
        harness.settle()
        let probe = a.cluster.probe(within: .seconds(1))
        harness.settle()
        XCTAssertTrue(try harness.value(probe))
        XCTAssertEqual(harness.hub.publishCounts["switchboard:node:nodeAA"], 1)
    }

    func testProbeFailsWhenTheTripDoesNotComeBackInTime() throws {
        let harness = ClusterHarness()
        let a = harness.addNode("nodeAA")
        harness.settle()
        var faults = InMemoryClusterHub.Faults()
        faults.drop = { $0 == "switchboard:node:nodeAA" }
        harness.hub.setFaults(faults)
        let probe = a.cluster.probe(within: .milliseconds(500))
        harness.settle()
        harness.advance(by: .milliseconds(500))
        XCTAssertFalse(try harness.value(probe))
        // A slow medium: the message comes back, but after the deadline.
        var slow = InMemoryClusterHub.Faults()
        slow.delay = .seconds(1)
        harness.hub.setFaults(slow)
        let late = a.cluster.probe(within: .milliseconds(500))
        harness.settle()
        harness.advance(by: .seconds(1))
        XCTAssertFalse(try harness.value(late))
    }

    func testProbeIsFalseWhileTheTransportIsDown() throws {
        let harness = ClusterHarness()
        let a = harness.addNode("nodeAA")
        harness.settle()
        harness.hub.setConnected(false)
        harness.settle()
        let probe = a.cluster.probe(within: .seconds(1))
        harness.settle()
        XCTAssertFalse(try harness.value(probe))
        XCTAssertNil(harness.hub.publishCounts["switchboard:node:nodeAA"])
    }
}
