import Cluster
import EngineIO
import Logging
import NIOCore
import NIOEmbedded
@testable import Switchboard
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class ConfigurationTests: XCTestCase {
    private func read(flags: [String: String] = [:], env: [String: String] = [:]) throws -> SwitchboardConfiguration {
        try ConfigurationReader(flags: flags, environment: env).read()
    }

    func testDefaultsAreTheDocumentedOnes() throws {
        let config = try read()
        XCTAssertEqual(config.listener.host, "127.0.0.1")
        XCTAssertEqual(config.listener.port, 8080)
        XCTAssertEqual(config.socketIO.path, "/ws/socket.io")
        XCTAssertEqual(config.socketIO.pingInterval, .seconds(25))
        XCTAssertEqual(config.socketIO.pingTimeout, .seconds(20))
        XCTAssertEqual(config.socketIO.maxPayload, 16 * 1024 * 1024)
        XCTAssertEqual(config.socketIO.maxOutboundBytes, 32 * 1024 * 1024)
        XCTAssertEqual(config.backend.revalidateInterval, .seconds(30))
        XCTAssertEqual(config.backend.revalidatePath, "/api/v1/users/user/info")
        XCTAssertEqual(config.socketIO.connectTimeout, .seconds(45))
        XCTAssertEqual(config.socketIO.corsOrigins, ["*"])
        XCTAssertEqual(config.socketIO.transports, .all)
        XCTAssertEqual(config.logLevel, .info)
        XCTAssertEqual(config.socketIO.limits, ClientLimits(handshakeBurst: 1, packetBurst: 1))
        XCTAssertEqual(config.listener.requestHeadTimeout, .seconds(20))
    }

    func testClientLimitsAndTrustedProxies() throws {
        let config = try read(
            flags: [
                "address-handshake-rate": "2.5", "max-connections-per-address": "50", "packet-burst": "7",
                "max-connections-per-user": "3",
            ],
            env: [
                "SWITCHBOARD_PACKET_RATE": "100", "FORWARDED_ALLOW_IPS": "10.0.0.0/8, ::1",
                "SWITCHBOARD_REQUEST_HEAD_TIMEOUT": "1500",
            ]
        )
        let limits = config.socketIO.limits
        XCTAssertEqual(limits.handshakesPerSecond, 2.5)
        XCTAssertEqual(limits.handshakeBurst, 5, "the burst defaults to twice the rate")
        XCTAssertEqual(limits.connectionsPerAddress, 50)
        XCTAssertEqual(limits.packetsPerSecond, 100)
        XCTAssertEqual(limits.packetBurst, 7)
        XCTAssertEqual(limits.trustedProxies.map(\.description), ["10.0.0.0/8", "0:0:0:0:0:0:0:1"])
        XCTAssertEqual(config.socketIO.engine.limits, limits, "the Engine.IO endpoint gets them")
        XCTAssertEqual(config.listener.requestHeadTimeout, .milliseconds(1500))
        XCTAssertEqual(try read(env: ["FORWARDED_ALLOW_IPS": "*"]).socketIO.limits.trustedProxies.count, 2)
        XCTAssertEqual(
            try read(flags: ["trusted-proxies": "127.0.0.1"], env: ["SWITCHBOARD_TRUSTED_PROXIES": "10.0.0.1"])
                .socketIO.limits.trustedProxies.map(\.description),
            ["127.0.0.1"],
            "the flag wins over the environment"
        )
        XCTAssertTrue(describe(config).contains("packet-rate=100/s (burst 7)"))
        XCTAssertEqual(config.contract.connectionsPerUser, 3)
        XCTAssertTrue(describe(config).contains("max-connections-per-user=3"))
        XCTAssertEqual(try read(env: ["SWITCHBOARD_MAX_CONNECTIONS_PER_USER": "20"]).contract.connectionsPerUser, 20)
        XCTAssertEqual(try read().contract.connectionsPerUser, 0, "off by default")
    }

    func testSecretsNeverPrintWithTheConfiguration() throws {
        let secret = "jwt-secret-0123456789", apiKey = "api-key-0123456789", password = "redis-pass-0123456789"
        let config = try read(
            flags: ["jwt-secret": secret, "api-key": apiKey, "redis-url": "redis://app:\(password)@127.0.0.1:6379"],
            env: ["REDIS_URL": "redis://:\(password)@10.0.0.1:6379"]
        )
        XCTAssertEqual(config.auth.jwtSecret, secret)
        // What logging or a dump of any value holding them would print.
        let printed = [
            String(describing: config), String(reflecting: config),
            String(describing: config.auth), String(reflecting: config.auth),
            String(describing: config.api), String(reflecting: config.api),
            String(describing: config.cluster), String(reflecting: config.cluster),
            String(describing: (config.auth, config.api, config.cluster)),
        ]
        for text in printed {
            for value in [secret, apiKey, password] {
                XCTAssertFalse(text.contains(value), "\(value) printed in \(text)")
            }
        }
        XCTAssertTrue(String(describing: config.auth).contains("jwt-secret: set"))
    }

    func testRedisURLFallsBackToOpenWebUIsRedisURL() throws {
        XCTAssertEqual(try read(env: ["REDIS_URL": "redis://a:6379/0"]).cluster.redisURL, "redis://a:6379/0")
        let both = try read(env: ["REDIS_URL": "redis://a:6379/0", "WEBSOCKET_REDIS_URL": "redis://b:6379/1"])
        XCTAssertEqual(both.cluster.redisURL, "redis://b:6379/1")
        // Open WebUI reads its revocation keys from REDIS_URL: so does the node, when it differs.
        XCTAssertEqual(both.cluster.authRedisURL, "redis://a:6379/0")
        XCTAssertNil(try read(env: ["REDIS_URL": "redis://a:6379/0"]).cluster.authRedisURL)
        XCTAssertEqual(
            try read(flags: ["redis-url": "redis://b:6379/1", "auth-redis-url": "redis://c:6379/2"]).cluster.authRedisURL,
            "redis://c:6379/2"
        )
        XCTAssertThrowsError(try read(flags: ["auth-redis-url": "redis://c:6379/2"]))
        XCTAssertNil(try read().cluster.redisURL)
    }

    func testClientHeartbeatIntervalIsReadAsOpenWebUIReadsIt() throws {
        let cases: [(String, Int64)] = [("10", 10), ("1", 5), ("600", 90), ("abc", 30), ("90", 90)]
        for (value, seconds) in cases {
            let config = try read(env: ["WEBSOCKET_HEARTBEAT_INTERVAL": value])
            XCTAssertEqual(config.contract.clientHeartbeatInterval, .seconds(seconds), value)
        }
        XCTAssertEqual(try read().contract.clientHeartbeatInterval, .seconds(30))
    }

    func testRevalidationSettings() throws {
        let config = try read(
            flags: ["revalidate-interval": "2"],
            env: ["SWITCHBOARD_BACKEND_REVALIDATE_PATH": "/api/v1/me"]
        )
        XCTAssertEqual(config.backend.revalidateInterval, .seconds(2), "bare numbers are seconds")
        XCTAssertEqual(config.backend.revalidatePath, "/api/v1/me")
        XCTAssertEqual(try read(env: ["SWITCHBOARD_REVALIDATE_INTERVAL": "1500ms"]).backend.revalidateInterval, .milliseconds(1500))
    }

    func testBackendGateSettings() throws {
        let defaults = try read().backend
        XCTAssertEqual(defaults.maxCallsPerSecond, 200)
        XCTAssertEqual(defaults.maxConcurrentCalls, 32)
        XCTAssertEqual(defaults.maxQueuedCalls, 10_000)
        let config = try read(
            flags: ["backend-max-calls-per-second": "0", "backend-max-concurrent-calls": "4"],
            env: ["SWITCHBOARD_BACKEND_MAX_QUEUED_CALLS": "0", "SWITCHBOARD_BACKEND_MAX_CALLS_PER_SECOND": "50"]
        )
        XCTAssertEqual(config.backend.maxCallsPerSecond, 0, "the flag beats the variable")
        XCTAssertEqual(config.backend.maxConcurrentCalls, 4)
        XCTAssertEqual(config.backend.maxQueuedCalls, 0)
        XCTAssertTrue(describe(config).contains("backend-max-calls-per-second=0 (no gate)"))
        XCTAssertNil(Switchboard.makeBackendGate(config.backend, target: "backend", timerLoop: EmbeddedEventLoop()))
        for (flag, value) in [
            ("backend-max-calls-per-second", "-1"), ("backend-max-concurrent-calls", "0"),
            ("backend-max-queued-calls", "many"), ("backend-max-calls-per-second", "2.5"),
        ] {
            XCTAssertThrowsError(try read(flags: [flag: value]), "\(flag) \(value)") { error in
                XCTAssertEqual((error as? ConfigurationError)?.setting, "--\(flag)")
            }
        }
    }

    func testFlagsBeatEnvironmentBeatsDefaults() throws {
        let config = try read(
            flags: ["port": "9001"],
            env: ["SWITCHBOARD_PORT": "9002", "SWITCHBOARD_HOST": "0.0.0.0"]
        )
        XCTAssertEqual(config.listener.port, 9001)
        XCTAssertEqual(config.listener.host, "0.0.0.0")
    }

    func testSwitchboardNamesBeatOpenWebUINames() throws {
        let config = try read(env: ["SWITCHBOARD_PING_INTERVAL": "1500", "WEBSOCKET_SERVER_PING_INTERVAL": "9"])
        XCTAssertEqual(config.socketIO.pingInterval, .milliseconds(1500))
    }

    func testOpenWebUIDurationsAreSeconds() throws {
        let config = try read(env: ["WEBSOCKET_SERVER_PING_INTERVAL": "10", "WEBSOCKET_SERVER_PING_TIMEOUT": "5"])
        XCTAssertEqual(config.socketIO.pingInterval, .seconds(10))
        XCTAssertEqual(config.socketIO.pingTimeout, .seconds(5))
    }

    func testDurationUnits() throws {
        let config = try read(flags: ["ping-interval": "300ms", "ping-timeout": "2s", "connect-timeout": "1m"])
        XCTAssertEqual(config.socketIO.pingInterval, .milliseconds(300))
        XCTAssertEqual(config.socketIO.pingTimeout, .seconds(2))
        XCTAssertEqual(config.socketIO.connectTimeout, .seconds(60))
    }

    func testCORSOriginsAreSemicolonSeparated() throws {
        let config = try read(env: ["CORS_ALLOW_ORIGIN": "http://a.example; https://b.example"])
        XCTAssertEqual(config.socketIO.corsOrigins, ["http://a.example", "https://b.example"])
        XCTAssertEqual(config.socketIO.engine.cors, .origins(["http://a.example", "https://b.example"]))
    }

    func testWebSocketSupportCanBeSwitchedOff() throws {
        XCTAssertEqual(try read(env: ["ENABLE_WEBSOCKET_SUPPORT": "false"]).socketIO.transports, .polling)
        XCTAssertEqual(try read(env: ["ENABLE_WEBSOCKET_SUPPORT": "true"]).socketIO.transports, .websocket)
        XCTAssertEqual(try read().socketIO.transports, .all)
        // An explicit transport list wins over the Open WebUI switch.
        let explicit = try read(env: ["ENABLE_WEBSOCKET_SUPPORT": "false", "SWITCHBOARD_TRANSPORTS": "websocket"])
        XCTAssertEqual(explicit.socketIO.transports, .websocket)
    }

    func testInvalidValuesNameTheSetting() {
        let cases: [([String: String], [String: String], String)] = [
            (["port": "70000"], [:], "--port"),
            (["port": "http"], [:], "--port"),
            ([:], ["SWITCHBOARD_PORT": "-1"], "SWITCHBOARD_PORT"),
            (["ping-interval": "0"], [:], "--ping-interval"),
            (["ping-interval": "soon"], [:], "--ping-interval"),
            ([:], ["WEBSOCKET_SERVER_PING_TIMEOUT": "-3"], "WEBSOCKET_SERVER_PING_TIMEOUT"),
            (["path": "ws"], [:], "--path"),
            (["max-payload": "10"], [:], "--max-payload"),
            (["transports": "carrier-pigeon"], [:], "--transports"),
            (["transports": ""], [:], "--transports"),
            ([:], ["CORS_ALLOW_ORIGIN": "example.com"], "CORS_ALLOW_ORIGIN"),
            ([:], ["ENABLE_WEBSOCKET_SUPPORT": "maybe"], "ENABLE_WEBSOCKET_SUPPORT"),
            (["log-level": "loud"], [:], "--log-level"),
            (["max-payload": "50000000"], [:], "max-outbound-bytes"),
            (["revalidate-interval": "500ms"], [:], "--revalidate-interval"),
            ([:], ["SWITCHBOARD_REVALIDATE_INTERVAL": "0"], "SWITCHBOARD_REVALIDATE_INTERVAL"),
            (["trusted-proxies": "10.0.0.0/33"], [:], "--trusted-proxies"),
            ([:], ["FORWARDED_ALLOW_IPS": "proxy.internal"], "FORWARDED_ALLOW_IPS"),
            (["packet-rate": "-1"], [:], "--packet-rate"),
            (["address-handshake-burst": "0"], [:], "--address-handshake-burst"),
            (["max-connections-per-address": "lots"], [:], "--max-connections-per-address"),
            (["request-head-timeout": "0"], [:], "--request-head-timeout"),
            (["max-connections-per-user": "-2"], [:], "--max-connections-per-user"),
        ]
        for (flags, env, setting) in cases {
            XCTAssertThrowsError(try read(flags: flags, env: env), "\(flags) \(env)") { error in
                guard let error = error as? ConfigurationError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.setting, setting)
                XCTAssertTrue(error.description.contains(setting))
            }
        }
    }
}

