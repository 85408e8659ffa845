import Auth
import Cluster
import EngineIO
import Logging
import NIOCore

/// Reads configuration from flags, then the environment, then the defaults — in that order of
/// precedence. Each setting names its flag and environment variables; a bad value is refused
/// with the name the operator used.
public struct ConfigurationReader {
    public var flags: [String: String]
    public var environment: [String: String]

    public init(flags: [String: String], environment: [String: String]) {
        self.flags = flags
        self.environment = environment
    }

    /// How a bare number (no unit) is read for a duration.
    enum BareUnit: Sendable { case milliseconds, seconds }

    struct Setting: Sendable {
        let flag: String
        /// Environment variables, first match wins, with the unit of a bare duration.
        let environment: [(name: String, unit: BareUnit)]
        let apply: @Sendable (inout SwitchboardConfiguration, String, BareUnit) throws(ConfigurationError.Reason) -> Void
    }

    /// Every setting a node reads. The README's configuration table mirrors this list.
    static let settings: [Setting] = [
        Setting(flag: "host", environment: [("SWITCHBOARD_HOST", .milliseconds)]) { config, value, _ throws(ConfigurationError.Reason) in
            guard !value.isEmpty else { throw .init("must not be empty") }
            config.listener.host = value
        },
        Setting(flag: "port", environment: [("SWITCHBOARD_PORT", .milliseconds), ("PORT", .milliseconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard let port = Int(value), (0...65535).contains(port) else { throw .init("must be a port number 0-65535") }
            config.listener.port = port
        },
        Setting(flag: "request-head-timeout", environment: [("SWITCHBOARD_REQUEST_HEAD_TIMEOUT", .milliseconds)]) {
            config,
            value,
            unit throws(ConfigurationError.Reason) in
            config.listener.requestHeadTimeout = try parsePositiveDuration(value, unit: unit)
        },
        Setting(flag: "path", environment: [("SWITCHBOARD_PATH", .milliseconds)]) { config, value, _ throws(ConfigurationError.Reason) in
            guard value.hasPrefix("/"), !value.contains("?"), !value.contains(" ") else {
                throw .init("must be an absolute URL path such as /ws/socket.io")
            }
            config.socketIO.path = value
        },
        Setting(
            flag: "ping-interval",
            environment: [("SWITCHBOARD_PING_INTERVAL", .milliseconds), ("WEBSOCKET_SERVER_PING_INTERVAL", .seconds)]
        ) { config, value, unit throws(ConfigurationError.Reason) in
            config.socketIO.pingInterval = try parsePositiveDuration(value, unit: unit)
        },
        Setting(
            flag: "ping-timeout",
            environment: [("SWITCHBOARD_PING_TIMEOUT", .milliseconds), ("WEBSOCKET_SERVER_PING_TIMEOUT", .seconds)]
        ) { config, value, unit throws(ConfigurationError.Reason) in
            config.socketIO.pingTimeout = try parsePositiveDuration(value, unit: unit)
        },
        Setting(flag: "connect-timeout", environment: [("SWITCHBOARD_CONNECT_TIMEOUT", .milliseconds)]) {
            config,
            value,
            unit throws(ConfigurationError.Reason) in
            config.socketIO.connectTimeout = try parsePositiveDuration(value, unit: unit)
        },
        Setting(flag: "max-payload", environment: [("SWITCHBOARD_MAX_PAYLOAD", .milliseconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard let bytes = Int(value), bytes >= 64, bytes <= 256 * 1024 * 1024 else {
                throw .init("must be a byte count from 64 to 268435456")
            }
            config.socketIO.maxPayload = bytes
        },
        Setting(flag: "max-outbound-bytes", environment: [("SWITCHBOARD_MAX_OUTBOUND_BYTES", .milliseconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard let bytes = Int(value), bytes >= 1024 else { throw .init("must be a byte count of at least 1024") }
            config.socketIO.maxOutboundBytes = bytes
        },
        Setting(
            flag: "cors-origins",
            environment: [("SWITCHBOARD_CORS_ORIGINS", .milliseconds), ("CORS_ALLOW_ORIGIN", .milliseconds)]
        ) { config, value, _ throws(ConfigurationError.Reason) in
            let origins = value.split(separator: ";").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
            guard !origins.isEmpty else { throw .init("must list at least one origin, or *") }
            for origin in origins where origin != "*" {
                guard origin.hasPrefix("http://") || origin.hasPrefix("https://") else {
                    throw .init("origin \"\(origin)\" must start with http:// or https://")
                }
            }
            config.socketIO.corsOrigins = origins
        },
        rate("address-handshake-rate", ["SWITCHBOARD_ADDRESS_HANDSHAKE_RATE"]) { $0.socketIO.limits.handshakesPerSecond = $1 },
        count("address-handshake-burst", ["SWITCHBOARD_ADDRESS_HANDSHAKE_BURST"], 1...100_000_000) {
            $0.socketIO.limits.handshakeBurst = $1
        },
        count("max-connections-per-address", ["SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS"], 0...100_000_000) {
            $0.socketIO.limits.connectionsPerAddress = $1
        },
        rate("packet-rate", ["SWITCHBOARD_PACKET_RATE"]) { $0.socketIO.limits.packetsPerSecond = $1 },
        count("packet-burst", ["SWITCHBOARD_PACKET_BURST"], 1...100_000_000) { $0.socketIO.limits.packetBurst = $1 },
        Setting(
            flag: "trusted-proxies",
            // uvicorn's (and so Open WebUI's) name for the same list.
            environment: [("SWITCHBOARD_TRUSTED_PROXIES", .milliseconds), ("FORWARDED_ALLOW_IPS", .milliseconds)]
        ) { config, value, _ throws(ConfigurationError.Reason) in
            var networks: [IPNetwork] = []
            for entry in value.split(separator: ",").map({ $0.trimmingSpaces() }) where !entry.isEmpty {
                if entry == "*" {
                    networks += [IPNetwork("0.0.0.0/0")!, IPNetwork("::/0")!]
                } else if let network = IPNetwork(entry) {
                    networks.append(network)
                } else {
                    throw .init("\"\(entry)\" is not an address or network such as 10.0.0.0/8, ::1 or *")
                }
            }
            config.socketIO.limits.trustedProxies = networks
        },
        Setting(flag: "transports", environment: [("SWITCHBOARD_TRANSPORTS", .milliseconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            var transports: EngineTransports = []
            for name in value.split(separator: ",").map({ $0.trimmingSpaces() }) {
                switch name {
                case "polling": transports.insert(.polling)
                case "websocket": transports.insert(.websocket)
                default: throw .init("unknown transport \"\(name)\" (use polling, websocket)")
                }
            }
            guard !transports.isEmpty else { throw .init("must name at least one transport") }
            config.socketIO.transports = transports
        },
        Setting(flag: "enable-websocket", environment: [("ENABLE_WEBSOCKET_SUPPORT", .milliseconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard let enabled = parseBool(value) else { throw .init("must be true or false") }
            // As Open WebUI's server: websocket alone when on, polling alone when off.
            config.socketIO.transports = enabled ? .websocket : .polling
        },
        Setting(
            flag: "redis-url",
            // Open WebUI's WEBSOCKET_REDIS_URL falls back to its REDIS_URL.
            environment: [
                ("SWITCHBOARD_REDIS_URL", .milliseconds), ("WEBSOCKET_REDIS_URL", .milliseconds), ("REDIS_URL", .milliseconds),
            ]
        ) { config, value, _ throws(ConfigurationError.Reason) in
            guard value.hasPrefix("redis://") || value.hasPrefix("rediss://") || value.hasPrefix("unix://") else {
                throw .init("must be a redis://, rediss:// or unix:// URL")
            }
            config.cluster.redisURL = value
        },
        Setting(
            flag: "auth-redis-url",
            // Open WebUI reads revocation keys from its REDIS_URL.
            environment: [("SWITCHBOARD_AUTH_REDIS_URL", .milliseconds), ("REDIS_URL", .milliseconds)]
        ) { config, value, _ throws(ConfigurationError.Reason) in
            guard value.hasPrefix("redis://") || value.hasPrefix("rediss://") || value.hasPrefix("unix://") else {
                throw .init("must be a redis://, rediss:// or unix:// URL")
            }
            config.cluster.authRedisURL = value
        },
        Setting(flag: "cluster-prefix", environment: [("SWITCHBOARD_CLUSTER_PREFIX", .milliseconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard !value.isEmpty, !value.contains(" ") else { throw .init("must be a non-empty word") }
            config.cluster.prefix = value
        },
        Setting(flag: "node-id", environment: [("SWITCHBOARD_NODE_ID", .milliseconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
            guard value.count == 6, value.allSatisfy(allowed.contains) else {
                throw .init("must be 6 characters from A-Z a-z 0-9 - _")
            }
            config.cluster.nodeID = value
        },
        Setting(flag: "heartbeat-interval", environment: [("SWITCHBOARD_HEARTBEAT_INTERVAL", .milliseconds)]) {
            config,
            value,
            unit throws(ConfigurationError.Reason) in
            config.cluster.heartbeatInterval = try parsePositiveDuration(value, unit: unit)
        },
        Setting(flag: "node-ttl", environment: [("SWITCHBOARD_NODE_TTL", .milliseconds)]) {
            config,
            value,
            unit throws(ConfigurationError.Reason) in
            config.cluster.nodeTTL = try parsePositiveDuration(value, unit: unit)
        },
        text("jwt-secret", ["SWITCHBOARD_JWT_SECRET", "WEBUI_SECRET_KEY"], .nonEmpty) { $0.auth.jwtSecret = $1 },
        Setting(flag: "jwt-algorithms", environment: [("SWITCHBOARD_JWT_ALGORITHMS", .seconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            var algorithms: Set<JWTAlgorithm> = []
            for name in value.split(separator: ",").map({ $0.trimmingSpaces().uppercased() }) {
                guard let algorithm = JWTAlgorithm(rawValue: name), JWTAlgorithm.hmacAlgorithms.contains(algorithm) else {
                    throw .init("unknown HMAC algorithm \"\(name)\" (use HS256, HS384, HS512)")
                }
                algorithms.insert(algorithm)
            }
            guard !algorithms.isEmpty else { throw .init("must name at least one algorithm") }
            config.auth.hmacAlgorithms = algorithms
        },
        text("jwt-secret-file", ["SWITCHBOARD_JWT_SECRET_FILE"], .nonEmpty) { $0.auth.jwtSecretFile = $1 },
        text("jwt-public-key", ["SWITCHBOARD_JWT_PUBLIC_KEY"], .nonEmpty) { $0.auth.publicKeyFile = $1 },
        text("jwt-jwks", ["SWITCHBOARD_JWT_JWKS"], .nonEmpty) { $0.auth.jwksFile = $1 },
        Setting(flag: "jwt-leeway", environment: [("SWITCHBOARD_JWT_LEEWAY", .seconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            // A bare number is seconds, from a flag too (claims are in whole seconds).
            if let seconds = Int(value), seconds >= 0, seconds <= 86_400 {
                config.auth.leeway = seconds
                return
            }
            let amount = try parsePositiveDuration(value, unit: .seconds)
            config.auth.leeway = Int(amount.nanoseconds / 1_000_000_000)
        },
        text("jwt-issuer", ["SWITCHBOARD_JWT_ISSUER"], .nonEmpty) { $0.auth.issuer = $1 },
        text("jwt-audience", ["SWITCHBOARD_JWT_AUDIENCE"], .nonEmpty) { $0.auth.audience = $1 },
        Setting(flag: "jwt-user-claim", environment: [("SWITCHBOARD_JWT_USER_CLAIM", .seconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            let claims = value.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
            guard !claims.isEmpty else { throw .init("must name at least one claim") }
            config.auth.userIDClaims = claims
        },
        Setting(flag: "auth-mode", environment: [("SWITCHBOARD_AUTH_MODE", .seconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard let mode = SwitchboardConfiguration.AuthSettings.Mode(rawValue: value.lowercased()) else {
                throw .init("must be always-connect or strict")
            }
            config.auth.mode = mode
        },
        text("redis-key-prefix", ["SWITCHBOARD_REDIS_KEY_PREFIX", "REDIS_KEY_PREFIX"], .word) { $0.auth.keyPrefix = $1 },
        baseURL("backend-url", ["SWITCHBOARD_BACKEND_URL"]) { $0.backend.url = $1 },
        text("backend-user-path", ["SWITCHBOARD_BACKEND_USER_PATH"], .path) { $0.backend.userPath = $1 },
        text("backend-channels-path", ["SWITCHBOARD_BACKEND_CHANNELS_PATH"], .path) { $0.backend.channelsPath = $1 },
        duration("backend-timeout", [("SWITCHBOARD_BACKEND_TIMEOUT", .milliseconds)]) { $0.backend.timeout = $1 },
        count("backend-max-calls-per-second", ["SWITCHBOARD_BACKEND_MAX_CALLS_PER_SECOND"], 0...1_000_000) {
            $0.backend.maxCallsPerSecond = $1
        },
        count("backend-max-concurrent-calls", ["SWITCHBOARD_BACKEND_MAX_CONCURRENT_CALLS"], 1...100_000) {
            $0.backend.maxConcurrentCalls = $1
        },
        count("backend-max-queued-calls", ["SWITCHBOARD_BACKEND_MAX_QUEUED_CALLS"], 0...1_000_000) {
            $0.backend.maxQueuedCalls = $1
        },
        text("backend-revalidate-path", ["SWITCHBOARD_BACKEND_REVALIDATE_PATH"], .path) { $0.backend.revalidatePath = $1 },
        Setting(flag: "revalidate-interval", environment: [("SWITCHBOARD_REVALIDATE_INTERVAL", .seconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            // Bare numbers are seconds here, for the flag too.
            let interval = try parsePositiveDuration(value, unit: .seconds)
            guard interval >= .seconds(1) else { throw .init("must be at least 1s") }
            config.backend.revalidateInterval = interval
        },
        duration("user-cache-ttl", [("SWITCHBOARD_USER_CACHE_TTL", .milliseconds)], allowsZero: true) { $0.backend.userCacheTTL = $1 },
        Setting(flag: "forward-events", environment: [("SWITCHBOARD_FORWARD_EVENTS", .seconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard let target = SwitchboardConfiguration.ForwardTarget(rawValue: value.lowercased()) else {
                throw .init("must be http, redis or none")
            }
            config.backend.forwardEvents = target
        },
        text("forward-path", ["SWITCHBOARD_FORWARD_PATH"], .path) { $0.backend.forwardPath = $1 },
        baseURL("forward-url", ["SWITCHBOARD_FORWARD_URL"]) { $0.backend.forwardURL = $1 },
        text("forward-stream", ["SWITCHBOARD_FORWARD_STREAM"], .word) { $0.backend.forwardStream = $1 },
        toggle("broadcast-presence", ["SWITCHBOARD_BROADCAST_PRESENCE"]) { $0.contract.broadcastPresence = $1 },
        toggle("user-pool", ["SWITCHBOARD_USER_POOL"]) { $0.contract.writeUserPool = $1 },
        toggle("relay-events", ["SWITCHBOARD_RELAY_EVENTS"]) { $0.contract.relayEvents = $1 },
        count("max-connections-per-user", ["SWITCHBOARD_MAX_CONNECTIONS_PER_USER"], 0...100_000_000) {
            $0.contract.connectionsPerUser = $1
        },
        Setting(flag: "client-heartbeat-interval", environment: [("WEBSOCKET_HEARTBEAT_INTERVAL", .seconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            // Open WebUI's reading, so that a node starts wherever Open WebUI does: whole seconds clamped to
            // 5…90, anything else 30.
            let trimmed = value.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()
            let seconds = Int(String(trimmed)).map { min(max($0, 5), 90) } ?? 30
            config.contract.clientHeartbeatInterval = .seconds(Int64(seconds))
        },
        Setting(flag: "api-key", environment: [("SWITCHBOARD_API_KEY", .seconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard value.count >= 16 else { throw .init("must be at least 16 characters") }
            guard value.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                throw .init("must be printable ASCII without spaces")
            }
            config.api.key = value
        },
        text("api-key-file", ["SWITCHBOARD_API_KEY_FILE"], .nonEmpty) { $0.api.keyFile = $1 },
        duration("drain-window", [("SWITCHBOARD_DRAIN_WINDOW", .milliseconds)], allowsZero: true) { $0.operations.drainWindow = $1 },
        duration("shutdown-timeout", [("SWITCHBOARD_SHUTDOWN_TIMEOUT", .milliseconds)]) { $0.operations.shutdownTimeout = $1 },
        duration("ready-deadline", [("SWITCHBOARD_READY_DEADLINE", .milliseconds)]) { $0.operations.readyDeadline = $1 },
        Setting(flag: "api-port", environment: [("SWITCHBOARD_API_PORT", .seconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard let port = Int(value), (0...65535).contains(port) else { throw .init("must be a port number 0-65535") }
            config.api.port = port
        },
        toggle("python-bridge", ["SWITCHBOARD_PYTHON_BRIDGE"]) { $0.bridge.enabled = $1 },
        text("bridge-channel", ["SWITCHBOARD_BRIDGE_CHANNEL"], .pubSubChannel) { $0.bridge.channel = $1 },
        Setting(flag: "bridge-room-channels", environment: [("SWITCHBOARD_BRIDGE_ROOM_CHANNELS", .seconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard let mode = PythonBridgeRoomChannels(rawValue: value.lowercased()) else {
                throw .init("must be auto, per-room or pattern")
            }
            config.bridge.roomChannels = mode
        },
        Setting(flag: "log-level", environment: [("SWITCHBOARD_LOG_LEVEL", .milliseconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard let level = Logger.Level(rawValue: value.lowercased()) else {
                throw .init("must be one of trace, debug, info, notice, warning, error, critical")
            }
            config.logLevel = level
        },
        Setting(flag: "threads", environment: [("SWITCHBOARD_THREADS", .milliseconds)]) {
            config,
            value,
            _ throws(ConfigurationError.Reason) in
            guard let threads = Int(value), (1...256).contains(threads) else { throw .init("must be 1-256") }
            config.eventLoopThreads = threads
        },
    ]

    /// What a text setting must look like.
    enum TextRule: Sendable {
        /// Anything but empty (secrets, file paths, claim values).
        case nonEmpty
        /// One word: no spaces (key prefixes, stream names).
        case word
        /// An absolute URL path.
        case path
        /// A word that is not a pub/sub pattern.
        case pubSubChannel
    }

    /// An http:// or https:// base URL, kept without a trailing slash.
    static func baseURL(
        _ flag: String,
        _ variables: [String],
        _ apply: @escaping @Sendable (inout SwitchboardConfiguration, String) -> Void
    ) -> Setting {
        Setting(flag: flag, environment: variables.map { ($0, .seconds) }) { config, value, _ throws(ConfigurationError.Reason) in
            guard value.hasPrefix("http://") || value.hasPrefix("https://"), value.count > 8 else {
                throw .init("must be an http:// or https:// URL")
            }
            apply(&config, value.hasSuffix("/") ? String(value.dropLast()) : value)
        }
    }

    static func text(
        _ flag: String,
        _ variables: [String],
        _ rule: TextRule,
        _ apply: @escaping @Sendable (inout SwitchboardConfiguration, String) -> Void
    ) -> Setting {
        Setting(flag: flag, environment: variables.map { ($0, .seconds) }) { config, value, _ throws(ConfigurationError.Reason) in
            switch rule {
            case .nonEmpty:
                guard !value.isEmpty else { throw .init("must not be empty") }
            case .word:
                guard !value.isEmpty, !value.contains(" ") else { throw .init("must be a non-empty word") }
            case .path:
                guard value.hasPrefix("/"), !value.contains(" "), !value.contains("#") else {
                    throw .init("must be an absolute URL path such as /api/v1/auths/")
                }
            case .pubSubChannel:
                guard !value.isEmpty, !value.contains(" "), !value.contains("*") else {
                    throw .init("must be a non-empty word without * or spaces")
                }
            }
            apply(&config, value)
        }
    }

    /// A duration (`25s`, `300ms`, `1m`, or a bare number in the variable's unit).
    static func duration(
        _ flag: String,
        _ variables: [(name: String, unit: BareUnit)],
        allowsZero: Bool = false,
        _ apply: @escaping @Sendable (inout SwitchboardConfiguration, TimeAmount) -> Void
    ) -> Setting {
        Setting(flag: flag, environment: variables) { config, value, unit throws(ConfigurationError.Reason) in
            if allowsZero && value == "0" {
                apply(&config, .zero)
                return
            }
            apply(&config, try parsePositiveDuration(value, unit: unit))
        }
    }

    /// A whole number in `range`.
    static func count(
        _ flag: String,
        _ variables: [String],
        _ range: ClosedRange<Int>,
        _ apply: @escaping @Sendable (inout SwitchboardConfiguration, Int) -> Void
    ) -> Setting {
        Setting(flag: flag, environment: variables.map { ($0, .seconds) }) { config, value, _ throws(ConfigurationError.Reason) in
            guard let number = Int(value), range.contains(number) else {
                throw .init("must be a whole number \(range.lowerBound)-\(range.upperBound)")
            }
            apply(&config, number)
        }
    }

    /// Events per second from 0 (no limit) to a million.
    static func rate(
        _ flag: String,
        _ variables: [String],
        _ apply: @escaping @Sendable (inout SwitchboardConfiguration, Double) -> Void
    ) -> Setting {
        Setting(flag: flag, environment: variables.map { ($0, .seconds) }) { config, value, _ throws(ConfigurationError.Reason) in
            guard let rate = Double(value.trimmingSpaces()), rate >= 0, rate <= 1_000_000 else {
                throw .init("must be a number of events per second from 0 (no limit) to 1000000")
            }
            apply(&config, rate)
        }
    }

    /// A true/false setting.
    static func toggle(
        _ flag: String,
        _ variables: [String],
        _ apply: @escaping @Sendable (inout SwitchboardConfiguration, Bool) -> Void
    ) -> Setting {
        Setting(flag: flag, environment: variables.map { ($0, .seconds) }) { config, value, _ throws(ConfigurationError.Reason) in
            guard let enabled = parseBool(value) else { throw .init("must be true or false") }
            apply(&config, enabled)
        }
    }

    /// The configuration, or the first setting that is invalid.
    public func read(defaults: SwitchboardConfiguration = SwitchboardConfiguration()) throws(ConfigurationError)
        -> SwitchboardConfiguration
    {
        var config = defaults
        // `transports` must win over ENABLE_WEBSOCKET_SUPPORT, so it is applied after it.
        let ordered =
            Self.settings.filter { $0.flag == "enable-websocket" } + Self.settings.filter { $0.flag != "enable-websocket" }
        for setting in ordered {
            if let value = flags[setting.flag] {
                do throws(ConfigurationError.Reason) {
                    try setting.apply(&config, value, .milliseconds)
                } catch {
                    throw ConfigurationError(setting: "--\(setting.flag)", value: value, reason: error.message)
                }
                continue
            }
            for variable in setting.environment {
                guard let value = environment[variable.name] else { continue }
                do throws(ConfigurationError.Reason) {
                    try setting.apply(&config, value, variable.unit)
                } catch {
                    throw ConfigurationError(setting: variable.name, value: value, reason: error.message)
                }
                break
            }
        }
        if config.cluster.authRedisURL == config.cluster.redisURL { config.cluster.authRedisURL = nil }
        var limits = config.socketIO.limits
        if limits.handshakeBurst == 0 { limits.handshakeBurst = max(1, Int((limits.handshakesPerSecond * 2).rounded(.up))) }
        if limits.packetBurst == 0 { limits.packetBurst = max(1, Int((limits.packetsPerSecond * 2).rounded(.up))) }
        config.socketIO.limits = limits
        try validate(config)
        return config
    }

    private func validate(_ config: SwitchboardConfiguration) throws(ConfigurationError) {
        if config.cluster.nodeTTL <= config.cluster.heartbeatInterval {
            throw ConfigurationError(
                setting: "node-ttl",
                value: "\(config.cluster.nodeTTL.nanoseconds / 1_000_000)ms",
                reason: "must be longer than heartbeat-interval"
            )
        }
        if config.cluster.authRedisURL != nil && config.cluster.redisURL == nil {
            throw ConfigurationError(setting: "auth-redis-url", value: "(set)", reason: "needs --redis-url")
        }
        if config.backend.forwardEvents == .http && config.backend.url == nil && config.backend.forwardURL == nil {
            throw ConfigurationError(setting: "forward-events", value: "http", reason: "needs --backend-url or --forward-url")
        }
        if config.backend.forwardEvents == .redis && config.cluster.redisURL == nil {
            throw ConfigurationError(setting: "forward-events", value: "redis", reason: "needs --redis-url")
        }
        if config.operations.shutdownTimeout <= config.operations.drainWindow {
            throw ConfigurationError(
                setting: "shutdown-timeout",
                value: "\(config.operations.shutdownTimeout.nanoseconds / 1_000_000)ms",
                reason: "must be longer than drain-window (\(config.operations.drainWindow.nanoseconds / 1_000_000)ms)"
            )
        }
        if config.auth.jwtSecret != nil && config.auth.jwtSecretFile != nil {
            throw ConfigurationError(setting: "jwt-secret-file", value: "(set)", reason: "use either a secret or a secret file")
        }
        if config.api.key != nil && config.api.keyFile != nil {
            throw ConfigurationError(setting: "api-key-file", value: "(set)", reason: "use either a key or a key file")
        }
        if config.socketIO.maxOutboundBytes < config.socketIO.maxPayload {
            throw ConfigurationError(
                setting: "max-outbound-bytes",
                value: String(config.socketIO.maxOutboundBytes),
                reason: "must be at least max-payload (\(config.socketIO.maxPayload))"
            )
        }
    }

    static func parsePositiveDuration(_ text: String, unit: BareUnit) throws(ConfigurationError.Reason) -> TimeAmount {
        let value = text.trimmingSpaces()
        let number: Substring
        let scale: Int64
        if value.hasSuffix("ms") {
            number = value.dropLast(2)
            scale = 1_000_000
        } else if value.hasSuffix("s") {
            number = value.dropLast()
            scale = 1_000_000_000
        } else if value.hasSuffix("m") {
            number = value.dropLast()
            scale = 60_000_000_000
        } else {
            number = value[...]
            scale = unit == .seconds ? 1_000_000_000 : 1_000_000
        }
        guard let amount = Double(number), amount > 0, amount * Double(scale) < 1e18 else {
            throw .init("must be a positive duration such as 25s, 300ms or a number of \(unit == .seconds ? "seconds" : "milliseconds")")
        }
        return .nanoseconds(Int64(amount * Double(scale)))
    }

    static func parseBool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: return nil
        }
    }
}

extension ConfigurationError {
    public struct Reason: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        String(self.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}
