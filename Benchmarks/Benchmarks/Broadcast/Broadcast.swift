import Benchmark
import BenchmarkSupport
import EngineIO
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import SocketIO

/// A node's Socket.IO server with WebSocket clients on one embedded event loop, every socket in one room. The
/// clients go through the real pipeline (`EnginePipeline`, upgrade, Engine.IO open, Socket.IO connect), so a
/// broadcast runs the server's own path down to the WebSocket frames a connection would write to its socket.
///
/// Embedded channels and their loop may only be used on the thread that made them: build the fixture inside the
/// benchmark closure, which the runner calls on one thread.
final class BroadcastFixture {
    static let room = "channel:6f1c0b1e"

    let loop = EmbeddedEventLoop()
    let namespace: Namespace
    let channels: [EmbeddedChannel]
    let sockets: [Socket]

    init(recipients: Int) throws {
        let loop = self.loop
        let connected = NIOLockedValueBox<[Socket]>([])
        var handlers = NamespaceHandlers()
        handlers.connected = { socket, _ in
            socket.join(Self.room)
            connected.withLockedValue { $0.append(socket) }
        }
        let logger = Logger(label: "broadcast-benchmark", factory: { _ in SwiftLogNoOpLogHandler() })
        let io = SocketIOServer(configuration: SocketIOConfiguration(), logger: logger) { name in
            InMemoryAdapter(namespace: name, eventLoops: [loop])
        }
        self.namespace = io.addNamespace("/", handlers: handlers)
        // No heartbeat fires: the embedded loop's clock only moves when told to.
        let engine = EngineServer(configuration: EngineConfiguration(), application: io, logger: logger)
        let router = EngineRouter(endpoints: [engine])
        self.channels = try (0..<recipients).map { _ in try Self.connectedClient(router: router, loop: loop) }
        self.sockets = connected.withLockedValue { $0 }
        precondition(sockets.count == recipients, "every client connected to the namespace")
    }

    private static func connectedClient(router: EngineRouter, loop: EmbeddedEventLoop) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: loop)
        try EnginePipeline.configure(channel: channel, router: router)
        channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 40_000), promise: nil)
        try channel.writeInbound(
            ByteBuffer(
                string: "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: switchboard\r\n"
                    + "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
        )
        loop.run()
        try channel.writeInbound(maskedTextFrame("40"))
        loop.run()
        discardOutput(of: channel)
        return channel
    }

    /// A client's WebSocket text frame (clients must mask).
    private static func maskedTextFrame(_ text: String) -> ByteBuffer {
        let key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
        let payload = Array(text.utf8)
        precondition(payload.count < 126, "short frames only")
        var frame = ByteBuffer(bytes: [0x81, 0x80 | UInt8(payload.count)] + key)
        frame.writeBytes(payload.enumerated().map { $0.element ^ key[$0.offset % 4] })
        return frame
    }

    /// Drops what the server wrote, as a socket would take it, so each iteration starts from empty outbound buffers
    /// (and the frame encoder can reuse its header buffer).
    func discardOutput() {
        for channel in channels { Self.discardOutput(of: channel) }
    }

    private static func discardOutput(of channel: EmbeddedChannel) {
        while (try? channel.readOutbound(as: ByteBuffer.self)) != nil {}
    }

    /// Checks that every client received exactly `packet` as one unmasked text frame.
    func expectEveryClientReceived(_ packet: EncodedPacket) {
        let length = packet.text.readableBytes
        precondition(length <= 0xFFFF, "frames with a 7- or 16-bit length only")
        var expected = ByteBuffer(bytes: length < 126 ? [0x81, UInt8(length)] : [0x81, 126])
        if length >= 126 { expected.writeInteger(UInt16(length)) }
        expected.writeImmutableBuffer(packet.text)
        for channel in channels {
            var received = ByteBuffer()
            while var chunk = try? channel.readOutbound(as: ByteBuffer.self) { received.writeBuffer(&chunk) }
            precondition(received == expected, "a client received other bytes than the packet's frame")
        }
    }
}

let recipients = 1_000
let eventName = "events:channel"
let eventArguments: [JSONValue] = [
    [
        "channel_id": "6f1c0b1e-3c1d-4a51",
        "data": ["type": "message", "data": ["content": "The deploy finished; all nodes ready."]],
        "user": ["id": "u1", "name": "Ada"],
    ]
]

let benchmarks: @Sendable () -> Void = {
    // Each closure builds its fixture on the first (warm-up) call, on the thread that runs it.
    var roomFixture: BroadcastFixture?
    Benchmark("NamespaceEmitToRoomOf1000EncodesOnce", configuration: .hotPath(scalingFactor: .one)) { benchmark in
        let fixture = try roomFixture ?? BroadcastFixture(recipients: recipients)
        if roomFixture == nil {
            roomFixture = fixture
            fixture.namespace.emit(eventName, eventArguments, to: [BroadcastFixture.room])
            fixture.loop.run()
            fixture.expectEveryClientReceived(SocketIOPacketCodec.event(eventName, eventArguments, namespace: "/"))
        }
        benchmark.startMeasurement()
        fixture.namespace.emit(eventName, eventArguments, to: [BroadcastFixture.room])
        // The broadcast's writes are flushed by one task behind it on the loop.
        fixture.loop.run()
        fixture.discardOutput()
    }

    // The same frames with one encode per recipient: what encode-once saves.
    var socketsFixture: BroadcastFixture?
    Benchmark("Reference1000SocketEmitsEncodeEach", configuration: .hotPath(scalingFactor: .one)) { benchmark in
        let fixture = try socketsFixture ?? BroadcastFixture(recipients: recipients)
        if socketsFixture == nil {
            socketsFixture = fixture
            for socket in fixture.sockets { socket.emit(eventName, eventArguments) }
            fixture.loop.run()
            fixture.expectEveryClientReceived(SocketIOPacketCodec.event(eventName, eventArguments, namespace: "/"))
        }
        benchmark.startMeasurement()
        for socket in fixture.sockets { socket.emit(eventName, eventArguments) }
        fixture.loop.run()
        fixture.discardOutput()
    }
}