final class ContractConfigurationTests: XCTestCase {
    private func read(flags: [String: String] = [:], env: [String: String] = [:]) throws -> SwitchboardConfiguration {
        try ConfigurationReader(flags: flags, environment: env).read()
    }

    func testContractDefaults() throws {
        let config = try read()
        XCTAssertNil(config.auth.jwtSecret)
        XCTAssertEqual(config.auth.hmacAlgorithms, [.hs256])
        XCTAssertEqual(config.auth.leeway, 30)
        XCTAssertEqual(config.auth.userIDClaims, ["id", "sub"])
        XCTAssertEqual(config.auth.mode, .alwaysConnect)
        XCTAssertEqual(config.auth.keyPrefix, "open-webui")
        XCTAssertNil(config.backend.url)
        XCTAssertEqual(config.backend.userPath, "/api/v1/auths/")
        XCTAssertEqual(config.backend.channelsPath, "/api/v1/channels/")
        XCTAssertEqual(config.backend.timeout, .seconds(5))
        XCTAssertEqual(config.backend.userCacheTTL, .seconds(60))
        XCTAssertEqual(config.effectiveForwardTarget, .none)
        XCTAssertFalse(config.contract.broadcastPresence)
        XCTAssertFalse(config.contract.relayEvents)
        XCTAssertNil(config.api.key)
        XCTAssertNil(config.api.port)
        XCTAssertTrue(config.bridge.enabled)
        XCTAssertEqual(config.bridge.channel, "socketio")
    }

