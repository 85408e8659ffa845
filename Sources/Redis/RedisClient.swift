import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// A Redis connection that reconnects by itself, with exponential backoff and jitter.
///
/// - While connected, commands go straight to the current ``RedisConnection`` (pipelined, in order).
/// - While disconnected they fail at once with ``RedisError/Code/connectionUnavailable``, and commands in flight on a
///   dropped connection fail with ``RedisError/Code/connectionClosed``: nothing ever hangs waiting for Redis to
///   come back.
/// - ``state`` is observable (for readiness) and each change of it is logged once, not each retry.
///
/// The actor runs on its event loop (`unownedExecutor`), like the connections it owns.
public actor RedisClient {
    public nonisolated let eventLoop: any EventLoop
    public nonisolated let configuration: RedisConfiguration
    nonisolated let sslContext: NIOSSLContext?
    nonisolated let logger: Logger
    nonisolated let onStateChange: (@Sendable (RedisConnectionState) -> Void)?
    /// Set for subscriber clients: every pub/sub message is handed to it on the event loop.
    nonisolated let onMessage: RedisChannelHandler.MessageHandler?
    private nonisolated let publishedState: NIOLockedValueBox<RedisConnectionState>
    /// This client's instruments (its role's).
    nonisolated let metrics: RedisMetrics.Role
    /// Whether a connection was ever up: later ones count as reconnects.
    private var everConnected = false

    private var machine: ReconnectStateMachine
    private var connection: RedisConnection?
    private var retryTimer: Scheduled<Void>?
    private var random = SystemRandomNumberGenerator()
    /// Subscriber clients: what to (re)subscribe on every new connection.
    private var subscriptions: [RedisSubscriptionKind: Set<String>] = [:]
    private var lastError: RedisError?

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        self.eventLoop.executor.asUnownedSerialExecutor()
    }

    /// Creates the client; call ``start()`` to connect.
    ///
    /// Builds the TLS context (reading CA / certificate files when configured): create clients while starting up,
    /// not on an event loop.
    /// - Parameters:
    ///   - metrics: the client's instruments (role `command`), by default made from the bootstrapped factory.
    ///   - onStateChange: called (on the event loop) after each change of ``state``.
    public init(
        configuration: RedisConfiguration,
        eventLoop: any EventLoop,
        logger: Logger,
        metrics: RedisMetrics = RedisMetrics(),
        onStateChange: (@Sendable (RedisConnectionState) -> Void)? = nil
    ) throws(RedisError) {
        try self.init(
            configuration: configuration,
            eventLoop: eventLoop,
            logger: logger,
            metrics: metrics,
            onStateChange: onStateChange,
            onMessage: nil
        )
    }

    init(
        configuration: RedisConfiguration,
        eventLoop: any EventLoop,
        logger: Logger,
        metrics: RedisMetrics,
        onStateChange: (@Sendable (RedisConnectionState) -> Void)?,
        onMessage: RedisChannelHandler.MessageHandler?
    ) throws(RedisError) {
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.sslContext = try RedisConnection.makeSSLContext(configuration)
        var logger = logger
        logger[metadataKey: "redis.endpoint"] = "\(configuration.endpoint)"
        if onMessage != nil { logger[metadataKey: "redis.role"] = "subscriber" }
        self.logger = logger
        self.onStateChange = onStateChange
        self.onMessage = onMessage
        self.publishedState = NIOLockedValueBox(.connecting)
        self.metrics = onMessage == nil ? metrics.command : metrics.subscriber
        self.machine = ReconnectStateMachine(policy: configuration.reconnect)
    }

    /// The current state; safe to read from any thread.
    public nonisolated var state: RedisConnectionState {
        self.publishedState.withLockedValue { $0 }
    }

    // MARK: lifecycle

    /// Starts connecting (and keeps reconnecting until ``shutdown()``).
    public nonisolated func start() {
        self.onLoop { client in
            client.perform(client.machine.start())
        }
    }

    /// Closes the connection and stops reconnecting. Commands in flight fail with ``RedisError/Code/connectionClosed``.
    public func shutdown() async {
        let (action, published) = self.machine.shutdown()
        self.publish(published)
        self.perform(action)
        if let connection = self.connection {
            self.connection = nil
            try? await connection.closeFuture.get()
        }
    }

    /// Runs `body` isolated to the actor, on its loop, now if already there.
    private nonisolated func onLoop(_ body: @escaping @Sendable (isolated RedisClient) -> Void) {
        if self.eventLoop.inEventLoop {
            self.assumeIsolated { body($0) }
        } else {
            self.eventLoop.execute {
                self.assumeIsolated { body($0) }
            }
        }
    }

    private func perform(_ action: ReconnectStateMachine.Action) {
        switch action {
        case .none:
            break
        case .connect:
            self.connect()
        case .scheduleRetry(let delay, let attempt):
            self.logger.trace(
                "redis reconnect scheduled",
                metadata: ["redis.attempt": "\(attempt)", "redis.delay_ms": "\(delay.nanoseconds / 1_000_000)"]
            )
            self.retryTimer = self.eventLoop.scheduleTask(in: delay) {
                self.assumeIsolated { client in
                    client.retryTimer = nil
                    client.perform(client.machine.retryTimerFired())
                }
            }
        case .closeConnection:
            self.connection?.close()
        case .cancelRetry:
            self.retryTimer?.cancel()
            self.retryTimer = nil
        }
    }

    private func publish(_ state: RedisConnectionState?) {
        guard let state else { return }
        let previous = self.publishedState.withLockedValue { published in
            defer { published = state }
            return published
        }
        self.metrics.stateChanged(from: previous, to: state)
        if state == .connected {
            if self.everConnected { self.metrics.reconnects.increment() }
            self.everConnected = true
        }
        switch state {
        case .connected:
            self.logger.info("redis connected")
        case .disconnected:
            self.logger.warning(
                "redis unavailable, reconnecting with backoff",
                metadata: ["redis.error": "\(self.lastError?.message ?? "unknown")"]
            )
        case .connecting, .shutdown:
            self.logger.info("redis \(state)")
        }
        self.onStateChange?(state)
    }

    private func connect() {
        let future = RedisConnection.connect(
            configuration: self.configuration,
            sslContext: self.sslContext,
            eventLoop: self.eventLoop,
            logger: self.logger,
            commandDuration: self.metrics.commandDuration,
            onMessage: self.onMessage
        )
        future.whenComplete { result in
            self.assumeIsolated { client in
                switch result {
                case .success(let connection):
                    client.established(connection)
                case .failure(let error):
                    client.failed(error)
                }
            }
        }
    }

    private func failed(_ error: any Error) {
        let error =
            error as? RedisError
            ?? RedisError(code: .connectFailed, message: "\(error)", underlyingError: error)
        self.lastError = error
        self.logger.trace("redis connect attempt failed", metadata: ["redis.error": "\(error.message)"])
        let (action, published) = self.machine.connectFailed(random: Double.random(in: 0..<1, using: &self.random))
        self.publish(published)
        self.perform(action)
    }

    private func established(_ connection: RedisConnection) {
        connection.closeFuture.whenComplete { _ in
            self.assumeIsolated { client in
                client.lost(connection)
            }
        }
        guard self.machine.published != .shutdown else {
            connection.close()
            return
        }
        // Visible at once, so subscription changes made while restoring go to this connection, in order.
        self.connection = connection
        self.restoreSubscriptions(on: connection).whenComplete { result in
            self.assumeIsolated { client in
                guard client.connection === connection else { return }
                switch result {
                case .success:
                    let (action, published) = client.machine.connected()
                    client.publish(published)
                    client.perform(action)
                case .failure(let error):
                    client.logger.error(
                        "redis could not restore subscriptions",
                        metadata: ["redis.error": "\(error)"]
                    )
                    client.connection = nil
                    connection.close()
                    client.failed(error)
                }
            }
        }
    }

    private func lost(_ connection: RedisConnection) {
        guard self.connection === connection else { return }
        self.connection = nil
        self.lastError = RedisError(code: .connectionClosed, message: "the connection to Redis closed")
        let (action, published) = self.machine.connectionLost(random: Double.random(in: 0..<1, using: &self.random))
        self.publish(published)
        self.perform(action)
    }

    private nonisolated var unavailable: RedisError {
        RedisError(code: .connectionUnavailable, message: "not connected to Redis (state: \(self.state))")
    }

    /// The connection to use now, or nil while not connected.
    private var usableConnection: RedisConnection? {
        self.machine.published == .connected ? self.connection : nil
    }

    // MARK: commands

    /// Sends one command on the current connection; fails at once with ``RedisError/Code/connectionUnavailable``
    /// when not connected. From the client's event loop this neither allocates a task nor hops.
    @inlinable
    public nonisolated func send<each Argument: RESPArgument>(
        _ arguments: repeat each Argument
    ) -> EventLoopFuture<RESPValue> {
        if self.eventLoop.inEventLoop, let connection = self.connectionOnLoop() {
            return connection.send(repeat each arguments)
        }
        // Off the loop, or not connected (this path fails the command with `connectionUnavailable`).
        return self.send(RESPCommand(repeat each arguments))
    }

    /// The usable connection; only call on the event loop.
    @usableFromInline
    nonisolated func connectionOnLoop() -> RedisConnection? {
        self.assumeIsolated { $0.usableConnection }
    }

    public nonisolated func send(_ command: RESPCommand, timeout: TimeAmount? = nil) -> EventLoopFuture<RESPValue> {
        self.eventLoop.flatSubmit {
            self.assumeIsolated { client in
                guard let connection = client.usableConnection else {
                    return client.eventLoop.makeFailedFuture(client.unavailable)
                }
                return connection.send(command, timeout: timeout)
            }
        }
    }

    /// Sends a pipeline with one write; see ``RedisConnection/send(_:)-(RedisPipeline)``.
    public nonisolated func send(_ pipeline: RedisPipeline) -> EventLoopFuture<[RESPValue]> {
        self.eventLoop.flatSubmit {
            self.assumeIsolated { client in
                guard let connection = client.usableConnection else {
                    return client.eventLoop.makeFailedFuture(client.unavailable)
                }
                return connection.send(pipeline)
            }
        }
    }

    @discardableResult
    public func execute<each Argument: RESPArgument>(_ arguments: repeat each Argument) async throws -> RESPValue {
        try await self.send(repeat each arguments).get()
    }

    @discardableResult
    public func execute(_ command: RESPCommand, timeout: TimeAmount? = nil) async throws -> RESPValue {
        try await self.send(command, timeout: timeout).get()
    }

    public func execute(_ pipeline: RedisPipeline) async throws -> [RESPValue] {
        try await self.send(pipeline).get()
    }

    // MARK: subscriptions (subscriber clients)

    /// The subscriptions restored after every reconnect.
    func currentSubscriptions() -> [RedisSubscriptionKind: Set<String>] {
        self.subscriptions
    }

    nonisolated func changeSubscriptions(
        _ kind: RedisSubscriptionKind,
        subscribe: Bool,
        names: [String]
    ) -> EventLoopFuture<Void> {
        precondition(self.onMessage != nil, "subscriptions need a subscriber client (RedisSubscriber)")
        return self.eventLoop.flatSubmit {
            self.assumeIsolated { client in
                if subscribe {
                    client.subscriptions[kind, default: []].formUnion(names)
                } else {
                    client.subscriptions[kind]?.subtract(names)
                }
                guard let connection = client.connection else {
                    // Remembered; made on the next connection. Unsubscribing from a closed connection is done.
                    return subscribe
                        ? client.eventLoop.makeFailedFuture(client.unavailable)
                        : client.eventLoop.makeSucceededVoidFuture()
                }
                return connection.sendSubscription(kind, subscribe: subscribe, names: names)
            }
        }
    }

    nonisolated func pingSubscriberConnection() -> EventLoopFuture<Void> {
        self.eventLoop.flatSubmit {
            self.assumeIsolated { client in
                guard let connection = client.usableConnection else {
                    return client.eventLoop.makeFailedFuture(client.unavailable)
                }
                // `+PONG` before any subscription, `["pong", ""]` once subscribed.
                return connection.send("PING").map { _ in }
            }
        }
    }

    private func restoreSubscriptions(on connection: RedisConnection) -> EventLoopFuture<Void> {
        var futures: [EventLoopFuture<Void>] = []
        for kind in RedisSubscriptionKind.allCases {
            guard let names = self.subscriptions[kind], !names.isEmpty else { continue }
            if kind == .shardChannel {
                // In Redis Cluster one SSUBSCRIBE may only name channels of one slot: one command per channel.
                for name in names {
                    futures.append(connection.sendSubscription(kind, subscribe: true, names: [name]))
                }
            } else {
                futures.append(connection.sendSubscription(kind, subscribe: true, names: Array(names)))
            }
        }
        if !futures.isEmpty {
            self.logger.debug(
                "redis restoring subscriptions",
                metadata: ["redis.subscriptions": "\(self.subscriptions.values.reduce(0) { $0 + $1.count })"]
            )
        }
        return EventLoopFuture.andAllSucceed(futures, on: self.eventLoop)
    }
}

