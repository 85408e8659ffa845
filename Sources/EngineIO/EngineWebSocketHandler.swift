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
        guard frame.maskKey != nil else {
            // RFC 6455 §5.1: clients must mask every frame.
            return fail(context: context, reason: .parseError, code: .protocolError)
        }
        switch frame.opcode {
        case .text:
            let payload = frame.unmaskedData
            guard UTF8Validation.isValid(payload.readableBytesView) else {
                return fail(context: context, reason: .parseError, code: .dataInconsistentWithMessage)
            }
            do {
                deliver(try EnginePacketCodec.decodeText(payload), channel: context.channel)
            } catch {
                fail(context: context, reason: .parseError, code: .protocolError)
            }
        case .binary:
            deliver(.binary(frame.unmaskedData), channel: context.channel)
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
            fail(context: context, reason: .parseError, code: .protocolError)
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

    private func fail(context: ChannelHandlerContext, reason: DisconnectReason, code: WebSocketErrorCode) {
        session.logger.debug("websocket closed", metadata: ["reason": "\(reason)"])
        if !closeSent {
            closeSent = true
            var data = context.channel.allocator.buffer(capacity: 2)
            data.write(webSocketErrorCode: code)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
        notifyClosed(context.channel, reason: reason)
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
        let reason: DisconnectReason
        switch error {
        case NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge,
            NIOWebSocketError.invalidFrameLength:
            reason = .payloadTooLarge
        default:
            reason = .transportError
        }
        fail(context: context, reason: reason, code: reason == .payloadTooLarge ? .messageTooLarge : .protocolError)
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