    func testOpenWebUINames() throws {
        let config = try read(env: ["WEBUI_SECRET_KEY": "t0p-secret", "REDIS_KEY_PREFIX": "owui"])
        XCTAssertEqual(config.auth.jwtSecret, "t0p-secret")
        XCTAssertEqual(config.auth.keyPrefix, "owui")
        let preferred = try read(env: ["WEBUI_SECRET_KEY": "a", "SWITCHBOARD_JWT_SECRET": "b"])
        XCTAssertEqual(preferred.auth.jwtSecret, "b")
    }

    func testForwardTargetFollowsWhatIsConfigured() throws {
        XCTAssertEqual(try read(flags: ["backend-url": "http://backend:8080/"]).effectiveForwardTarget, .http)
        XCTAssertEqual(try read(flags: ["backend-url": "http://backend:8080/"]).backend.url, "http://backend:8080")
        XCTAssertEqual(try read(flags: ["redis-url": "redis://127.0.0.1:6379"]).effectiveForwardTarget, .redis)
        XCTAssertEqual(
            try read(flags: ["redis-url": "redis://127.0.0.1:6379", "forward-events": "none"]).effectiveForwardTarget,
            .none
        )
    }

    func testForwardURLTakesTheForwardedEventsAwayFromTheBackend() throws {
        let config = try read(flags: ["backend-url": "http://owui:8080", "forward-url": "http://companion:8091/"])
        XCTAssertEqual(config.backend.forwardURL, "http://companion:8091")
        XCTAssertEqual(config.backend.url, "http://owui:8080")
        XCTAssertEqual(config.effectiveForwardTarget, .http)
        XCTAssertEqual(try read(flags: ["forward-url": "http://companion:8091"]).effectiveForwardTarget, .http)
        XCTAssertEqual(try read(env: ["SWITCHBOARD_FORWARD_URL": "https://c.example"]).backend.forwardURL, "https://c.example")
        XCTAssertNoThrow(try read(flags: ["forward-events": "http", "forward-url": "http://companion:8091"]))
        XCTAssertThrowsError(try read(flags: ["forward-url": "companion:8091"])) { error in
            XCTAssertTrue("\(error)".contains("--forward-url"), "\(error)")
        }
    }

