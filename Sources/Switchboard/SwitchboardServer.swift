import Cluster
import EngineIO
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Presence
import Redis
import ServiceLifecycle
import SocketIO

#if canImport(Glibc)
import Glibc
#endif

/// A listening node: the HTTP/WebSocket server with its Engine.IO endpoints.
public final class SwitchboardServer: Sendable {
    public let group: EventLoopGroup
    public let router: EngineRouter
    let host: String
    let port: Int
    let logger: Logger

    public init(group: EventLoopGroup, router: EngineRouter, host: String, port: Int, logger: Logger) {
        self.group = group
        self.router = router
        self.host = host
        self.port = port
        self.logger = logger
    }

    /// Binds the listening socket.
    public func bind() async throws -> Channel {
        let router = self.router
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // Few reads per connection per loop turn, so one busy client cannot starve the others.
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try EnginePipeline.configure(channel: channel, router: router)
                }
            }
            .bind(host: host, port: port)
            .get()
    }
}

/// Runs a node until a shutdown signal: binds, announces readiness, closes clients on the way out.
public struct SwitchboardService: Service {
    let server: SwitchboardServer
    let logger: Logger

    public init(server: SwitchboardServer, logger: Logger) {
        self.server = server
        self.logger = logger
    }

    public func run() async throws {
        let channel = try await server.bind()
        let address = channel.localAddress
        let bound = "\(address?.ipAddress ?? server.host):\(address?.port ?? server.port)"
        logger.info("listening", metadata: ["address": "\(bound)"])
        // Scripts and tests wait for this line on stdout.
        print("listening on \(bound)")
        fflush(nil)

        try? await gracefulShutdown()
        logger.info("shutting down")
        try? await channel.close()
        for endpoint in server.router.endpoints {
            endpoint.closeAll(reason: .serverShutdown)
        }
    }
}

/// Builds and runs a node from its configuration.
public enum Switchboard {
    public enum Mode: Sendable {
        /// The relay node.
        case serve
        /// The protocol test fixture: Engine.IO echo at `/engine.io/`, Socket.IO at `/socket.io/`.
        case conformance
    }

