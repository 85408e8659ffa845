import Logging
import NIOConcurrencyHelpers
import NIOCore
import Redis
import SocketIO

/// How the bridge hears emits to single rooms, which Open WebUI (0.11.5 on) publishes on `<channel>#<ns>#<room>`.
public enum PythonBridgeRoomChannels: String, Sendable, CaseIterable {
    /// `PSUBSCRIBE <channel>#*`: one subscription, every room's emits decoded on every node.
    case pattern
    /// `SUBSCRIBE <channel>#<ns>#<room>` for each room (socket ids included) with a member on this node, as
    /// python-socketio 5.16's room channels do: the node hears only its own rooms, and a Redis user without
    /// PSUBSCRIBE (Open WebUI 0.12.3's suggested ACL, `&socketio &socketio#*`) works.
    case perRoom = "per-room"
    /// `pattern`, unless Redis refuses PSUBSCRIBE (`NOPERM`): then `per-room`.
    case auto
}

/// Settings of the python-socketio bridge. Every field documents its default.
public struct PythonBridgeConfiguration: Sendable {
    /// Base channel (python-socketio's `channel`). Default "socketio".
    public var channel: String
    /// Default `auto`.
    public var roomChannels: PythonBridgeRoomChannels = .auto
    /// This node's host_id in the protocol (e.g. "switchboard-<nodeID>"); messages with this host_id are ignored.
    public var hostID: String
    /// How long a client may take to ack an emit that carries a callback. Python's callers wait up to 240 s (input
    /// requests, tool confirmations) or without any limit, and they do not say which, so the answer is awaited for
    /// as long as the socket lives. Default 24 h: only a bound on what an answer that never comes can hold.
    public var ackTimeout: TimeAmount

    public static let defaultAckTimeout: TimeAmount = .hours(24)

    public init(channel: String = "socketio", hostID: String, ackTimeout: TimeAmount = Self.defaultAckTimeout) {
        self.channel = channel
        self.hostID = hostID
        self.ackTimeout = ackTimeout
    }

    /// Open WebUI (0.11.5 on) publishes single-room emits on `<channel>#<namespace>#<room>`.
    var pattern: String { channel + "#*" }

    func roomChannel(namespace: String, room: String) -> String { channel + "#" + namespace + "#" + room }
}

/// Lets python-socketio servers and write-only managers (`AsyncRedisManager`) drive this node's sockets over
/// Redis pub/sub, as they drive python-socketio servers: emits (with calls answered), disconnects and rooms.
///
/// Every node receives every message and acts on its own sockets only. Messages arrive on the subscriber's
/// event loop; decoding happens there and delivery is handed to the namespace's adapter, which hops per loop.
public final class PythonSocketIOBridge: Sendable {
    public let configuration: PythonBridgeConfiguration
    private let subscriber: RedisSubscriber
    private let logger: Logger
    private let rooms: RoomChannelState

