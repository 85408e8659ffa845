import CoreMetrics
import EngineIO
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Socket.IO server settings.
public struct SocketIOConfiguration: Sendable {
    /// A client that connects to no namespace within this time is closed. Default 45 s.
    public var connectTimeout: TimeAmount
    /// Default wait for a client's ack to a server emit. Default 60 s.
    public var ackTimeout: TimeAmount
    /// Most binary attachments one packet may announce. Default 64.
    public var maxAttachments: Int
    /// Deepest JSON nesting accepted from clients. Default 64.
    public var maxJSONDepth: Int
    /// Most packets buffered for a socket while its connect handler runs. Default 64.
    public var maxPendingPackets: Int
    /// Prefix of every socket id this node issues, so a sid names its node. Default none.
    public var sidPrefix: String

    public init(
        connectTimeout: TimeAmount = .seconds(45),
        ackTimeout: TimeAmount = .seconds(60),
        maxAttachments: Int = 64,
        maxJSONDepth: Int = JSONParser.defaultMaxDepth,
        maxPendingPackets: Int = 64,
        sidPrefix: String = ""
    ) {
        self.connectTimeout = connectTimeout
        self.ackTimeout = ackTimeout
        self.maxAttachments = maxAttachments
        self.maxJSONDepth = maxJSONDepth
        self.maxPendingPackets = maxPendingPackets
        self.sidPrefix = sidPrefix
    }
}

/// Why a namespace CONNECT was refused; sent to the client as CONNECT_ERROR.
public struct ConnectionRefused: Error, Sendable {
    public var message: String
    public var data: JSONValue?

    public init(message: String, data: JSONValue? = nil) {
        self.message = message
        self.data = data
    }

    var payload: JSONValue {
        var members: [(key: String, value: JSONValue)] = [(key: "message", value: .string(message))]
        if let data { members.append((key: "data", value: data)) }
        return .object(members)
    }
}

/// A CONNECT the server cannot decide on now (the service that decides is busy or down). The transport is closed
/// with `reason` instead of answering CONNECT_ERROR, which Socket.IO clients take as final: they reconnect after
/// their backoff and try again.
public struct ConnectionDeferred: Error, Sendable {
    public var reason: DisconnectReason
    public var detail: String

    public init(reason: DisconnectReason, detail: String) {
        self.reason = reason
        self.detail = detail
    }
}

/// Answers a client's event that asked for an ack. Call at most once, on the socket's loop.
public struct AckResponder: Sendable {
    let socket: Socket
    let id: Int

    public func callAsFunction(_ args: [JSONValue] = []) {
        socket.sendAck(id: id, args: args)
    }
}

/// What a namespace does. Handlers run on the socket's event loop, in the order packets arrive.
public struct NamespaceHandlers: Sendable {
    public typealias Authorize = @Sendable (Socket, JSONValue?) -> EventLoopFuture<Void>
    public typealias Connected = @Sendable (Socket, JSONValue?) -> Void
    public typealias Event = @Sendable (Socket, [JSONValue], AckResponder?) -> Void
    public typealias Unhandled = @Sendable (Socket, String, [JSONValue], AckResponder?) -> Void
    public typealias Disconnected = @Sendable (Socket, DisconnectReason) -> Void

    /// Decides on a CONNECT before it is acknowledged; fail with `ConnectionRefused` to refuse, or with
    /// `ConnectionDeferred` to close the transport so that the client tries again later.
    public var authorize: Authorize?
    /// After the CONNECT is acknowledged.
    public var connected: Connected?
    public var events: [String: Event] = [:]
    /// Events with no handler of their own.
    public var unhandled: Unhandled?
    public var disconnected: Disconnected?

    public init() {}

    public mutating func on(_ event: String, _ handler: @escaping Event) {
        events[event] = handler
    }
}

/// A Socket.IO namespace: its handlers and its adapter (rooms and broadcasts).
public final class Namespace: Sendable {
    public let name: String
    public let handlers: NamespaceHandlers
    public let adapter: SocketIOAdapter
    let metrics: SocketIOMetrics
    /// Connected sockets of this namespace on this node.
    let sockets: Meter

    init(name: String, handlers: NamespaceHandlers, adapter: SocketIOAdapter, metrics: SocketIOMetrics) {
        self.name = name
        self.handlers = handlers
        self.adapter = adapter
        self.metrics = metrics
        self.sockets = metrics.sockets(namespace: name)
    }

    /// Emits to every socket in `rooms` (all sockets when empty), except those in `except`
    /// (rooms or sids). The packet is encoded once for every recipient.
    public func emit(_ event: String, _ args: [JSONValue], to rooms: Set<String> = [], except: Set<String> = []) {
        broadcast(SocketIOPacketCodec.event(event, args, namespace: name), to: rooms, except: except)
    }

    public func broadcast(_ packet: EncodedPacket, to rooms: Set<String> = [], except: Set<String> = []) {
        adapter.broadcast(packet, options: BroadcastOptions(rooms: rooms, except: except))
    }

    /// Makes every member of `room` leave it, wherever they are (python-socketio's `close_room`).
    public func closeRoom(_ room: String) {
        adapter.removeSockets(matching: BroadcastOptions(rooms: [room]), from: [room])
    }

    /// Emits and collects every recipient's ack (across the cluster with a cluster adapter).
    public func emit(
        _ event: String,
        _ args: [JSONValue],
        to rooms: Set<String> = [],
        except: Set<String> = [],
        ackTimeout: TimeAmount,
        completion: @escaping @Sendable (BroadcastAckResult) -> Void
    ) {
        let ackID = BroadcastAckIDs.next()
        let packet = SocketIOPacketCodec.event(event, args, namespace: name, ackID: ackID)
        adapter.broadcast(
            packet,
            options: BroadcastOptions(rooms: rooms, except: except),
            ackID: ackID,
            timeout: ackTimeout,
            completion: completion
        )
    }
}

/// The Socket.IO server: the namespaces, and the Engine.IO application that feeds them.
public final class SocketIOServer: EngineApplication {
    public let configuration: SocketIOConfiguration
    let logger: Logger
    let metrics: SocketIOMetrics
    private let namespaces: NIOLockedValueBox<[String: Namespace]> = .init([:])
    private let adapterFactory: @Sendable (String) -> SocketIOAdapter

    /// `adapterFactory` makes the adapter of each namespace (in-memory or cluster); `metrics` are
    /// the sockets' and events' instruments, by default made from the bootstrapped factory.
    public init(
        configuration: SocketIOConfiguration,
        logger: Logger,
        metrics: SocketIOMetrics = SocketIOMetrics(),
        adapterFactory: @escaping @Sendable (String) -> SocketIOAdapter
    ) {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.adapterFactory = adapterFactory
    }

    /// Registers a namespace. Do this before serving.
    @discardableResult
    public func addNamespace(_ name: String, handlers: NamespaceHandlers) -> Namespace {
        let namespace = Namespace(name: name, handlers: handlers, adapter: adapterFactory(name), metrics: metrics)
        namespaces.withLockedValue { $0[name] = namespace }
        return namespace
    }

    public func namespace(_ name: String) -> Namespace? {
        namespaces.withLockedValue { $0[name] }
    }

    public func sessionOpened(_ session: EngineSession) {
        let client = SocketIOClient(server: self, session: session)
        session.setDelegate(client)
        client.start()
    }
}
