import Foundation
import Logging
import NIOCore
import NIOPosix

import Redis

/// Shared by the Redis and Presence tests.
/// A throw-away `redis-server` for one test: its own free loopback port, its own directory and config, no
/// persistence. Tests never depend on a server started by hand.
package final class TestRedisServer {
    package struct NotFound: Error, CustomStringConvertible {
        package var description: String {
            "redis-server was not found on PATH: the Redis integration tests start their own server and need it "
                + "installed (Debian: apt-get install redis-server)"
        }
    }

    package struct StartFailed: Error, CustomStringConvertible {
        package var description: String
    }

    package let port: Int
    /// Plain-text port is disabled (0) when the server is TLS-only; then this is the TLS port.
    package let tlsPort: Int?
    package let directory: URL
    package let extraConfig: String
    private var process: Process?
    private var exited: AsyncStream<Int32>?

    package var unixSocketPath: String { self.directory.appendingPathComponent("redis.sock").path }

    /// Starts a server. `tls` adds a TLS port (and disables the plain one) using the given files.
    package init(
        extraConfig: String = "",
        tls: (certificate: String, key: String, ca: String, requireClientCert: Bool)? = nil
    )
        async throws
    {
        guard let executable = Self.findExecutable("redis-server") else { throw NotFound() }
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("switchboard-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.directory = directory
        var config = extraConfig
        if let tls {
            let port = try Self.freePort()
            self.port = port
            self.tlsPort = port
            config += """

                port 0
                tls-port \(port)
                tls-cert-file \(tls.certificate)
                tls-key-file \(tls.key)
                tls-ca-cert-file \(tls.ca)
                tls-auth-clients \(tls.requireClientCert ? "yes" : "no")

                """
        } else {
            self.port = try Self.freePort()
            self.tlsPort = nil
            config += "\nport \(self.port)\n"
        }
        self.extraConfig = config
        try self.writeConfig()
        try await self.start(executable: executable)
    }

    private var configPath: String { self.directory.appendingPathComponent("redis.conf").path }

    private func writeConfig() throws {
        let config = """
            bind 127.0.0.1
            protected-mode no
            daemonize no
            save ""
            appendonly no
            dir \(self.directory.path)
            logfile \(self.directory.appendingPathComponent("redis.log").path)
            unixsocket \(self.unixSocketPath)
            unixsocketperm 700
            enable-debug-command local
            \(self.extraConfig)
            """
        try config.write(toFile: self.configPath, atomically: true, encoding: .utf8)
    }

    private func start(executable: String) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [self.configPath]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { process in
            continuation.yield(process.terminationStatus)
            continuation.finish()
        }
        try process.run()
        self.process = process
        self.exited = stream
        try await self.waitUntilListening()
    }

    /// Bounded polling for the port (or TLS port) to accept connections.
    private func waitUntilListening() async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let process, !process.isRunning {
                let log = (try? String(contentsOf: self.directory.appendingPathComponent("redis.log"), encoding: .utf8))
                throw StartFailed(description: "redis-server exited at start: \(log ?? "")")
            }
            let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: self.port).get()
            if let channel {
                try? await channel.close()
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw StartFailed(description: "redis-server did not open port \(self.port) within 10 s")
    }

    /// Kills the server (SIGKILL: the test process may have SIGTERM blocked, and children inherit the mask) and
    /// waits for it to exit. To clients this looks like a crash: the sockets just close.
    package func stop() async {
        guard let process, let exited else { return }
        self.process = nil
        self.exited = nil
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for await _ in exited {}
    }

    /// Starts the server again on the same port with the same config.
    package func restart() async throws {
        await self.stop()
        guard let executable = Self.findExecutable("redis-server") else { throw NotFound() }
        try await self.start(executable: executable)
    }

    /// Stops the server and removes its directory.
    package func shutdown() async {
        await self.stop()
        try? FileManager.default.removeItem(at: self.directory)
    }

    package var configuration: RedisConfiguration {
        RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: self.port))
    }

    package static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// A loopback port nobody listens on right now (bound to port 0, read back, released).
    package static func freePort() throws -> Int {
        let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0).wait()
        let port = channel.localAddress!.port!
        try channel.close().wait()
        return port
    }
}

/// Runs `body` with a fresh server, always shutting it down.
package func withRedisServer<T>(
    extraConfig: String = "",
    _ body: (TestRedisServer) async throws -> T
) async throws -> T {
    let server = try await TestRedisServer(extraConfig: extraConfig)
    do {
        let result = try await body(server)
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

package let testLogger: Logger = {
    var logger = Logger(label: "switchboard-tests")
    logger.logLevel = ProcessInfo.processInfo.environment["REDIS_TEST_LOG"] == nil ? .critical : .trace
    return logger
}()

/// Observes a client's state changes as an async sequence.
package final class StateWatcher: Sendable {
    package let stream: AsyncStream<RedisConnectionState>
    package let continuation: AsyncStream<RedisConnectionState>.Continuation

    package init() {
        (self.stream, self.continuation) = AsyncStream.makeStream()
    }

    package var handler: @Sendable (RedisConnectionState) -> Void {
        { [continuation] state in continuation.yield(state) }
    }

    /// Waits for the next change to `state`.
    package func next(_ state: RedisConnectionState) async throws {
        for await observed in self.stream where observed == state {
            return
        }
        throw CancellationError()
    }
}
