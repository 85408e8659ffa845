import Cluster
import Logging
import OpenWebUI
import Presence
import Redis
import ServiceLifecycle
import UnixSignals

/// Reports this node's statistics for the dashboard until shutdown.
struct StatsService: Service {
    let reporter: StatsReporter

    func run() async throws {
        reporter.start()
        try? await gracefulShutdown()
        reporter.stop()
    }
}

/// Closes the backend client's connections at shutdown.
struct BackendClientService: Service {
    let client: BackendClient

    func run() async throws {
        try? await gracefulShutdown()
        await client.shutdown()
    }
}

/// Closes a Redis client (started when it was made) at shutdown.
struct RedisClientService: Service {
    let client: RedisClient

    func run() async throws {
        try? await gracefulShutdown()
        await client.shutdown()
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

/// Runs the presence sweeps (one node at a time in a cluster) until shutdown; then removes what is
/// left of this node's sessions (a client's own clean-up may not have finished within the drain).
struct PresenceService: Service {
    let sweeper: PresenceSweeper
    let store: any PresenceStore
    let nodeID: String?

    func run() async throws {
        sweeper.start()
        try? await gracefulShutdown()
        try? await sweeper.stop().get()
        if let nodeID {
            _ = try? await store.removeSessions(withPrefix: nodeID).get()
        }
    }
}

/// Subscribes the python-socketio bridge at start and closes its connection at shutdown.
struct PythonBridgeService: Service {
    let bridge: PythonSocketIOBridge
    let logger: Logger

    func run() async throws {
        try await bridge.start().get()
        logger.info("python-socketio bridge started", metadata: ["channel": "\(bridge.configuration.channel)"])
        try? await gracefulShutdown()
        await bridge.stop()
    }
}

/// Reloads keys on SIGHUP until shutdown.
struct ReloadService: Service {
    let reloader: Reloader
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            reloader.reload(logger: logger)
        }
    }
}

/// Re-checks held tokens on its interval until shutdown.
struct RevalidationService: Service {
    let revalidator: SessionRevalidator

    func run() async throws {
        revalidator.start()
        try? await gracefulShutdown()
        revalidator.stop()
    }
}

// ServiceLifecycle logs every service with `String(describing:)`, which would print its stored
// properties — configuration and keys among them. Each service is described by its name alone.
extension StatsService: CustomStringConvertible { var description: String { "StatsService" } }
extension BackendClientService: CustomStringConvertible { var description: String { "BackendClientService" } }
extension RedisClientService: CustomStringConvertible { var description: String { "RedisClientService" } }
extension ClusterService: CustomStringConvertible { var description: String { "ClusterService" } }
extension PresenceService: CustomStringConvertible { var description: String { "PresenceService" } }
extension PythonBridgeService: CustomStringConvertible { var description: String { "PythonBridgeService" } }
extension ReloadService: CustomStringConvertible { var description: String { "ReloadService" } }
extension RevalidationService: CustomStringConvertible { var description: String { "RevalidationService" } }
extension SwitchboardService: CustomStringConvertible { public var description: String { "SwitchboardService" } }
