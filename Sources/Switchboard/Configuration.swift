import EngineIO
import Logging
import NIOCore
import SocketIO

/// Everything a node is configured with. Every field documents its default.
public struct SwitchboardConfiguration: Sendable {
    public struct Listener: Sendable {
        /// Address to bind. Default `127.0.0.1`; use `0.0.0.0` in containers.
        public var host: String = "127.0.0.1"
        /// Port to bind; 0 picks a free one. Default 8080.
        public var port: Int = 8080
    }

    public struct SocketIOSettings: Sendable {
        /// Path of the Socket.IO endpoint. Default `/ws/socket.io` (Open WebUI's).
        public var path: String = "/ws/socket.io"
        /// Default 25 s.
        public var pingInterval: TimeAmount = .seconds(25)
        /// Default 20 s.
        public var pingTimeout: TimeAmount = .seconds(20)
        /// Largest HTTP POST body or WebSocket message, in bytes. Default 1,000,000.
        public var maxPayload: Int = 1_000_000
        /// A client must connect to a namespace within this time. Default 45 s.
        public var connectTimeout: TimeAmount = .seconds(45)
        /// Allowed browser origins; `*` allows any. Default `*`.
        public var corsOrigins: [String] = ["*"]
        /// Default both polling and websocket.
        public var transports: EngineTransports = .all
        /// Bytes queued for one client before it is dropped as a slow consumer. Default 4 MiB.
        public var maxOutboundBytes: Int = 4 * 1024 * 1024

        var cors: CORSPolicy {
            if corsOrigins.contains("*") { return .any }
            return .origins(corsOrigins)
        }

        public var engine: EngineConfiguration {
            EngineConfiguration(
                path: path,
                pingInterval: pingInterval,
                pingTimeout: pingTimeout,
                maxPayload: maxPayload,
                transports: transports,
                cors: cors,
                maxOutboundBytes: maxOutboundBytes
            )
        }
    }

    public struct ClusterSettings: Sendable {
        /// Redis to join a cluster through (`redis://[user:password@]host:port/db`, `rediss://…`,
        /// `unix://path`). Default none: the node runs alone, in memory.
        public var redisURL: String?
        /// Prefix of the cluster's Redis channels and keys. Default `switchboard`.
        public var prefix: String = "switchboard"
        /// This node's id (6 base64url characters, the prefix of its sids). Default: random at start.
        public var nodeID: String?
        /// Heartbeat period. Default 2 s.
        public var heartbeatInterval: TimeAmount = .seconds(2)
        /// A node silent for this long is dead and reaped. Default 10 s (found within 12 s).
        public var nodeTTL: TimeAmount = .seconds(10)
    }

    public var listener = Listener()
    public var socketIO = SocketIOSettings()
    public var cluster = ClusterSettings()
    /// Default `info`.
    public var logLevel: Logger.Level = .info
    /// Event-loop threads. Default: one per core.
    public var eventLoopThreads: Int = System.coreCount

    public init() {}
}

/// A setting that could not be used, named the way the operator wrote it.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let setting: String
    public let value: String
    public let reason: String

    public var description: String { "invalid \(setting)=\"\(value)\": \(reason)" }
}
