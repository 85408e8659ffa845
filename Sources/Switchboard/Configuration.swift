import Auth
import Cluster
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
        /// A request's head must arrive whole within this time of the connection opening or of the previous
        /// response (slow-loris clients), on every listener. Default 20 s.
        public var requestHeadTimeout: TimeAmount = .seconds(20)
    }

    public struct SocketIOSettings: Sendable {
        /// Path of the Socket.IO endpoint. Default `/ws/socket.io` (Open WebUI's).
        public var path: String = "/ws/socket.io"
        /// Default 25 s.
        public var pingInterval: TimeAmount = .seconds(25)
        /// Default 20 s.
        public var pingTimeout: TimeAmount = .seconds(20)
        /// Largest HTTP POST body or WebSocket message, in bytes. Default 16 MiB (Open WebUI 0.12's: a large
        /// note's Yjs state travels as a JSON array of up to ~4 bytes per byte).
        public var maxPayload: Int = 16 * 1024 * 1024
        /// A client must connect to a namespace within this time. Default 45 s.
        public var connectTimeout: TimeAmount = .seconds(45)
        /// Allowed browser origins; `*` allows any. Default `*`.
        public var corsOrigins: [String] = ["*"]
        /// Default both polling and websocket.
        public var transports: EngineTransports = .all
        /// Bytes queued for one client before it is dropped as a slow consumer. Default 32 MiB: room for a
        /// 2 MiB note's `ydoc:document:state` (~8 MB of JSON) and what follows it, while a client that does not
        /// read is still cut off.
        public var maxOutboundBytes: Int = 32 * 1024 * 1024
        /// Handshake rate and open sessions per client address, packet rate per session, and the proxies
        /// trusted to name the client. Default: no limit, no proxy trusted.
        public var limits: ClientLimits = .none

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
                maxOutboundBytes: maxOutboundBytes,
                limits: limits
            )
        }
    }

    public struct ClusterSettings: Sendable {
        /// Redis to join a cluster through (`redis://[user:password@]host:port/db`, `rediss://…`,
        /// `unix://path`). Default none: the node runs alone, in memory.
        public var redisURL: String?
        /// Where Open WebUI keeps its token revocation keys, when that is not `redisURL`: Open WebUI reads them from
        /// its `REDIS_URL`, which may differ from its `WEBSOCKET_REDIS_URL`. Default: `redisURL`.
        public var authRedisURL: String?
        /// Prefix of the cluster's Redis channels and keys. Default `switchboard`.
        public var prefix: String = "switchboard"
        /// This node's id (6 base64url characters, the prefix of its sids). Default: random at start.
        public var nodeID: String?
        /// Heartbeat period. Default 2 s.
        public var heartbeatInterval: TimeAmount = .seconds(2)
        /// A node silent for this long is dead and reaped. Default 10 s (found within 12 s).
        public var nodeTTL: TimeAmount = .seconds(10)
    }

    /// How users are authenticated (see docs/BACKEND.md).
    public struct AuthSettings: Sendable {
        public enum Mode: String, Sendable {
            /// Acknowledge every CONNECT; a socket without a valid token stays anonymous (Open WebUI's).
            case alwaysConnect = "always-connect"
            /// Refuse a CONNECT without a valid token.
            case strict
        }

        /// HMAC secret (`WEBUI_SECRET_KEY`). Default none.
        public var jwtSecret: String?
        /// File holding the HMAC secret, read at start and on SIGHUP. Default none.
        public var jwtSecretFile: String?
        /// Algorithms accepted with the secret. Default HS256.
        public var hmacAlgorithms: Set<JWTAlgorithm> = [.hs256]
        /// PEM public key file (RSA → RS256, EC P-256 → ES256). Default none.
        public var publicKeyFile: String?
        /// JWKS file. Default none.
        public var jwksFile: String?
        /// Seconds of clock skew tolerated. Default 30.
        public var leeway: Int = 30
        /// Required `iss`. Default not checked.
        public var issuer: String?
        /// Required `aud`. Default not checked.
        public var audience: String?
        /// Claims holding the user id, in order. Default `id`, `sub`.
        public var userIDClaims: [String] = ["id", "sub"]
        /// Default always-connect.
        public var mode: Mode = .alwaysConnect
        /// Prefix of the revocation keys and the presence pools (`REDIS_KEY_PREFIX`). Default `open-webui`.
        public var keyPrefix: String = "open-webui"

        /// Whether any key is configured.
        public var hasKeys: Bool { jwtSecret != nil || jwtSecretFile != nil || publicKeyFile != nil || jwksFile != nil }
    }

    /// Where unhandled client events go.
    public enum ForwardTarget: String, Sendable {
        case http, redis, none
    }

    /// The backend this node calls: user details, channels, forwarded events.
    public struct BackendSettings: Sendable {
        /// Base URL, e.g. `http://backend:8080`. Default none.
        public var url: String?
        /// Default `/api/v1/auths/` (answers the token's user).
        public var userPath: String = "/api/v1/auths/"
        /// Default `/api/v1/channels/` (answers the user's channels).
        public var channelsPath: String = "/api/v1/channels/"
        /// Bound on each backend call. Default 5 s.
        public var timeout: TimeAmount = .seconds(5)
        /// Calls this node starts per second at most, to the backend and to the forward URL each (bursts of a
        /// quarter of it after a quiet spell): when every client of a failed node reconnects at once, the backend
        /// sees a bounded rate. 0: no gate at all. Default 200.
        public var maxCallsPerSecond: Int = 200
        /// Calls in flight at once at most (each target). Default 32.
        public var maxConcurrentCalls: Int = 32
        /// Calls that may wait for the gate (each target); more, or one that waited `timeout`, fail as
        /// `backend_busy`, which a connecting client sees as a retryable error. Default 10000.
        public var maxQueuedCalls: Int = 10_000
        /// How long a token's user and channels are reused. Default 60 s.
        public var userCacheTTL: TimeAmount = .seconds(60)
        /// Default `/api/v1/users/user/info`: answers 2xx exactly while the user's own token passes every check
        /// Open WebUI's socket makes (session stamp, token type, MFA, revocation, role), and records activity.
        public var revalidatePath: String = "/api/v1/users/user/info"
        /// Every token held by an authenticated socket is re-checked this often (Open WebUI: 30 s). Default 30 s,
        /// at least 1 s.
        public var revalidateInterval: TimeAmount = .seconds(30)
        /// Default: http with a backend URL, else redis with Redis, else none.
        public var forwardEvents: ForwardTarget?
        /// Default `/api/v1/socket/events`.
        public var forwardPath: String = "/api/v1/socket/events"
        /// Where `http` forwarding posts instead of the backend (e.g. the Open WebUI companion, which runs Open
        /// WebUI's own handlers for the events that need its database). Default none: the backend.
        public var forwardURL: String?
        /// Default `switchboard:events`.
        public var forwardStream: String = "switchboard:events"
    }

    /// The Open WebUI event contract on namespace `/` of `serve`.
    public struct ContractSettings: Sendable {
        /// Broadcast `user-list` and `usage` to everyone on connect, disconnect and usage. Default false: Open
        /// WebUI 0.12 neither sends nor listens to them, and each is O(clients) traffic.
        public var broadcastPresence: Bool = false
        /// Also list sessions in USER_POOL (`{prefix}:user_pool`), for backends older than Open WebUI 0.12.
        /// Default false: 0.12 neither reads nor writes it. On whenever ``broadcastPresence`` is, whose
        /// `user-list` comes from it.
        public var writeUserPool: Bool = false
        /// How often clients send `heartbeat` (Open WebUI's `WEBSOCKET_HEARTBEAT_INTERVAL`, which its front end
        /// follows). A session silent for max(4 × this, 120 s) is reaped from SESSION_POOL. Default 30 s.
        public var clientHeartbeatInterval: TimeAmount = .seconds(30)
        /// Also serve the generic `join` / `leave` / `publish` events (benchmarks). Default false: any
        /// client could join any room with them.
        public var relayEvents: Bool = false
        /// Sockets one authenticated user may have on this node; 0 for no limit. Over it, the socket gets a
        /// Socket.IO DISCONNECT (reason `connections_per_user`). Default 0.
        public var connectionsPerUser: Int = 0
    }

    /// The backend HTTP API.
    public struct APISettings: Sendable {
        /// Bearer key; without one the API refuses every request. Default none.
        public var key: String?
        /// File holding the key, read at start and on SIGHUP. Default none.
        public var keyFile: String?
        /// Own listener port (on `host`); default none: served under `/api/v1/` on the main port.
        public var port: Int?
    }

    /// The python-socketio Redis protocol bridge.
    public struct BridgeSettings: Sendable {
        /// Default true (needs Redis).
        public var enabled: Bool = true
        /// Default `socketio`.
        public var channel: String = "socketio"
        /// How emits to single rooms are heard: `pattern`, `per-room` or `auto` (pattern unless Redis refuses
        /// PSUBSCRIBE, as with Open WebUI 0.12.3's suggested ACL). Default `auto`.
        public var roomChannels: PythonBridgeRoomChannels = .auto
    }

    /// Health, readiness and shutdown.
    public struct OperationsSettings: Sendable {
        /// On SIGTERM, client connections close spread over the first two thirds of this window
        /// and have the rest to reconnect elsewhere. Default 10 s.
        public var drainWindow: TimeAmount = .seconds(10)
        /// The process exits within this time of SIGTERM, drained or not. Default 30 s.
        public var shutdownTimeout: TimeAmount = .seconds(30)
        /// `/ready` needs a pub/sub round trip through Redis within this time. Default 1 s.
        public var readyDeadline: TimeAmount = .seconds(1)
    }

    public var listener = Listener()
    public var socketIO = SocketIOSettings()
    public var cluster = ClusterSettings()
    public var auth = AuthSettings()
    public var backend = BackendSettings()
    public var contract = ContractSettings()
    public var api = APISettings()
    public var bridge = BridgeSettings()
    public var operations = OperationsSettings()
    /// Default `info`.
    public var logLevel: Logger.Level = .info
    /// Event-loop threads. Default: one per core.
    public var eventLoopThreads: Int = System.coreCount

    public init() {}

    /// Where unhandled events go once the defaults are applied.
    public var effectiveForwardTarget: ForwardTarget {
        if let target = backend.forwardEvents { return target }
        if backend.url != nil || backend.forwardURL != nil { return .http }
        if cluster.redisURL != nil { return .redis }
        return .none
    }
}

/// A setting that could not be used, named the way the operator wrote it.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let setting: String
    public let value: String
    public let reason: String

    public var description: String { "invalid \(setting)=\"\(value)\": \(reason)" }
}