    func testBridgeRoomChannels() throws {
        XCTAssertEqual(try read().bridge.roomChannels, .auto)
        XCTAssertEqual(try read(flags: ["bridge-room-channels": "per-room"]).bridge.roomChannels, .perRoom)
        XCTAssertEqual(try read(env: ["SWITCHBOARD_BRIDGE_ROOM_CHANNELS": "PATTERN"]).bridge.roomChannels, .pattern)
        XCTAssertThrowsError(try read(flags: ["bridge-room-channels": "psubscribe"])) { error in
            XCTAssertTrue("\(error)".contains("--bridge-room-channels"), "\(error)")
        }
    }

    func testContractSettingsParse() throws {
        let config = try read(flags: [
            "jwt-algorithms": "hs256, HS512", "jwt-leeway": "5", "jwt-user-claim": "sub,id", "auth-mode": "strict",
            "backend-timeout": "1500ms", "user-cache-ttl": "0", "broadcast-presence": "true", "relay-events": "yes",
            "api-key": "0123456789abcdef", "api-port": "0", "python-bridge": "off", "bridge-channel": "owui",
        ])
        XCTAssertEqual(config.auth.hmacAlgorithms, [.hs256, .hs512])
        XCTAssertEqual(config.auth.leeway, 5)
        XCTAssertEqual(config.auth.userIDClaims, ["sub", "id"])
        XCTAssertEqual(config.auth.mode, .strict)
        XCTAssertEqual(config.backend.timeout, .milliseconds(1500))
        XCTAssertEqual(config.backend.userCacheTTL, .zero)
        XCTAssertTrue(config.contract.broadcastPresence)
        XCTAssertTrue(config.contract.relayEvents)
        XCTAssertEqual(config.api.key, "0123456789abcdef")
        XCTAssertEqual(config.api.port, 0)
        XCTAssertFalse(config.bridge.enabled)
        XCTAssertEqual(config.bridge.channel, "owui")
    }

