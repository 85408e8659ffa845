import Logging
import NIOCore
import NIOWebSocket

/// A message for the application layer above Engine.IO.
public enum EngineMessage: Sendable, Equatable {
    /// A text message, without its `4` type digit.
    case text(ByteBuffer)
    case binary(ByteBuffer)
}

/// The application's side of one session. Called on the session's event loop.
public protocol EngineSessionDelegate: AnyObject {
    func engineSession(_ session: EngineSession, didReceive message: EngineMessage)
    func engineSessionDidClose(_ session: EngineSession, reason: DisconnectReason)
}

/// One Engine.IO session: its transport (long-polling or WebSocket), the upgrade between them,
/// the heartbeat and the outbound queue.
///
/// A session belongs to the event loop it was opened on. Every method must be called on
/// `eventLoop`; requests arriving on other loops hop there first.
public final class EngineSession: @unchecked Sendable {
    // @unchecked Sendable: all mutable state is confined to `eventLoop` (asserted in every entry
    // point); the session crosses threads only to be looked up and hopped to.

    public let id: String
    public let eventLoop: EventLoop
    public let configuration: EngineConfiguration
    /// The transport the session was opened with.
    public let initialTransport: EngineTransports
    /// Query parameters and headers of the opening request, for the application.
    public let handshake: EngineHandshakeInfo
    /// Owned while the session is open and released on close, which breaks the session ↔ delegate cycle.
    public private(set) var delegate: EngineSessionDelegate?
    package var logger: Logger
    let metrics: EngineMetrics

    enum Transport {
        case polling
        case websocket(Channel)
    }

    enum Upgrade {
        case none
        /// A WebSocket is probing. Polling carries packets as before until the probe's `2probe`;
        /// from then on GETs get a `6` so the client stops polling (as the reference server does).
        /// Its frame writer becomes the session's on upgrade.
        case probing(Channel, timeout: LoopTimers.Timer, writer: WebSocketFrameWriter?, pinged: Bool)
        case done
    }

    private(set) var transport: Transport
    private(set) var upgrade: Upgrade = .none
    public var isClosed: Bool { closeReason != nil }
    public private(set) var closeReason: DisconnectReason?
    private var heartbeat: HeartbeatStateMachine
    /// Inbound packets allowed, when the configuration limits them.
    private var packetBucket: TokenBucket?
    /// The loop's session timers: heartbeats and timeouts (see `LoopTimers`).
    public let timers: LoopTimers
    private var heartbeatTimer: LoopTimers.Timer?
    private var pendingPoll: EventLoopPromise<ByteBuffer>?
    private var pollQueue: [EngineOutboundPacket] = []
    private var pollQueueBytes = 0
    private var pollFlushScheduled = false
    /// Writes pre-framed broadcasts below the WebSocket encoder, when the transport's channel is on
    /// this session's loop.
    private var frameWriter: WebSocketFrameWriter?
    /// Broadcast frames were written and wait for `flushBroadcastWrites()`.
    private var awaitingBroadcastFlush = false
    /// Closed by the server while no poll was parked: the queue (ending with a close packet) waits
    /// for the client's next GET, then the session is forgotten.
    private var lingering: LoopTimers.Timer?
    private let onClose: @Sendable (EngineSession) -> Void

    init(
        id: String,
        eventLoop: EventLoop,
        configuration: EngineConfiguration,
        transport: Transport,
        handshake: EngineHandshakeInfo,
        timers: LoopTimers,
        frameWriter: WebSocketFrameWriter? = nil,
        logger: Logger,
        metrics: EngineMetrics,
        onClose: @escaping @Sendable (EngineSession) -> Void
    ) {
        precondition(timers.eventLoop === eventLoop, "a session's timers run on its loop")
        self.id = id
        self.eventLoop = eventLoop
        self.timers = timers
        self.configuration = configuration
        self.transport = transport
        if case .websocket = transport {
            self.initialTransport = .websocket
            self.upgrade = .done
            self.frameWriter = Self.usable(frameWriter, on: eventLoop)
        } else {
            self.initialTransport = .polling
        }
        self.handshake = handshake
        self.logger = logger
        self.logger[metadataKey: "engine.sid"] = "\(id)"
        self.onClose = onClose
        self.metrics = metrics
        self.heartbeat = HeartbeatStateMachine(
            interval: configuration.pingInterval,
            timeout: configuration.pingTimeout,
            now: eventLoop.now
        )
        let limits = configuration.limits
        if limits.packetsPerSecond > 0 {
            self.packetBucket = TokenBucket(rate: limits.packetsPerSecond, burst: limits.packetBurst, now: .now())
        }
        transportMetrics.connections.increment()
    }

