import EngineIOTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import EngineIO

private let opText: UInt8 = 0x1
private let opBinary: UInt8 = 0x2
private let opClose: UInt8 = 0x8
private let opPing: UInt8 = 0x9
private let opPong: UInt8 = 0xA

private func textFrame(_ text: String) -> RawWebSocketFrame {
    RawWebSocketFrame(fin: true, opcode: opText, payload: Array(text.utf8))
}

private func closeFrame(_ code: UInt16) -> RawWebSocketFrame {
    RawWebSocketFrame(fin: true, opcode: opClose, payload: [UInt8(code >> 8), UInt8(code & 0xFF)])
}

private let closeWithoutStatus = RawWebSocketFrame(fin: true, opcode: opClose, payload: [])

@Suite("Engine.IO WebSocket transport over EnginePipeline")
struct EngineWebSocketTests {
    /// Upgrades a new connection to a WebSocket session; returns it and its sid.
    func openWebSocket(_ harness: EngineHarness) throws -> (TestConnection, String) {
        let connection = try harness.connect()
        try connection.upgrade(Target.websocket)
        let response = try connection.expectResponse()
        #expect(response.status == 101)
        #expect(response.header("Upgrade")?.lowercased() == "websocket")
        #expect(response.header("Sec-WebSocket-Accept") == TestConnection.webSocketAccept)
        let frames = try connection.readFrames()
        let open = try #require(frames.first)
        #expect(frames.count == 1)
        #expect(open.opcode == opText)
        let sid = try requireSIDHelper(open.text)
        return (connection, sid)
    }