    /// - Parameters:
    ///   - publisher: the node's shared command connection; the answers to calls are published with it.
    ///   - localAdapter: the node-local adapter of a namespace, or nil if the namespace does not exist.
    ///   - onStateChange: called on `eventLoop` after each change of the subscriber's state; it turns
    ///     `connected` once the subscriptions are in place (for readiness).
    ///   - metrics, redisMetrics: the bridge's and its subscriber connection's instruments, by default made
    ///     from the bootstrapped factory.
    public init(
        configuration: PythonBridgeConfiguration,
        redis: RedisConfiguration,
        publisher: RedisClient,
        eventLoop: EventLoop,
        logger: Logger,
        localAdapter: @escaping @Sendable (String) -> InMemoryAdapter?,
        onStateChange: (@Sendable (RedisConnectionState) -> Void)? = nil,
        observeEmit: PythonBridgeEmitObserver? = nil,
        metrics: ClusterMetrics = ClusterMetrics(),
        redisMetrics: RedisMetrics = RedisMetrics()
    ) throws {
        var logger = logger
        logger[metadataKey: "python_bridge.channel"] = "\(configuration.channel)"
        self.configuration = configuration
        self.logger = logger
        let channel = configuration.channel
        let publishLogger = logger
        let handler = PythonBridgeHandler(
            hostID: configuration.hostID,
            ackTimeout: configuration.ackTimeout,
            logger: logger,
            metrics: metrics,
            localAdapter: localAdapter,
            observeEmit: observeEmit,
            publish: { payload in
                publisher.send("PUBLISH", channel, payload).whenComplete { result in
                    do {
                        _ = try result.get().throwingServerError()
                    } catch {
                        // The caller's own timeout covers the lost answer.
                        publishLogger.warning("could not publish a call's answer", metadata: ["error": "\(error)"])
                    }
                }
            }
        )
        let rooms = RoomChannelState(configuration: configuration, logger: logger)
        self.rooms = rooms
        self.subscriber = try RedisSubscriber(
            configuration: redis,
            eventLoop: eventLoop,
            logger: logger,
            metrics: redisMetrics,
            onStateChange: { state in
                if state == .connected { rooms.connected() }
                onStateChange?(state)
            },
            onMessage: { message in handler.handle(payload: message.payload) }
        )
        rooms.subscriber.withLockedValue { $0 = self.subscriber }
    }

    /// The subscriber connection's state; `connected` once the subscriptions are in place.
    public var state: RedisConnectionState { subscriber.state }

    /// Connects and subscribes. Succeeds at once when Redis is not reachable yet: the subscriptions are made on
    /// connect and again after every reconnect. Fails only if Redis refuses them (e.g. `NOPERM`).
    public func start() -> EventLoopFuture<Void> {
        subscriber.start()
        let eventLoop = subscriber.eventLoop
        var subscriptions = [subscriber.subscribe(.channel, [configuration.channel])]
        switch configuration.roomChannels {
        case .pattern: subscriptions.append(subscriber.subscribe(.pattern, [configuration.pattern]))
        case .perRoom: rooms.usePerRoom()
        case .auto: break  // decided on the first connection (`RoomChannelState.connected`)
        }
        return EventLoopFuture.andAllSucceed(subscriptions, on: eventLoop).flatMapError { error in
            if let error = error as? RedisError, !error.code.isServerError {
                return eventLoop.makeSucceededVoidFuture()
            }
            return eventLoop.makeFailedFuture(error)
        }
    }

    /// Whether room emits are heard through one subscription per local room.
    public var subscribesPerRoom: Bool { rooms.perRoom }

    /// A room got its first member on this node (`occupied`) or lost its last; a socket id counts as a room.
    public func localRoomChanged(namespace: String, room: String, occupied: Bool) {
        rooms.changed(configuration.roomChannel(namespace: namespace, room: room), occupied: occupied)
    }

    public func stop() async {
        await subscriber.shutdown()
    }
}

/// Sees each emit a backend publishes (event, arguments, target rooms; nil rooms is everyone), after it was delivered
/// here: the application's hook for what the backend goes on to do only inside its own process.
public typealias PythonBridgeEmitObserver = @Sendable (_ event: String, _ args: [JSONValue], _ rooms: Set<String>?) -> Void