extension RedisClient {
    @inlinable
    public nonisolated func send<A0: RESPArgument>(_ a0: A0) -> EventLoopFuture<RESPValue> {
        if self.eventLoop.inEventLoop, let connection = self.connectionOnLoop() {
            return connection.send(a0)
        }
        return self.send(RESPCommand(a0))
    }

    @inlinable
    public nonisolated func send<A0: RESPArgument, A1: RESPArgument>(_ a0: A0, _ a1: A1) -> EventLoopFuture<RESPValue> {
        if self.eventLoop.inEventLoop, let connection = self.connectionOnLoop() {
            return connection.send(a0, a1)
        }
        return self.send(RESPCommand(a0, a1))
    }

    @inlinable
    public nonisolated func send<A0: RESPArgument, A1: RESPArgument, A2: RESPArgument>(
        _ a0: A0,
        _ a1: A1,
        _ a2: A2
    ) -> EventLoopFuture<RESPValue> {
        if self.eventLoop.inEventLoop, let connection = self.connectionOnLoop() {
            return connection.send(a0, a1, a2)
        }
        return self.send(RESPCommand(a0, a1, a2))
    }

    @inlinable
    public nonisolated func send<A0: RESPArgument, A1: RESPArgument, A2: RESPArgument, A3: RESPArgument>(
        _ a0: A0,
        _ a1: A1,
        _ a2: A2,
        _ a3: A3
    ) -> EventLoopFuture<RESPValue> {
        if self.eventLoop.inEventLoop, let connection = self.connectionOnLoop() {
            return connection.send(a0, a1, a2, a3)
        }
        return self.send(RESPCommand(a0, a1, a2, a3))
    }

    @inlinable
    public nonisolated func send<
        A0: RESPArgument,
        A1: RESPArgument,
        A2: RESPArgument,
        A3: RESPArgument,
        A4: RESPArgument
    >(_ a0: A0, _ a1: A1, _ a2: A2, _ a3: A3, _ a4: A4) -> EventLoopFuture<RESPValue> {
        if self.eventLoop.inEventLoop, let connection = self.connectionOnLoop() {
            return connection.send(a0, a1, a2, a3, a4)
        }
        return self.send(RESPCommand(a0, a1, a2, a3, a4))
    }

    @inlinable
    public nonisolated func send<
        A0: RESPArgument,
        A1: RESPArgument,
        A2: RESPArgument,
        A3: RESPArgument,
        A4: RESPArgument,
        A5: RESPArgument
    >(_ a0: A0, _ a1: A1, _ a2: A2, _ a3: A3, _ a4: A4, _ a5: A5) -> EventLoopFuture<RESPValue> {
        if self.eventLoop.inEventLoop, let connection = self.connectionOnLoop() {
            return connection.send(a0, a1, a2, a3, a4, a5)
        }
        return self.send(RESPCommand(a0, a1, a2, a3, a4, a5))
    }
}
