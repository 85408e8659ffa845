import NIOCore

/// Transports a server accepts.
public struct EngineTransports: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let polling = EngineTransports(rawValue: 1 << 0)
    public static let websocket = EngineTransports(rawValue: 1 << 1)
    public static let all: EngineTransports = [.polling, .websocket]
}

/// Which browser origins may call the server (CORS).
public enum CORSPolicy: Sendable, Equatable {
    /// Any origin (`*`). With credentials the request's own origin is echoed, as browsers require.
    case any
    /// Only these exact origins.
    case origins([String])
    /// No CORS headers at all.
    case disabled

    /// False for a request whose `Origin` is present and not allowed: such requests are refused,
    /// WebSocket upgrades included (browsers apply no CORS to WebSockets).
    public func admits(origins: [String]) -> Bool {
        guard case .origins(let list) = self, !origins.isEmpty else { return true }
        return origins.contains(where: list.contains)
    }

    /// The value of `Access-Control-Allow-Origin` for a request's `Origin`, or nil to send none.
    public func allowedOrigin(for origin: String?) -> String? {
        switch self {
        case .disabled:
            return nil
        case .any:
            return origin ?? "*"
        case .origins(let list):
            guard let origin, list.contains(origin) else { return nil }
            return origin
        }
    }
}

/// Engine.IO server settings. Defaults are Engine.IO's and Open WebUI's.
public struct EngineConfiguration: Sendable {
    /// Path the endpoint serves, with a trailing slash. Default `/engine.io/`.
    public var path: String
    /// Interval between server pings. Default 25 s.
    public var pingInterval: TimeAmount
    /// How long a ping may go unanswered before the session closes. Default 20 s.
    public var pingTimeout: TimeAmount
    /// Largest accepted payload in bytes: an HTTP POST body or a WebSocket message. Default 1,000,000.
    public var maxPayload: Int
    /// Transports clients may use. Default both.
    public var transports: EngineTransports
    /// How long a WebSocket probe may take to complete an upgrade from polling. Default 10 s.
    public var upgradeTimeout: TimeAmount
    /// Cross-origin policy for HTTP requests. Default any origin.
    public var cors: CORSPolicy
    /// Bytes a session may have queued for a client before it is dropped as a slow consumer.
    /// Default 4 MiB; must be at least `maxPayload`.
    public var maxOutboundBytes: Int
    /// Per-address and per-session limits. Default none.
    public var limits: ClientLimits

    public init(
        path: String = "/engine.io/",
        pingInterval: TimeAmount = .seconds(25),
        pingTimeout: TimeAmount = .seconds(20),
        maxPayload: Int = 1_000_000,
        transports: EngineTransports = .all,
        upgradeTimeout: TimeAmount = .seconds(10),
        cors: CORSPolicy = .any,
        maxOutboundBytes: Int = 4 * 1024 * 1024,
        limits: ClientLimits = .none
    ) {
        self.path = path.hasSuffix("/") ? path : path + "/"
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.maxPayload = maxPayload
        self.transports = transports
        self.upgradeTimeout = upgradeTimeout
        self.cors = cors
        self.maxOutboundBytes = maxOutboundBytes
        self.limits = limits
    }
}