    func testBadContractValuesNameTheirSetting() {
        let cases: [([String: String], [String: String], String)] = [
            (["jwt-algorithms": "RS256"], [:], "--jwt-algorithms"),
            (["jwt-algorithms": "none"], [:], "--jwt-algorithms"),
            (["auth-mode": "lenient"], [:], "--auth-mode"),
            (["backend-url": "ftp://x"], [:], "--backend-url"),
            (["backend-user-path": "api/v1"], [:], "--backend-user-path"),
            (["forward-events": "kafka"], [:], "--forward-events"),
            (["forward-events": "http"], [:], "forward-events"),
            (["forward-events": "redis"], [:], "forward-events"),
            ([:], ["SWITCHBOARD_API_KEY": "short"], "SWITCHBOARD_API_KEY"),
            (["api-port": "70000"], [:], "--api-port"),
            (["bridge-channel": "socketio*"], [:], "--bridge-channel"),
            ([:], ["SWITCHBOARD_BROADCAST_PRESENCE": "maybe"], "SWITCHBOARD_BROADCAST_PRESENCE"),
        ]
        for (flags, env, setting) in cases {
            XCTAssertThrowsError(try read(flags: flags, env: env), "\(flags) \(env)") { error in
                XCTAssertEqual((error as? ConfigurationError)?.setting, setting, "\(flags) \(env)")
            }
        }
    }

