import ArgumentParser
import Switchboard

#if canImport(Glibc)
import Glibc
#endif

@main
struct SwitchboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "A clustered Socket.IO relay node.",
        subcommands: [Serve.self, Conformance.self, CheckConfig.self],
        defaultSubcommand: Serve.self
    )
}

/// Flags shared by the commands; each overrides its environment variable.
struct NodeOptions: ParsableArguments {
    @Option(help: "Address to bind (env SWITCHBOARD_HOST). Default 127.0.0.1.")
    var host: String?
    @Option(help: "Port to bind, 0 for any free port (env SWITCHBOARD_PORT). Default 8080.")
    var port: String?
    @Option(help: "Socket.IO path (env SWITCHBOARD_PATH). Default /ws/socket.io.")
    var path: String?
    @Option(help: "Ping interval: 25s, 300ms, or milliseconds (env SWITCHBOARD_PING_INTERVAL, WEBSOCKET_SERVER_PING_INTERVAL in s).")
    var pingInterval: String?
    @Option(help: "Ping timeout (env SWITCHBOARD_PING_TIMEOUT, WEBSOCKET_SERVER_PING_TIMEOUT in s). Default 20s.")
    var pingTimeout: String?
    @Option(help: "Namespace connect timeout (env SWITCHBOARD_CONNECT_TIMEOUT). Default 45s.")
    var connectTimeout: String?
    @Option(help: "Largest payload in bytes (env SWITCHBOARD_MAX_PAYLOAD). Default 16777216.")
    var maxPayload: String?
    @Option(help: "Bytes queued per client before it is dropped (env SWITCHBOARD_MAX_OUTBOUND_BYTES). Default 33554432.")
    var maxOutboundBytes: String?
    @Option(help: "Allowed origins, ';'-separated, or * (env SWITCHBOARD_CORS_ORIGINS, CORS_ALLOW_ORIGIN). Default *.")
    var corsOrigins: String?
    @Option(help: "Transports, ','-separated: polling,websocket (env SWITCHBOARD_TRANSPORTS). Default both.")
    var transports: String?
    @Option(help: "Redis URL to join a cluster (env SWITCHBOARD_REDIS_URL, WEBSOCKET_REDIS_URL). Default: alone, in memory.")
    var redisURL: String?
    @Option(name: .customLong("auth-redis-url"), help: "Redis holding Open WebUI's token revocation keys when it is not --redis-url (env SWITCHBOARD_AUTH_REDIS_URL, REDIS_URL).")
    var authRedisURL: String?
    @Option(help: "Prefix of the cluster's Redis keys and channels (env SWITCHBOARD_CLUSTER_PREFIX). Default switchboard.")
    var clusterPrefix: String?
    @Option(help: "This node's 6-character id (env SWITCHBOARD_NODE_ID). Default: random.")
    var nodeID: String?
    @Option(help: "Cluster heartbeat period (env SWITCHBOARD_HEARTBEAT_INTERVAL). Default 2s.")
    var heartbeatInterval: String?
    @Option(help: "A node silent this long is dead (env SWITCHBOARD_NODE_TTL). Default 10s.")
    var nodeTTL: String?
    @Option(name: .customLong("jwt-secret"), help: "JWT HMAC secret (env SWITCHBOARD_JWT_SECRET, WEBUI_SECRET_KEY). Default none.")
    var jwtSecret: String?
    @Option(name: .customLong("jwt-algorithms"), help: "HMAC algorithms accepted, ','-separated (env SWITCHBOARD_JWT_ALGORITHMS). Default HS256.")
    var jwtAlgorithms: String?
    @Option(name: .customLong("jwt-public-key"), help: "PEM public key file: RSA for RS256, EC P-256 for ES256 (env SWITCHBOARD_JWT_PUBLIC_KEY).")
    var jwtPublicKey: String?
    @Option(name: .customLong("jwt-jwks"), help: "JWKS file; kid selects the key (env SWITCHBOARD_JWT_JWKS).")
    var jwtJWKS: String?
    @Option(name: .customLong("jwt-leeway"), help: "Clock leeway for exp/nbf/iat (env SWITCHBOARD_JWT_LEEWAY, s). Default 30s.")
    var jwtLeeway: String?
    @Option(name: .customLong("jwt-issuer"), help: "Required iss (env SWITCHBOARD_JWT_ISSUER). Default not checked.")
    var jwtIssuer: String?
    @Option(name: .customLong("jwt-audience"), help: "Required aud (env SWITCHBOARD_JWT_AUDIENCE). Default not checked.")
    var jwtAudience: String?
    @Option(name: .customLong("jwt-user-claim"), help: "Claims holding the user id, ','-separated (env SWITCHBOARD_JWT_USER_CLAIM). Default id,sub.")
    var jwtUserClaim: String?
    @Option(name: .customLong("auth-mode"), help: "always-connect or strict (env SWITCHBOARD_AUTH_MODE). Default always-connect.")
    var authMode: String?
    @Option(name: .customLong("redis-key-prefix"), help: "Prefix of revocation keys and pools (env REDIS_KEY_PREFIX). Default open-webui.")
    var redisKeyPrefix: String?
    @Option(name: .customLong("backend-url"), help: "Backend base URL for users, channels and forwarded events (env SWITCHBOARD_BACKEND_URL).")
    var backendURL: String?
    @Option(name: .customLong("backend-user-path"), help: "Backend path answering the token's user (env SWITCHBOARD_BACKEND_USER_PATH). Default /api/v1/auths/.")
    var backendUserPath: String?
    @Option(name: .customLong("backend-channels-path"), help: "Backend path answering the user's channels (env SWITCHBOARD_BACKEND_CHANNELS_PATH). Default /api/v1/channels/.")
    var backendChannelsPath: String?
    @Option(name: .customLong("backend-timeout"), help: "Bound on each backend call (env SWITCHBOARD_BACKEND_TIMEOUT). Default 5s.")
    var backendTimeout: String?
    @Option(name: .customLong("backend-max-calls-per-second"), help: "Backend calls started per second at most, each target; 0 for no gate (env SWITCHBOARD_BACKEND_MAX_CALLS_PER_SECOND). Default 200.")
    var backendMaxCallsPerSecond: String?
    @Option(name: .customLong("backend-max-concurrent-calls"), help: "Backend calls in flight at most, each target (env SWITCHBOARD_BACKEND_MAX_CONCURRENT_CALLS). Default 32.")
    var backendMaxConcurrentCalls: String?
    @Option(name: .customLong("backend-max-queued-calls"), help: "Backend calls that may wait for the gate, each target (env SWITCHBOARD_BACKEND_MAX_QUEUED_CALLS). Default 10000.")
    var backendMaxQueuedCalls: String?
    @Option(name: .customLong("backend-revalidate-path"), help: "Backend path that answers 2xx while a user's token is still valid (env SWITCHBOARD_BACKEND_REVALIDATE_PATH). Default /api/v1/users/user/info.")
    var backendRevalidatePath: String?
    @Option(name: .customLong("revalidate-interval"), help: "How often each held token is re-checked; bare numbers are seconds (env SWITCHBOARD_REVALIDATE_INTERVAL). Default 30s.")
    var revalidateInterval: String?
    @Option(name: .customLong("user-cache-ttl"), help: "How long a token's user and channels are cached (env SWITCHBOARD_USER_CACHE_TTL). Default 60s.")
    var userCacheTTL: String?
    @Option(name: .customLong("forward-events"), help: "Where unhandled client events go: http, redis, none (env SWITCHBOARD_FORWARD_EVENTS).")
    var forwardEvents: String?
    @Option(name: .customLong("forward-path"), help: "Backend path receiving forwarded events (env SWITCHBOARD_FORWARD_PATH). Default /api/v1/socket/events.")
    var forwardPath: String?

