import RedisTestSupport
import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import Redis

private func connect(_ configuration: RedisConfiguration) async throws -> RedisConnection {
    try await RedisConnection.connect(
        configuration: configuration,
        eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
        logger: testLogger
    )
}

@Suite("Configuration URLs")
struct RedisURLTests {
    @Test func parsesRedisURLs() throws {
        var configuration = try RedisConfiguration(url: "redis://alice:s%3Acret@cache.internal:6380/4")
        #expect(configuration.endpoint == .tcp(host: "cache.internal", port: 6380))
        #expect(configuration.username == "alice")
        #expect(configuration.password == "s:cret")
        #expect(configuration.database == 4)
        #expect(configuration.tls == nil)

        configuration = try RedisConfiguration(url: "redis://localhost")
        #expect(configuration.endpoint == .tcp(host: "localhost", port: 6379))
        #expect(configuration.username == nil)
        #expect(configuration.password == nil)
        #expect(configuration.database == 0)

        configuration = try RedisConfiguration(url: "redis://:onlypass@10.0.0.1:7000")
        #expect(configuration.username == nil)
        #expect(configuration.password == "onlypass")

        configuration = try RedisConfiguration(url: "rediss://[::1]:6390/2")
        #expect(configuration.endpoint == .tcp(host: "::1", port: 6390))
        #expect(configuration.tls != nil)
        #expect(configuration.database == 2)

        configuration = try RedisConfiguration(url: "unix:///var/run/redis.sock?db=3")
        #expect(configuration.endpoint == .unixSocket(path: "/var/run/redis.sock"))
        #expect(configuration.database == 3)
    }

    @Test(arguments: [
        "localhost:6379", "http://x", "redis://host:notaport", "redis://host:70000", "redis://h/x", "unix://",
    ])
    func rejectsBadURLs(url: String) {
        let error = #expect(throws: RedisError.self) { _ = try RedisConfiguration(url: url) }
        #expect(error?.code == .invalidURL)
    }

    @Test func descriptionRedactsThePassword() throws {
        let configuration = try RedisConfiguration(url: "redis://u:hunter2@host:6379/1")
        #expect(!"\(configuration)".contains("hunter2"))
        #expect("\(configuration)".contains("<redacted>"))
    }

    @Test func invalidURLErrorDoesNotEchoThePassword() {
        let error = #expect(throws: RedisError.self) {
            _ = try RedisConfiguration(url: "redis://u:hunter2@host:bad")
        }
        #expect(error?.message.contains("hunter2") == false)
    }
}

private let aclConfig = """
    user default on nopass ~* &* +@all
    user alice on >alice-secret ~* &* +@all
    user bob on >bob-secret ~allowed:* resetchannels &allowed:* -@all +get +set +ping +client|setname +subscribe +publish
    """

@Suite("Connection options against redis-server")
struct RedisOptionsTests {
    @Test("ACL user with and without permission: NOPERM surfaces, bad password fails to connect")
    func aclUsers() async throws {
        try await withRedisServer(extraConfig: aclConfig) { server in
            var alice = server.configuration
            alice.username = "alice"
            alice.password = "alice-secret"
            let aliceConnection = try await connect(alice)
            #expect(try await aliceConnection.execute("ACL", "WHOAMI").string == "alice")
            #expect(try await aliceConnection.execute("DEL", "anything") == .integer(0))

            var bob = server.configuration
            bob.username = "bob"
            bob.password = "bob-secret"
            bob.clientName = "bob-conn"
            let bobConnection = try await connect(bob)
            #expect(try await bobConnection.execute("SET", "allowed:1", "x") == .simpleString("OK"))
            let keyDenied = await #expect(throws: RedisError.self) {
                try await bobConnection.execute("SET", "secret:1", "x")
            }
            #expect(keyDenied?.code == .noperm)
            #expect(keyDenied?.message.hasPrefix("NOPERM") == true)
            let commandDenied = await #expect(throws: RedisError.self) {
                try await bobConnection.execute("DEL", "allowed:1")
            }
            #expect(commandDenied?.code == .noperm)
            // The connection is still usable after NOPERM.
            #expect(try await bobConnection.execute("GET", "allowed:1").string == "x")

