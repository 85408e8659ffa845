import EngineIOTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import EngineIO
@testable import SocketIO

/// Counts the flushes that reach the socket (it sits at the head end of the pipeline).
final class FlushCounter: ChannelOutboundHandler, @unchecked Sendable {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    var flushes = 0

    func flush(context: ChannelHandlerContext) {
        flushes += 1
        context.flush()
    }
}

@Suite("Broadcasts to WebSocket clients: one frame encoding, one flush per client per loop tick")
struct BroadcastFlushTests {
    /// A WebSocket client connected to `/` on `loop`, with a flush counter at the socket end.
    func webSocketClient(_ harness: SocketIOHarness, loop: Int) throws -> (TestConnection, FlushCounter) {
        let connection = try TestConnection(loop: harness.loops[loop], router: harness.router)
        try connection.upgrade(Target.websocket)
        #expect(try connection.expectResponse().status == 101)
        #expect(try connection.readFrames().count == 1, "the open packet")
        try connection.sendText("40")
        let connected = try connection.readFrames()
        #expect(connected.count == 1 && connected[0].text.hasPrefix("40{\"sid\""))
        let counter = FlushCounter()
        try connection.channel.pipeline.syncOperations.addHandler(counter, position: .first)
        return (connection, counter)
    }

    @Test func broadcastsInOneTickReachEachClientWithOneFlush() throws {
        let harness = SocketIOHarness(loopCount: 2)
        let clients = try (0..<4).map { try webSocketClient(harness, loop: $0 % 2) }

        harness.root.emit("m", [.string("one")])
        harness.root.emit("m", [.string("two")], to: [harness.recorder.sockets[0].id])
        harness.root.emit("m", [.string("three")])
        for (_, counter) in clients {
            #expect(counter.flushes == 0, "written, not yet flushed")
        }

        harness.runAll()
        for (index, (connection, counter)) in clients.enumerated() {
            let expected =
                index == 0
                ? [#"42["m","one"]"#, #"42["m","two"]"#, #"42["m","three"]"#]
                : [#"42["m","one"]"#, #"42["m","three"]"#]
            #expect(try connection.readFrames().map(\.text) == expected)
            #expect(counter.flushes == 1, "one flush for everything this tick")
        }

        // The next tick flushes again.
        harness.root.emit("m", [.string("four")])
        harness.runAll()
        for (connection, counter) in clients {
            #expect(try connection.readFrames().map(\.text) == [#"42["m","four"]"#])
            #expect(counter.flushes == 2)
        }
        for (connection, _) in clients { connection.close() }
    }

    @Test func binaryBroadcastsCarryTheirAttachmentsInOrder() throws {
        let harness = SocketIOHarness()
        let (connection, _) = try webSocketClient(harness, loop: 0)
        harness.root.emit("bin", [.binary(ByteBuffer(bytes: [1, 2, 3]))])
        harness.runAll()
        let frames = try connection.readFrames()
        #expect(frames.map(\.opcode) == [0x1, 0x2])
        #expect(frames.first?.text == #"451-["bin",{"_placeholder":true,"num":0}]"#)
        #expect(frames.last?.payload == [1, 2, 3])
        connection.close()
    }
}