    @Option(name: .customLong("forward-url"), help: "Base URL receiving forwarded events instead of the backend, e.g. the Open WebUI companion (env SWITCHBOARD_FORWARD_URL); its receiver also hears the disconnects.")
    var forwardURL: String?
    @Option(name: .customLong("forward-stream"), help: "Redis stream receiving forwarded events (env SWITCHBOARD_FORWARD_STREAM). Default switchboard:events.")
    var forwardStream: String?
    @Option(name: .customLong("broadcast-presence"), help: "Broadcast user-list and usage to everyone (env SWITCHBOARD_BROADCAST_PRESENCE). Default false.")
    var broadcastPresence: String?
    @Option(name: .customLong("max-connections-per-user"), help: "Sockets one authenticated user may have on this node, 0 for no limit (env SWITCHBOARD_MAX_CONNECTIONS_PER_USER). Default 0.")
    var maxConnectionsPerUser: String?
    @Option(name: .customLong("user-pool"), help: "Also list sessions in USER_POOL, for Open WebUI before 0.12 (env SWITCHBOARD_USER_POOL). Default false; on with --broadcast-presence.")
    var userPool: String?
    @Option(name: .customLong("relay-events"), help: "Serve the generic join/leave/publish events (env SWITCHBOARD_RELAY_EVENTS). Default false.")
    var relayEvents: String?
    @Option(name: .customLong("client-heartbeat-interval"), help: "How often clients send heartbeat, in s, clamped to 5...90 (env WEBSOCKET_HEARTBEAT_INTERVAL). Default 30.")
    var clientHeartbeatInterval: String?
    @Option(name: .customLong("api-key"), help: "Bearer key of the backend HTTP API (env SWITCHBOARD_API_KEY). Default none: API refuses.")
    var apiKey: String?
    @Option(name: .customLong("api-port"), help: "Serve the backend API on its own port (env SWITCHBOARD_API_PORT). Default: main port, /api/v1/.")
    var apiPort: String?
    @Option(name: .customLong("python-bridge"), help: "Serve python-socketio's Redis protocol (env SWITCHBOARD_PYTHON_BRIDGE). Default true.")
    var pythonBridge: String?
    @Option(name: .customLong("bridge-channel"), help: "python-socketio channel (env SWITCHBOARD_BRIDGE_CHANNEL). Default socketio.")
    var bridgeChannel: String?
    @Option(name: .customLong("bridge-room-channels"), help: "auto, per-room or pattern: how emits to single rooms are heard; per-room needs no PSUBSCRIBE (env SWITCHBOARD_BRIDGE_ROOM_CHANNELS). Default auto.")
    var bridgeRoomChannels: String?
    @Option(name: .customLong("jwt-secret-file"), help: "File holding the JWT HMAC secret, re-read on SIGHUP (env SWITCHBOARD_JWT_SECRET_FILE).")
    var jwtSecretFile: String?
    @Option(name: .customLong("api-key-file"), help: "File holding the API key, re-read on SIGHUP (env SWITCHBOARD_API_KEY_FILE).")
    var apiKeyFile: String?
    @Option(name: .customLong("drain-window"), help: "On SIGTERM, close clients spread over this window (env SWITCHBOARD_DRAIN_WINDOW). Default 10s.")
    var drainWindow: String?
    @Option(name: .customLong("shutdown-timeout"), help: "Exit within this time of SIGTERM (env SWITCHBOARD_SHUTDOWN_TIMEOUT). Default 30s.")
    var shutdownTimeout: String?
    @Option(name: .customLong("ready-deadline"), help: "/ready needs a Redis pub/sub round trip within this (env SWITCHBOARD_READY_DEADLINE). Default 1s.")
    var readyDeadline: String?
    @Option(name: .customLong("request-head-timeout"), help: "A request's headers must arrive whole within this time, on every listener (env SWITCHBOARD_REQUEST_HEAD_TIMEOUT). Default 20s.")
    var requestHeadTimeout: String?
    @Option(name: .customLong("address-handshake-rate"), help: "New sessions a second from one client address, 0 for no limit (env SWITCHBOARD_ADDRESS_HANDSHAKE_RATE). Default 0.")
    var addressHandshakeRate: String?
    @Option(name: .customLong("address-handshake-burst"), help: "Handshakes one address may make at once (env SWITCHBOARD_ADDRESS_HANDSHAKE_BURST). Default twice the rate.")
    var addressHandshakeBurst: String?
    @Option(name: .customLong("max-connections-per-address"), help: "Sessions open at once from one client address, 0 for no limit (env SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS). Default 0.")
    var maxConnectionsPerAddress: String?
    @Option(name: .customLong("packet-rate"), help: "Packets a second one client may send, 0 for no limit (env SWITCHBOARD_PACKET_RATE). Default 0.")
    var packetRate: String?
    @Option(name: .customLong("packet-burst"), help: "Packets a client may send at once (env SWITCHBOARD_PACKET_BURST). Default twice the rate.")
    var packetBurst: String?
    @Option(name: .customLong("trusted-proxies"), help: "Proxies whose X-Forwarded-For names the client: addresses or networks, comma-separated, * for any (env SWITCHBOARD_TRUSTED_PROXIES, FORWARDED_ALLOW_IPS). Default none.")
    var trustedProxies: String?
    @Option(help: "Log level (env SWITCHBOARD_LOG_LEVEL). Default info.")
    var logLevel: String?
    @Option(help: "Event-loop threads (env SWITCHBOARD_THREADS). Default: one per core.")
    var threads: String?