/// Carries out bridge messages on this node's own sockets; publishes the answers to calls with `publish`.
package struct PythonBridgeHandler: Sendable {
    let hostID: String
    let observeEmit: PythonBridgeEmitObserver?
    let ackTimeout: TimeAmount
    let logger: Logger
    let metrics: ClusterMetrics
    let localAdapter: @Sendable (String) -> InMemoryAdapter?
    let publish: @Sendable (ByteBuffer) -> Void

    package init(
        hostID: String,
        ackTimeout: TimeAmount,
        logger: Logger,
        metrics: ClusterMetrics = ClusterMetrics(),
        localAdapter: @escaping @Sendable (String) -> InMemoryAdapter?,
        observeEmit: PythonBridgeEmitObserver? = nil,
        publish: @escaping @Sendable (ByteBuffer) -> Void
    ) {
        self.hostID = hostID
        self.observeEmit = observeEmit
        self.ackTimeout = ackTimeout
        self.logger = logger
        self.metrics = metrics
        self.localAdapter = localAdapter
        self.publish = publish
    }

    /// Decodes and carries out one payload; anything undecodable is logged with its reason and ignored.
    package func handle(payload: ByteBuffer) {
        let message: PythonBridgeMessage
        do throws(PythonBridgeDecodingError) {
            message = try PythonBridgeMessage.decode(payload)
        } catch let error where error.isUnknownMethod {
            metrics.bridgeUnknownMethod.increment()
            logger.debug("ignoring python-socketio message of an unknown method")
            return
        } catch {
            metrics.bridgeMalformed.increment()
            logger.warning("ignoring malformed python-socketio message", metadata: ["reason": "\(error)"])
            return
        }
        handle(message)
    }

    package func handle(_ message: PythonBridgeMessage) {
        if message.hostID != hostID { metrics.bridgeMessage(message.action) }
        if case .callback = message.action {
            logger.debug("ignoring python-socketio callback: this node never makes python-style calls")
            return
        }
        guard message.hostID != hostID else { return }
        switch message.action {
        case .emit(let emit):
            self.emit(emit, originHostID: message.hostID)
            observeEmit?(emit.event, emit.args, emit.rooms)
        case .disconnect(let sid, let namespace):
            forLocalSocket(sid, namespace: namespace) { $0.disconnect() }
        case .enterRoom(let sid, let namespace, let room):
            forLocalSocket(sid, namespace: namespace) { $0.join(room) }
        case .leaveRoom(let sid, let namespace, let room):
            forLocalSocket(sid, namespace: namespace) { $0.leave(room) }
        case .closeRoom(let room, let namespace):
            adapter(namespace)?.removeSockets(matching: BroadcastOptions(rooms: [room]), from: [room])
        case .callback:
            break
        }
    }

    private func adapter(_ namespace: String) -> InMemoryAdapter? {
        guard let adapter = localAdapter(namespace) else {
            logger.debug(
                "ignoring python-socketio message for an unknown namespace",
                metadata: ["namespace": "\(namespace)"]
            )
            return nil
        }
        return adapter
    }

    /// Runs `body` on the socket's loop if the socket with this sid is here.
    private func forLocalSocket(_ sid: String, namespace: String, _ body: @escaping @Sendable (Socket) -> Void) {
        // A sid is a room with one member; the id check skips members of a room that happens to share its name.
        adapter(namespace)?.forEachSocket(matching: BroadcastOptions(rooms: [sid])) { socket in
            if socket.id == sid { body(socket) }
        }
    }

    private func emit(_ emit: PythonBridgeEmit, originHostID: String?) {
        guard let local = adapter(emit.namespace) else { return }
        // python-socketio reaches nobody with an empty room list, where empty `rooms` here means everyone.
        if let rooms = emit.rooms, rooms.isEmpty { return }
        let options = BroadcastOptions(rooms: emit.rooms ?? [], except: emit.skipSIDs)
        guard let callback = emit.callback else {
            let packet = SocketIOPacketCodec.event(emit.event, emit.args, namespace: emit.namespace)
            local.broadcast(packet, options: options)
            return
        }
        // One packet and ack id for every recipient (from the broadcast range, so no socket's own ids collide); each
        // answer goes back to the origin on its own, as python-socketio's do. A timeout or disconnect sends nothing:
        // the origin's own timeout covers it.
        let ackID = BroadcastAckIDs.next()
        let packet = SocketIOPacketCodec.event(emit.event, emit.args, namespace: emit.namespace, ackID: ackID)
        local.forEachSocket(matching: options) { [self] socket in
            guard socket.isConnected else { return }
            socket.expectAck(id: ackID, timeout: ackTimeout) { result in
                guard case .success(let answer) = result else { return }
                answerCall(callback, originHostID: originHostID, with: answer)
            }
            socket.deliver(packet)
        }
    }

    private func answerCall(_ callback: PythonBridgeEmit.Callback, originHostID: String?, with answer: [JSONValue]) {
        // python-socketio cannot publish binary answers either (its JSON encoder rejects bytes).
        guard !answer.contains(where: \.containsBinary) else {
            logger.warning("dropping a call's answer with binary arguments: the python protocol cannot carry them")
            return
        }
        publish(PythonBridgeMessage.callbackReply(originHostID: originHostID, callback: callback, args: answer))
    }
}

