import EngineIO
import Logging
import NIOCore
import NIOPosix
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
        let endpoints = makeEndpoints(configuration: configuration, mode: mode, group: group, logger: logger)
        let server = SwitchboardServer(
            group: group,
            router: EngineRouter(endpoints: endpoints),
            host: configuration.listener.host,
            port: configuration.listener.port,
            logger: logger
        )
        let serviceGroup = ServiceGroup(
            configuration: .init(
                services: [.init(service: SwitchboardService(server: server, logger: logger))],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await serviceGroup.run()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    public static func makeEndpoints(
        configuration: SwitchboardConfiguration,
        mode: Mode,
        group: EventLoopGroup,
        logger: Logger
    ) -> [EngineServer] {
        let settings = configuration.socketIO
        let socketIOConfiguration = SocketIOConfiguration(
            connectTimeout: settings.connectTimeout,
            sidPrefix: ""
        )
        let loops = Array(group.makeIterator())
        let socketIO = SocketIOServer(configuration: socketIOConfiguration, logger: logger) { namespace in
            InMemoryAdapter(namespace: namespace, eventLoops: loops)
        }
        switch mode {
        case .serve:
            socketIO.addNamespace("/", handlers: RelayEvents.handlers())
            return [EngineServer(configuration: settings.engine, application: socketIO, logger: logger)]
        case .conformance:
            socketIO.addNamespace("/", handlers: ConformanceEvents.handlers())
            socketIO.addNamespace("/custom", handlers: ConformanceEvents.handlers())
            var engine = settings.engine
            engine.path = "/engine.io/"
            let echo = EngineServer(configuration: engine, application: EngineEchoApplication(), logger: logger)
            engine.path = "/socket.io/"
            let sockets = EngineServer(configuration: engine, application: socketIO, logger: logger)
            return [echo, sockets]
        }
    }
}