    /// The instruments of the current transport.
    private var transportMetrics: EngineMetrics.Transport {
        if case .websocket = transport { return metrics.websocket }
        return metrics.polling
    }

    public func setDelegate(_ delegate: EngineSessionDelegate) {
        eventLoop.assertInEventLoop()
        self.delegate = delegate
    }

    /// The open packet: `0{"sid","upgrades","pingInterval","pingTimeout","maxPayload"}`.
    func openPacket() -> EngineOutboundPacket {
        let upgrades =
            (initialTransport == .polling && configuration.transports.contains(.websocket)) ? #"["websocket"]"# : "[]"
        let json =
            #"{"sid":"\#(id)","upgrades":\#(upgrades),"pingInterval":\#(configuration.pingInterval.milliseconds),"#
            + #""pingTimeout":\#(configuration.pingTimeout.milliseconds),"maxPayload":\#(configuration.maxPayload)}"#
        return .make(.open, json)
    }

    func start() {
        eventLoop.assertInEventLoop()
        armHeartbeat()
    }

    // MARK: Outbound

    /// Sends a packet on whatever transport is current. This is the hot path of every delivery.
    public func send(_ packet: EngineOutboundPacket) {
        eventLoop.assertInEventLoop()
        guard !isClosed else { return }
        if case .websocket(let channel) = transport, case .done = upgrade {
            write(packet, to: channel)
            return
        }
        enqueueForPoll(packet)
    }

    /// Sends a message: text without its type digit, or binary.
    public func sendMessage(_ message: EngineMessage) {
        switch message {
        case .text(let text):
            var buffer = ByteBuffer()
            buffer.reserveCapacity(text.readableBytes + 1)
            buffer.writeInteger(EnginePacketType.message.rawValue)
            buffer.writeImmutableBuffer(text)
            send(.text(buffer))
        case .binary(let bytes):
            send(.binary(bytes))
        }
    }

    /// Sends packets encoded once for many sessions (a broadcast). On a WebSocket the shared frames
    /// are written but not flushed: returns true when this call left the session waiting for
    /// `flushBroadcastWrites()`, which the broadcaster calls once after its batch, so everything
    /// a client gets in one loop tick leaves in one system call.
    public func sendBroadcast(_ packets: EngineBroadcastPackets) -> Bool {
        eventLoop.assertInEventLoop()
        guard !isClosed else { return false }
        guard case .websocket(let channel) = transport, case .done = upgrade else {
            for packet in packets.packets { enqueueForPoll(packet) }
            return false
        }
        guard let frameWriter else {
            for packet in packets.packets { write(packet, to: channel) }
            return false
        }
        metrics.websocket.sentBytes.increment(by: packets.byteCount)
        frameWriter.write(frames: packets.webSocketFrames)
        if awaitingBroadcastFlush { return false }
        awaitingBroadcastFlush = true
        return true
    }

    /// A writer can write from this session only if its channel runs on the session's loop.
    private static func usable(_ writer: WebSocketFrameWriter?, on eventLoop: EventLoop) -> WebSocketFrameWriter? {
        guard let writer, writer.eventLoop === eventLoop else { return nil }
        return writer
    }

    /// Flushes broadcast frames written by `sendBroadcast(_:)`.
    public func flushBroadcastWrites() {
        eventLoop.assertInEventLoop()
        guard awaitingBroadcastFlush else { return }
        awaitingBroadcastFlush = false
        frameWriter?.flush()
    }

