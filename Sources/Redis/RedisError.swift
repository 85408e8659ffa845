/// An error from the Redis layer: either a reply from Redis (`-ERR …`, `-NOPERM …`, `-MOVED …`), carrying Redis's
/// own message, or a failure of the connection (closed, timed out, malformed input).
///
/// A struct around a private enum, so new codes can be added without breaking callers that switch on them.
public struct RedisError: Error, Sendable, Hashable {
    /// What kind of error this is. Compare with the static members (`error.code == .noperm`).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Base: Hashable, Sendable {
            // Replies from Redis, by their leading word.
            case err, noperm, moved, ask, noscript, wrongType, noauth, wrongPass, loading, busy, readonly
            case execAbort, crossSlot, tryAgain, clusterDown, masterDown, otherServerError
            // Failures on the client side.
            case connectionClosed, connectionUnavailable, connectFailed, timeout, protocolError, invalidURL
            case invalidConfiguration, shutdown, unexpectedReply, tooManyPendingCommands
        }
        fileprivate let base: Base

        /// `-ERR …`: a generic error reply.
        public static let err = Code(base: .err)
        /// `-NOPERM …`: the ACL user may not run this command or touch this key / channel.
        public static let noperm = Code(base: .noperm)
        /// `-MOVED slot host:port` (Redis Cluster).
        public static let moved = Code(base: .moved)
        /// `-ASK slot host:port` (Redis Cluster).
        public static let ask = Code(base: .ask)
        /// `-NOSCRIPT …`: EVALSHA for a script the server does not have.
        public static let noscript = Code(base: .noscript)
        /// `-WRONGTYPE …`
        public static let wrongType = Code(base: .wrongType)
        /// `-NOAUTH …`: authentication required.
        public static let noauth = Code(base: .noauth)
        /// `-WRONGPASS …`: bad user name or password.
        public static let wrongPass = Code(base: .wrongPass)
        /// `-LOADING …`
        public static let loading = Code(base: .loading)
        /// `-BUSY …`: a script is running.
        public static let busy = Code(base: .busy)
        /// `-READONLY …`: a write sent to a replica.
        public static let readonly = Code(base: .readonly)
        /// `-EXECABORT …`
        public static let execAbort = Code(base: .execAbort)
        /// `-CROSSSLOT …`
        public static let crossSlot = Code(base: .crossSlot)
        /// `-TRYAGAIN …`
        public static let tryAgain = Code(base: .tryAgain)
        /// `-CLUSTERDOWN …`
        public static let clusterDown = Code(base: .clusterDown)
        /// `-MASTERDOWN …`
        public static let masterDown = Code(base: .masterDown)
        /// Any other error reply; the message holds Redis's text.
        public static let otherServerError = Code(base: .otherServerError)

        /// The connection closed (or was found closed) while the command was in flight or being sent.
        public static let connectionClosed = Code(base: .connectionClosed)
        /// The client is not connected right now (reconnecting, or never connected); the command was not sent.
        public static let connectionUnavailable = Code(base: .connectionUnavailable)
        /// Connecting (TCP, TLS, AUTH, SELECT, CLIENT SETNAME) failed.
        public static let connectFailed = Code(base: .connectFailed)
        /// The command (or connect) did not complete within its timeout.
        public static let timeout = Code(base: .timeout)
        /// Redis sent bytes that are not valid RESP2; the connection is closed.
        public static let protocolError = Code(base: .protocolError)
        /// A reply arrived that matches no command in flight, or has the wrong shape for the command.
        public static let unexpectedReply = Code(base: .unexpectedReply)
        /// The connection URL could not be parsed.
        public static let invalidURL = Code(base: .invalidURL)
        /// The configuration is inconsistent (e.g. a TLS file cannot be loaded).
        public static let invalidConfiguration = Code(base: .invalidConfiguration)
        /// The client was shut down.
        public static let shutdown = Code(base: .shutdown)
        /// The connection already has ``RedisConfiguration/maximumPendingCommands`` commands waiting for replies;
        /// the command was not sent (back-pressure instead of unbounded memory).
        public static let tooManyPendingCommands = Code(base: .tooManyPendingCommands)

        /// True for errors that are replies from Redis, false for client-side failures.
        public var isServerError: Bool {
            switch self.base {
            case .err, .noperm, .moved, .ask, .noscript, .wrongType, .noauth, .wrongPass, .loading, .busy, .readonly,
                .execAbort, .crossSlot, .tryAgain, .clusterDown, .masterDown, .otherServerError:
                return true
            case .connectionClosed, .connectionUnavailable, .connectFailed, .timeout, .protocolError, .invalidURL,
                .invalidConfiguration, .shutdown, .unexpectedReply, .tooManyPendingCommands:
                return false
            }
        }

        public var description: String { "\(self.base)" }
    }

    /// The kind of error.
    public let code: Code
    /// For server errors Redis's full message (`"NOPERM User x has no permissions to run the 'set' command"`);
    /// for client errors a description of what failed.
    public let message: String
    /// The error underneath, e.g. the I/O or TLS error that closed the connection.
    public let underlyingError: (any Error)?

    public init(code: Code, message: String, underlyingError: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlyingError = underlyingError
    }

    /// An error reply from Redis, classified by its leading word.
    public init(serverMessage message: String) {
        let prefix = message.prefix { $0 != " " }
        let code: Code
        switch prefix {
        case "ERR": code = .err
        case "NOPERM": code = .noperm
        case "MOVED": code = .moved
        case "ASK": code = .ask
        case "NOSCRIPT": code = .noscript
        case "WRONGTYPE": code = .wrongType
        case "NOAUTH": code = .noauth
        case "WRONGPASS": code = .wrongPass
        case "LOADING": code = .loading
        case "BUSY": code = .busy
        case "READONLY": code = .readonly
        case "EXECABORT": code = .execAbort
        case "CROSSSLOT": code = .crossSlot
        case "TRYAGAIN": code = .tryAgain
        case "CLUSTERDOWN": code = .clusterDown
        case "MASTERDOWN": code = .masterDown
        default: code = .otherServerError
        }
        self.init(code: code, message: message)
    }

    /// For `MOVED` and `ASK` errors: the hash slot and the node that owns it.
    public var redirection: (slot: Int, host: String, port: Int)? {
        guard self.code == .moved || self.code == .ask else { return nil }
        let parts = self.message.split(separator: " ")
        guard parts.count == 3, let slot = Int(parts[1]), let colon = parts[2].lastIndex(of: ":"),
            let port = Int(parts[2][parts[2].index(after: colon)...])
        else { return nil }
        return (slot, String(parts[2][..<colon]), port)
    }

    public static func == (lhs: RedisError, rhs: RedisError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.code)
        hasher.combine(self.message)
    }
}

extension RedisError: CustomStringConvertible {
    public var description: String {
        if let underlyingError {
            return "RedisError(\(self.code)): \(self.message) (\(underlyingError))"
        }
        return "RedisError(\(self.code)): \(self.message)"
    }
}