    var flags: [String: String] {
        var flags: [String: String] = [:]
        let pairs: [(String, String?)] = [
            ("host", host), ("port", port), ("path", path), ("ping-interval", pingInterval),
            ("ping-timeout", pingTimeout), ("connect-timeout", connectTimeout), ("max-payload", maxPayload),
            ("max-outbound-bytes", maxOutboundBytes), ("cors-origins", corsOrigins), ("transports", transports),
            ("request-head-timeout", requestHeadTimeout), ("address-handshake-rate", addressHandshakeRate), ("address-handshake-burst", addressHandshakeBurst),
            ("max-connections-per-address", maxConnectionsPerAddress), ("packet-rate", packetRate),
            ("packet-burst", packetBurst), ("trusted-proxies", trustedProxies),
            ("log-level", logLevel), ("threads", threads), ("redis-url", redisURL), ("auth-redis-url", authRedisURL), ("cluster-prefix", clusterPrefix),
            ("node-id", nodeID), ("heartbeat-interval", heartbeatInterval), ("node-ttl", nodeTTL),
            ("jwt-secret-file", jwtSecretFile),
            ("api-key-file", apiKeyFile),
            ("drain-window", drainWindow),
            ("shutdown-timeout", shutdownTimeout),
            ("ready-deadline", readyDeadline),
            ("jwt-secret", jwtSecret),
            ("jwt-algorithms", jwtAlgorithms),
            ("jwt-public-key", jwtPublicKey),
            ("jwt-jwks", jwtJWKS),
            ("jwt-leeway", jwtLeeway),
            ("jwt-issuer", jwtIssuer),
            ("jwt-audience", jwtAudience),
            ("jwt-user-claim", jwtUserClaim),
            ("auth-mode", authMode),
            ("redis-key-prefix", redisKeyPrefix),
            ("backend-url", backendURL),
            ("backend-user-path", backendUserPath),
            ("backend-channels-path", backendChannelsPath),
            ("backend-timeout", backendTimeout),
            ("backend-max-calls-per-second", backendMaxCallsPerSecond),
            ("backend-max-concurrent-calls", backendMaxConcurrentCalls),
            ("backend-max-queued-calls", backendMaxQueuedCalls),
            ("backend-revalidate-path", backendRevalidatePath),
            ("revalidate-interval", revalidateInterval),
            ("user-cache-ttl", userCacheTTL),
            ("forward-events", forwardEvents),
            ("forward-path", forwardPath),
            ("forward-url", forwardURL),
            ("forward-stream", forwardStream),
            ("broadcast-presence", broadcastPresence), ("max-connections-per-user", maxConnectionsPerUser),
            ("user-pool", userPool),
            ("relay-events", relayEvents),
            ("client-heartbeat-interval", clientHeartbeatInterval),
            ("api-key", apiKey),
            ("api-port", apiPort),
            ("python-bridge", pythonBridge),
            ("bridge-channel", bridgeChannel),
            ("bridge-room-channels", bridgeRoomChannels),
        ]
        for case (let name, let value?) in pairs { flags[name] = value }
        return flags
    }

