import EngineIOTestSupport
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import EngineIO
@testable import SocketIO

/// Records what the Socket.IO handlers and the Engine.IO sessions saw.
final class SocketIORecorder: Sendable {
    struct Event: Sendable {
        var socket: Socket
        var name: String
        var args: [JSONValue]
        var ack: AckResponder?
    }

    struct State {
        var connected: [(socket: Socket, auth: JSONValue?)] = []
        var events: [Event] = []
        var disconnects: [(socket: Socket, reason: DisconnectReason)] = []
        var engineCloses: [(sid: String, reason: DisconnectReason)] = []
        var acks: [Result<[JSONValue], AckError>] = []
    }

    private let state = Mutex(State())

    func connected(_ socket: Socket, auth: JSONValue?) { state.withLock { $0.connected.append((socket, auth)) } }
    func event(_ event: Event) { state.withLock { $0.events.append(event) } }
    func disconnected(_ socket: Socket, _ reason: DisconnectReason) {
        state.withLock { $0.disconnects.append((socket, reason)) }
    }
    func engineClosed(_ sid: String, _ reason: DisconnectReason) {
        state.withLock { $0.engineCloses.append((sid, reason)) }
    }
    func ack(_ result: Result<[JSONValue], AckError>) { state.withLock { $0.acks.append(result) } }

    var sockets: [Socket] { state.withLock { $0.connected.map(\.socket) } }
    var auths: [JSONValue?] { state.withLock { $0.connected.map(\.auth) } }
    var events: [Event] { state.withLock { $0.events } }
    var disconnectReasons: [DisconnectReason] { state.withLock { $0.disconnects.map(\.reason) } }
    var engineCloseReasons: [DisconnectReason] { state.withLock { $0.engineCloses.map(\.reason) } }
    var acks: [Result<[JSONValue], AckError>] { state.withLock { $0.acks } }

    /// The connected socket with this id.
    func socket(_ id: String) -> Socket? { sockets.first(where: { $0.id == id }) }

    /// Handlers that record everything; `echo` acks with the event's arguments.
    func handlers(configure: (inout NamespaceHandlers) -> Void = { _ in }) -> NamespaceHandlers {
        var handlers = NamespaceHandlers()
        handlers.connected = { [self] socket, auth in self.connected(socket, auth: auth) }
        handlers.disconnected = { [self] socket, reason in self.disconnected(socket, reason) }
        handlers.unhandled = { [self] socket, name, args, ack in
            self.event(Event(socket: socket, name: name, args: args, ack: ack))
        }
        handlers.on("echo") { [self] socket, args, ack in
            self.event(Event(socket: socket, name: "echo", args: args, ack: ack))
            if let ack { ack(args) }
        }
        configure(&handlers)
        return handlers
    }
}

/// Feeds sessions to the Socket.IO server and interposes on each session's delegate to record why it closed.
final class ObservingApplication: EngineApplication {
    let server: SocketIOServer
    let recorder: SocketIORecorder

    init(server: SocketIOServer, recorder: SocketIORecorder) {
        self.server = server
        self.recorder = recorder
    }

    func sessionOpened(_ session: EngineSession) {
        server.sessionOpened(session)
        guard let inner = session.delegate else {
            Issue.record("SocketIOServer installed no session delegate")
            return
        }
        session.setDelegate(ObservingDelegate(inner: inner, recorder: recorder))
    }
}

private final class ObservingDelegate: EngineSessionDelegate {
    let inner: EngineSessionDelegate
    let recorder: SocketIORecorder

    init(inner: EngineSessionDelegate, recorder: SocketIORecorder) {
        self.inner = inner
        self.recorder = recorder
    }

    func engineSession(_ session: EngineSession, didReceive message: EngineMessage) {
        inner.engineSession(session, didReceive: message)
    }

    func engineSessionDidClose(_ session: EngineSession, reason: DisconnectReason) {
        recorder.engineClosed(session.id, reason)
        inner.engineSessionDidClose(session, reason: reason)
    }
}

/// A Socket.IO server on one or more `EmbeddedEventLoop`s (one room shard each), reached over polling.
final class SocketIOHarness {
    let loops: [EmbeddedEventLoop]
    let recorder = SocketIORecorder()
    let io: SocketIOServer
    let engine: EngineServer
    let router: EngineRouter
    private var clients: [PollingClient] = []

    init(
        loopCount: Int = 1,
        loopsOverride: [EmbeddedEventLoop]? = nil,
        engineConfiguration: EngineConfiguration = EngineConfiguration(
            pingInterval: .seconds(300),
            pingTimeout: .seconds(300)
        ),
        configuration: SocketIOConfiguration = SocketIOConfiguration(),
        metrics: SocketIOMetrics = SocketIOMetrics(),
        rootHandlers: ((SocketIORecorder) -> NamespaceHandlers)? = nil
    ) {
        let loops = loopsOverride ?? (0..<loopCount).map { _ in EmbeddedEventLoop() }
        self.loops = loops
        self.io = SocketIOServer(configuration: configuration, logger: silentLogger, metrics: metrics) { _ in
            InMemoryAdapter(eventLoops: loops, metrics: metrics)
        }
        io.addNamespace("/", handlers: rootHandlers?(recorder) ?? recorder.handlers())
        self.engine = EngineServer(
            configuration: engineConfiguration,
            application: ObservingApplication(server: io, recorder: recorder),
            logger: silentLogger
        )
        self.router = EngineRouter(engine)
    }

    var root: Namespace { io.namespace("/")! }

    /// Opens an Engine.IO session on `loop` (index into `loops`).
    func client(loop index: Int = 0) throws -> PollingClient {
        let client = try PollingClient(router: router, loop: loops[index])
        clients.append(client)
        return client
    }

    /// Opens a session and connects it to `namespace`; returns the client and its socket.
    func connectedClient(loop index: Int = 0, namespace: String = "/") throws -> (PollingClient, Socket) {
        let client = try self.client(loop: index)
        try client.send(namespace == "/" ? "0" : "0\(namespace),")
        let reply = try #require(try client.receive())
        let socket = try #require(recorder.sockets.last)
        let prefix = namespace == "/" ? "40" : "40\(namespace),"
        #expect(reply == #"\#(prefix){"sid":"\#(socket.id)"}"#)
        return (client, socket)
    }

    /// Runs the loops, then waits for a future they complete.
    func value<T: Sendable>(_ future: EventLoopFuture<T>) throws -> T {
        runAll()
        return try future.wait()
    }

    func runAll() {
        for _ in 0..<3 {
            for loop in loops { loop.run() }
        }
    }

    func advanceTime(by amount: TimeAmount) {
        for loop in loops { loop.advanceTime(by: amount) }
        runAll()
    }

    func finish() {
        for client in clients { client.close() }
        clients.removeAll()
        for loop in loops { try? loop.syncShutdownGracefully() }
    }

    deinit {
        finish()
    }
}
