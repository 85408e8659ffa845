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
    @Option(help: "Largest payload in bytes (env SWITCHBOARD_MAX_PAYLOAD). Default 1000000.")
    var maxPayload: String?
    @Option(help: "Bytes queued per client before it is dropped (env SWITCHBOARD_MAX_OUTBOUND_BYTES). Default 4194304.")
    var maxOutboundBytes: String?
    @Option(help: "Allowed origins, ';'-separated, or * (env SWITCHBOARD_CORS_ORIGINS, CORS_ALLOW_ORIGIN). Default *.")
    var corsOrigins: String?
    @Option(help: "Transports, ','-separated: polling,websocket (env SWITCHBOARD_TRANSPORTS). Default both.")
    var transports: String?
    @Option(help: "Redis URL to join a cluster (env SWITCHBOARD_REDIS_URL, WEBSOCKET_REDIS_URL). Default: alone, in memory.")
    var redisURL: String?
    @Option(help: "Prefix of the cluster's Redis keys and channels (env SWITCHBOARD_CLUSTER_PREFIX). Default switchboard.")
    var clusterPrefix: String?
    @Option(help: "This node's 6-character id (env SWITCHBOARD_NODE_ID). Default: random.")
    var nodeID: String?
    @Option(help: "Cluster heartbeat period (env SWITCHBOARD_HEARTBEAT_INTERVAL). Default 2s.")
    var heartbeatInterval: String?
    @Option(help: "A node silent this long is dead (env SWITCHBOARD_NODE_TTL). Default 10s.")
    var nodeTTL: String?
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
            ("log-level", logLevel), ("threads", threads), ("redis-url", redisURL), ("cluster-prefix", clusterPrefix),
            ("node-id", nodeID), ("heartbeat-interval", heartbeatInterval), ("node-ttl", nodeTTL),
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