    func read(environment: [String: String], defaults: SwitchboardConfiguration = .init()) throws
        -> SwitchboardConfiguration
    {
        do {
            return try ConfigurationReader(flags: flags, environment: environment).read(defaults: defaults)
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

func processEnvironment() -> [String: String] {
    var environment: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(cString: entry)
        if let equals = text.firstIndex(of: "=") {
            environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        pointer += 1
    }
    return environment
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a relay node.")
    @OptionGroup var options: NodeOptions

    func run() async throws {
        let configuration = try options.read(environment: processEnvironment())
        try await Switchboard.run(configuration: configuration, mode: .serve)
    }
}

struct Conformance: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the protocol test fixture: Engine.IO echo at /engine.io/, Socket.IO at /socket.io/."
    )
    @OptionGroup var options: NodeOptions

    func run() async throws {
        // The settings under which the published protocol test suites expect a server to pass.
        var defaults = SwitchboardConfiguration()
        defaults.listener.port = 3000
        defaults.socketIO.pingInterval = .milliseconds(300)
        defaults.socketIO.pingTimeout = .milliseconds(200)
        defaults.socketIO.maxPayload = 1_000_000
        defaults.socketIO.connectTimeout = .milliseconds(1000)
        defaults.socketIO.corsOrigins = ["*"]
        // The fixture is configured by its flags only (add --redis-url to run it as a cluster node).
        let configuration = try options.read(environment: [:], defaults: defaults)
        try await Switchboard.run(configuration: configuration, mode: .conformance)
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration from flags and environment, print it, and exit."
    )
    @OptionGroup var options: NodeOptions

    func run() throws {
        let configuration = try options.read(environment: processEnvironment())
        print(describe(configuration))
    }
}
