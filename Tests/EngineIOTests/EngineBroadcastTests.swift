import EngineIOTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import EngineIO

@Suite("Broadcast packets: framed once, written below the encoder, flushed once per batch")
struct EngineBroadcastTests {
    /// Decodes server frames (unmasked) back to back.
    func frames(_ buffer: ByteBuffer) throws -> [RawWebSocketFrame] {
        var bytes = buffer
        var frames: [RawWebSocketFrame] = []
        while bytes.readableBytes > 0 {
            let header = bytes.readInteger(as: UInt8.self)
            let lengthByte = bytes.readInteger(as: UInt8.self)
            let first = try #require(header)
            let second = try #require(lengthByte)
            #expect(second & 0x80 == 0, "a server never masks")
            var length = Int(second & 0x7F)
            if length == 126 {
                let extended = bytes.readInteger(as: UInt16.self)
                length = Int(try #require(extended))
                #expect(length >= 126, "the shortest length encoding")
            } else if length == 127 {
                let extended = bytes.readInteger(as: UInt64.self)
                length = Int(try #require(extended))
                #expect(length >= 65536, "the shortest length encoding")
            }
            let read = bytes.readBytes(length: length)
            let payload = try #require(read)
            frames.append(RawWebSocketFrame(fin: first & 0x80 != 0, opcode: first & 0x0F, payload: payload))
        }
        return frames
    }

    @Test("every length encoding", arguments: [0, 1, 125, 126, 65535, 65536, 70_000])
    func framingAtLengthBoundaries(length: Int) throws {
        let text = ByteBuffer(repeating: UInt8(ascii: "a"), count: length)
        let binary = ByteBuffer(bytes: [0, 1, 2])
        let packets = EngineBroadcastPackets([.text(text), .binary(binary)])
        #expect(packets.byteCount == length + 3)
        #expect(
            try frames(packets.webSocketFrames) == [
                RawWebSocketFrame(fin: true, opcode: 0x1, payload: Array(repeating: UInt8(ascii: "a"), count: length)),
                RawWebSocketFrame(fin: true, opcode: 0x2, payload: [0, 1, 2]),
            ]
        )
    }

    func openWebSocket(_ harness: EngineHarness) throws -> (TestConnection, EngineSession) {
        let connection = try harness.connect()
        try connection.upgrade(Target.websocket)
        #expect(try connection.expectResponse().status == 101)
        let open = try #require(try connection.readFrames().first)
        let sid = try requireSIDHelper(open.text)
        return (connection, try #require(harness.application.session(sid)))
    }

    static func text(_ string: String) -> RawWebSocketFrame {
        RawWebSocketFrame(fin: true, opcode: 0x1, payload: Array(string.utf8))
    }

    @Test func broadcastsWaitForOneFlushAndKeepTheirOrder() throws {
        let harness = EngineHarness()
        let (connection, session) = try openWebSocket(harness)
        let first = EngineBroadcastPackets([.text(ByteBuffer(string: "42[\"a\"]"))])
        let second = EngineBroadcastPackets([
            .text(ByteBuffer(string: "451-[\"b\",{\"_placeholder\":true,\"num\":0}]")), .binary(ByteBuffer(bytes: [9])),
        ])

        #expect(session.sendBroadcast(first), "the first write asks for a flush")
        #expect(!session.sendBroadcast(second), "later writes ride on the same flush")
        #expect(try connection.readFrames().isEmpty, "nothing leaves before the flush")

        session.flushBroadcastWrites()
        #expect(
            try connection.readFrames() == [
                Self.text("42[\"a\"]"), Self.text("451-[\"b\",{\"_placeholder\":true,\"num\":0}]"),
                RawWebSocketFrame(fin: true, opcode: 0x2, payload: [9]),
            ]
        )
        #expect(session.sendBroadcast(first), "after a flush the next write asks again")

        // A packet sent to this session alone flushes what waits, in order.
        session.sendMessage(.text(ByteBuffer(string: "direct")))
        #expect(try connection.readFrames() == [Self.text("42[\"a\"]"), Self.text("4direct")])
        session.flushBroadcastWrites()
        #expect(try connection.readFrames().isEmpty)
    }

    @Test func aClosedSessionTakesNoBroadcast() throws {
        let harness = EngineHarness()
        let (connection, session) = try openWebSocket(harness)
        session.close(reason: .serverShutdown)
        harness.loop.run()
        _ = try? connection.readFrames()
        #expect(!session.sendBroadcast(EngineBroadcastPackets([.text(ByteBuffer(string: "4late"))])))
    }

    @Test func pollingSessionsQueueTheSamePacketsForTheirNextPoll() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let session = try #require(harness.application.session(sid))
        let packets = EngineBroadcastPackets([
            .text(ByteBuffer(string: "42[\"a\"]")), .binary(ByteBuffer(bytes: [1, 2])),
        ])
        #expect(!session.sendBroadcast(packets), "polling needs no flush")
        let poller = try harness.connect()
        try poller.get(Target.polling(sid))
        #expect(try poller.expectResponse().bodyString == "42[\"a\"]\u{1E}bAQI=")
    }

    @Test func aProbeUpgradedSessionWritesBroadcastFramesOnItsWebSocket() throws {
        let harness = EngineHarness()
        let (_, session, probe) = try harness.upgradedSession()

        #expect(session.sendBroadcast(EngineBroadcastPackets([.text(ByteBuffer(string: "42[\"up\"]"))])))
        #expect(try probe.readFrames().isEmpty)
        session.flushBroadcastWrites()
        #expect(try probe.readFrames() == [Self.text("42[\"up\"]")])
    }
}