    @Test func upgradeSendsTheOpenPacketAsTheFirstTextFrame() throws {
        let harness = EngineHarness()
        let (connection, sid) = try openWebSocket(harness)
        #expect(
            try connection.readFrames().isEmpty
        )
        #expect(harness.application.sessions.map(\.id) == [sid])
        #expect(harness.application.sessions.first?.initialTransport == .websocket)
        #expect(harness.server.sessionCount == 1)
        // A WebSocket session has nothing to upgrade to.
        let session = try #require(harness.application.session(sid))
        guard case .text(let open) = session.openPacket() else {
            Issue.record("open packet is text")
            return
        }
        #expect(
            String(buffer: open)
                == #"0{"sid":"\#(sid)","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        )
    }

    @Test func textAndBinaryMessagesAreDeliveredAndEchoed() throws {
        let harness = EngineHarness(echo: true)
        let (connection, _) = try openWebSocket(harness)

        try connection.sendText("4hello")
        #expect(try connection.readFrames() == [textFrame("4hello")])

        try connection.sendBinary([0, 1, 2, 255])
        #expect(
            try connection.readFrames() == [RawWebSocketFrame(fin: true, opcode: opBinary, payload: [0, 1, 2, 255])]
        )

        let big = String(repeating: "é", count: 40_000)  // 80 kB: a 64-bit length on the wire
        try connection.sendText("4" + big)
        #expect(try connection.readFrames() == [textFrame("4" + big)])

        #expect(
            harness.application.messages == [
                .text(ByteBuffer(string: "hello")), .binary(ByteBuffer(bytes: [0, 1, 2, 255])),
                .text(ByteBuffer(string: big)),
            ]
        )
    }

    @Test func fragmentedMessageIsReassembled() throws {
        let harness = EngineHarness(echo: true)
        let (connection, _) = try openWebSocket(harness)
        try connection.sendFrame(opcode: opText, payload: Array("4hel".utf8), fin: false)
        try connection.sendFrame(opcode: 0x0, payload: Array("lo".utf8), fin: true)
        let frames = try connection.readFrames()
        #expect(frames == [textFrame("4hello")], "fragmented message refused: \(frames.map(\.closeCode))")
        #expect(harness.application.messages == [.text(ByteBuffer(string: "hello"))])
        #expect(harness.application.closeReasons.isEmpty)
    }

    @Test func serverSendsAreWrittenAsFrames() throws {
        let harness = EngineHarness()
        let (connection, sid) = try openWebSocket(harness)
        let session = try #require(harness.application.session(sid))
        session.sendMessage(.text(ByteBuffer(string: "a")))
        session.sendMessage(.binary(ByteBuffer(bytes: [9])))
        #expect(
            try connection.readFrames() == [
                textFrame("4a"), RawWebSocketFrame(fin: true, opcode: opBinary, payload: [9]),
            ]
        )
    }

    @Test func pingFrameIsAnsweredWithPong() throws {
        let harness = EngineHarness()
        let (connection, _) = try openWebSocket(harness)
        try connection.sendFrame(opcode: opPing, payload: [1, 2, 3])
        #expect(try connection.readFrames() == [RawWebSocketFrame(fin: true, opcode: opPong, payload: [1, 2, 3])])
        #expect(harness.application.closeReasons.isEmpty)
    }

    @Test func unmaskedFrameClosesWithProtocolError() throws {
        let harness = EngineHarness()
        let (connection, _) = try openWebSocket(harness)
        try connection.sendText("4hello", masked: false)
        let frames = try connection.readFrames()
        #expect(frames.first == closeFrame(1002))
        #expect(!connection.isActive)
        #expect(harness.application.messages.isEmpty)
        #expect(harness.server.sessionCount == 0)
        #expect(harness.application.closeReasons == [.parseError])
    }

    @Test func invalidUTF8TextClosesWith1007() throws {
        let harness = EngineHarness()
        let (connection, _) = try openWebSocket(harness)
        try connection.sendFrame(opcode: opText, payload: [0x34, 0xC3, 0x28])
        #expect(try connection.readFrames().first == closeFrame(1007))
        #expect(!connection.isActive)
        #expect(harness.application.messages.isEmpty)
        #expect(harness.application.closeReasons == [.parseError])
    }

    static let badEnginePackets: [String] = ["", "9", "b", "2", "0", "6"]

    @Test("an invalid Engine.IO packet on a WebSocket closes with 1002", arguments: badEnginePackets)
    func invalidEnginePacket(text: String) throws {
        let harness = EngineHarness()
        let (connection, _) = try openWebSocket(harness)
        try connection.sendText(text)
        #expect(try connection.readFrames().first == closeFrame(1002))
        #expect(!connection.isActive)
        #expect(harness.application.closeReasons == [.parseError])
    }

    @Test func closeFrameIsEchoedAndEndsTheSession() throws {
        let harness = EngineHarness()
        let (connection, _) = try openWebSocket(harness)
        try connection.sendFrame(opcode: opClose, payload: [0x03, 0xE9])  // 1001 going away
        #expect(try connection.readFrames() == [closeFrame(1001)])
        #expect(!connection.isActive)
        #expect(harness.application.closeReasons == [.transportClose])
        #expect(harness.server.sessionCount == 0)
    }

    @Test func closeFrameWithoutCodeIsAnsweredWith1000() throws {
        let harness = EngineHarness()
        let (connection, _) = try openWebSocket(harness)
        try connection.sendFrame(opcode: opClose, payload: [])
        #expect(try connection.readFrames() == [closeFrame(1000)])
        #expect(!connection.isActive)
    }

    @Test func enginePacketCloseEndsTheSessionWithNormalClosure() throws {
        let harness = EngineHarness()
        let (connection, _) = try openWebSocket(harness)
        try connection.sendText("1")
        #expect(try connection.readFrames() == [closeFrame(1000)])
        #expect(!connection.isActive)
        #expect(harness.application.closeReasons == [.clientClose])
    }

    @Test func serverShutdownClosesWithGoingAway() throws {
        let harness = EngineHarness()
        let (connection, _) = try openWebSocket(harness)
        harness.server.closeAll(reason: .serverShutdown)
        harness.loop.run()
        #expect(try connection.readFrames() == [closeFrame(1001)])
        #expect(!connection.isActive)
        #expect(harness.application.closeReasons == [.serverShutdown])
    }

    @Test func heartbeatOverWebSocket() throws {
        let harness = EngineHarness()
        let (connection, _) = try openWebSocket(harness)
        harness.loop.advanceTime(by: .seconds(25))
        #expect(try connection.readFrames() == [textFrame("2")])
        try connection.sendText("3")
        harness.loop.advanceTime(by: .seconds(20))
        #expect(try connection.readFrames().isEmpty)
        #expect(connection.isActive)
        harness.loop.advanceTime(by: .seconds(5))
        #expect(try connection.readFrames() == [textFrame("2")])
        harness.loop.advanceTime(by: .seconds(20))
        #expect(try connection.readFrames() == [closeFrame(1000)])
        #expect(!connection.isActive)
        #expect(harness.application.closeReasons == [.pingTimeout])
    }

    @Test func fragmentedMessageOverMaxPayloadClosesWith1009() throws {
        let harness = EngineHarness(configuration: EngineConfiguration(maxPayload: 16))
        let (connection, _) = try openWebSocket(harness)
        try connection.sendFrame(opcode: opText, payload: Array("4123456789".utf8), fin: false)
        try connection.sendFrame(opcode: 0x0, payload: Array("0123456789".utf8), fin: true)
        #expect(try connection.readFrames().first == closeFrame(1009))
        #expect(!connection.isActive)
        #expect(harness.application.messages.isEmpty)
        #expect(harness.application.closeReasons == [.payloadTooLarge])
    }

    /// maxPayload bounds every WebSocket message, fragmented or not.
    @Test func singleFrameOverMaxPayloadClosesWith1009() throws {
        let harness = EngineHarness(configuration: EngineConfiguration(maxPayload: 16))
        let (connection, _) = try openWebSocket(harness)
        try connection.sendText("4" + String(repeating: "x", count: 99))
        #expect(harness.application.messages.isEmpty, "a 100-byte message passed maxPayload 16")
        #expect(try connection.readFrames().first == closeFrame(1009))
        #expect(harness.application.closeReasons == [.payloadTooLarge])
    }

    // MARK: Upgrade from polling

    @Test func probeUpgradesAPollingSession() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let session = try #require(harness.application.session(sid))
        let poller = try harness.connect()
        try poller.get(Target.polling(sid))
        #expect(try poller.readResponse() == nil)

        let probe = try harness.connect()
        try probe.upgrade(Target.websocket(sid))
        let response = try probe.expectResponse()
        #expect(response.status == 101)
        #expect(try probe.readFrames().isEmpty, "a probe gets no open packet")

        // While probing, messages still go to the pending poll.
        try probe.sendText("2probe")
        #expect(try probe.readFrames() == [textFrame("3probe")])
        #expect(try poller.expectResponse().bodyString == "6", "the pending poll is released with a noop")

        // Sent during the probe: queued for polling, then flushed on the WebSocket after the upgrade.
        session.sendMessage(.text(ByteBuffer(string: "queued")))
        harness.loop.run()

        try probe.sendText("5")
        #expect(try probe.readFrames() == [textFrame("4queued")])
        guard case .websocket = session.transport, case .done = session.upgrade else {
            Issue.record("session did not switch to the websocket")
            return
        }

        // Now everything flows over the WebSocket.
        session.sendMessage(.text(ByteBuffer(string: "after")))
        #expect(try probe.readFrames() == [textFrame("4after")])
        try probe.sendText("4from-ws")
        #expect(harness.application.messages == [.text(ByteBuffer(string: "from-ws"))])

        // Polling is over for this session.
        let late = try harness.connect()
        try late.get(Target.polling(sid))
        let refused = try late.expectResponse()
        #expect(refused.status == 400)
        #expect(refused.bodyString == #"{"code":3,"message":"Bad request"}"#)
        try late.post(Target.polling(sid), body: "4x")
        #expect(try late.expectResponse().status == 400)
        #expect(!session.isClosed)
        #expect(harness.application.closeReasons.isEmpty)

        // The old poll connection going away does not end the upgraded session.
        try poller.channel.close().wait()
        harness.loop.run()
        #expect(!session.isClosed)
    }

    @Test func pollBeforeTheProbePingStillCarriesPackets() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let session = try #require(harness.application.session(sid))
        let probe = try harness.probe(sid)
        let poller = try harness.connect()
        try poller.get(Target.polling(sid))
        #expect(try poller.readResponse() == nil, "parked, as on a session that is not upgrading")
        session.sendMessage(.text(ByteBuffer(string: "on polling")))
        harness.loop.run()
        #expect(try poller.expectResponse().bodyString == "4on polling")
        try probe.sendText("2probe")
        #expect(try probe.readFrames() == [textFrame("3probe")])
    }

    @Test func pollAfterTheProbePingIsAnsweredWithNoop() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let session = try #require(harness.application.session(sid))
        let probe = try harness.probe(sid)
        try probe.sendText("2probe")
        #expect(try probe.readFrames() == [textFrame("3probe")])
        session.sendMessage(.text(ByteBuffer(string: "for the websocket")))
        harness.loop.run()
        let poller = try harness.connect()
        try poller.get(Target.polling(sid))
        #expect(try poller.expectResponse().bodyString == "6", "a noop, and the packet waits for the upgrade")
        try probe.sendText("5")
        #expect(try probe.readFrames() == [textFrame("4for the websocket")])
    }

    @Test func unexpectedPacketDuringProbeFailsTheProbeOnly() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let session = try #require(harness.application.session(sid))
        let probe = try harness.probe(sid)
        try probe.sendText("4too-early")
        #expect(!probe.isActive)
        #expect(!session.isClosed)
        guard case .none = session.upgrade, case .polling = session.transport else {
            Issue.record("session should stay on polling")
            return
        }
        // Polling continues.
        let poller = try harness.connect()
        try poller.get(Target.polling(sid))
        session.sendMessage(.text(ByteBuffer(string: "still here")))
        harness.loop.run()
        #expect(try poller.expectResponse().bodyString == "4still here")
    }

    @Test func probeTimesOutAfterUpgradeTimeout() throws {
        let harness = EngineHarness(configuration: EngineConfiguration(upgradeTimeout: .seconds(10)))
        let (sid, _) = try harness.handshake()
        let session = try #require(harness.application.session(sid))
        let probe = try harness.probe(sid)
        try probe.sendText("2probe")
        #expect(try probe.readFrames() == [textFrame("3probe")])
        harness.loop.advanceTime(by: .seconds(10))
        #expect(!probe.isActive)
        #expect(!session.isClosed)
        guard case .none = session.upgrade else {
            Issue.record("probe should have been dropped")
            return
        }
    }

    @Test func probeForUnknownSessionIsRefused() throws {
        let harness = EngineHarness()
        let probe = try harness.connect()
        // The upgrader's refusal reaches the HTTP handler, which answers the request with the protocol's error.
        try probe.upgrade(Target.websocket("unknown-sid"))
        let response = try probe.expectResponse()
        #expect(response.status == 400)
        #expect(response.bodyString == #"{"code":1,"message":"Session ID unknown"}"#)
    }

    @Test func secondProbeWhileOneIsInProgressIsUpgradedThenClosed() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let first = try harness.connect()
        try first.upgrade(Target.websocket(sid))
        #expect(try first.expectResponse().status == 101)
        let second = try harness.connect()
        try second.upgrade(Target.websocket(sid))
        #expect(try second.expectResponse().status == 101, "as the reference server: upgraded, then closed")
        #expect(try second.readFrames() == [closeWithoutStatus])
        #expect(!second.isActive)
        #expect(first.isActive)
        try first.sendText("2probe")
        #expect(try first.readFrames() == [textFrame("3probe")])
    }

    @Test func webSocketForAnUpgradedSessionIsUpgradedThenClosed() throws {
        let harness = EngineHarness()
        let (sid, session, probe) = try harness.upgradedSession()
        let late = try harness.connect()
        try late.upgrade(Target.websocket(sid))
        #expect(try late.expectResponse().status == 101)
        #expect(try late.readFrames() == [closeWithoutStatus], "no open packet, a close without status")
        #expect(!late.isActive)
        #expect(!session.isClosed, "the upgraded session is untouched")
        session.sendMessage(.text(ByteBuffer(string: "still mine")))
        #expect(try probe.readFrames() == [textFrame("4still mine")])
    }
}