            // A subscriber whose user may not use the channel gets NOPERM from subscribe.
            let watcher = StateWatcher()
            let subscriber = try RedisSubscriber(
                configuration: fastReconnect(bob),
                eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
                logger: testLogger,
                onStateChange: watcher.handler,
                onMessage: { _ in }
            )
            subscriber.start()
            try await watcher.next(.connected)
            try await subscriber.subscribe(channels: "allowed:room")
            let channelDenied = await #expect(throws: RedisError.self) {
                try await subscriber.subscribe(channels: "forbidden")
            }
            #expect(channelDenied?.code == .noperm)
            await subscriber.shutdown()

            var wrong = bob
            wrong.password = "nope"
            let authError = await #expect(throws: RedisError.self) { _ = try await connect(wrong) }
            #expect(authError?.code == .wrongPass)

            try await aliceConnection.close().get()
            try await bobConnection.close().get()
        }
    }

    @Test func selectAndClientSetName() async throws {
        try await withRedisServer { server in
            var configuration = server.configuration
            configuration.database = 3
            configuration.clientName = "switchboard-test"
            let connection = try await connect(configuration)
            #expect(try await connection.execute("CLIENT", "GETNAME").string == "switchboard-test")
            _ = try await connection.execute("SET", "in-db-3", "1")
            let other = try await connect(server.configuration)
            #expect(try await other.execute("EXISTS", "in-db-3") == .integer(0))
            _ = try await other.execute("SELECT", 3)
            #expect(try await other.execute("EXISTS", "in-db-3") == .integer(1))
            try await connection.close().get()
            try await other.close().get()
        }
    }

    @Test func unixSocketFromURL() async throws {
        try await withRedisServer { server in
            let configuration = try RedisConfiguration(url: "unix://\(server.unixSocketPath)?db=2")
            let connection = try await connect(configuration)
            #expect(try await connection.execute("PING") == .simpleString("PONG"))
            #expect(try await connection.execute("CLIENT", "INFO").string?.contains("db=2") == true)
            try await connection.close().get()
        }
    }

    @Test("EVALSHA, falling back to EVAL on NOSCRIPT")
    func scripts() async throws {
        try await withRedisServer { server in
            let connection = try await connect(server.configuration)
            let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            #expect(try await connection.execute("SCRIPT", "EXISTS", script.sha1) == .array([.integer(0)]))
            #expect(try await connection.evaluate(script, keys: ["counter"], arguments: [5]) == .integer(5))
            // EVAL loaded it under the hash we computed.
            #expect(try await connection.execute("SCRIPT", "EXISTS", script.sha1) == .array([.integer(1)]))
            #expect(try await connection.execute("SCRIPT", "LOAD", script.source).string == script.sha1)
            #expect(try await connection.evaluate(script, keys: ["counter"], arguments: ["2"]) == .integer(7))
            _ = try await connection.execute("SCRIPT", "FLUSH")
            #expect(try await connection.evaluate(script, keys: ["counter"], arguments: [1]) == .integer(8))
            // A script error surfaces as a typed error.
            let failing = RedisScript("return redis.error_reply('NOPERM not today')")
            let error = await #expect(throws: RedisError.self) {
                _ = try await connection.evaluate(failing)
            }
            #expect(error?.code == .noperm)
            try await connection.close().get()
        }
    }

    @Test func sha1MatchesKnownVectors() {
        #expect(SHA1.hex(Array("".utf8)) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(SHA1.hex(Array("abc".utf8)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(
            SHA1.hex(Array(String(repeating: "a", count: 1000).utf8)) == "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        )
    }
}

/// Certificates made at test time with the openssl CLI: a CA, a server certificate for localhost / 127.0.0.1 and
/// a client certificate.
struct TestCertificates {
    let directory: URL
    var ca: String { self.directory.appendingPathComponent("ca.crt").path }
    var serverCertificate: String { self.directory.appendingPathComponent("server.crt").path }
    var serverKey: String { self.directory.appendingPathComponent("server.key").path }
    var clientCertificate: String { self.directory.appendingPathComponent("client.crt").path }
    var clientKey: String { self.directory.appendingPathComponent("client.key").path }

    struct OpenSSLFailed: Error, CustomStringConvertible {
        var description: String
    }

    init() throws {
        guard let openssl = TestRedisServer.findExecutable("openssl") else {
            throw OpenSSLFailed(
                description: "openssl CLI not found on PATH: the TLS test makes its certificates with it"
            )
        }
        self.directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("switchboard-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(self.directory.path)'
            O='\(openssl)'
            $O req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt \
              -days 2 -subj '/CN=Switchboard Test CA' 2>/dev/null
            for name in server client; do
              $O req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $name.key -out $name.csr \
                -subj "/CN=localhost" 2>/dev/null
              printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > $name.ext
              $O x509 -req -in $name.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $name.crt -days 2 \
                -extfile $name.ext 2>/dev/null
            done
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw OpenSSLFailed(description: "openssl failed making test certificates (\(process.terminationStatus))")
        }
    }

    func remove() {
        try? FileManager.default.removeItem(at: self.directory)
    }
}

@Suite("TLS against redis-server with tls-port")
struct RedisTLSTests {
    @Test("rediss with CA and client certificate")
    func tlsWithClientCertificate() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let server = try await TestRedisServer(
            tls: (certificates.serverCertificate, certificates.serverKey, certificates.ca, requireClientCert: true)
        )
        do {
            var configuration = try RedisConfiguration(url: "rediss://localhost:\(server.port)")
            configuration.endpoint = .tcp(host: "127.0.0.1", port: server.port)
            configuration.tls = try .init(
                caFile: certificates.ca,
                certificateFile: certificates.clientCertificate,
                privateKeyFile: certificates.clientKey,
                serverHostname: "localhost"
            )
            let connection = try await connect(configuration)
            #expect(try await connection.execute("SET", "over", "tls") == .simpleString("OK"))
            #expect(try await connection.execute("GET", "over").string == "tls")
            #expect(try await connection.execute("CLIENT", "INFO").string != nil)
            try await connection.close().get()

            // Without the client certificate the server refuses the handshake.
            configuration.tls = try .init(caFile: certificates.ca, serverHostname: "localhost")
            await #expect(throws: (any Error).self) { _ = try await connect(configuration) }

            // A CA that did not sign the server certificate is rejected by the client.
            configuration.tls = .init(serverHostname: "localhost")
            await #expect(throws: (any Error).self) { _ = try await connect(configuration) }
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }
}
