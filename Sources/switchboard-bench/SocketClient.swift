import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// What a scenario learns from its clients. All calls arrive on the bench's single client event
/// loop, so a scenario's counters need no locks.
protocol SocketClientDelegate: AnyObject {
    /// The Socket.IO namespace connect was accepted (`40{"sid"}`).
    func clientConnected(_ client: SocketClient)
    /// A server event: `payload` is the Socket.IO packet's JSON array, undecoded; `ackID` when the
    /// server asked for an acknowledgement.
    func client(_ client: SocketClient, receivedEvent payload: UnsafeRawBufferPointer, ackID: Int?)
    /// The connection ended, or never opened; `reason` names why.
    func clientClosed(_ client: SocketClient, reason: String)
}

/// A Socket.IO v5 client over a raw Engine.IO v4 WebSocket (RFC 6455 framing written here: the
/// client only needs text frames, ping/pong and close). It connects straight to the WebSocket
/// transport, as the official clients do with `transports: ["websocket"]`, answers heartbeats, and
/// hands server events to its delegate as bytes: the bench parses only what it measures.
///
/// Confined to the bench's client event loop (`@unchecked Sendable` only to cross into bootstrap
/// initializers, which run on that loop).
final class SocketClient: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase { case connecting, upgrading, engineOpening, socketConnecting, connected, closed }

    let index: Int
    let host: String
    let port: Int
    private let path: String
    private let connectAuth: String?
    unowned let delegate: any SocketClientDelegate
    private(set) var phase = Phase.connecting
    private(set) var sid = ""
    private var context: ChannelHandlerContext?
    private var inbound: ByteBuffer?
    private var fragments: ByteBuffer?
    private var nextAckID = 0
    private var ackHandlers: [Int: (UnsafeRawBufferPointer) -> Void] = [:]
    private let maskKey: (UInt8, UInt8, UInt8, UInt8)
    /// Whatever the scenario needs to remember per client (e.g. its user's room).
    var tag = 0
    /// SO_RCVBUF for the connection, when a scenario wants a client that the kernel cannot buffer much for.
    var receiveBufferBytes: Int?

    /// - Parameters:
    ///   - connectAuth: the JSON of the Socket.IO CONNECT packet's auth, or nil for none.
    init(index: Int, host: String, port: Int, path: String, connectAuth: String?, delegate: any SocketClientDelegate) {
        self.index = index
        self.host = host
        self.port = port
        self.path = path
        self.connectAuth = connectAuth
        self.delegate = delegate
        self.maskKey = (.random(in: 0...255), .random(in: 0...255), .random(in: 0...255), .random(in: 0...255))
    }

    /// Opens the connection, from `source` when given (more than ~28k connections to one address
    /// need several 127.0.0.x source addresses).
    func connect(on loop: any EventLoop, source: SocketAddress?) {
        var bootstrap = ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(30))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(self)
                }
            }
        if let source { bootstrap = bootstrap.bind(to: source) }
        if let receiveBufferBytes {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferBytes))
        }
        bootstrap.connect(host: self.host, port: self.port).assumeIsolated().whenFailure { error in
            self.close(reason: "connect failed: \(error)")
        }
    }

    var isConnected: Bool { self.phase == .connected }

    // MARK: Sending

    /// Emits `42<ack>[json...]`; `arguments` is the JSON array's inside (`"event",{...}`).
    func emit(_ arguments: String, flush: Bool = true, ack: ((UnsafeRawBufferPointer) -> Void)? = nil) {
        var packet = "42"
        if let ack {
            let id = self.nextAckID
            self.nextAckID += 1
            self.ackHandlers[id] = ack
            packet += String(id)
        }
        packet += "["
        packet += arguments
        packet += "]"
        self.send(packet, flush: flush)
    }

    func flush() { self.context?.flush() }

    /// Stops reading from the connection: a client that went away without closing, or cannot keep up.
    func stopReading() {
        try? self.context?.channel.syncOptions?.setOption(.autoRead, value: false)
    }

    func disconnect() {
        guard let context, self.phase != .closed else { return }
        self.send("41", flush: false)
        self.writeFrame(opcode: 0x8, payload: [0x03, 0xE8], flush: true)
        context.close(promise: nil)
    }

    private func send(_ text: String, flush: Bool) {
        var text = text
        text.withUTF8 { self.writeFrame(opcode: 0x1, payload: $0, flush: flush) }
    }

    /// A masked client frame (RFC 6455 5.3).
    private func writeFrame(opcode: UInt8, payload: some Collection<UInt8>, flush: Bool) {
        guard let context else { return }
        let length = payload.count
        var frame = context.channel.allocator.buffer(capacity: length + 14)
        frame.writeInteger(0x80 | opcode)
        if length < 126 {
            frame.writeInteger(UInt8(0x80 | length))
        } else if length <= 0xFFFF {
            frame.writeInteger(UInt8(0x80 | 126))
            frame.writeInteger(UInt16(length))
        } else {
            frame.writeInteger(UInt8(0x80 | 127))
            frame.writeInteger(UInt64(length))
        }
        let mask = [self.maskKey.0, self.maskKey.1, self.maskKey.2, self.maskKey.3]
        frame.writeBytes(mask)
        var position = 0
        for byte in payload {
            frame.writeInteger(byte ^ mask[position & 3])
            position += 1
        }
        if flush {
            context.writeAndFlush(self.wrapOutboundOut(frame), promise: nil)
        } else {
            context.write(self.wrapOutboundOut(frame), promise: nil)
        }
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { self.channelActive(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        guard self.phase == .connecting else { return }
        self.phase = .upgrading
        let request =
            "GET \(self.path)?EIO=4&transport=websocket HTTP/1.1\r\nHost: \(self.host):\(self.port)\r\n"
            + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c3dpdGNoYm9hcmQtYmVuY2g=\r\n"
            + "Sec-WebSocket-Version: 13\r\n\r\n"
        context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(string: request)), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.close(reason: self.phase == .connected ? "closed by the server" : "closed during the handshake (\(self.phase))")
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.close(reason: "error: \(error)")
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        if self.inbound == nil || self.inbound!.readableBytes == 0 {
            self.inbound = bytes
        } else {
            self.inbound!.writeBuffer(&bytes)
        }
        if self.phase == .upgrading {
            guard let view = self.inbound?.readableBytesView,
                let end = view.firstRange(of: [13, 10, 13, 10])
            else { return }
            let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
            guard head.hasPrefix("HTTP/1.1 101") else {
                self.close(reason: "upgrade refused: \(head.prefix(while: { $0 != "\r" }))")
                context.close(promise: nil)
                return
            }
            self.inbound!.moveReaderIndex(to: end.upperBound)
            self.phase = .engineOpening
        }
        self.readFrames(context: context)
        if let buffer = self.inbound, buffer.readableBytes == 0 { self.inbound = nil }
    }

    private func readFrames(context: ChannelHandlerContext) {
        while self.phase != .closed, var buffer = self.inbound, buffer.readableBytes >= 2 {
            let first: UInt8 = buffer.readInteger()!
            let second: UInt8 = buffer.readInteger()!
            var length = Int(second & 0x7F)
            if length == 126 {
                guard let extended: UInt16 = buffer.readInteger() else { return }
                length = Int(extended)
            } else if length == 127 {
                guard let extended: UInt64 = buffer.readInteger() else { return }
                length = Int(extended)
            }
            var mask: [UInt8]? = nil
            if second & 0x80 != 0 {
                guard let key = buffer.readBytes(length: 4) else { return }
                mask = key
            }
            guard var payload = buffer.readSlice(length: length) else { return }
            self.inbound = buffer
            if let mask {
                payload.withUnsafeMutableReadableBytes { bytes in
                    for i in 0..<bytes.count { bytes[i] ^= mask[i & 3] }
                }
            }
            let fin = first & 0x80 != 0
            let opcode = first & 0x0F
            switch opcode {
            case 0x0, 0x1, 0x2:
                if !fin || self.fragments != nil {
                    self.fragments = self.fragments ?? context.channel.allocator.buffer(capacity: length)
                    self.fragments!.writeBuffer(&payload)
                    guard fin else { continue }
                    payload = self.fragments!
                    self.fragments = nil
                }
                payload.withUnsafeReadableBytes { self.enginePacket($0, context: context) }
            case 0x8:
                self.close(reason: "WebSocket close from the server")
                context.close(promise: nil)
            case 0x9:
                self.writeFrame(opcode: 0xA, payload: payload.readableBytesView, flush: true)
            default:
                break
            }
        }
    }

    private func enginePacket(_ packet: UnsafeRawBufferPointer, context: ChannelHandlerContext) {
        guard let type = packet.first else { return }
        switch type {
        case UInt8(ascii: "2"):  // ping: answer at once, as clients must
            self.writeFrame(opcode: 0x1, payload: [UInt8(ascii: "3")], flush: true)
        case UInt8(ascii: "0") where self.phase == .engineOpening:
            self.phase = .socketConnecting
            self.send(self.connectAuth.map { "40\($0)" } ?? "40", flush: true)
        case UInt8(ascii: "4"):
            self.socketPacket(UnsafeRawBufferPointer(rebasing: packet.dropFirst()), context: context)
        case UInt8(ascii: "1"):
            self.close(reason: "Engine.IO close from the server")
            context.close(promise: nil)
        default:
            break
        }
    }

    private func socketPacket(_ packet: UnsafeRawBufferPointer, context: ChannelHandlerContext) {
        guard let type = packet.first else { return }
        var rest = packet.dropFirst()
        switch type {
        case UInt8(ascii: "2"), UInt8(ascii: "3"):
            var id: Int? = nil
            while let digit = rest.first, digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") {
                id = (id ?? 0) * 10 + Int(digit - UInt8(ascii: "0"))
                rest = rest.dropFirst()
            }
            let body = UnsafeRawBufferPointer(rebasing: rest)
            if type == UInt8(ascii: "2") {
                self.delegate.client(self, receivedEvent: body, ackID: id)
            } else if let id, let handler = self.ackHandlers.removeValue(forKey: id) {
                handler(body)
            }
        case UInt8(ascii: "0") where self.phase == .socketConnecting:
            let text = String(decoding: rest, as: UTF8.self)
            if let range = text.range(of: #""sid":""#) {
                self.sid = String(text[range.upperBound...].prefix(while: { $0 != "\"" }))
            }
            self.phase = .connected
            self.delegate.clientConnected(self)
        case UInt8(ascii: "4"):
            self.close(reason: "connect refused: \(String(decoding: rest, as: UTF8.self))")
            context.close(promise: nil)
        case UInt8(ascii: "1"):
            self.close(reason: "disconnected by the server")
            context.close(promise: nil)
        default:
            break
        }
    }

    /// Answers a server event that asked for an acknowledgement: `43<id>[arguments]`.
    func acknowledge(_ id: Int, arguments: String) {
        self.send("43\(id)[\(arguments)]", flush: true)
    }

    private func close(reason: String) {
        guard self.phase != .closed else { return }
        self.phase = .closed
        self.ackHandlers.removeAll()
        self.delegate.clientClosed(self, reason: reason)
    }
}

extension UnsafeRawBufferPointer {
    /// The unsigned integer after `"key":` (e.g. `"bench_t":123`), or nil.
    func integer(after key: StaticString) -> UInt64? {
        let needle = UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
        guard let first = needle.first, self.count >= needle.count else { return nil }
        var start = 0
        var position = -1
        while start <= self.count - needle.count {
            if self[start] == first, memcmp(self.baseAddress! + start, needle.baseAddress!, needle.count) == 0 {
                position = start + needle.count
                break
            }
            start += 1
        }
        guard position >= 0 else { return nil }
        while position < self.count, self[position] == UInt8(ascii: " ") { position += 1 }
        var value: UInt64 = 0
        var digits = 0
        while position < self.count, self[position] >= UInt8(ascii: "0"), self[position] <= UInt8(ascii: "9") {
            value = value &* 10 &+ UInt64(self[position] - UInt8(ascii: "0"))
            position += 1
            digits += 1
        }
        return digits > 0 ? value : nil
    }
}