    private func write(_ packet: EngineOutboundPacket, to channel: Channel) {
        metrics.websocket.sentBytes.increment(by: packet.byteCount)
        let frame: WebSocketFrame
        switch packet {
        case .text(let buffer): frame = WebSocketFrame(fin: true, opcode: .text, data: buffer)
        case .binary(let buffer): frame = WebSocketFrame(fin: true, opcode: .binary, data: buffer)
        }
        channel.writeAndFlush(frame, promise: nil)
    }

    private func enqueueForPoll(_ packet: EngineOutboundPacket) {
        pollQueue.append(packet)
        pollQueueBytes += packet.byteCount
        if pollQueueBytes > configuration.maxOutboundBytes {
            close(reason: .slowConsumer)
            return
        }
        schedulePollFlush()
    }

    /// Answers a parked poll once per loop tick, so packets sent together leave together.
    private func schedulePollFlush() {
        guard pendingPoll != nil, !pollFlushScheduled, pollCarriesPackets else { return }
        pollFlushScheduled = true
        eventLoop.execute {
            self.pollFlushScheduled = false
            self.flushPoll()
        }
    }

    /// Whether a poll may be answered with queued packets: not once the probe has pinged (the
    /// packets then wait for the WebSocket, so none can arrive out of order on two transports).
    private var pollCarriesPackets: Bool {
        switch upgrade {
        case .none, .probing(_, _, _, pinged: false): return true
        case .probing(_, _, _, pinged: true), .done: return false
        }
    }

    private func flushPoll() {
        guard let poll = pendingPoll, !pollQueue.isEmpty, pollCarriesPackets else { return }
        pendingPoll = nil
        poll.succeed(drainPollQueue())
    }

    private func drainPollQueue() -> ByteBuffer {
        var body = ByteBuffer()
        body.reserveCapacity(pollQueueBytes + pollQueue.count)
        EnginePacketCodec.encodePayload(pollQueue, into: &body)
        pollQueue.removeAll(keepingCapacity: false)
        pollQueueBytes = 0
        return body
    }

    // MARK: Long-polling

    /// A GET poll. The promise is answered with the payload to send (or fails with an HTTP error).
    func poll(_ promise: EventLoopPromise<ByteBuffer>) {
        eventLoop.assertInEventLoop()
        if isClosed, let lingering {
            lingering.cancel()
            self.lingering = nil
            promise.succeed(drainPollQueue())
            onClose(self)
            return
        }
        guard !isClosed, case .polling = transport else {
            promise.fail(EngineHTTPError.badRequest)
            return
        }
        switch upgrade {
        case .done:
            promise.fail(EngineHTTPError.badRequest)
            return
        case .probing(_, _, _, pinged: true):
            guard pendingPoll == nil else { return concurrentPoll(promise) }
            promise.succeed(Self.noopPayload)
            return
        case .none, .probing(_, _, _, pinged: false):
            break
        }
        guard pendingPoll == nil else { return concurrentPoll(promise) }
        if !pollQueue.isEmpty {
            promise.succeed(drainPollQueue())
        } else {
            pendingPoll = promise
        }
    }

    private static let noopPayload = ByteBuffer(integer: EnginePacketType.noop.rawValue)

    private func concurrentPoll(_ promise: EventLoopPromise<ByteBuffer>) {
        promise.fail(EngineHTTPError.badRequest)
        close(reason: .concurrentPoll)
    }

    /// The connection carrying the parked poll went away before it was answered.
    func pollAborted(_ future: EventLoopFuture<ByteBuffer>) {
        eventLoop.assertInEventLoop()
        guard let poll = pendingPoll, poll.futureResult === future else { return }
        pendingPoll = nil
        poll.fail(EngineHTTPError.badRequest)
        // A client that upgraded drops its poll on purpose.
        if case .none = upgrade {
            close(reason: .transportClose)
        }
    }

