import Logging
import NIOCore
import NIOWebSocket

/// The WebSocket transport of one session: frames in, packets to the session; frames out are
/// written by the session straight to the channel.
final class EngineWebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    enum Role {
        /// The session's transport.
        case transport
        /// A probe upgrading a polling session; becomes the transport after `5`.
        case probe
    }

    private let session: EngineSession
    private let role: Role
    private var closeSent = false

    init(session: EngineSession, role: Role) {
        self.session = session
        self.role = role
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            // The aggregator bounds fragmented messages; a single frame is bounded here.
            guard frame.length <= session.configuration.maxPayload else {
                return fail(context: context, reason: .payloadTooLarge, code: .messageTooLarge, detail: "frame too large")
            }
            session.metrics.websocket.receivedBytes.increment(by: frame.length)
            let payload = frame.unmaskedData
            guard frame.opcode == .text else {
                return deliver(.binary(payload), channel: context.channel)
            }
            guard UTF8Validation.isValid(payload.readableBytesView) else {
                return fail(context: context, reason: .parseError, code: .dataInconsistentWithMessage, detail: "invalid UTF-8")
            }
            do {
                deliver(try EnginePacketCodec.decodeText(payload), channel: context.channel)
            } catch {
                fail(context: context, reason: .parseError, code: .protocolError, detail: error.description)
            }
        case .ping:
            var pong = frame.unmaskedData
            pong = context.channel.allocator.buffer(buffer: pong)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: pong)), promise: nil)
        case .connectionClose:
            // Echo the close, then end the connection (RFC 6455 §5.5.1).
            if !closeSent {
                closeSent = true
                var data = frame.unmaskedData
                let code = data.readWebSocketErrorCode() ?? .normalClosure
                var reply = context.channel.allocator.buffer(capacity: 2)
                reply.write(webSocketErrorCode: code)
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)))
                    .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
        case .pong, .continuation:
            break
        default:
            fail(context: context, reason: .parseError, code: .protocolError, detail: "unknown opcode")
        }
    }

    private func deliver(_ packet: EnginePacket, channel: Channel) {
        let session = self.session
        let role = self.role
        let work: @Sendable () -> Void = {
            switch role {
            case .transport: session.receive(packet)
            case .probe:
                if case .done = session.upgrade, case .websocket(let current) = session.transport, current === channel {
                    session.receive(packet)
                } else {
                    session.receiveProbe(packet, from: channel)
                }
            }
        }
        if session.eventLoop.inEventLoop {
            work()
        } else {
            session.eventLoop.execute(work)
        }
    }

    /// Ends the connection for a protocol error: the session logs the reason and closes the
    /// WebSocket with `code`.
    private func fail(context: ChannelHandlerContext, reason: DisconnectReason, code: WebSocketErrorCode, detail: String) {
        guard !closeSent else { return }
        closeSent = true
        let session = self.session
        let channel = context.channel
        if session.eventLoop.inEventLoop {
            session.websocketClosed(channel, reason: reason, code: code, detail: detail)
        } else {
            session.eventLoop.execute { session.websocketClosed(channel, reason: reason, code: code, detail: detail) }
        }
    }

    private func notifyClosed(_ channel: Channel, reason: DisconnectReason) {
        let session = self.session
        if session.eventLoop.inEventLoop {
            session.websocketClosed(channel, reason: reason)
        } else {
            session.eventLoop.execute { session.websocketClosed(channel, reason: reason) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        notifyClosed(context.channel, reason: .transportClose)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        switch error {
        case NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge, NIOWebSocketError.invalidFrameLength:
            fail(context: context, reason: .payloadTooLarge, code: .messageTooLarge, detail: "\(error)")
        case is UnmaskedFrameError, is NIOWebSocketFrameAggregator.Error, is NIOWebSocketError:
            fail(context: context, reason: .parseError, code: .protocolError, detail: "\(error)")
        default:
            fail(context: context, reason: .transportError, code: .unexpectedServerError, detail: "\(error)")
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The write buffer's high-water mark is the session's outbound bound: a client that lets
        // it fill is dropped (slow-consumer policy) rather than allowed to grow memory.
        if !context.channel.isWritable {
            let session = self.session
            let channel = context.channel
            session.eventLoop.execute {
                if case .websocket(let current) = session.transport, current === channel {
                    session.close(reason: .slowConsumer)
                }
            }
        }
        context.fireChannelWritabilityChanged()
    }
}

@available(*, unavailable)
extension EngineWebSocketHandler: Sendable {}

/// RFC 6455 §5.1: a client must mask every frame. Checked before fragments are aggregated (the
/// aggregator unmasks them).
final class WebSocketMaskCheck: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard unwrapInboundIn(data).maskKey != nil else {
            context.fireErrorCaught(UnmaskedFrameError())
            return
        }
        context.fireChannelRead(data)
    }
}

@available(*, unavailable)
extension WebSocketMaskCheck: Sendable {}

struct UnmaskedFrameError: Error, CustomStringConvertible {
    var description: String { "unmasked frame from a client" }
}

/// UTF-8 validation for WebSocket text frames, with an ASCII fast path.
public enum UTF8Validation {
    public static func isValid(_ bytes: some Collection<UInt8>) -> Bool {
        var iterator = bytes.makeIterator()
        while let lead = iterator.next() {
            if lead < 0x80 { continue }
            let count: Int
            let minimum: UInt32
            var scalar: UInt32
            switch lead {
            case 0xC2...0xDF: count = 1; minimum = 0x80; scalar = UInt32(lead & 0x1F)
            case 0xE0...0xEF: count = 2; minimum = 0x800; scalar = UInt32(lead & 0x0F)
            case 0xF0...0xF4: count = 3; minimum = 0x10000; scalar = UInt32(lead & 0x07)
            default: return false
            }
            for _ in 0..<count {
                guard let next = iterator.next(), next & 0xC0 == 0x80 else { return false }
                scalar = scalar << 6 | UInt32(next & 0x3F)
            }
            if scalar < minimum || scalar > 0x10FFFF || (0xD800...0xDFFF).contains(scalar) { return false }
        }
        return true
    }
}
