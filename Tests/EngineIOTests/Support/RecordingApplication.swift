import EngineIOTestSupport
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import EngineIO

/// An `EngineApplication` that records sessions, messages and close reasons; optionally echoes.
final class RecordingApplication: EngineApplication {
    struct State {
        var sessions: [EngineSession] = []
        var messages: [(sid: String, message: EngineMessage)] = []
        var closes: [(sid: String, reason: DisconnectReason)] = []
    }

    let echo: Bool
    private let state = Mutex(State())

    init(echo: Bool = false) {
        self.echo = echo
    }

    func sessionOpened(_ session: EngineSession) {
        state.withLock { $0.sessions.append(session) }
        session.setDelegate(RecordingDelegate(application: self))
    }

    var sessions: [EngineSession] { state.withLock { $0.sessions } }
    var messages: [EngineMessage] { state.withLock { $0.messages.map(\.message) } }
    var closeReasons: [DisconnectReason] { state.withLock { $0.closes.map(\.reason) } }

    func session(_ sid: String) -> EngineSession? {
        state.withLock { $0.sessions.first(where: { $0.id == sid }) }
    }

    fileprivate func received(_ message: EngineMessage, on session: EngineSession) {
        state.withLock { $0.messages.append((session.id, message)) }
        if echo { session.sendMessage(message) }
    }

    fileprivate func closed(_ session: EngineSession, reason: DisconnectReason) {
        state.withLock { $0.closes.append((session.id, reason)) }
    }
}

private final class RecordingDelegate: EngineSessionDelegate {
    let application: RecordingApplication

    init(application: RecordingApplication) {
        self.application = application
    }

    func engineSession(_ session: EngineSession, didReceive message: EngineMessage) {
        application.received(message, on: session)
    }

    func engineSessionDidClose(_ session: EngineSession, reason: DisconnectReason) {
        application.closed(session, reason: reason)
    }
}

/// One Engine.IO endpoint on one `EmbeddedEventLoop`, and connections to it.
final class EngineHarness {
    let loop = EmbeddedEventLoop()
    let application: RecordingApplication
    let server: EngineServer
    let router: EngineRouter
    private var connections: [TestConnection] = []

    init(
        configuration: EngineConfiguration = EngineConfiguration(),
        echo: Bool = false,
        metrics: EngineMetrics = EngineMetrics(),
        requestHeadTimeout: TimeAmount = .hours(1)
    ) {
        self.application = RecordingApplication(echo: echo)
        self.server = EngineServer(
            configuration: configuration,
            application: application,
            logger: silentLogger,
            metrics: metrics
        )
        self.router = EngineRouter(server, requestHeadTimeout: requestHeadTimeout)
    }

    /// A new connection on the shared loop.
    func connect(from peer: String = "127.0.0.1") throws -> TestConnection {
        let connection = try TestConnection(loop: loop, router: router, peer: peer)
        connections.append(connection)
        return connection
    }

    /// Opens a polling session and returns its id and the open packet's text.
    func handshake(headers: [String] = []) throws -> (sid: String, open: RawHTTPResponse) {
        let connection = try connect()
        try connection.get(Target.handshake, headers: headers)
        let response = try connection.expectResponse()
        let sid = try requireSIDHelper(response.bodyString)
        return (sid, response)
    }

    /// A WebSocket connection that passed the upgrade as `sid`'s probe.
    func probe(_ sid: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> TestConnection {
        let probe = try connect()
        try probe.upgrade(Target.websocket(sid))
        #expect(try probe.expectResponse().status == 101, sourceLocation: sourceLocation)
        return probe
    }

    /// A polling session upgraded through a probe (`2probe`, `3probe`, `5`): its id, the session
    /// and the WebSocket that now carries it.
    func upgradedSession(
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> (sid: String, session: EngineSession, websocket: TestConnection) {
        let (sid, _) = try handshake()
        let session = try #require(application.session(sid), sourceLocation: sourceLocation)
        let probe = try probe(sid, sourceLocation: sourceLocation)
        try probe.sendText("2probe")
        #expect(
            try probe.readFrames() == [RawWebSocketFrame(fin: true, opcode: 0x1, payload: Array("3probe".utf8))],
            sourceLocation: sourceLocation
        )
        try probe.sendText("5")
        return (sid, session, probe)
    }

    func finish() {
        for connection in connections { connection.close() }
        connections.removeAll()
        try? loop.syncShutdownGracefully()
    }

    deinit {
        finish()
    }
}