    /// A POST payload. Throws the HTTP error to answer with.
    func receivePollPayload(_ body: ByteBuffer) throws(EngineHTTPError) {
        eventLoop.assertInEventLoop()
        guard !isClosed, case .polling = transport else { throw .badRequest }
        if case .done = upgrade { throw .badRequest }
        metrics.polling.receivedBytes.increment(by: body.readableBytes)
        let packets: [EnginePacket]
        do {
            packets = try EnginePacketCodec.decodePayload(body)
        } catch {
            close(reason: .parseError, detail: "invalid polling payload: \(error)")
            throw .badRequest
        }
        for packet in packets {
            guard !isClosed else { break }
            receive(packet)
        }
        if closeReason == .parseError { throw .badRequest }
    }

    // MARK: Inbound

    /// A decoded packet from the current transport.
    func receive(_ packet: EnginePacket) {
        eventLoop.assertInEventLoop()
        guard !isClosed else { return }
        if packetBucket != nil, packetBucket?.take(now: .now()) == false {
            return close(reason: .packetRate, detail: "more than \(configuration.limits.packetsPerSecond) packets a second")
        }
        switch packet {
        case .binary(let bytes):
            delegate?.engineSession(self, didReceive: .binary(bytes))
        case .text(let type, let data):
            switch type {
            case .message:
                delegate?.engineSession(self, didReceive: .text(data))
            case .pong:
                guard heartbeat.pongReceived(now: eventLoop.now) else {
                    return close(reason: .parseError, detail: "pong without a ping")
                }
                // The next ping is due one interval after this pong.
                heartbeatTimer?.cancel()
                armHeartbeat()
            case .close:
                close(reason: .clientClose)
            case .ping, .open, .upgrade, .noop:
                // v4 clients never ping; these types have no meaning from a client here.
                close(reason: .parseError, detail: "unexpected packet type \(type) from the client")
            }
        }
    }

    // MARK: Upgrade

    /// Whether a WebSocket request naming this session gets its HTTP upgrade: as with the reference
    /// server, any open session does; one that cannot take a probe (already upgraded, or probing)
    /// is then closed by `attachProbe` returning false.
    func admitsWebSocketRequest() -> Bool {
        eventLoop.assertInEventLoop()
        return !isClosed
    }

    /// Whether a probe can start now.
    func canAcceptProbe() -> Bool {
        eventLoop.assertInEventLoop()
        guard !isClosed, case .polling = transport, case .none = upgrade else { return false }
        return configuration.transports.contains(.websocket)
    }

    func attachProbe(_ channel: Channel, frameWriter: WebSocketFrameWriter?) -> Bool {
        eventLoop.assertInEventLoop()
        guard canAcceptProbe() else { return false }
        let timeout = timers.schedule(in: configuration.upgradeTimeout) { [self] in
            probeFailed(channel, closeIt: true)
        }
        upgrade = .probing(channel, timeout: timeout, writer: Self.usable(frameWriter, on: eventLoop), pinged: false)
        return true
    }

    /// A packet that arrived on the probing WebSocket.
    func receiveProbe(_ packet: EnginePacket, from channel: Channel) {
        eventLoop.assertInEventLoop()
        guard case .probing(let probe, let timeout, let writer, _) = upgrade, probe === channel, !isClosed else {
            channel.close(promise: nil)
            return
        }
        switch packet {
        case .text(.ping, let data) where data.readableBytesView.elementsEqual("probe".utf8):
            upgrade = .probing(probe, timeout: timeout, writer: writer, pinged: true)
            write(.make(.pong, "probe"), to: channel)
            // Release the pending poll so the client can pause polling and send `5`.
            if let poll = pendingPoll {
                pendingPoll = nil
                poll.succeed(Self.noopPayload)
            }
        case .text(.upgrade, _):
            timeout.cancel()
            upgrade = .done
            transport = .websocket(channel)
            frameWriter = writer
            metrics.polling.connections.decrement()
            metrics.websocket.connections.increment()
            if let poll = pendingPoll {
                pendingPoll = nil
                poll.succeed(Self.noopPayload)
            }
            let queued = pollQueue
            pollQueue.removeAll()
            pollQueueBytes = 0
            for packet in queued { write(packet, to: channel) }
            logger.debug("upgraded to websocket")
        default:
            logger.debug("unexpected packet during upgrade")
            probeFailed(channel, closeIt: true)
        }
    }

