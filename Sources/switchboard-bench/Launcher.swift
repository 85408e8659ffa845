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
        let redisPort = try freePort()
        let redis = try self.spawn(
            self.settings.redisServer,
            ["--port", "\(redisPort)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxclients", "10000"],
            log: "redis-\(kind.rawValue)-\(self.launches)"
        )
        try await waitForPort(redisPort, process: redis)
        var nodes: [NodeEndpoint] = []
        for index in 0..<count {
            let port = try freePort()
            let process: Int32
            switch kind {
            case .switchboard:
                process = try self.spawn(
                    self.settings.switchboardBinary,
                    [
                        "serve", "--host", "127.0.0.1", "--port", "\(port)",
                        "--redis-url", "redis://127.0.0.1:\(redisPort)/0",
                        "--node-id", String(format: "bench%02d", index).suffix(6).description,
                        "--jwt-secret", self.settings.secret, "--api-key", self.settings.apiKey,
                        "--backend-url", "http://127.0.0.1:\(self.backendPort)",
                        // The baseline does not broadcast user-list on user-join; neither does this run.
                        "--broadcast-presence", "false",
                        "--log-level", "warning",
                    ] + (self.settings.nodeThreads > 0 ? ["--threads", "\(self.settings.nodeThreads)"] : [])
                        + switchboardArguments,
                    log: "switchboard-\(self.launches)-node\(index)"
                )
            case .baseline:
                process = try self.spawn(
                    self.settings.python,
                    [
                        "\(self.settings.baselineDirectory)/owui_socket.py", "--port", "\(port)",
                        "--redis", "redis://127.0.0.1:\(redisPort)/0",
                        "--backend", "http://127.0.0.1:\(self.backendPort)", "--secret", self.settings.secret,
                    ],
                    log: "baseline-\(self.launches)-node\(index)"
                )
            }
            nodes.append(NodeEndpoint(host: "127.0.0.1", port: port, pid: process))
        }
        for (node, process) in zip(nodes, self.lock.withLock { self.processes.suffix(count) }) {
            try await waitForPort(node.port, process: process)
            if kind == .switchboard { try await waitForReady(node) }
        }
        let cluster = Cluster(kind: kind, nodes: nodes, redisURL: "redis://127.0.0.1:\(redisPort)/0", redisPID: redis)
        return try await body(cluster)
    }

    private func spawn(_ executable: String, _ arguments: [String], log: String) throws -> Int32 {
        let logFile = self.settings.logDirectory.appendingPathComponent("\(log).log").path
        let pid = try spawnServer(executable, arguments, log: logFile)
        self.lock.withLock { self.processes.append(pid) }
        return pid
    }

    /// A new, empty redis-server on `port`, stopped after the nodes like the first one.
    func restartRedis(port: Int) throws {
        self.launches += 1
        let logFile = self.settings.logDirectory.appendingPathComponent("redis-restarted-\(self.launches).log").path
        let pid = try spawnServer(
            self.settings.redisServer,
            ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxclients", "10000"],
            log: logFile
        )
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
                throw BenchError("process \(process) exited before listening on \(port); see its log in \(self.settings.logDirectory.path)")
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
