import NIOCore

/// Packets encoded once for many sessions: the packets themselves, queued for long-polling
/// sessions, and the same packets already framed for WebSocket, which every WebSocket recipient
/// writes unchanged (one shared buffer, no per-recipient framing or allocation).
public struct EngineBroadcastPackets: Sendable {
    public let packets: [EngineOutboundPacket]
    /// The packets as server-to-client (unmasked) WebSocket frames, back to back.
    public let webSocketFrames: ByteBuffer
    /// Bytes of the packets, without framing.
    public let byteCount: Int

    public init(_ packets: [EngineOutboundPacket]) {
        self.packets = packets
        var byteCount = 0
        for packet in packets { byteCount += packet.byteCount }
        self.byteCount = byteCount
        var frames = ByteBuffer()
        frames.reserveCapacity(byteCount + packets.count * WebSocketFrameHeader.maximumLength)
        for packet in packets {
            switch packet {
            case .text(let payload):
                WebSocketFrameHeader.write(
                    opcode: WebSocketFrameHeader.text,
                    length: payload.readableBytes,
                    into: &frames
                )
                frames.writeImmutableBuffer(payload)
            case .binary(let payload):
                WebSocketFrameHeader.write(
                    opcode: WebSocketFrameHeader.binary,
                    length: payload.readableBytes,
                    into: &frames
                )
                frames.writeImmutableBuffer(payload)
            }
        }
        self.webSocketFrames = frames
    }
}

/// RFC 6455 §5.2 headers of final, unmasked frames (the server never masks).
enum WebSocketFrameHeader {
    static let text: UInt8 = 0x1
    static let binary: UInt8 = 0x2
    static let maximumLength = 10

    static func write(opcode: UInt8, length: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger(0x80 | opcode)
        switch length {
        case ..<126:
            buffer.writeInteger(UInt8(length))
        case ..<65536:
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(length))
        default:
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(length))
        }
    }
}

/// Sits at the head end of a WebSocket connection's pipeline, below the frame encoder, and writes
/// bytes that are already frames (`EngineBroadcastPackets.webSocketFrames`) straight to the socket.
/// Everything else passes through.
final class WebSocketFrameWriter: ChannelOutboundHandler, @unchecked Sendable {
    // @unchecked Sendable: only used on its channel's event loop; a session uses it only when it
    // lives on that loop, and otherwise writes through the channel.
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let eventLoop: EventLoop
    private var context: ChannelHandlerContext?

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Queues framed bytes without flushing.
    func write(frames: ByteBuffer) {
        eventLoop.assertInEventLoop()
        context?.write(wrapOutboundOut(frames), promise: nil)
    }

    func flush() {
        eventLoop.assertInEventLoop()
        context?.flush()
    }
}
