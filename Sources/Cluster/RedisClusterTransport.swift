import Logging
import NIOConcurrencyHelpers
import NIOCore
import Redis

/// The cluster's medium on Redis: pub/sub for messages (one subscriber connection, drained
/// promptly), and a command connection (pipelined) for the registries.
///
/// Keys, with `p` the cluster prefix:
/// - `p:nodes` (SET): node ids; `p:node:<id>:alive` (STRING with PX): the node's heartbeat;
/// - `p:rooms:<id>` (SET): the rooms node `<id>` holds, as namespace + NUL + room;
/// - `p:reap:<id>` (STRING NX PX): which survivor cleans up a dead node.
/// Every key of one node could carry a `{…}` hash tag for Redis Cluster; with one Redis they are plain.
public final class RedisClusterTransport: ClusterTransport {
    let prefix: String
    /// The command connection, shared with other users of the same Redis (e.g. the presence pools).
    public let commands: RedisClient
    private let subscriberBox = NIOLockedValueBox<RedisSubscriber?>(nil)
    let configuration: RedisConfiguration
    let eventLoop: EventLoop
    let logger: Logger
    let metrics: RedisMetrics
    private let states = NIOLockedValueBox<(commands: RedisConnectionState, subscriber: RedisConnectionState)>(
        (.connecting, .connecting)
    )
    private let reported = NIOLockedValueBox<ClusterTransportState?>(nil)
    /// Combines both connections' states into one report; installed by `start`.
    private let reporter = NIOLockedValueBox<(@Sendable () -> Void)?>(nil)

    /// - Parameter metrics: both connections' instruments, by default made from the bootstrapped factory.
    public init(
        configuration: RedisConfiguration,
        prefix: String,
        eventLoop: EventLoop,
        logger: Logger,
        metrics: RedisMetrics = RedisMetrics()
    ) throws {
        self.configuration = configuration
        self.metrics = metrics
        self.prefix = prefix
        self.eventLoop = eventLoop
        self.logger = logger
        let states = self.states
        let reporter = self.reporter
        self.commands = try RedisClient(
            configuration: configuration,
            eventLoop: eventLoop,
            logger: logger,
            metrics: metrics,
            onStateChange: { state in
                states.withLockedValue { $0.commands = state }
                reporter.withLockedValue { $0 }?()
            }
        )
    }

    /// The command connection's state, for readiness.
    public var commandState: RedisConnectionState { commands.state }

    public func start(
        channels: [String],
        onMessage: @escaping @Sendable (String, ByteBuffer) -> Void,
        onState: @escaping @Sendable (ClusterTransportState) -> Void
    ) -> EventLoopFuture<Void> {
        let report: @Sendable () -> Void = { [states, reported] in
            let (commandState, subscriberState) = states.withLockedValue { $0 }
            let state: ClusterTransportState =
                commandState == .connected && subscriberState == .connected ? .connected : .disconnected
            let changed = reported.withLockedValue { last -> Bool in
                guard last != state else { return false }
                last = state
                return true
            }
            if changed { onState(state) }
        }
        do {
            let subscriber = try RedisSubscriber(
                configuration: configuration,
                eventLoop: eventLoop,
                logger: logger,
                metrics: metrics,
                onStateChange: { [states] state in
                    states.withLockedValue { $0.subscriber = state }
                    report()
                },
                onMessage: { message in
                    onMessage(message.channelName, message.payload)
                }
            )
            subscriberBox.withLockedValue { $0 = subscriber }
            reporter.withLockedValue { $0 = report }
            subscriber.start()
            commands.start()
            let subscribed = subscriber.subscribe(.channel, channels)
            return subscribed.flatMapError { _ in
                // Made on (re)connect; the state callback reports when they are in place.
                self.eventLoop.makeSucceededVoidFuture()
            }
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
    }

    public func stop() -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        let subscriber = subscriberBox.withLockedValue { $0 }
        promise.completeWithTask {
            await subscriber?.shutdown()
            await self.commands.shutdown()
        }
        return promise.futureResult
    }

    private func run(_ command: RESPCommand) -> EventLoopFuture<RESPValue> {
        commands.send(command).flatMapThrowing { try $0.throwingServerError() }
    }

    public func publish(_ payload: ByteBuffer, to channel: String) -> EventLoopFuture<Void> {
        commands.send(RESPCommand("PUBLISH", channel, payload)).flatMapThrowing { _ = try $0.throwingServerError() }
    }

    private var nodesKey: String { "\(prefix):nodes" }
    private func aliveKey(_ node: String) -> String { "\(prefix):node:\(node):alive" }
    private func roomsKey(_ node: String) -> String { "\(prefix):rooms:\(node)" }

    public func heartbeat(node: String, ttl: TimeAmount) -> EventLoopFuture<Bool> {
        var pipeline = RedisPipeline()
        pipeline.append("SET", aliveKey(node), "1", "PX", Int(ttl.nanoseconds / 1_000_000))
        pipeline.append("SADD", nodesKey, node)
        return commands.send(pipeline).flatMapThrowing { replies in
            for reply in replies { _ = try reply.throwingServerError() }
            return replies.last?.int == 1
        }
    }

    public func nodes() -> EventLoopFuture<[String: Bool]> {
        run(RESPCommand("SMEMBERS", nodesKey)).flatMap { reply in
            let nodes = (reply.array ?? []).compactMap(\.string)
            guard !nodes.isEmpty else { return self.eventLoop.makeSucceededFuture([:]) }
            return self.run(RESPCommand("MGET", arguments: nodes.map(self.aliveKey))).map { values in
                let alive = (values.array ?? []).map { !$0.isNull }
                return Dictionary(uniqueKeysWithValues: zip(nodes, alive + Array(repeating: false, count: max(0, nodes.count - alive.count))))
            }
        }
    }

    public func addRooms(_ keys: [String], node: String) -> EventLoopFuture<Void> {
        run(RESPCommand("SADD", arguments: [roomsKey(node)] + keys)).map { _ in }
    }

    public func removeRooms(_ keys: [String], node: String) -> EventLoopFuture<Void> {
        run(RESPCommand("SREM", arguments: [roomsKey(node)] + keys)).map { _ in }
    }

    public func rooms(ofNode node: String) -> EventLoopFuture<[String]> {
        run(RESPCommand("SMEMBERS", roomsKey(node))).map { ($0.array ?? []).compactMap(\.string) }
    }

    public func claimReap(of node: String, by claimant: String, ttl: TimeAmount) -> EventLoopFuture<Bool> {
        run(RESPCommand("SET", "\(prefix):reap:\(node)", claimant, "NX", "PX", Int(ttl.nanoseconds / 1_000_000)))
            .map { !$0.isNull }
    }

    public func forget(node: String) -> EventLoopFuture<Void> {
        var pipeline = RedisPipeline()
        pipeline.append("DEL", roomsKey(node), aliveKey(node))
        pipeline.append("SREM", nodesKey, node)
        return commands.send(pipeline).flatMapThrowing { replies in
            for reply in replies { _ = try reply.throwingServerError() }
        }
    }
}