/// The room channels this node's sockets call for, subscribed one by one in per-room mode. In `auto` mode the
/// first connection decides: PSUBSCRIBE is tried on the live connection (a refused subscription there fails
/// alone; one refused while restoring would fail every reconnect), and a `NOPERM` turns per-room on.
final class RoomChannelState: Sendable {
    private struct State {
        var names: Set<String> = []
        var perRoom = false
        var decided = false
        /// False once the pattern is in place: then nothing is tracked per room or socket.
        var tracking = true
    }

    private let state = NIOLockedValueBox(State())
    let subscriber = NIOLockedValueBox<RedisSubscriber?>(nil)
    private let configuration: PythonBridgeConfiguration
    private let logger: Logger

    init(configuration: PythonBridgeConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        if configuration.roomChannels != .auto {
            state.withLockedValue {
                $0.decided = true
                $0.tracking = configuration.roomChannels == .perRoom
            }
        }
    }

    var perRoom: Bool { state.withLockedValue { $0.perRoom } }

    func changed(_ name: String, occupied: Bool) {
        let perRoom = state.withLockedValue { state -> Bool in
            guard state.tracking else { return false }
            if occupied { state.names.insert(name) } else { state.names.remove(name) }
            return state.perRoom
        }
        guard perRoom, let subscriber = subscriber.withLockedValue({ $0 }) else { return }
        let change = occupied ? subscriber.subscribe(.channel, [name]) : subscriber.unsubscribe(.channel, [name])
        change.whenFailure { error in
            // While disconnected the subscriber keeps the change and makes it on reconnect.
            guard let error = error as? RedisError, error.code.isServerError else { return }
            self.logger.warning("room channel not subscribed", metadata: ["reason": "\(error)", "channel": "\(name)"])
        }
    }

    /// Subscribes every local room's channel from now on.
    func usePerRoom() {
        let names = state.withLockedValue { state -> [String] in
            state.perRoom = true
            state.decided = true
            return Array(state.names)
        }
        guard !names.isEmpty, let subscriber = subscriber.withLockedValue({ $0 }) else { return }
        subscriber.subscribe(.channel, names).whenFailure { error in
            self.logger.warning("room channels not subscribed", metadata: ["reason": "\(error)"])
        }
    }

    /// The subscriber is connected: in `auto` mode, the first time, try the pattern.
    func connected() {
        let undecided = state.withLockedValue { state -> Bool in
            defer { state.decided = true }
            return !state.decided
        }
        guard undecided, let subscriber = subscriber.withLockedValue({ $0 }) else { return }
        let pattern = configuration.pattern
        subscriber.subscribe(.pattern, [pattern]).whenComplete { result in
            switch result {
            case .success:
                self.state.withLockedValue {
                    $0.tracking = false
                    $0.names = []
                }
                self.logger.debug("room emits heard through the pattern", metadata: ["pattern": "\(pattern)"])
            case .failure(let error as RedisError) where error.code == .noperm:
                self.logger.notice(
                    "Redis refused PSUBSCRIBE; subscribing per room instead",
                    metadata: ["reason": "\(error)", "pattern": "\(pattern)"]
                )
                // Forgotten at once (the reply to PUNSUBSCRIBE, refused too, does not matter).
                subscriber.unsubscribe(.pattern, [pattern]).whenComplete { _ in }
                self.usePerRoom()
            case .failure(let error):
                // Lost the connection meanwhile. Not left to the restore (a refusal there fails every reconnect):
                // forgotten, and tried again on the next connection.
                self.logger.warning("pattern subscription not confirmed", metadata: ["reason": "\(error)"])
                subscriber.unsubscribe(.pattern, [pattern]).whenComplete { _ in }
                self.state.withLockedValue { $0.decided = false }
            }
        }
    }
}
