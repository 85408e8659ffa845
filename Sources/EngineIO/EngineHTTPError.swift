import NIOHTTP1

/// The error answers of the Engine.IO HTTP endpoint: `{"code":N,"message":"…"}`.
public struct EngineHTTPError: Error, Sendable, Equatable {
    public let code: Int
    public let message: String
    public let status: HTTPResponseStatus

    public static let unknownTransport = EngineHTTPError(code: 0, message: "Transport unknown", status: .badRequest)
    public static let unknownSession = EngineHTTPError(code: 1, message: "Session ID unknown", status: .badRequest)
    public static let badHandshakeMethod = EngineHTTPError(
        code: 2,
        message: "Bad handshake method",
        status: .badRequest
    )
    public static let badRequest = EngineHTTPError(code: 3, message: "Bad request", status: .badRequest)
    public static let forbidden = EngineHTTPError(code: 4, message: "Forbidden", status: .forbidden)
    public static let unsupportedProtocolVersion = EngineHTTPError(
        code: 5,
        message: "Unsupported protocol version",
        status: .badRequest
    )
    /// An `Origin` outside the configured CORS origins (as python-engineio answers it).
    public static let originNotAllowed = EngineHTTPError(code: 3, message: "Origin not allowed", status: .badRequest)
    public static let payloadTooLarge = EngineHTTPError(
        code: 3,
        message: "Payload too large",
        status: .payloadTooLarge
    )

    /// A handshake over the client address's rate (`ClientLimits.handshakesPerSecond`): retry later.
    public static let tooManyHandshakes = EngineHTTPError(
        code: 3,
        message: "Too many handshakes from this address",
        status: .tooManyRequests
    )
    /// A handshake from an address with `ClientLimits.connectionsPerAddress` sessions open.
    public static let tooManyConnections = EngineHTTPError(
        code: 3,
        message: "Too many connections from this address",
        status: .tooManyRequests
    )

    /// A new session while the node drains: the client should try another node.
    public static let shuttingDown = EngineHTTPError(
        code: 3,
        message: "Server is shutting down",
        status: .serviceUnavailable
    )

    var body: String { #"{"code":\#(code),"message":"\#(message)"}"# }
}
