import Auth
import Cluster
import EngineIO
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import OpenWebUI
import Presence
import Prometheus
import Redis
import ServiceLifecycle
import SocketIO
import UnixSignals

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
    /// `main` or `api`: names the listener in logs and metrics.
    let listenerName: String

    public init(group: EventLoopGroup, router: EngineRouter, host: String, port: Int, logger: Logger, listenerName: String = "main") {
        self.group = group
        self.router = router
        self.host = host
        self.port = port
        self.logger = logger
        self.listenerName = listenerName
    }

    /// Binds the listening socket, or adopts `inheritedSocket` (socket activation) when given.
    public func bind(inheritedSocket: CInt? = nil) async throws -> Channel {
        let router = self.router
        let acceptFailures = AcceptFailures(listener: listenerName, logger: logger)
        let bootstrap = ServerBootstrap(group: group)
            // The synchronous bind installs no accept backoff of its own (only NIO's async binds do).
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(acceptFailures.makeHandler())
                }
            }
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // Few reads per connection per loop turn, so one busy client cannot starve the others.
            .childChannelOption(.maxMessagesPerRead, value: 4)
            // Each connection keeps its receive buffer between reads: start it small (most reads are
            // pings and short events, and it grows when reads fill it) so idle connections cost little.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try EnginePipeline.configure(channel: channel, router: router)
                }
            }
        if let inheritedSocket {
            return try await bootstrap.withBoundSocket(inheritedSocket).get()
        }
        return try await bootstrap.bind(host: host, port: port).get()
    }
}

/// Runs a node until a shutdown signal: binds, announces readiness, then drains — refuses new
/// sessions, reports not-ready, and closes its clients spread over the drain window so that they
/// reconnect to other nodes — and closes its listeners last.
public struct SwitchboardService: Service {
    let server: SwitchboardServer
    /// The backend API's own listener, if it has one.
    let apiServer: SwitchboardServer?
    let state: NodeState
    let drainWindow: TimeAmount
    let notifier: SystemdNotifier?
    let logger: Logger

    init(
        server: SwitchboardServer,
        apiServer: SwitchboardServer?,
        state: NodeState,
        drainWindow: TimeAmount,
        notifier: SystemdNotifier?,
        logger: Logger
    ) {
        self.server = server
        self.apiServer = apiServer
        self.state = state
        self.drainWindow = drainWindow
        self.notifier = notifier
        self.logger = logger
    }

    public func run() async throws {
        // The API listener is announced first: scripts read it before the main `listening on` line.
        var apiChannel: Channel?
        if let apiServer {
            let channel = try await apiServer.bind()
            apiChannel = channel
            announce("api listening", channel: channel, server: apiServer)
        }
        let inherited = Systemd.takeListeningSockets().first
        let channel = try await server.bind(inheritedSocket: inherited)
        if inherited != nil { logger.info("listening on the socket systemd passed") }
        state.setListening()
        announce("listening", channel: channel, server: server)

        try? await gracefulShutdown()
        state.setDraining()
        notifier?.stopping()
        // The listener stays open through the drain so that health checks read 503 (a load balancer
        // takes the node out) and new clients are refused with 503 rather than a reset.
        for endpoint in server.router.endpoints { endpoint.stopAcceptingSessions() }
        // Closes are spread over the first two thirds of the window; the last third is the clients'
        // time to reconnect elsewhere, so that all of them have moved when it ends.
        let spread = TimeAmount.nanoseconds(drainWindow.nanoseconds / 3 * 2)
        var closing = 0
        for endpoint in server.router.endpoints {
            closing += endpoint.closeAll(reason: .serverShutdown, spreadOver: spread)
        }
        logger.info(
            "draining",
            metadata: ["connections": "\(closing)", "window_ms": "\(drainWindow.nanoseconds / 1_000_000)"]
        )
        // Every close is scheduled within the window; wait for them, or leave early once none is left.
        let deadline = NIODeadline.now() + drainWindow + .milliseconds(200)
        while NIODeadline.now() < deadline, server.router.endpoints.contains(where: { $0.sessionCount > 0 }) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        logger.info("drained", metadata: ["left": "\(server.router.endpoints.map(\.sessionCount).reduce(0, +))"])
        try? await channel.close()
        try? await apiChannel?.close()
    }

