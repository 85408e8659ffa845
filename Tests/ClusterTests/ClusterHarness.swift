import Logging
import MetricsTestKit
import NIOCore
import NIOEmbedded
import NIOWebSocket
import SocketIO
import XCTest

@testable import Cluster
@testable import EngineIO

/// Several nodes in one process on one `EmbeddedEventLoop` and an in-memory hub: every step is
/// deterministic, and time moves only when the test advances it.
final class ClusterHarness {
    let loop = EmbeddedEventLoop()
    let hub: InMemoryClusterHub
    private(set) var nodes: [TestNode] = []
    let logger = Logger(label: "cluster-test")

    init() {
        let loop = self.loop
        hub = InMemoryClusterHub(now: { loop.now })
    }

    /// Adds a node whose instruments record into its own `TestNode.metrics`.
    @discardableResult
    func addNode(_ id: String, configure: (inout NamespaceHandlers) -> Void = { _ in }) -> TestNode {
        let metrics = TestMetrics()
        let configuration = ClusterConfiguration(
            nodeID: id,
            heartbeatInterval: .seconds(2),
            nodeTTL: .seconds(10),
            requestTimeout: .seconds(3)
        )
        let transport = hub.transport(on: loop)
        let cluster = ClusterNode(
            configuration: configuration,
            transport: transport,
            controlLoop: loop,
            eventLoops: [loop],
            logger: logger,
            metrics: ClusterMetrics(factory: metrics)
        )
        let loop = self.loop
        let socketIOMetrics = SocketIOMetrics(factory: metrics)
        let socketIO = SocketIOServer(
            configuration: SocketIOConfiguration(sidPrefix: id),
            logger: logger,
            metrics: socketIOMetrics
        ) { namespace in
            cluster.makeAdapter(namespace: namespace, eventLoops: [loop], metrics: socketIOMetrics)
        }
        var handlers = NamespaceHandlers()
        handlers.on("join") { socket, args, ack in
            for case .string(let room) in args { socket.join(room) }
            ack?([])
        }
        configure(&handlers)
        let namespace = socketIO.addNamespace("/", handlers: handlers)
        let engine = EngineServer(
            configuration: EngineConfiguration(),
            application: socketIO,
            logger: logger,
            metrics: EngineMetrics(factory: metrics)
        )
        let node = TestNode(
            harness: self,
            metrics: metrics,
            cluster: cluster,
            transport: transport,
            socketIO: socketIO,
            namespace: namespace,
            engine: engine
        )
        nodes.append(node)
        XCTAssertNoThrow(try value(cluster.start()))
        return node
    }

    /// The value of a future once everything due has run (never blocks on the embedded loop).
    func value<T>(_ future: EventLoopFuture<T>) throws -> T {
        settle()
        let box = NIOLoopBoundBox<Result<T, Error>?>(nil, eventLoop: loop)
        future.whenComplete { box.value = $0 }
        settle()
        guard let result = box.value else {
            XCTFail("future did not complete")
            throw CancellationError()
        }
        return try result.get()
    }

    /// Runs everything that is due without moving time.
    func settle() {
        for _ in 0..<10 { loop.run() }
    }

    func advance(by amount: TimeAmount) {
        // Step through time so repeated heartbeats fire in order.
        var remaining = amount
        let step = TimeAmount.milliseconds(500)
        while remaining > .zero {
            let next = min(step, remaining)
            loop.advanceTime(by: next)
            settle()
            remaining = remaining - next
        }
    }
}

final class TestNode {
    unowned let harness: ClusterHarness
    /// What the node's instruments recorded.
    let metrics: TestMetrics
    let cluster: ClusterNode
    let transport: ClusterTransport
    let socketIO: SocketIOServer
    let namespace: Namespace
    let engine: EngineServer

    init(
        harness: ClusterHarness,
        metrics: TestMetrics,
        cluster: ClusterNode,
        transport: ClusterTransport,
        socketIO: SocketIOServer,
        namespace: Namespace,
        engine: EngineServer
    ) {
        self.harness = harness
        self.metrics = metrics
        self.cluster = cluster
        self.transport = transport
        self.socketIO = socketIO
        self.namespace = namespace
        self.engine = engine
    }

    var adapter: ClusterAdapter { namespace.adapter as! ClusterAdapter }

    /// A client connected to namespace `/` over a WebSocket-like transport whose frames the test reads.
    func connect() throws -> TestClient {
        let channel = EmbeddedChannel(loop: harness.loop)
        let session = engine.openSession(
            on: harness.loop,
            transport: .websocket(channel),
            handshake: EngineHandshakeInfo(query: [:], headers: HTTPHeadersSnapshot(), remoteAddress: nil)
        )
        engine.application.sessionOpened(session)
        session.start()
        let client = TestClient(channel: channel, session: session)
        client.send("0")
        harness.settle()
        let connect = try XCTUnwrap(client.received().first(where: { $0.hasPrefix("0") }))
        client.sid = try XCTUnwrap(connect.split(separator: "\"").dropFirst(3).first.map(String.init))
        return client
    }
}

final class TestClient {
    let channel: EmbeddedChannel
    let session: EngineSession
    var sid = ""

    init(channel: EmbeddedChannel, session: EngineSession) {
        self.channel = channel
        self.session = session
    }

    /// Sends a Socket.IO packet (without the Engine.IO `4`).
    func send(_ packet: String) {
        session.receive(.text(.message, ByteBuffer(string: packet)))
    }

    /// Socket.IO packets received since the last call (Engine.IO messages only, without the `4`).
    func received() -> [String] {
        var packets: [String] = []
        while let frame = try? channel.readOutbound(as: WebSocketFrame.self) {
            guard frame.opcode == .text else { continue }
            let text = String(buffer: frame.data)
            if text.hasPrefix("4") { packets.append(String(text.dropFirst())) }
        }
        return packets
    }

    /// Events received since the last call, as raw packet text.
    func events() -> [String] {
        received().filter { $0.hasPrefix("2") }
    }

    func join(_ rooms: String...) {
        let list = rooms.map { "\"\($0)\"" }.joined(separator: ",")
        send("2[\"join\",\(list)]")
    }
}