    func testKeyFilesAreCheckedAtStart() {
        var config = SwitchboardConfiguration()
        config.auth.publicKeyFile = "/nonexistent/key.pem"
        XCTAssertThrowsError(try Switchboard.makeVerifier(config.auth, logger: Logger(label: "test"))) { error in
            XCTAssertEqual((error as? ConfigurationError)?.setting, "jwt-public-key")
        }
        config.auth.publicKeyFile = "/etc/hostname"
        XCTAssertThrowsError(try Switchboard.makeVerifier(config.auth, logger: Logger(label: "test"))) { error in
            XCTAssertEqual((error as? ConfigurationError)?.setting, "jwt-public-key")
        }
        XCTAssertNil(try Switchboard.makeVerifier(SwitchboardConfiguration().auth, logger: Logger(label: "test")))
    }
}

final class OperationsConfigurationTests: XCTestCase {
    private func read(flags: [String: String] = [:], env: [String: String] = [:]) throws -> SwitchboardConfiguration {
        try ConfigurationReader(flags: flags, environment: env).read()
    }

    func testOperationsDefaults() throws {
        let config = try read()
        XCTAssertEqual(config.operations.drainWindow, .seconds(10))
        XCTAssertEqual(config.operations.shutdownTimeout, .seconds(30))
        XCTAssertEqual(config.operations.readyDeadline, .seconds(1))
    }

    func testOperationsSettingsParse() throws {
        let config = try read(flags: ["drain-window": "2s", "shutdown-timeout": "5s", "ready-deadline": "250ms"])
        XCTAssertEqual(config.operations.drainWindow, .seconds(2))
        XCTAssertEqual(config.operations.shutdownTimeout, .seconds(5))
        XCTAssertEqual(config.operations.readyDeadline, .milliseconds(250))
        XCTAssertEqual(try read(flags: ["drain-window": "0"]).operations.drainWindow, .zero)
    }

    func testTheShutdownBoundMustOutlastTheDrain() {
        XCTAssertThrowsError(try read(flags: ["drain-window": "30s"])) { error in
            XCTAssertEqual((error as? ConfigurationError)?.setting, "shutdown-timeout")
        }
    }

    func testASecretComesFromAValueOrAFileNotBoth() {
        XCTAssertThrowsError(try read(flags: ["jwt-secret": "s", "jwt-secret-file": "/f"])) { error in
            XCTAssertEqual((error as? ConfigurationError)?.setting, "jwt-secret-file")
        }
        XCTAssertThrowsError(try read(flags: ["api-key": "0123456789abcdef", "api-key-file": "/f"])) { error in
            XCTAssertEqual((error as? ConfigurationError)?.setting, "api-key-file")
        }
    }

    func testSecretFilesAreReadToTheirFirstLine() throws {
        let path = "/tmp/switchboard-secret-\(getpid())"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        let text = Array("s3cret-value  \nignored\n".utf8)
        _ = text.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)
        defer { unlink(path) }
        XCTAssertEqual(try readSecretFile(path, setting: "jwt-secret-file"), "s3cret-value")
        var auth = SwitchboardConfiguration().auth
        auth.jwtSecretFile = path
        XCTAssertEqual(try Switchboard.makeVerifier(auth, logger: Logger(label: "test"))?.configuration.keys.count, 1)
        XCTAssertThrowsError(try readSecretFile("/nonexistent/secret", setting: "api-key-file")) { error in
            XCTAssertEqual((error as? ConfigurationError)?.setting, "api-key-file")
        }
    }
}
