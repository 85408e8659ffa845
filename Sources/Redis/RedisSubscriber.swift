import Logging
import NIOCore

/// A pub/sub connection that reconnects by itself and restores its subscriptions.
///
/// Messages are handed to `onMessage` on the event loop as they are decoded, in the order Redis sent them; the socket
/// is read as fast as Redis writes (large reads, many per loop tick), so Redis never accumulates output for this
/// subscriber. `onMessage` must therefore not block: hand work elsewhere if it is slow.
///
/// Channel, pattern and shard-channel subscriptions are remembered as a set: made immediately when connected, and
/// again on every new connection before ``state`` turns ``RedisConnectionState/connected``.
public struct RedisSubscriber: Sendable {
    let client: RedisClient

    /// - Parameters:
    ///   - metrics: the connection's instruments (role `subscriber`), by default made from the bootstrapped factory.
    ///   - onMessage: called on `eventLoop` for every message.
    ///   - onStateChange: called on `eventLoop` after each change of ``state``.
    public init(
        configuration: RedisConfiguration,
        eventLoop: any EventLoop,
        logger: Logger,
        metrics: RedisMetrics = RedisMetrics(),
        onStateChange: (@Sendable (RedisConnectionState) -> Void)? = nil,
        onMessage: @escaping @Sendable (RedisPubSubMessage) -> Void
    ) throws(RedisError) {
        self.client = try RedisClient(
            configuration: configuration,
            eventLoop: eventLoop,
            logger: logger,
            metrics: metrics,
            onStateChange: onStateChange,
            onMessage: onMessage
        )
    }

    public var eventLoop: any EventLoop { self.client.eventLoop }

    /// The current state; safe to read from any thread.
    public var state: RedisConnectionState { self.client.state }

    /// Starts connecting (and keeps reconnecting until ``shutdown()``).
    public func start() {
        self.client.start()
    }

    public func shutdown() async {
        await self.client.shutdown()
    }

    /// The subscriptions this subscriber holds (and restores after reconnecting).
    public func subscriptions() async -> [RedisSubscriptionKind: Set<String>] {
        await self.client.currentSubscriptions()
    }

    // MARK: future based

    /// Adds subscriptions of `kind`. The future succeeds once Redis confirmed them; it fails with
    /// ``RedisError/Code/connectionUnavailable`` while disconnected, the subscriptions then being made on reconnect.
    /// A Redis error (e.g. `NOPERM` for a channel the ACL user may not use) fails it with that error.
    public func subscribe(_ kind: RedisSubscriptionKind = .channel, _ names: [String]) -> EventLoopFuture<Void> {
        self.client.changeSubscriptions(kind, subscribe: true, names: names)
    }

    /// Removes subscriptions of `kind`; they are not restored after a reconnect.
    public func unsubscribe(_ kind: RedisSubscriptionKind = .channel, _ names: [String]) -> EventLoopFuture<Void> {
        self.client.changeSubscriptions(kind, subscribe: false, names: names)
    }

    /// A round trip on the subscriber connection itself (`PING`, answered in order with the subscription traffic):
    /// the readiness check for pub/sub. Fails with ``RedisError/Code/connectionUnavailable`` while disconnected.
    public func ping() -> EventLoopFuture<Void> {
        self.client.pingSubscriberConnection()
    }

    // MARK: async

    public func subscribe(channels: String...) async throws {
        try await self.subscribe(.channel, channels).get()
    }

    public func subscribe(patterns: String...) async throws {
        try await self.subscribe(.pattern, patterns).get()
    }

    /// Redis 7 sharded pub/sub (`SSUBSCRIBE`).
    public func subscribe(shardChannels: String...) async throws {
        try await self.subscribe(.shardChannel, shardChannels).get()
    }

    public func unsubscribe(channels: String...) async throws {
        try await self.unsubscribe(.channel, channels).get()
    }

    public func unsubscribe(patterns: String...) async throws {
        try await self.unsubscribe(.pattern, patterns).get()
    }

    public func unsubscribe(shardChannels: String...) async throws {
        try await self.unsubscribe(.shardChannel, shardChannels).get()
    }
}
