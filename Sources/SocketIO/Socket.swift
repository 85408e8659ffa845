import EngineIO
import Logging
import NIOCore

/// Why a server→client ack did not arrive.
public struct AckError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Code: Sendable { case timeout, disconnected }
    private let code: Code

    public static let timeout = AckError(code: .timeout)
    public static let disconnected = AckError(code: .disconnected)

    public var description: String {
        switch code {
        case .timeout: return "ack timed out"
        case .disconnected: return "socket disconnected before acking"
        }
    }
}

/// A received packet with its binary attachments.
struct InboundPacket {
    var packet: SocketIOPacket
    var attachments: [ByteBuffer]
}

/// One client's connection to one namespace.
///
/// A socket lives on its session's event loop; call its methods there.
public final class Socket: @unchecked Sendable, Hashable {
    // @unchecked Sendable: mutable state is confined to `eventLoop`; other loops only hold
    // references (in room shards of the same loop, or to hop back here).

    public typealias AckCallback = @Sendable (Result<[JSONValue], AckError>) -> Void

    public let id: String
    public let namespace: Namespace
    let client: SocketIOClient
    public var eventLoop: EventLoop { client.session.eventLoop }
    /// The Engine.IO session this socket rides on.
    public var session: EngineSession { client.session }
    /// Rooms joined, besides the socket's own id.
    public private(set) var rooms: Set<String> = []
    /// Application state attached to the socket (e.g. the authenticated user).
    public var userData: (any Sendable)?

    enum State {
        case connecting(buffered: [InboundPacket])
        case connected
        case disconnected
    }

    var state: State = .connecting(buffered: [])
    private var nextAckID = 0
    private var pendingAcks: [Int: (callback: AckCallback, timer: LoopTimers.Timer)] = [:]

    init(id: String, namespace: Namespace, client: SocketIOClient) {
        self.id = id
        self.namespace = namespace
        self.client = client
    }

    public static func == (lhs: Socket, rhs: Socket) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    public var isConnected: Bool {
        if case .connected = state { return true }
        return false
    }

    // MARK: Emitting

    public func emit(_ event: String, _ args: [JSONValue] = []) {
        deliver(SocketIOPacketCodec.event(event, args, namespace: namespace.name))
    }

    /// Emits and waits for the client's ack, at most `timeout` (default: the server's ackTimeout).
    public func emit(
        _ event: String,
        _ args: [JSONValue],
        ackTimeout timeout: TimeAmount? = nil,
        callback: @escaping AckCallback
    ) {
        eventLoop.assertInEventLoop()
        guard isConnected else {
            callback(.failure(.disconnected))
            return
        }
        let id = nextAckID
        nextAckID += 1
        // Held strongly until answered, timed out or failed on disconnect (no weak reference: see
        // `EngineSession.armHeartbeat`).
        let timer = session.timers.schedule(in: timeout ?? client.server.configuration.ackTimeout) { [self] in
            ackTimedOut(id: id)
        }
        pendingAcks[id] = (callback, timer)
        deliver(SocketIOPacketCodec.event(event, args, namespace: namespace.name, ackID: id))
    }

    /// Waits for the client's ack `id` of a packet the caller delivers (broadcasts with acks).
    public func expectAck(id: Int, timeout: TimeAmount, callback: @escaping AckCallback) {
        eventLoop.assertInEventLoop()
        guard isConnected else {
            callback(.failure(.disconnected))
            return
        }
        let timer = session.timers.schedule(in: timeout) { [self] in
            ackTimedOut(id: id)
        }
        pendingAcks[id] = (callback, timer)
    }

    private func ackTimedOut(id: Int) {
        guard let pending = pendingAcks.removeValue(forKey: id) else { return }
        namespace.metrics.ackTimeouts.increment()
        pending.callback(.failure(.timeout))
    }

    /// Writes an already-encoded event packet to this socket's client.
    public func deliver(_ packet: EncodedPacket) {
        if write(packet) { namespace.metrics.eventsSent.increment() }
    }

    /// Writes a packet without counting it as an event sent: control packets, and broadcasts, which
    /// count their recipients once per loop. Returns false if the socket is not connected.
    @discardableResult
    func write(_ packet: EncodedPacket) -> Bool {
        eventLoop.assertInEventLoop()
        guard isConnected else { return false }
        let session = client.session
        session.send(.text(packet.text))
        for attachment in packet.attachments {
            session.send(.binary(attachment))
        }
        return true
    }

    /// Writes a broadcast's packets, encoded and framed once for every recipient. Returns false if
    /// the socket is not connected; a session left waiting for a flush goes to `flushes`.
    func writeBroadcast(_ packets: EngineBroadcastPackets, flushes: BroadcastFlushQueue) -> Bool {
        eventLoop.assertInEventLoop()
        guard isConnected else { return false }
        let session = client.session
        if session.sendBroadcast(packets) { flushes.append(session) }
        return true
    }

    func sendAck(id: Int, args: [JSONValue]) {
        eventLoop.assertInEventLoop()
        write(SocketIOPacketCodec.encode(.ack, namespace: namespace.name, ackID: id, payload: .array(args)))
    }

    func receiveAck(id: Int, args: [JSONValue]) {
        guard let pending = pendingAcks.removeValue(forKey: id) else {
            // A late ack (after its timeout) is harmless.
            client.session.logger.debug("ack for unknown id", metadata: ["ack.id": "\(id)"])
            return
        }
        pending.timer.cancel()
        pending.callback(.success(args))
    }

    // MARK: Rooms

    public func join(_ room: String) {
        eventLoop.assertInEventLoop()
        guard isConnected, room != id, rooms.insert(room).inserted else { return }
        namespace.adapter.join(self, room: room)
    }

    public func leave(_ room: String) {
        eventLoop.assertInEventLoop()
        guard rooms.remove(room) != nil else { return }
        namespace.adapter.leave(self, room: room)
    }

    public func isIn(_ room: String) -> Bool { room == id || rooms.contains(room) }

    // MARK: Disconnect

    /// Disconnects this socket from its namespace (sends DISCONNECT, after which the stock client does
    /// not reconnect by itself). With `closeClient`, the whole Engine.IO session closes too.
    public func disconnect(reason: DisconnectReason = .serverDisconnect, closeClient: Bool = false) {
        eventLoop.assertInEventLoop()
        guard isConnected else { return }
        client.session.logger.info(
            "socket disconnected",
            metadata: ["reason": "\(reason)", "sid": "\(id)", "namespace": "\(namespace.name)"]
        )
        write(SocketIOPacketCodec.encode(.disconnect, namespace: namespace.name))
        client.removeSocket(self, reason: reason)
        if closeClient {
            client.session.close(reason: reason)
        }
    }

    /// Tears the socket down: leaves every room, fails pending acks, tells the handlers.
    func teardown(reason: DisconnectReason) {
        let wasConnected = isConnected
        state = .disconnected
        guard wasConnected else { return }
        namespace.sockets.decrement()
        namespace.adapter.socketDisconnected(self)
        rooms.removeAll()
        let acks = pendingAcks
        pendingAcks.removeAll()
        for (_, pending) in acks {
            pending.timer.cancel()
            pending.callback(.failure(.disconnected))
        }
        namespace.handlers.disconnected?(self, reason)
    }
}
