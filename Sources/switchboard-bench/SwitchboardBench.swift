import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

@main
struct SwitchboardBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-bench",
        abstract: "Measures Switchboard side by side with the python-socketio cluster it replaces.",
        discussion: """
            Starts each cluster (its own redis-server, the same number of nodes, the same backend served by \
            the bench), runs the scenarios against one and then the other, and writes results.json and \
            report.html to --out. Scenarios: fanout (client-originated), backend (backend-originated fan-out), \
            storm, idle, ack, redis, reconnect (a node killed under its clients, Switchboard's backend gate on \
            and off).
            """
    )

    @Option(help: "The switchboard binary (build it with -c release).")
    var switchboardBinary = ".build/release/switchboard"
    @Option(help: "Directory of the baseline's owui_socket.py.")
    var baselineDirectory = "scripts/bench-support/baseline"
    @Option(help: "Python with python-socketio, uvicorn, redis, pyjwt, aiohttp.")
    var python = "python3"
    @Option(help: "redis-server executable.")
    var redisServer = "redis-server"
    @Option(help: "Directory of the bench's Python helpers.")
    var supportDirectory = "scripts/bench-support"
    @Option(help: "Where results.json, report.html and the servers' logs go.")
    var out = ".cache/bench"
    @Option(help: "Scenarios, ','-separated: fanout,backend,storm,idle,ack,redis,reconnect (default), faults, slow.")
    var scenarios = "fanout,backend,storm,idle,ack,redis,reconnect"
    @Option(help: "Systems, ','-separated: switchboard,baseline.")
    var systems = "switchboard,baseline"
    @Option(help: "Nodes per cluster.")
    var nodes = 2
    @Option(
        help: """
            Measure nodes already running, host:port,host:port…, as the one system named by --systems: nothing is \
            started, and no CPU or memory figures are taken. The nodes must accept tokens signed with --jwt-secret \
            and ask the bench's backend (--backend-port) for users and channels; Switchboard's API needs --api-key.
            """
    )
    var target: String?
    @Option(help: "Socket.IO path of the --target nodes.")
    var targetPath = "/ws/socket.io"
    @Option(help: "Redis URL of the --target cluster (the python-socketio emitter and caller publish there).")
    var targetRedis: String?
    @Option(help: "HMAC secret the bench signs HS256 tokens with.")
    var jwtSecret = Self.secret
    @Option(help: "Bearer key of Switchboard's HTTP API.")
    var apiKey = Self.apiKey
    @Option(help: "Port of the bench's backend on 127.0.0.1 (0: any free port).")
    var backendPort = 0
    @Option(
        help: "Event-loop threads per Switchboard node; 0 for one per core. One by default: the nodes share the cores with each other, Redis and the load generator, and each baseline node is one Python thread."
    )
    var nodeThreads = 1

    @Option(help: "fan-out: clients.")
    var clients = 1000
    @Option(help: "fan-out: rooms (channels); client i is in channel c<i % rooms>.")
    var rooms = 10
    @Option(help: "fan-out: publishing clients (at least one per room).")
    var publishers = 20
    @Option(help: "fan-out: seconds per rate step.")
    var stepSeconds = 3.0
    @Option(help: "fan-out: publishes per second of the first step.")
    var startRate = 2.0
    @Option(help: "fan-out: factor between steps.")
    var growth = 2.0
    @Option(help: "fan-out: most steps per sweep (a sweep ends at the first step that fails).")
    var maxSteps = 14
    @Option(help: "fan-out: p99 bound in milliseconds.")
    var latencyBound = 50.0

    @Option(help: "connect-storm: connections to Switchboard.")
    var stormConnections = 16_000
    @Option(help: "connect-storm: connections to the baseline.")
    var baselineStormConnections = 2_000
    @Option(help: "connect-storm: handshakes in flight.")
    var stormConcurrency = 500

    @Option(help: "idle: connections held on one Switchboard node.")
    var idleConnections = 50_000
    @Option(help: "idle: connections held on one baseline node.")
    var baselineIdleConnections = 2_000
    @Option(help: "idle: seconds to hold them (heartbeats every 25 s on both).")
    var idleHold = 30.0

    @Option(help: "ack: target clients.")
    var ackTargets = 200
    @Option(help: "ack: calls per system.")
    var ackCalls = 5_000
    @Option(help: "ack: calls in flight.")
    var ackConcurrency = 16

    @Option(help: "redis: requests per SET/GET measurement.")
    var redisRequests = 200_000
    @Option(help: "redis: pub/sub messages drained.")
    var redisMessages = 1_000_000

    @Option(help: "reconnect: clients on the node that is killed, ','-separated for several runs.")
    var reconnectClients = "1000,10000"
    @Option(help: "reconnect: nodes (at least 2: one is killed).")
    var reconnectNodes = 3
    @Option(help: "reconnect: the nodes' --backend-max-calls-per-second when the gate is on.")
    var reconnectGateRate = 200
    @Option(help: "reconnect: seconds to wait for every user to be back.")
    var reconnectTimeout = 300.0

    @Option(help: "faults: clients over the 3 nodes.")
    var faultClients = 2000
    @Option(help: "faults: seconds Redis stays paused (SIGSTOP).")
    var faultPause = 10.0
    @Option(help: "faults: milliseconds between two ticks to every room.")
    var faultTickMillis = 250
    @Option(help: "slow: well-behaved clients on one node.")
    var slowClients = 1000
    @Option(help: "slow: clients that stop reading.")
    var slowConsumers = 100
    @Option(help: "slow: bytes of padding in each tick.")
    var slowPayload = 8192
    @Option(help: "slow: milliseconds between two ticks to every room.")
    var slowTickMillis = 50
    @Option(help: "slow: seconds of each phase (alone, then with the slow clients).")
    var slowPhase = 15.0

    static let secret = "switchboard-bench-secret-0123456789abcdef0123456789abcdef"
    static let apiKey = "switchboard-bench-api-key-0123456789"

    func run() async throws {
        let openFiles = FileDescriptorLimit.raise()
        let outDirectory = URL(fileURLWithPath: self.out, isDirectory: true)
        let logDirectory = outDirectory.appendingPathComponent("logs", isDirectory: true)
        try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
        let wanted = Set(self.scenarios.split(separator: ",").map(String.init))
        let kinds = self.systems.split(separator: ",").compactMap { SystemKind(rawValue: String($0)) }
        let unknown = wanted.subtracting(["fanout", "backend", "storm", "idle", "ack", "redis", "reconnect", "faults", "slow"])
        let reconnectSizes = self.reconnectClients.split(separator: ",").compactMap { Int($0) }
        if wanted.contains("reconnect") {
            guard !reconnectSizes.isEmpty, reconnectSizes.allSatisfy({ $0 > 0 }), self.reconnectNodes >= 2, self.reconnectGateRate > 0
            else { throw ValidationError("reconnect wants --reconnect-clients N,N…, --reconnect-nodes ≥ 2, --reconnect-gate-rate > 0") }
        }
        guard unknown.isEmpty else { throw ValidationError("unknown scenarios: \(unknown.sorted())") }
        guard !kinds.isEmpty else { throw ValidationError("no known system in --systems") }
        guard self.rooms > 0, self.clients >= self.rooms else { throw ValidationError("--clients must be at least --rooms") }
        if self.target == nil, kinds.contains(.switchboard), !FileManager.default.isExecutableFile(atPath: self.switchboardBinary) {
            throw ValidationError("no switchboard binary at \(self.switchboardBinary): swift build -c release --product switchboard")
        }
        if self.target == nil, kinds.contains(.baseline),
            !FileManager.default.fileExists(atPath: "\(self.baselineDirectory)/owui_socket.py")
        {
            throw ValidationError("no owui_socket.py in \(self.baselineDirectory)")
        }

        // Each held connection is a descriptor in the bench and in its node: stay under the limit both inherit.
        let ceiling = max(100, openFiles - 500)
        let idleConnections = min(self.idleConnections, ceiling)
        let stormConnections = min(self.stormConnections, ceiling)
        if idleConnections < self.idleConnections || stormConnections < self.stormConnections {
            Progress.finish(
                "note: the open files limit is \(openFiles) (ulimit -Hn); idle holds \(idleConnections) and connect-storm "
                    + "opens \(stormConnections) connections"
            )
        }

        // The load generator: one event loop, so that every counter lives on one thread.
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = clientGroup.next()
        var external: ExternalTarget?
        if let target = self.target {
            guard kinds.count == 1 else { throw ValidationError("--target measures one system: name it with --systems") }
            let unsupported = wanted.intersection(["idle", "redis", "reconnect", "faults", "slow"])
            guard unsupported.isEmpty else {
                throw ValidationError("\(unsupported.sorted().joined(separator: ", ")) need nodes the bench starts; leave them out of --scenarios")
            }
            external = try ExternalTarget.parse(target, path: self.targetPath, redisURL: self.targetRedis)
        }
        let backend = try await BenchBackend.start(
            group: MultiThreadedEventLoopGroup.singleton,
            channels: self.rooms,
            port: self.backendPort
        )
        Progress.finish("backend for users and channels on 127.0.0.1:\(backend.port)")
        let launcher = Launcher(
            settings: LaunchSettings(
                switchboardBinary: self.switchboardBinary,
                baselineDirectory: self.baselineDirectory,
                python: self.python,
                redisServer: self.redisServer,
                secret: self.jwtSecret,
                apiKey: self.apiKey,
                nodeThreads: self.nodeThreads,
                logDirectory: logDirectory
            ),
            backendPort: backend.port
        )
        launcher.external = external
        let nodeCount = external?.nodes.count ?? self.nodes
        // Interrupted, the bench stops the servers it started rather than leave them running.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let interruptions = [Int32(SIGINT), Int32(SIGTERM)].map { (number: Int32) -> any DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                Progress.finish("interrupted: stopping the servers")
                launcher.stopAll()
                Glibc.exit(128 + number)
            }
            source.resume()
            return source
        }
        defer { interruptions.forEach { $0.cancel() } }
        let minter = TokenMinter(secret: self.jwtSecret)
        var report = BenchReport(
            started: ISO8601DateFormatter().string(from: Date()),
            command: CommandLine.arguments.joined(separator: " "),
            machine: Self.machineDescription(),
            settings: [
                "nodes": "\(nodeCount)", "clients": "\(self.clients)", "rooms": "\(self.rooms)",
                "publishers": "\(self.publishers)", "Switchboard threads per node": "\(self.nodeThreads)", "step seconds": "\(self.stepSeconds)",
                "latency bound ms": "\(self.latencyBound)", "open files limit": "\(openFiles)",
                "target": self.target ?? "clusters started by the bench",
            ]
        )
        let fanoutOptions = FanoutOptions(
            clients: self.clients,
            rooms: self.rooms,
            publishers: self.publishers,
            stepSeconds: self.stepSeconds,
            startRate: self.startRate,
            growth: self.growth,
            maxSteps: self.maxSteps,
            latencyBoundMillis: self.latencyBound,
            drainSeconds: 5
        )

        defer { launcher.stopAll() }
        for (name, origin) in [("fanout", FanoutOrigin.client), ("backend", .backend)] where wanted.contains(name) {
            for kind in kinds {
                Progress.finish("\(name): \(kind.title), \(self.clients) clients on \(nodeCount) nodes, \(self.rooms) rooms")
                let scenario = FanoutScenario(
                    options: fanoutOptions,
                    origin: origin,
                    loop: loop,
                    minter: minter,
                    apiKey: self.apiKey,
                    supportDirectory: self.supportDirectory,
                    python: self.python
                )
                report.fanout.append(try await launcher.withCluster(kind, nodes: self.nodes) { try await scenario.run(on: $0) })
            }
        }
        if wanted.contains("storm") {
            for kind in kinds {
                let count = kind == .switchboard ? stormConnections : self.baselineStormConnections
                Progress.finish("connect-storm: \(kind.title), \(count) connections over \(nodeCount) nodes")
                let scenario = StormScenario(connections: count, concurrency: self.stormConcurrency, loop: loop, minter: minter)
                report.storm.append(try await launcher.withCluster(kind, nodes: self.nodes) { try await scenario.run(on: $0) })
            }
        }
        if wanted.contains("idle") {
            for kind in kinds {
                let count = kind == .switchboard ? idleConnections : self.baselineIdleConnections
                Progress.finish("idle: \(kind.title), \(count) connections on one node for \(Int(self.idleHold)) s")
                let scenario = IdleScenario(
                    connections: count,
                    concurrency: self.stormConcurrency,
                    holdSeconds: self.idleHold,
                    loop: loop,
                    minter: minter
                )
                report.idle.append(try await launcher.withCluster(kind, nodes: 1) { try await scenario.run(on: $0) })
            }
        }
        if wanted.contains("ack") {
            for kind in kinds {
                Progress.finish("ack: \(kind.title), \(self.ackCalls) calls to \(self.ackTargets) sids over \(nodeCount) nodes")
                let scenario = AckScenario(
                    targets: self.ackTargets,
                    calls: self.ackCalls,
                    concurrency: self.ackConcurrency,
                    loop: loop,
                    minter: minter,
                    apiKey: self.apiKey,
                    supportDirectory: self.supportDirectory,
                    python: self.python,
                    workDirectory: outDirectory
                )
                report.ack.append(contentsOf: try await launcher.withCluster(kind, nodes: self.nodes) { try await scenario.run(on: $0) })
            }
        }
        if wanted.contains("redis") {
            Progress.finish("redis: the Switchboard Redis client against redis-benchmark on one redis-server")
            report.redis = try await RedisScenario(
                redisServer: self.redisServer,
                requests: self.redisRequests,
                messages: self.redisMessages,
                logDirectory: logDirectory
            ).run()
        }
        if wanted.contains("reconnect"), kinds.contains(.switchboard) {
            for size in reconnectSizes {
                let count = min(size, ceiling)
                for (gate, arguments) in [
                    ("off", ["--backend-max-calls-per-second", "0"]),
                    ("\(self.reconnectGateRate)/s per node", ["--backend-max-calls-per-second", "\(self.reconnectGateRate)"]),
                ] {
                    Progress.finish(
                        "reconnect: \(count) clients on one of \(self.reconnectNodes) Switchboard nodes, which is killed; gate \(gate)"
                    )
                    let scenario = ReconnectScenario(
                        clients: count,
                        gate: gate,
                        loop: loop,
                        minter: minter,
                        backend: backend,
                        recoveryTimeout: self.reconnectTimeout
                    )
                    report.reconnect.append(
                        try await launcher.withCluster(.switchboard, nodes: self.reconnectNodes, switchboardArguments: arguments) {
                            try await scenario.run(on: $0)
                        }
                    )
                }
            }
        }
        if wanted.contains("faults"), kinds.contains(.switchboard) {
            let count = min(self.faultClients, ceiling)
            guard count >= self.rooms * 3 else { throw ValidationError("faults wants --fault-clients of at least 3 × --rooms") }
            Progress.finish("faults: \(count) clients over 3 Switchboard nodes; a node killed, Redis paused, Redis restarted")
            let scenario = FaultsScenario(
                clients: count,
                rooms: self.rooms,
                tick: .milliseconds(Int64(self.faultTickMillis)),
                pause: self.faultPause,
                loop: loop,
                minter: minter,
                apiKey: self.apiKey,
                launcher: launcher
            )
            let run = try await launcher.withCluster(.switchboard, nodes: 3) { try await scenario.run(on: $0) }
            report.faults.append(run)
            Progress.finish(run.table)
        }
        if wanted.contains("slow"), kinds.contains(.switchboard) {
            guard self.slowClients >= self.rooms else { throw ValidationError("slow wants --slow-clients of at least --rooms") }
            Progress.finish("slow: \(self.slowClients) clients on one Switchboard node, then \(self.slowConsumers) more that stop reading")
            let scenario = SlowConsumersScenario(
                clients: min(self.slowClients, ceiling),
                slowClients: self.slowConsumers,
                rooms: self.rooms,
                tick: .milliseconds(Int64(self.slowTickMillis)),
                payloadBytes: self.slowPayload,
                outboundBound: 512 * 1024,
                phaseSeconds: self.slowPhase,
                loop: loop,
                minter: minter,
                apiKey: self.apiKey
            )
            let run = try await launcher.withCluster(.switchboard, nodes: 1, switchboardArguments: scenario.nodeArguments) {
                try await scenario.run(on: $0)
            }
            report.slowConsumers.append(run)
            Progress.finish(run.table)
        }
        await backend.stop()
        try await clientGroup.shutdownGracefully()

        report.goals = Goals.evaluate(report)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: outDirectory.appendingPathComponent("results.json"))
        try ReportPage.html(report).write(to: outDirectory.appendingPathComponent("report.html"), atomically: true, encoding: .utf8)
        print(Goals.table(report.goals))
        print("results: \(outDirectory.appendingPathComponent("results.json").path)")
        print("report:  \(outDirectory.appendingPathComponent("report.html").path)")
    }

    static func machineDescription() -> String {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let memory = ProcessInfo.processInfo.physicalMemory / 1_073_741_824
        let model =
            (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        return "\(cores) cores (\(model)), \(memory) GiB; load generator, Redis and nodes on the same machine"
    }
}