    public static func run(configuration: SwitchboardConfiguration, mode: Mode) async throws {
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "switchboard")
        logger.logLevel = level

        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        do {
            let node = try makeNode(configuration: configuration, mode: mode, group: group, logger: logger)
            let server = SwitchboardServer(
                group: group,
                router: EngineRouter(endpoints: node.endpoints, fallback: OperationsResponder(cluster: node.cluster)),
                host: configuration.listener.host,
                port: configuration.listener.port,
                logger: logger
            )
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            if let cluster = node.cluster {
                services.append(.init(service: ClusterService(node: cluster, logger: logger)))
            }
            services.append(.init(service: PresenceService(sweeper: node.presence.sweeper)))
            services.append(.init(service: SwitchboardService(server: server, logger: logger)))
            let serviceGroup = ServiceGroup(
                configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            )
            try await serviceGroup.run()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    /// What a node is made of: its Engine.IO endpoints, its presence pools and, in a cluster, its
    /// cluster node.
    public struct Node: Sendable {
        public var endpoints: [EngineServer]
        public var cluster: ClusterNode?
        public var presence: PresencePools
    }

    /// The shared pools (Redis in a cluster, in memory alone) and their sweeper.
    public struct PresencePools: Sendable {
        public var store: any PresenceStore
        public var sweeper: PresenceSweeper
    }

    public static func makeNode(
        configuration: SwitchboardConfiguration,
        mode: Mode,
        group: EventLoopGroup,
        logger: Logger
    ) throws -> Node {
        let settings = configuration.socketIO
        let loops = Array(group.makeIterator())
        var cluster: ClusterNode?
        let presence: PresencePools
        if let url = configuration.cluster.redisURL {
            let redis: RedisConfiguration
            do {
                redis = try RedisConfiguration(url: url)
            } catch {
                throw ConfigurationError(setting: "redis-url", value: redactingPassword(url), reason: "\(error)")
            }
            let controlLoop = loops[0]
            let clusterConfiguration = ClusterConfiguration(
                nodeID: configuration.cluster.nodeID ?? SessionID.make(length: ClusterConfiguration.nodeIDLength),
                prefix: configuration.cluster.prefix,
                heartbeatInterval: configuration.cluster.heartbeatInterval,
                nodeTTL: configuration.cluster.nodeTTL
            )
            let transport = try RedisClusterTransport(
                configuration: redis,
                prefix: configuration.cluster.prefix,
                eventLoop: controlLoop,
                logger: logger
            )
            let node = ClusterNode(
                configuration: clusterConfiguration,
                transport: transport,
                controlLoop: controlLoop,
                eventLoops: loops,
                logger: logger
            )
            cluster = node
            let store = RedisPresenceStore(redis: transport.commands, configuration: PresenceConfiguration())
            presence = PresencePools(
                store: store,
                sweeper: PresenceSweeper(
                    store: store,
                    lock: RedisSweepLock(redis: transport.commands, configuration: PresenceConfiguration()),
                    nodeID: node.id,
                    eventLoop: controlLoop,
                    logger: logger
                )
            )
            // A dead node's sessions leave the pools with its room records.
            node.onNodeReaped = { [store] dead in
                store.removeSessions(withPrefix: dead).whenSuccess { count in
                    logger.info("removed a dead node's sessions", metadata: ["dead": "\(dead)", "sessions": "\(count)"])
                }
            }
        } else {
            let store = InMemoryPresenceStore(eventLoop: loops[0])
            presence = PresencePools(
                store: store,
                sweeper: PresenceSweeper(store: store, lock: nil, nodeID: "local", eventLoop: loops[0], logger: logger)
            )
        }
        let socketIOConfiguration = SocketIOConfiguration(
            connectTimeout: settings.connectTimeout,
            sidPrefix: cluster?.id ?? ""
        )
        let socketIO = SocketIOServer(configuration: socketIOConfiguration, logger: logger) { [cluster] namespace in
            if let cluster { return cluster.makeAdapter(namespace: namespace, eventLoops: loops) }
            return InMemoryAdapter(namespace: namespace, eventLoops: loops)
        }
        switch mode {
        case .serve:
            socketIO.addNamespace("/", handlers: RelayEvents.handlers())
            let endpoint = EngineServer(configuration: settings.engine, application: socketIO, logger: logger)
            return Node(endpoints: [endpoint], cluster: cluster, presence: presence)
        case .conformance:
            socketIO.addNamespace("/", handlers: ConformanceEvents.handlers(presence: presence.store))
            socketIO.addNamespace("/custom", handlers: ConformanceEvents.handlers(presence: presence.store))
            var engine = settings.engine
            engine.path = "/engine.io/"
            let echo = EngineServer(configuration: engine, application: EngineEchoApplication(), logger: logger)
            engine.path = "/socket.io/"
            let sockets = EngineServer(configuration: engine, application: socketIO, logger: logger)
            return Node(endpoints: [echo, sockets], cluster: cluster, presence: presence)
        }
    }
}

/// Joins the cluster at start and leaves it (removing this node's records) at shutdown.
struct ClusterService: Service {
    let node: ClusterNode
    let logger: Logger

    func run() async throws {
        try await node.start().get()
        logger.info("joined the cluster", metadata: ["node": "\(node.id)"])
        try? await gracefulShutdown()
        try? await node.stop().get()
    }
}

/// Runs the presence sweeps (one node at a time in a cluster) until shutdown.
struct PresenceService: Service {
    let sweeper: PresenceSweeper

    func run() async throws {
        sweeper.start()
        try? await gracefulShutdown()
        try? await sweeper.stop().get()
    }
}

/// `/health` (the process is alive) and `/ready` (the node can serve: in a cluster, Redis is
/// reachable and the room registry is synced).
struct OperationsResponder: HTTPResponder {
    let cluster: ClusterNode?
    var maxBodySize: Int { 0 }

    func respond(to request: HTTPRequest, on eventLoop: EventLoop) -> EventLoopFuture<HTTPResponse> {
        switch (request.head.method, request.path) {
        case (.GET, "/health"):
            return eventLoop.makeSucceededFuture(HTTPResponse(status: .ok, contentType: "text/plain", body: "ok"))
        case (.GET, "/ready"):
            guard let cluster else {
                return eventLoop.makeSucceededFuture(HTTPResponse(status: .ok, contentType: "text/plain", body: "ready"))
            }
            return cluster.isReady.map { ready in
                ready
                    ? HTTPResponse(status: .ok, contentType: "text/plain", body: "ready")
                    : HTTPResponse(status: .serviceUnavailable, contentType: "text/plain", body: "not ready: redis")
            }
        default:
            return eventLoop.makeSucceededFuture(HTTPResponse(status: .notFound, contentType: "text/plain", body: "Not Found"))
        }
    }
}
