import EngineIOTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import EngineIO

@Suite("Engine.IO while a node drains")
struct EngineDrainTests {
    @Test func newSessionsAreRefusedWith503AndExistingOnesGoOn() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        harness.server.stopAcceptingSessions()
        #expect(!harness.server.acceptsSessions)

        let polling = try harness.connect()
        try polling.get(Target.handshake)
        let refused = try polling.expectResponse()
        #expect(refused.status == 503)
        #expect(refused.bodyString == #"{"code":3,"message":"Server is shutting down"}"#)

        // A WebSocket handshake for a new session is not upgraded either.
        let websocket = try harness.connect()
        try websocket.upgrade(Target.websocket)
        let notUpgraded = try websocket.expectResponse()
        #expect(notUpgraded.status == 503)

        // The session opened before carries on.
        let existing = try harness.connect()
        try existing.post(Target.polling(sid), body: "4hello")
        #expect(try existing.expectResponse().bodyString == "ok")
        #expect(harness.server.sessionCount == 1)
    }

    @Test func closesAreSpreadOverTheWindow() throws {
        let harness = EngineHarness()
        for _ in 0..<40 { _ = try harness.handshake() }
        #expect(harness.server.closeAll(reason: .serverShutdown, spreadOver: .seconds(10)) == 40)
        harness.loop.run()
        var closedBySecond: [Int] = []
        for _ in 0..<10 {
            harness.loop.advanceTime(by: .seconds(1))
            closedBySecond.append(harness.application.closeReasons.count)
        }
        #expect(closedBySecond.last == 40)
        #expect(Set(harness.application.closeReasons) == [.serverShutdown])
        // Not all at once: 40 uniform draws over 10 s leave some open after the first second and
        // close some before the last (either failing with probability 10^-40).
        #expect(closedBySecond[0] < 40)
        #expect(closedBySecond[8] > 0)
    }

    @Test func aZeroWindowClosesEverySessionAtOnce() throws {
        let harness = EngineHarness()
        for _ in 0..<3 { _ = try harness.handshake() }
        harness.server.closeAll(reason: .serverShutdown, spreadOver: .zero)
        harness.loop.run()
        #expect(harness.application.closeReasons == [.serverShutdown, .serverShutdown, .serverShutdown])
    }
}