    /// The probe WebSocket closed or failed: the session stays on polling.
    func probeFailed(_ channel: Channel, closeIt: Bool) {
        eventLoop.assertInEventLoop()
        guard case .probing(let probe, let timeout, _, _) = upgrade, probe === channel else { return }
        timeout.cancel()
        upgrade = .none
        if closeIt { channel.close(promise: nil) }
        schedulePollFlush()
    }

    /// The WebSocket carrying the session (or probing for it) closed or failed. With `code`, the
    /// connection is still open and is closed with that WebSocket close code.
    func websocketClosed(_ channel: Channel, reason: DisconnectReason, code: WebSocketErrorCode? = nil, detail: String? = nil) {
        eventLoop.assertInEventLoop()
        if case .probing(let probe, _, _, _) = upgrade, probe === channel {
            probeFailed(channel, closeIt: false)
            if let code { Self.closeWebSocket(channel, code: code) }
            return
        }
        guard case .websocket(let current) = transport, current === channel, !isClosed else {
            if let code { Self.closeWebSocket(channel, code: code) }
            return
        }
        close(reason: reason, detail: detail, webSocketCode: code)
    }

    /// Sends a close frame (with `code`, or with no status when nil) and closes the connection.
    static func closeWebSocket(_ channel: Channel, code: WebSocketErrorCode?) {
        var data = channel.allocator.buffer(capacity: 2)
        if let code { data.write(webSocketErrorCode: code) }
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)).whenComplete { _ in
            // Only the output is closed at first: closing a socket whose input still holds the client's unread
            // frames (a flood, a message too large) resets the connection, and the client loses the close frame
            // and its code. What the client still sends is read and dropped until it closes, for a moment at most.
            channel.close(mode: .output).whenComplete { result in
                guard case .success = result else { return channel.close(promise: nil) }
                channel.eventLoop.scheduleTask(in: closeLinger) { channel.close(promise: nil) }
            }
        }
    }

    /// How long a WebSocket closed by the server waits for the client to close its side.
    static let closeLinger = TimeAmount.seconds(2)

    // MARK: Heartbeat

    /// The timers hold the session strongly until they fire or are cancelled (`close` cancels
    /// them): a weak reference would give the session a side table, which makes every retain and
    /// release of it, once per recipient of every broadcast, take the slow path.
    private func armHeartbeat() {
        guard let deadline = heartbeat.nextDeadline else { return }
        heartbeatTimer = timers.schedule(deadline: deadline) { [self] in
            heartbeatTimerFired()
        }
    }

    private func heartbeatTimerFired() {
        guard !isClosed else { return }
        switch heartbeat.timerFired(now: eventLoop.now) {
        case .sendPing:
            send(Self.pingPacket)
            armHeartbeat()
        case .rearm:
            armHeartbeat()
        case .timeout:
            close(reason: .pingTimeout)
        case .none:
            break
        }
    }

    private static let pingPacket = EngineOutboundPacket.text(ByteBuffer(integer: EnginePacketType.ping.rawValue))

    // MARK: Close

    /// Ends the session: the transport is closed, the reason logged and the delegate told why.
    public func close(reason: DisconnectReason, detail: String? = nil) {
        close(reason: reason, detail: detail, webSocketCode: nil)
    }

    private func close(reason: DisconnectReason, detail: String?, webSocketCode: WebSocketErrorCode?) {
        eventLoop.assertInEventLoop()
        guard !isClosed else { return }
        closeReason = reason
        transportMetrics.connections.decrement()
        metrics.disconnected(reason)
        heartbeat.stop()
        heartbeatTimer?.cancel()
        heartbeatTimer = nil
        if case .probing(let probe, let timeout, _, _) = upgrade {
            timeout.cancel()
            probe.close(promise: nil)
        }
        var forgetNow = true
        switch transport {
        case .websocket(let channel):
            let code: WebSocketErrorCode
            switch reason {
            case .payloadTooLarge: code = webSocketCode ?? .messageTooLarge
            case .parseError, .invalidPacket: code = webSocketCode ?? .protocolError
            case .serverShutdown: code = webSocketCode ?? .goingAway
            case .packetRate: code = webSocketCode ?? .policyViolation
            default: code = webSocketCode ?? .normalClosure
            }
            if reason != .transportClose { Self.closeWebSocket(channel, code: code) }
            pollQueue.removeAll()
        case .polling:
            // A client that sent `1` is answered with a noop; otherwise the client learns of the
            // close from a close packet, now or at its next GET.
            let farewell = reason == .clientClose ? Self.noopPacket : Self.closePacket
            if reason == .slowConsumer { pollQueue.removeAll() }
            if let poll = pendingPoll {
                pendingPoll = nil
                if reason == .clientClose { pollQueue.removeAll() }
                pollQueue.append(farewell)
                poll.succeed(drainPollQueue())
            } else if Self.lingersForNextPoll(reason) {
                pollQueue.append(farewell)
                forgetNow = false
                lingering = timers.schedule(in: configuration.pingTimeout) { [self] in
                    self.lingering = nil
                    self.pollQueue.removeAll()
                    self.onClose(self)
                }
            }
            if forgetNow { pollQueue.removeAll() }
        }
        pollQueueBytes = 0
        var metadata: Logger.Metadata = ["reason": "\(reason)"]
        if let detail { metadata["detail"] = "\(detail)" }
        switch reason {
        case .clientClose, .transportClose:
            logger.debug("session closed", metadata: metadata)
        default:
            logger.info("session closed", metadata: metadata)
        }
        if forgetNow { onClose(self) }
        let delegate = self.delegate
        self.delegate = nil
        delegate?.engineSessionDidClose(self, reason: reason)
    }

    /// Closes the client did not cause by misbehaving on this transport: a client still polling
    /// should learn of them from a close packet rather than an unknown-session error.
    private static func lingersForNextPoll(_ reason: DisconnectReason) -> Bool {
        switch reason {
        case .serverDisconnect, .serverShutdown, .connectTimeout, .invalidPacket, .slowConsumer, .eventBacklog,
            .connectionsPerUser:
            return true
        default: return false
        }
    }

    private static let closePacket = EngineOutboundPacket.text(ByteBuffer(integer: EnginePacketType.close.rawValue))
    private static let noopPacket = EngineOutboundPacket.text(ByteBuffer(integer: EnginePacketType.noop.rawValue))
}

