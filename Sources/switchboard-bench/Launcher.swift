import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Which relay a cluster runs.
enum SystemKind: String, CaseIterable, Codable, Sendable {
    case switchboard
    case baseline

    var title: String { self == .switchboard ? "Switchboard" : "python-socketio" }
}

/// A relay node under test.
struct NodeEndpoint: Sendable {
    var host: String
    var port: Int
    /// nil for a node the bench did not start (no CPU or memory figures for it).
    var pid: Int32?
}

/// A cluster under test: its nodes and its Redis.
struct Cluster: Sendable {
    var kind: SystemKind
    var nodes: [NodeEndpoint]
    /// nil for a cluster the bench did not start and was not told the Redis of.
    var redisURL: String?
    var redisPID: Int32?
    var path = "/ws/socket.io"

    var nodePIDs: [Int32] { self.nodes.compactMap(\.pid) }
}

/// Nodes already running that the bench measures instead of starting its own: their addresses,
/// Socket.IO path and Redis (for the python-socketio emitter and caller).
struct ExternalTarget: Sendable {
    var nodes: [NodeEndpoint]
    var path: String
    var redisURL: String?

    /// `host:port,host:port…`
    static func parse(_ list: String, path: String, redisURL: String?) throws -> ExternalTarget {
        let nodes = try list.split(separator: ",").map { item -> NodeEndpoint in
            let parts = item.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port) else {
                throw BenchError("--target wants host:port,host:port…; got \(item)")
            }
            return NodeEndpoint(host: String(parts[0]), port: port, pid: nil)
        }
        guard !nodes.isEmpty else { throw BenchError("--target names no node") }
        return ExternalTarget(nodes: nodes, path: path, redisURL: redisURL)
    }
}

/// What the bench needs to start both relays: the Switchboard binary, the baseline's directory and
/// the Python that has its packages.
struct LaunchSettings: Sendable {
    var switchboardBinary: String
    var baselineDirectory: String
    var python: String
    var redisServer: String
    var secret: String
    var apiKey: String
    var nodeThreads: Int
    var logDirectory: URL
}

/// Starts redis-server and relay nodes as child processes and stops them all at the end of a
/// scenario, so that each scenario begins from fresh processes (memory and pools untouched).
final class Launcher: @unchecked Sendable {
    let settings: LaunchSettings
    let backendPort: Int
    /// When set, scenarios run against these nodes and nothing is started.
    var external: ExternalTarget?
    /// Guarded by `lock`: a signal handler stops them from another thread.
    private var processes: [Int32] = []
    private let lock = NIOLock()
    private var launches = 0

    init(settings: LaunchSettings, backendPort: Int) {
        self.settings = settings
        self.backendPort = backendPort
    }

    /// Runs `body` with a fresh cluster of `nodes` nodes, then stops every process it started.
    func withCluster<T>(
        _ kind: SystemKind,
        nodes count: Int,
        switchboardArguments: [String] = [],
        _ body: (Cluster) async throws -> T
    ) async throws -> T {
        if let external = self.external {
            return try await body(Cluster(kind: kind, nodes: external.nodes, redisURL: external.redisURL, redisPID: nil, path: external.path))
        }
        defer { self.stopAll() }
        self.launches += 1
        let (redis, redisPort) = try await self.startOnFreePort(log: "redis-\(kind.rawValue)-\(self.launches)") { port in
            (self.settings.redisServer, Self.redisArguments(port: port))
        }
        var nodes: [NodeEndpoint] = []
        for index in 0..<count {
            switch kind {
            case .switchboard:
                // The node binds port 0 and names its port: a port picked here and handed over could be
                // taken in between (the nodes' own Redis connections draw from the same ephemeral range).
                let log = self.logFile("switchboard-\(self.launches)-node\(index)")
                let logStart = (try? FileManager.default.attributesOfItem(atPath: log)[.size] as? Int) ?? 0
                let process = try self.spawn(
                    self.settings.switchboardBinary,
                    [
                        "serve", "--host", "127.0.0.1", "--port", "0",
                        "--redis-url", "redis://127.0.0.1:\(redisPort)/0",
                        "--node-id", String(format: "bench%02d", index).suffix(6).description,
                        "--jwt-secret", self.settings.secret, "--api-key", self.settings.apiKey,
                        "--backend-url", "http://127.0.0.1:\(self.backendPort)",
                        // The baseline does not broadcast user-list on user-join; neither does this run.
                        "--broadcast-presence", "false",
                        "--log-level", "warning",
                    ] + (self.settings.nodeThreads > 0 ? ["--threads", "\(self.settings.nodeThreads)"] : [])
                        + switchboardArguments,
                    log: log
                )
                let port = try await self.waitForAnnouncedPort(in: log, after: logStart, process: process)
                nodes.append(NodeEndpoint(host: "127.0.0.1", port: port, pid: process))
            case .baseline:
                let (process, port) = try await self.startOnFreePort(log: "baseline-\(self.launches)-node\(index)") { port in
                    (
                        self.settings.python,
                        [
                            "\(self.settings.baselineDirectory)/owui_socket.py", "--port", "\(port)",
                            "--redis", "redis://127.0.0.1:\(redisPort)/0",
                            "--backend", "http://127.0.0.1:\(self.backendPort)", "--secret", self.settings.secret,
                        ]
                    )
                }
                nodes.append(NodeEndpoint(host: "127.0.0.1", port: port, pid: process))
            }
        }
        if kind == .switchboard {
            for node in nodes { try await waitForReady(node) }
        }
        let cluster = Cluster(kind: kind, nodes: nodes, redisURL: "redis://127.0.0.1:\(redisPort)/0", redisPID: redis)
        return try await body(cluster)
    }

