import NIOCore
import NIOSSL

/// How to reach and set up a Redis connection. Every field documents its default.
public struct RedisConfiguration: Sendable {
    public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// TCP (optionally with TLS, see ``RedisConfiguration/tls``).
        case tcp(host: String, port: Int)
        /// A unix domain socket.
        case unixSocket(path: String)

        public var description: String {
            switch self {
            case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unixSocket(let path): return "unix:\(path)"
            }
        }
    }

    /// TLS settings (`rediss://`).
    public struct TLS: Sendable {
        /// The swift-nio-ssl client configuration: trust roots (CA), optional client certificate and key.
        public var configuration: TLSConfiguration
        /// Name checked against the server certificate and sent as SNI. Default: the endpoint's host when it is a
        /// name, none for an IP address.
        public var serverHostname: String?

        public init(configuration: TLSConfiguration = .makeClientConfiguration(), serverHostname: String? = nil) {
            self.configuration = configuration
            self.serverHostname = serverHostname
        }

        /// TLS trusting the PEM CA in `caFile` (default: the system trust store), presenting the client
        /// certificate chain in `certificateFile` with the key in `privateKeyFile` when both are given.
        ///
        /// Reads the certificate and key files now (blocking file I/O): call it while configuring, never on an
        /// event loop.
        public init(
            caFile: String? = nil,
            certificateFile: String? = nil,
            privateKeyFile: String? = nil,
            serverHostname: String? = nil
        ) throws {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let caFile {
                configuration.trustRoots = .file(caFile)
            }
            if let certificateFile, let privateKeyFile {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map {
                    .certificate($0)
                }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: privateKeyFile, format: .pem))
            }
            self.init(configuration: configuration, serverHostname: serverHostname)
        }
    }

    /// Where Redis listens. Default: `127.0.0.1:6379`.
    public var endpoint: Endpoint
    /// ACL user for `AUTH`. Default: none (`AUTH password` authenticates the `default` user).
    public var username: String?
    /// Password for `AUTH`. Default: none (no `AUTH`). Never logged.
    public var password: String?
    /// Database selected with `SELECT` after connecting. Default: 0 (no `SELECT` sent).
    public var database: Int
    /// Name set with `CLIENT SETNAME` after connecting (visible in `CLIENT LIST`). Default: none.
    public var clientName: String?
    /// TLS, or `nil` for plain TCP. Default: `nil`.
    public var tls: TLS?
    /// Limit for TCP connect, TLS handshake and the setup commands together. Default: 5 seconds.
    public var connectTimeout: TimeAmount
    /// Limit for each command's reply; `nil` waits forever. Default: 10 seconds. A command that times out fails
    /// with ``RedisError/Code/timeout``; its late reply is discarded, the connection stays open.
    public var commandTimeout: TimeAmount?
    /// Reconnect backoff for ``RedisClient`` and ``RedisSubscriber``. Default: see ``ReconnectPolicy``.
    public var reconnect: ReconnectPolicy
    /// Commands (a pipeline counts once) that may wait for replies on one connection; more fail at once with
    /// ``RedisError/Code/tooManyPendingCommands``, so a stalled Redis cannot grow memory without bound.
    /// Default: 1,000,000 (roughly 100 MB of bookkeeping at worst).
    public var maximumPendingCommands: Int

    public init(
        endpoint: Endpoint = .tcp(host: "127.0.0.1", port: 6379),
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        clientName: String? = nil,
        tls: TLS? = nil,
        connectTimeout: TimeAmount = .seconds(5),
        commandTimeout: TimeAmount? = .seconds(10),
        reconnect: ReconnectPolicy = ReconnectPolicy(),
        maximumPendingCommands: Int = 1_000_000
    ) {
        self.endpoint = endpoint
        self.username = username
        self.password = password
        self.database = database
        self.clientName = clientName
        self.tls = tls
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.reconnect = reconnect
        self.maximumPendingCommands = maximumPendingCommands
    }

    /// Parses `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS, system trust store unless ``tls`` is
    /// replaced) and `unix://path[?db=N]` (also `unix:///abs/path`). User and password may be percent-encoded.
    public init(url: String) throws(RedisError) {
        self.init()
        func invalid(_ why: String) -> RedisError {
            // The URL may hold a password: do not echo it.
            RedisError(code: .invalidURL, message: "invalid Redis URL: \(why)")
        }
        guard let colon = url.firstIndex(of: ":"), url[colon...].hasPrefix("://") else {
            throw invalid("missing scheme")
        }
        let scheme = url[..<colon].lowercased()
        var rest = url[url.index(colon, offsetBy: 3)...]

        var query: [Substring: Substring] = [:]
        if let mark = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: mark)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                query[parts[0]] = parts.count > 1 ? parts[1] : ""
            }
            rest = rest[..<mark]
        }
        if let db = query["db"] {
            guard let number = Int(db), number >= 0 else { throw invalid("bad database number") }
            self.database = number
        }

        switch scheme {
        case "unix":
            guard !rest.isEmpty else { throw invalid("missing socket path") }
            self.endpoint = .unixSocket(path: String(rest))
            return
        case "redis":
            break
        case "rediss":
            self.tls = TLS()
        default:
            throw invalid("unsupported scheme \(scheme)")
        }

        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = try Self.percentDecode(credentials[..<colon])
                self.username = user.isEmpty ? nil : user
                self.password = try Self.percentDecode(credentials[credentials.index(after: colon)...])
            } else if !credentials.isEmpty {
                // `redis://password@host` is how some clients spell a password without a user.
                self.password = try Self.percentDecode(credentials)
            }
        }
        var hostPort = rest
        if let slash = rest.firstIndex(of: "/") {
            hostPort = rest[..<slash]
            let db = rest[rest.index(after: slash)...]
            if !db.isEmpty {
                guard let number = Int(db), number >= 0 else { throw invalid("bad database number") }
                self.database = number
            }
        }
        var host: Substring
        var port = 6379
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw invalid("unterminated IPv6 address") }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") {
                guard let number = Int(after.dropFirst()) else { throw invalid("bad port") }
                port = number
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = hostPort[..<colon]
            guard let number = Int(hostPort[hostPort.index(after: colon)...]) else { throw invalid("bad port") }
            port = number
        } else {
            host = hostPort
        }
        if host.isEmpty { host = "127.0.0.1" }
        guard (1...65535).contains(port) else { throw invalid("port out of range") }
        self.endpoint = .tcp(host: String(host), port: port)
    }

    private static func percentDecode(_ string: Substring) throws(RedisError) -> String {
        guard string.contains("%") else { return String(string) }
        var bytes: [UInt8] = []
        var iterator = string.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                    let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
                else { throw RedisError(code: .invalidURL, message: "invalid Redis URL: bad percent-encoding") }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Exponential backoff with jitter between reconnect attempts.
public struct ReconnectPolicy: Sendable, Hashable {
    /// Delay before the first retry. Default: 100 ms.
    public var initialDelay: TimeAmount
    /// Upper bound of the delay. Default: 10 s.
    public var maximumDelay: TimeAmount
    /// Growth per failed attempt. Default: 2.
    public var multiplier: Double
    /// Fraction of each delay that is random (0 = none, 1 = "full jitter"). Default: 0.5, so a delay `d` becomes a
    /// uniform value in `[d/2, d]`, which spreads the reconnects of many nodes after a Redis restart.
    public var jitter: Double

    public init(
        initialDelay: TimeAmount = .milliseconds(100),
        maximumDelay: TimeAmount = .seconds(10),
        multiplier: Double = 2,
        jitter: Double = 0.5
    ) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.multiplier = multiplier
        self.jitter = jitter
    }

    /// The delay before retry number `attempt` (0 for the first retry); `random` is uniform in `0..<1`.
    public func delay(attempt: Int, random: Double) -> TimeAmount {
        let base = Double(self.initialDelay.nanoseconds) * pow(self.multiplier, Double(min(attempt, 62)))
        let capped = min(base, Double(self.maximumDelay.nanoseconds))
        let jittered = capped * (1 - self.jitter * random)
        return .nanoseconds(Int64(max(jittered, 0)))
    }
}

private func pow(_ base: Double, _ exponent: Double) -> Double {
    var result = 1.0
    var remaining = Int(exponent)
    while remaining > 0 && result < 1e18 {
        result *= base
        remaining -= 1
    }
    return result
}

extension RedisConfiguration: CustomStringConvertible {
    /// For logs: the password is never included.
    public var description: String {
        var parts = ["endpoint: \(self.endpoint)"]
        if let username { parts.append("username: \(username)") }
        if self.password != nil { parts.append("password: <redacted>") }
        if self.database != 0 { parts.append("database: \(self.database)") }
        if let clientName { parts.append("clientName: \(clientName)") }
        if self.tls != nil { parts.append("tls: on") }
        parts.append("connectTimeout: \(self.connectTimeout)")
        parts.append("commandTimeout: \(self.commandTimeout.map { "\($0)" } ?? "none")")
        return "RedisConfiguration(" + parts.joined(separator: ", ") + ")"
    }
}