/// What the opening request carried, for the application (auth headers, query, peer address).
public struct EngineHandshakeInfo: Sendable {
    public var query: [String: String]
    public var headers: HTTPHeadersSnapshot
    public var remoteAddress: SocketAddress?
    /// The client's address: the peer's, or the one trusted proxies forwarded (see `ClientAddress`).
    public var clientAddress: String

    public init(
        query: [String: String],
        headers: HTTPHeadersSnapshot,
        remoteAddress: SocketAddress?,
        clientAddress: String? = nil
    ) {
        self.query = query
        self.headers = headers
        self.remoteAddress = remoteAddress
        self.clientAddress =
            clientAddress ?? ClientAddress.resolve(peer: remoteAddress, forwardedFor: [], trustedProxies: [])
    }
}

/// The few request headers the layers above may want, copied once at handshake.
public struct HTTPHeadersSnapshot: Sendable {
    public var origin: String?
    public var authorization: String?
    public var cookie: String?
    public var userAgent: String?

    public init(origin: String? = nil, authorization: String? = nil, cookie: String? = nil, userAgent: String? = nil) {
        self.origin = origin
        self.authorization = authorization
        self.cookie = cookie
        self.userAgent = userAgent
    }
}

extension TimeAmount {
    var milliseconds: Int64 { nanoseconds / 1_000_000 }
}