    private static func redisArguments(port: Int) -> [String] {
        ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxclients", "10000"]
    }

    private func logFile(_ name: String) -> String {
        self.settings.logDirectory.appendingPathComponent("\(name).log").path
    }

    /// Starts a server that must be told its port: a port free when asked can be taken before the
    /// server binds it, so a server that exits before listening is started again on another port.
    private func startOnFreePort(
        log name: String,
        _ command: (Int) -> (executable: String, arguments: [String])
    ) async throws -> (pid: Int32, port: Int) {
        var attempt = 0
        while true {
            attempt += 1
            let port = try freePort()
            let (executable, arguments) = command(port)
            let process = try self.spawn(executable, arguments, log: self.logFile(name))
            do {
                try await self.waitForPort(port, process: process)
                return (process, port)
            } catch let error as ExitedEarly where attempt < 5 {
                self.lock.withLock { self.processes.removeAll { $0 == process } }
                Progress.finish("  \(error); starting it again on another port")
            }
        }
    }

    /// The port from the node's `listening on HOST:PORT` line in its log, past `offset` (logs are appended to).
    private func waitForAnnouncedPort(in log: String, after offset: Int, process: Int32) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let data = FileManager.default.contents(atPath: log) ?? Data()
            let text = String(decoding: data.dropFirst(offset), as: UTF8.self)
            for line in text.split(separator: "\n") where line.hasPrefix("listening on ") {
                if let port = line.split(separator: ":").last.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) {
                    return port
                }
            }
            var status: Int32 = 0
            guard waitpid(process, &status, WNOHANG) == 0 else {
                throw BenchError("node \(process) exited before listening; see its log \(log)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BenchError("node \(process) did not announce its port within 60 s; see its log \(log)")
    }

    private func spawn(_ executable: String, _ arguments: [String], log: String) throws -> Int32 {
        let pid = try spawnServer(executable, arguments, log: log)
        self.lock.withLock { self.processes.append(pid) }
        return pid
    }

    /// A new, empty redis-server on `port`, stopped after the nodes like the first one.
    func restartRedis(port: Int) throws {
        self.launches += 1
        let logFile = self.settings.logDirectory.appendingPathComponent("redis-restarted-\(self.launches).log").path
        let pid = try spawnServer(self.settings.redisServer, Self.redisArguments(port: port), log: logFile)
        self.lock.withLock { self.processes.insert(pid, at: 0) }
    }

    func stopAll() {
        let processes = self.lock.withLock {
            defer { self.processes.removeAll() }
            return self.processes
        }
        // Nodes first (they leave the cluster cleanly while Redis still runs), then Redis.
        for pid in processes.reversed() { stopChild(pid) }
    }

    private func waitForPort(_ port: Int, process: Int32) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            guard waitpid(process, &status, WNOHANG) == 0 else {
                throw ExitedEarly(process: process, port: port)
            }
            if (try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get().close().get()) != nil
            {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchError("nothing listened on port \(port) within 60 s")
    }

    /// A Switchboard node answers /ready 200 once it has joined the cluster through Redis.
    private func waitForReady(_ node: NodeEndpoint) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if try await HTTPConnection.get(host: node.host, port: node.port, path: "/ready") == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchError("node on port \(node.port) not ready within 60 s")
    }
}

/// A server process that exited before anything listened on its port.
struct ExitedEarly: Error, CustomStringConvertible {
    var process: Int32
    var port: Int
    var description: String { "process \(process) exited before listening on \(port)" }
}