    private func announce(_ message: Logger.Message, channel: Channel, server: SwitchboardServer) {
        let address = channel.localAddress
        let bound = "\(address?.ipAddress ?? server.host):\(address?.port ?? server.port)"
        logger.info(message, metadata: ["address": "\(bound)"])
        // Scripts and tests wait for this line on stdout.
        print("\(message) on \(bound)")
        fflush(nil)
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
        // Before anything with instruments is made: each takes its factory when it is built.
        let metricsRegistry = SwitchboardMetrics.bootstrap()

        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        do {
            let node = try makeNode(
                configuration: configuration,
                mode: mode,
                group: group,
                logger: logger,
                metricsRegistry: metricsRegistry
            )
            let server = SwitchboardServer(
                group: group,
                router: EngineRouter(
                    endpoints: node.endpoints,
                    fallback: node.fallback,
                    requestHeadTimeout: configuration.listener.requestHeadTimeout
                ),
                host: configuration.listener.host,
                port: configuration.listener.port,
                logger: logger
            )
            let notifier = SystemdNotifier(
                eventLoop: group.next(),
                state: node.state,
                isReady: { node.readiness.check().map(\.ready) },
                status: { node.statusLine() },
                logger: logger
            )
            notifier.start()
            defer { notifier.stop() }
            // Shut down in reverse order: drain clients first, then the pools' clean-up, then leave the cluster.
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            if let cluster = node.cluster {
                services.append(.init(service: ClusterService(node: cluster, logger: logger)))
            }
            for client in [node.backend, node.forwardClient].compactMap({ $0 }) {
                services.append(.init(service: BackendClientService(client: client)))
            }
            if let authRedis = node.authRedis {
                services.append(.init(service: RedisClientService(client: authRedis)))
            }
            if let bridge = node.bridge {
                services.append(.init(service: PythonBridgeService(bridge: bridge, logger: logger)))
            }
            services.append(
                .init(service: PresenceService(sweeper: node.presence.sweeper, store: node.presence.store, nodeID: node.cluster?.id))
            )
            services.append(.init(service: EventLoopLagMonitor(loops: Array(group.makeIterator()))))
            if let stats = node.stats {
                services.append(.init(service: StatsService(reporter: stats)))
            }
            if let revalidator = node.revalidator {
                services.append(.init(service: RevalidationService(revalidator: revalidator)))
            }
            if let reloader = node.reloader {
                services.append(.init(service: ReloadService(reloader: reloader, logger: logger)))
            }
            var apiServer: SwitchboardServer?
            if let api = node.apiListener {
                apiServer = SwitchboardServer(
                    group: group,
                    router: EngineRouter(
                        endpoints: [],
                        fallback: api.responder,
                        requestHeadTimeout: configuration.listener.requestHeadTimeout
                    ),
                    host: configuration.listener.host,
                    port: api.port,
                    logger: logger,
                    listenerName: "api"
                )
            }
            services.append(
                .init(
                    service: SwitchboardService(
                        server: server,
                        apiServer: apiServer,
                        state: node.state,
                        drainWindow: configuration.operations.drainWindow,
                        notifier: notifier,
                        logger: logger
                    )
                )
            )
            var groupConfiguration = ServiceGroupConfiguration(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
            let timeout = configuration.operations.shutdownTimeout
            groupConfiguration.maximumGracefulShutdownDuration = .nanoseconds(timeout.nanoseconds)
            groupConfiguration.maximumCancellationDuration = .seconds(2)
            try await ServiceGroup(configuration: groupConfiguration).run()
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
        /// Answers everything that is not Engine.IO on the main listener (operations, and the API
        /// unless it has its own port).
        public var fallback: HTTPResponder
        /// The backend API when it has its own listener.
        public var apiListener: (port: Int, responder: HTTPResponder)?
        /// The python-socketio Redis protocol bridge (serve, with Redis).
        public var bridge: PythonSocketIOBridge?
        var backend: BackendClient?
        /// The forward target's own client (`--forward-url`), when it is not the backend.
        var forwardClient: BackendClient?
        /// The Redis of Open WebUI's revocation keys (`--auth-redis-url`), when it is not the cluster's.
        var authRedis: RedisClient?
        let state: NodeState
        let readiness: ReadinessCheck
        var reloader: Reloader?
        var stats: StatsReporter?
        var revalidator: SessionRevalidator?

        /// One line for systemd's `STATUS=`: what the node carries right now.
        func statusLine() -> String {
            let sessions = endpoints.map(\.sessionCount).reduce(0, +)
            let role = cluster.map { "node \($0.id) in a cluster" } ?? "alone, in memory"
            return "\(sessions) connections; \(role)\(state.isDraining ? "; draining" : "")"
        }
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
        logger: Logger,
        metricsRegistry: PrometheusCollectorRegistry? = nil
    ) throws -> Node {
        let settings = configuration.socketIO
        let loops = Array(group.makeIterator())
        let presenceConfiguration = PresenceConfiguration(
            keyPrefix: configuration.auth.keyPrefix,
            heartbeatInterval: configuration.contract.clientHeartbeatInterval,
            writesUserPool: configuration.contract.writeUserPool || configuration.contract.broadcastPresence
        )
        var cluster: ClusterNode?
        var redisCommands: RedisClient?
        var redisConfiguration: RedisConfiguration?
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
            redisCommands = transport.commands
            redisConfiguration = redis
            let store = RedisPresenceStore(redis: transport.commands, configuration: presenceConfiguration)
            presence = PresencePools(
                store: store,
                sweeper: PresenceSweeper(
                    store: store,
                    lock: RedisSweepLock(redis: transport.commands, configuration: presenceConfiguration),
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
        let state = NodeState()
        let readiness = ReadinessCheck(
            cluster: cluster,
            state: state,
            deadline: configuration.operations.readyDeadline,
            eventLoop: loops[0]
        )
        let operations = OperationsResponder(readiness: readiness, metrics: metricsRegistry.map(MetricsResponder.init))
        switch mode {
        case .serve:
            let backend = configuration.backend.url.map {
                BackendClient(
                    baseURL: $0,
                    timeout: configuration.backend.timeout,
                    gate: makeBackendGate(configuration.backend, target: "backend", timerLoop: loops[0]),
                    eventLoopGroup: group
                )
            }
            let forwardClient = configuration.backend.forwardURL.map {
                BackendClient(
                    baseURL: $0,
                    timeout: configuration.backend.timeout,
                    gate: makeBackendGate(configuration.backend, target: "forward", timerLoop: loops[0]),
                    eventLoopGroup: group
                )
            }
            let verifier = try makeVerifier(configuration.auth, logger: logger)
            let apiKey = SecretBox(try configuration.api.keyFile.map { try readSecretFile($0, setting: "api-key-file") } ?? configuration.api.key)
            if verifier == nil {
                logger.warning("no JWT key configured: every socket stays anonymous (set --jwt-secret or WEBUI_SECRET_KEY)")
            }
            let authRedis = try configuration.cluster.authRedisURL.map { url in
                let settings: RedisConfiguration
                do {
                    settings = try RedisConfiguration(url: url)
                } catch {
                    throw ConfigurationError(setting: "auth-redis-url", value: redactingPassword(url), reason: "\(error)")
                }
                let client = try RedisClient(configuration: settings, eventLoop: loops[0], logger: logger)
                client.start()
                return client
            }
            let users = UserDirectory(
                verifier: verifier,
                revocation: RevocationKeys(prefix: configuration.auth.keyPrefix),
                redis: redisCommands,
                authRedis: authRedis,
                backend: backend,
                userPath: configuration.backend.userPath,
                channelsPath: configuration.backend.channelsPath,
                revalidatePath: configuration.backend.revalidatePath,
                cacheTTL: configuration.backend.userCacheTTL,
                logger: logger,
                now: { PresenceSweeper.systemClock() }
            )
            let forwarder: EventForwarder
            switch configuration.effectiveForwardTarget {
            case .http:
                guard let target = forwardClient ?? backend else {
                    throw ConfigurationError(setting: "forward-events", value: "http", reason: "needs --backend-url or --forward-url")
                }
                forwarder = .http(
                    target,
                    path: configuration.backend.forwardPath,
                    apiKey: apiKey,
                    forwardsDisconnects: forwardClient != nil
                )
            case .redis:
                guard let redisCommands else { throw ConfigurationError(setting: "forward-events", value: "redis", reason: "needs --redis-url") }
                forwarder = .redisStream(redisCommands, key: configuration.backend.forwardStream, maxLength: 100_000)
            case .none:
                forwarder = .none
            }
            let revalidator = SessionRevalidator(
                users: users,
                interval: configuration.backend.revalidateInterval,
                eventLoop: loops[0],
                logger: logger
            ) { [socketIO] userID in
                socketIO.namespace("/")?.adapter.disconnectSockets(
                    matching: BroadcastOptions(rooms: ["user:\(userID)"]),
                    closeClient: false
                )
            }
            var contract = OpenWebUIEvents(
                users: users,
                presence: presence.store,
                forwarder: forwarder,
                strict: configuration.auth.mode == .strict,
                broadcastPresence: configuration.contract.broadcastPresence,
                nodeID: cluster?.id ?? "local",
                logger: logger,
                now: { PresenceSweeper.systemClock() }
            )
            contract.revalidator = revalidator
            if configuration.contract.connectionsPerUser > 0 {
                contract.connectionsPerUser = UserConnectionLimit(limit: configuration.contract.connectionsPerUser)
            }
            contract.chatPresence = ChatPresence(
                presence: presence.store,
                redis: redisCommands,
                keyPrefix: configuration.auth.keyPrefix,
                sessionMaxAge: Int(presenceConfiguration.sessionMaxAge.nanoseconds / 1_000_000_000),
                logger: logger,
                now: { PresenceSweeper.systemClock() }
            )
            contract.directCompletions = redisCommands.map {
                DirectCompletionChannel(redis: $0, keyPrefix: configuration.auth.keyPrefix)
            }
            var handlers = contract.handlers()
            if configuration.contract.relayEvents {
                for (name, handler) in RelayEvents.handlers().events { handlers.events[name] = handler }
            }
            socketIO.addNamespace("/", handlers: handlers)
            let api = BackendAPI(keys: apiKey, socketIO: socketIO, presence: presence.store, logger: logger)
            let endpoint = EngineServer(configuration: settings.engine, application: socketIO, logger: logger)
            var bridge: PythonSocketIOBridge?
            if configuration.bridge.enabled, let cluster, let redisCommands, let redisConfiguration {
                bridge = try PythonSocketIOBridge(
                    configuration: {
                        var bridge = PythonBridgeConfiguration(
                            channel: configuration.bridge.channel,
                            hostID: "switchboard-\(cluster.id)"
                        )
                        bridge.roomChannels = configuration.bridge.roomChannels
                        return bridge
                    }(),
                    redis: redisConfiguration,
                    publisher: redisCommands,
                    eventLoop: loops[0],
                    logger: logger,
                    localAdapter: { [socketIO] name in (socketIO.namespace(name)?.adapter as? ClusterAdapter)?.local },
                    observeEmit: { [socketIO, contract] event, args, rooms in
                        guard let local = (socketIO.namespace("/")?.adapter as? ClusterAdapter)?.local else { return }
                        contract.backendEmitted(event, args, rooms: rooms, local: local)
                    }
                )
            }
            if let cluster {
                cluster.onTransportRestored = { [socketIO, contract] in
                    guard let local = (socketIO.namespace("/")?.adapter as? ClusterAdapter)?.local else { return }
                    logger.info("Redis is back; writing this node's sessions into the pools again")
                    contract.restoreSessions(local: local)
                }
            }
            if let bridge, let cluster {
                cluster.onLocalRoomChange = { namespace, room, occupied in
                    bridge.localRoomChanged(namespace: namespace, room: room, occupied: occupied)
                }
            }
            let trafficTotals: @Sendable () -> TrafficTotals = { metricsRegistry.map(TrafficTotals.init) ?? TrafficTotals() }
            let stats = StatsReporter(
                nodeID: cluster?.id ?? "local",
                prefix: configuration.cluster.prefix,
                endpoints: [endpoint],
                adapters: { [socketIO] in
                    guard let adapter = socketIO.namespace("/")?.adapter else { return [] }
                    return [(adapter as? ClusterAdapter)?.local ?? (adapter as? InMemoryAdapter)].compactMap { $0 }
                },
                traffic: trafficTotals,
                redis: redisCommands,
                eventLoop: loops[0]
            )
            let dashboard = DashboardResponder(
                keys: apiKey,
                reporter: stats,
                cluster: cluster,
                redis: redisCommands,
                prefix: configuration.cluster.prefix,
                usersOnline: UsersOnlineCount(presence: presence.store),
                readiness: readiness
            )
            return Node(
                endpoints: [endpoint],
                cluster: cluster,
                presence: presence,
                fallback: RoutingResponder(
                    operations: operations,
                    api: configuration.api.port == nil ? api : nil,
                    dashboard: dashboard
                ),
                apiListener: configuration.api.port.map { (port: $0, responder: api) },
                bridge: bridge,
                backend: backend,
                forwardClient: forwardClient,
                authRedis: authRedis,
                state: state,
                readiness: readiness,
                reloader: Reloader(auth: configuration.auth, apiKeyFile: configuration.api.keyFile, users: users, apiKey: apiKey),
                stats: stats,
                revalidator: revalidator
            )
        case .conformance:
            socketIO.addNamespace("/", handlers: ConformanceEvents.handlers(presence: presence.store))
            socketIO.addNamespace("/custom", handlers: ConformanceEvents.handlers(presence: presence.store))
            var engine = settings.engine
            engine.path = "/engine.io/"
            let echo = EngineServer(configuration: engine, application: EngineEchoApplication(), logger: logger)
            engine.path = "/socket.io/"
            let sockets = EngineServer(configuration: engine, application: socketIO, logger: logger)
            return Node(
                endpoints: [echo, sockets],
                cluster: cluster,
                presence: presence,
                fallback: operations,
                state: state,
                readiness: readiness
            )
        }
    }

    /// The gate for one backend target, or nil with `backend-max-calls-per-second 0`.
    static func makeBackendGate(
        _ settings: SwitchboardConfiguration.BackendSettings,
        target: String,
        timerLoop: EventLoop
    ) -> BackendCallGate? {
        guard settings.maxCallsPerSecond > 0 else { return nil }
        return BackendCallGate(
            limits: .init(
                callsPerSecond: settings.maxCallsPerSecond,
                burst: settings.maxCallsPerSecond / 4,
                maxConcurrent: settings.maxConcurrentCalls,
                maxQueued: settings.maxQueuedCalls,
                maxWait: settings.timeout
            ),
            target: target,
            timerLoop: timerLoop
        )
    }

    /// The JWT verifier of the configured keys, or nil when none is configured.
    static func makeVerifier(_ auth: SwitchboardConfiguration.AuthSettings, logger: Logger) throws -> JWTVerifier? {
        var keys: [JWTKey] = []
        let secret = try auth.jwtSecretFile.map { try readSecretFile($0, setting: "jwt-secret-file") } ?? auth.jwtSecret
        do {
            if let secret {
                keys.append(try JWTKey.hmac(secret: Array(secret.utf8), algorithms: auth.hmacAlgorithms))
            }
        } catch {
            throw ConfigurationError(setting: "jwt-secret", value: "(hidden)", reason: error.message)
        }
        if let path = auth.publicKeyFile {
            let pem = try readConfigurationFile(path, setting: "jwt-public-key")
            do {
                keys.append(try JWTKey.rsa(publicKeyPEM: pem))
            } catch {
                do {
                    keys.append(try JWTKey.ecdsa(publicKeyPEM: pem))
                } catch {
                    throw ConfigurationError(
                        setting: "jwt-public-key",
                        value: path,
                        reason: "not an RSA (2048 bits or more) or EC P-256 public key in PEM: \(error.message)"
                    )
                }
            }
        }
        if let path = auth.jwksFile {
            do {
                keys += try JWTKey.jwks(try readConfigurationFile(path, setting: "jwt-jwks"), logger: logger)
            } catch let error as AuthError {
                throw ConfigurationError(setting: "jwt-jwks", value: path, reason: error.message)
            }
        }
        guard !keys.isEmpty else { return nil }
        do {
            return try JWTVerifier(
                configuration: .init(
                    keys: keys,
                    leeway: auth.leeway,
                    issuer: auth.issuer,
                    audience: auth.audience,
                    userIDClaims: auth.userIDClaims
                )
            )
        } catch {
            throw ConfigurationError(setting: "jwt", value: "", reason: error.message)
        }
    }
}

/// Reads a small configuration file (a key); a missing or unreadable file names the setting.
func readConfigurationFile(_ path: String, setting: String, limit: Int = 1 << 20) throws -> String {
    let descriptor = open(path, O_RDONLY)
    guard descriptor >= 0 else {
        throw ConfigurationError(setting: setting, value: path, reason: "cannot open the file (errno \(errno))")
    }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        guard count >= 0 else {
            throw ConfigurationError(setting: setting, value: path, reason: "cannot read the file (errno \(errno))")
        }
        if count == 0 { break }
        bytes += chunk[0..<count]
        guard bytes.count <= limit else {
            throw ConfigurationError(setting: setting, value: path, reason: "the file is larger than \(limit) bytes")
        }
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        throw ConfigurationError(setting: setting, value: path, reason: "the file is not UTF-8 text")
    }
    return text
}

/// The main listener's non-Engine.IO routes: the backend API under `/api/v1/` (unless it has its own
/// port), the dashboard, operations otherwise.
struct RoutingResponder: HTTPResponder {
    let operations: OperationsResponder
    let api: BackendAPI?
    let dashboard: DashboardResponder?

    var maxBodySize: Int { api?.maxBodySize ?? 0 }

    func respond(to request: HTTPRequest, on eventLoop: EventLoop) -> EventLoopFuture<HTTPResponse> {
        if let api, request.path.hasPrefix(BackendAPI.pathPrefix) { return api.respond(to: request, on: eventLoop) }
        if let dashboard, request.path == "/dashboard" || request.path.hasPrefix("/dashboard/") {
            return dashboard.respond(to: request, on: eventLoop)
        }
        return operations.respond(to: request, on: eventLoop)
    }
}
