import CoreMetrics
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// One Redis connection (no reconnect: see ``RedisClient`` for that).
///
/// Commands are pipelined: any number may be in flight, replies are matched in order. Two ways to send:
/// - `send(…)` returns an `EventLoopFuture` and never suspends: the path for code already on the event loop (it
///   encodes straight into the outbound buffer; commands issued in one loop tick share one flush).
/// - `execute(…)` is `async`; the actor runs on the connection's event loop (its `unownedExecutor`), so awaiting it
///   from the same loop costs no thread hop.
public actor RedisConnection {
    /// The NIO channel. Its close future completes when the connection ends.
    public nonisolated let channel: any Channel
    /// The event loop every operation of this connection runs on.
    public nonisolated let eventLoop: any EventLoop
    @usableFromInline
    nonisolated let handler: NIOLoopBound<RedisChannelHandler>

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        self.eventLoop.executor.asUnownedSerialExecutor()
    }

    /// Completes when the connection has closed.
    public nonisolated var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }

    init(channel: any Channel, handler: NIOLoopBound<RedisChannelHandler>) {
        self.channel = channel
        self.eventLoop = channel.eventLoop
        self.handler = handler
    }

    // MARK: connecting

    /// Connects, then runs `AUTH`, `SELECT` and `CLIENT SETNAME` as the configuration asks.
    ///
    /// Builds the TLS context from the configuration (this may read files): call it off the event loop.
    public static func connect(
        configuration: RedisConfiguration,
        eventLoop: any EventLoop,
        logger: Logger
    ) async throws -> RedisConnection {
        let sslContext = try Self.makeSSLContext(configuration)
        return try await Self.connect(
            configuration: configuration,
            sslContext: sslContext,
            eventLoop: eventLoop,
            logger: logger,
            commandDuration: nil,
            onMessage: nil
        ).get()
    }

    static func makeSSLContext(_ configuration: RedisConfiguration) throws(RedisError) -> NIOSSLContext? {
        guard let tls = configuration.tls else { return nil }
        do {
            return try NIOSSLContext(configuration: tls.configuration)
        } catch {
            throw RedisError(
                code: .invalidConfiguration,
                message: "cannot set up TLS: \(error)",
                underlyingError: error
            )
        }
    }

    static func connect(
        configuration: RedisConfiguration,
        sslContext: NIOSSLContext?,
        eventLoop: any EventLoop,
        logger: Logger,
        commandDuration: Timer?,
        onMessage: RedisChannelHandler.MessageHandler?
    ) -> EventLoopFuture<RedisConnection> {
        let endpoint = configuration.endpoint
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            // Drain a busy subscriber socket in large reads, many per loop tick.
            .channelOption(.maxMessagesPerRead, value: 16)
            .channelOption(
                .recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16 * 1024, maximum: 256 * 1024)
            )
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    if let sslContext {
                        var hostname = configuration.tls?.serverHostname
                        if hostname == nil, case .tcp(let host, _) = endpoint, !Self.isIPAddress(host) {
                            hostname = host
                        }
                        try operations.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: hostname))
                    }
                    try operations.addHandler(
                        RedisChannelHandler(
                            eventLoop: channel.eventLoop,
                            commandTimeout: configuration.commandTimeout,
                            maximumPendingCommands: configuration.maximumPendingCommands,
                            commandDuration: commandDuration,
                            onMessage: onMessage,
                            logger: logger
                        )
                    )
                }
            }

        let connected: EventLoopFuture<any Channel>
        switch endpoint {
        case .tcp(let host, let port):
            connected = bootstrap.connect(host: host, port: port)
        case .unixSocket(let path):
            connected = bootstrap.connect(unixDomainSocketPath: path)
        }

        return connected.flatMapError { error in
            eventLoop.makeFailedFuture(
                RedisError(
                    code: .connectFailed,
                    message: "cannot connect to Redis at \(endpoint): \(error)",
                    underlyingError: error
                )
            )
        }.flatMap { channel in
            let handler: RedisChannelHandler
            do {
                handler = try channel.pipeline.syncOperations.handler(type: RedisChannelHandler.self)
            } catch {
                channel.close(promise: nil)
                return eventLoop.makeFailedFuture(error)
            }
            let connection = RedisConnection(channel: channel, handler: NIOLoopBound(handler, eventLoop: eventLoop))
            return connection.setUp(configuration: configuration).map { connection }
        }
    }

    /// AUTH / SELECT / CLIENT SETNAME (or PING) in one pipeline, bounded by the connect timeout.
    private nonisolated func setUp(configuration: RedisConfiguration) -> EventLoopFuture<Void> {
        var pipeline = RedisPipeline(capacity: 256)
        if let password = configuration.password {
            if let username = configuration.username {
                pipeline.append("AUTH", username, password)
            } else {
                pipeline.append("AUTH", password)
            }
        }
        if configuration.database != 0 {
            pipeline.append("SELECT", configuration.database)
        }
        if let clientName = configuration.clientName {
            pipeline.append("CLIENT", "SETNAME", clientName)
        }
        if pipeline.isEmpty {
            // Always one round trip: the connection only counts as up once Redis (and a TLS handshake) answered.
            pipeline.append("PING")
        }
        let promise = self.eventLoop.makePromise(of: [RESPValue].self)
        self.handler.value.send(
            .pipeline(promise),
            replies: pipeline.count,
            encoded: pipeline.buffer,
            timeout: configuration.connectTimeout
        )
        let channel = self.channel
        return promise.futureResult.flatMapThrowing { replies in
            for reply in replies { try reply.throwingServerError() }
        }.flatMapErrorThrowing { error in
            channel.close(promise: nil)
            throw error
        }
    }

    private static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }

    // MARK: commands, future based

    /// Sends one command (the first argument is its name). An error reply fails the future with a typed
    /// ``RedisError`` carrying Redis's message.
    ///
    /// Inlinable so the argument pack is specialised in the caller (unspecialised packs cost runtime metadata
    /// look-ups per call).
    @inlinable
    public nonisolated func send<each Argument: RESPArgument>(
        _ arguments: repeat each Argument
    ) -> EventLoopFuture<RESPValue> {
        let promise = self.eventLoop.makePromise(of: RESPValue.self)
        if self.eventLoop.inEventLoop {
            self.handler.value.sendValue(promise) { buffer in
                RESPWriting.writeCommand(repeat each arguments, into: &buffer)
            }
        } else {
            self.enqueue(RESPCommand(repeat each arguments), promise: promise, timeout: nil)
        }
        return promise.futureResult
    }

    /// Sends an encoded command, optionally with its own timeout (e.g. `nil`-free for blocking commands).
    public nonisolated func send(_ command: RESPCommand, timeout: TimeAmount? = nil) -> EventLoopFuture<RESPValue> {
        let promise = self.eventLoop.makePromise(of: RESPValue.self)
        self.enqueue(command, promise: promise, timeout: timeout)
        return promise.futureResult
    }

    @usableFromInline
    nonisolated func enqueue(_ command: RESPCommand, promise: EventLoopPromise<RESPValue>, timeout: TimeAmount?) {
        let handler = self.handler
        self.eventLoop.execute(inEventLoop: self.eventLoop.inEventLoop) {
            handler.value.send(.value(promise), timeout: timeout) { buffer in
                buffer.writeImmutableBuffer(command.buffer)
            }
        }
    }

    /// Sends all commands of the pipeline with one write; the future holds every reply in order. Error replies stay
    /// in place as ``RESPValue/error(_:)`` (see ``RESPValue/throwingServerError()``).
    public nonisolated func send(_ pipeline: RedisPipeline) -> EventLoopFuture<[RESPValue]> {
        guard !pipeline.isEmpty else { return self.eventLoop.makeSucceededFuture([]) }
        let promise = self.eventLoop.makePromise(of: [RESPValue].self)
        let handler = self.handler
        self.eventLoop.execute(inEventLoop: self.eventLoop.inEventLoop) {
            handler.value.send(.pipeline(promise), replies: pipeline.count, encoded: pipeline.buffer)
        }
        return promise.futureResult
    }

    // MARK: commands, async

    /// Runs one command (the first argument is its name) and returns its reply; an error reply throws ``RedisError``.
    @discardableResult
    public func execute<each Argument: RESPArgument>(_ arguments: repeat each Argument) async throws -> RESPValue {
        try await self.send(repeat each arguments).get()
    }

    @discardableResult
    public func execute(_ command: RESPCommand, timeout: TimeAmount? = nil) async throws -> RESPValue {
        try await self.send(command, timeout: timeout).get()
    }

    /// Runs a pipeline; see ``send(_:)-(RedisPipeline)``.
    public func execute(_ pipeline: RedisPipeline) async throws -> [RESPValue] {
        try await self.send(pipeline).get()
    }

    // MARK: pub/sub (subscriber connections)

    /// Sends `(P|S)SUBSCRIBE` or `(P|S)UNSUBSCRIBE` for `names`; succeeds once Redis confirmed every name.
    nonisolated func sendSubscription(
        _ kind: RedisSubscriptionKind,
        subscribe: Bool,
        names: [String]
    ) -> EventLoopFuture<Void> {
        guard !names.isEmpty else { return self.eventLoop.makeSucceededVoidFuture() }
        let promise = self.eventLoop.makePromise(of: Void.self)
        let handler = self.handler
        let command = subscribe ? kind.subscribeCommand : kind.unsubscribeCommand
        self.eventLoop.execute(inEventLoop: self.eventLoop.inEventLoop) {
            handler.value.send(.subscription(promise), replies: names.count) { buffer in
                RESPWriting.writeCommand(command, arguments: names, into: &buffer)
            }
        }
        return promise.futureResult
    }

    // MARK: closing

    /// Closes the connection; commands in flight fail with ``RedisError/Code/connectionClosed``.
    @discardableResult
    public nonisolated func close() -> EventLoopFuture<Void> {
        let handler = self.handler
        self.eventLoop.execute(inEventLoop: self.eventLoop.inEventLoop) {
            handler.value.closeConnection(
                reason: RedisError(code: .connectionClosed, message: "the connection was closed by the client")
            )
        }
        return self.channel.closeFuture
    }
}

extension EventLoop {
    /// Runs `work` now when already on the loop, otherwise schedules it on the loop.
    @inlinable
    func execute(inEventLoop: Bool, _ work: @escaping @Sendable () -> Void) {
        if inEventLoop {
            work()
        } else {
            self.execute(work)
        }
    }
}

// MARK: - Fixed-arity overloads
//
// The argument-pack `send` is not specialised by the compiler (each call would look up pack metadata at run time),
// so the common arities have ordinary generic overloads, which overload resolution prefers.

extension RedisConnection {
    /// Encodes `count` arguments with `encode` and sends them as one command (see ``send(_:)-(repeat each Argument)``).
    @inlinable
    nonisolated func sendArguments(_ count: Int, _ encode: (inout ByteBuffer) -> Void) -> EventLoopFuture<RESPValue> {
        let promise = self.eventLoop.makePromise(of: RESPValue.self)
        if self.eventLoop.inEventLoop {
            self.handler.value.sendValue(promise) { buffer in
                buffer.writeRESPLengthHeader(UInt8(ascii: "*"), count)
                encode(&buffer)
            }
        } else {
            var buffer = ByteBufferAllocator().buffer(capacity: 64)
            buffer.writeRESPLengthHeader(UInt8(ascii: "*"), count)
            encode(&buffer)
            self.enqueue(RESPCommand(encoded: buffer), promise: promise, timeout: nil)
        }
        return promise.futureResult
    }

    @inlinable
    public nonisolated func send<A0: RESPArgument>(_ a0: A0) -> EventLoopFuture<RESPValue> {
        self.sendArguments(1) { buffer in
            a0.writeBulkString(into: &buffer)
        }
    }

    @inlinable
    public nonisolated func send<A0: RESPArgument, A1: RESPArgument>(_ a0: A0, _ a1: A1) -> EventLoopFuture<RESPValue> {
        self.sendArguments(2) { buffer in
            a0.writeBulkString(into: &buffer)
            a1.writeBulkString(into: &buffer)
        }
    }

    @inlinable
    public nonisolated func send<A0: RESPArgument, A1: RESPArgument, A2: RESPArgument>(
        _ a0: A0,
        _ a1: A1,
        _ a2: A2
    ) -> EventLoopFuture<RESPValue> {
        self.sendArguments(3) { buffer in
            a0.writeBulkString(into: &buffer)
            a1.writeBulkString(into: &buffer)
            a2.writeBulkString(into: &buffer)
        }
    }

    @inlinable
    public nonisolated func send<A0: RESPArgument, A1: RESPArgument, A2: RESPArgument, A3: RESPArgument>(
        _ a0: A0,
        _ a1: A1,
        _ a2: A2,
        _ a3: A3
    ) -> EventLoopFuture<RESPValue> {
        self.sendArguments(4) { buffer in
            a0.writeBulkString(into: &buffer)
            a1.writeBulkString(into: &buffer)
            a2.writeBulkString(into: &buffer)
            a3.writeBulkString(into: &buffer)
        }
    }

    @inlinable
    public nonisolated func send<
        A0: RESPArgument,
        A1: RESPArgument,
        A2: RESPArgument,
        A3: RESPArgument,
        A4: RESPArgument
    >(_ a0: A0, _ a1: A1, _ a2: A2, _ a3: A3, _ a4: A4) -> EventLoopFuture<RESPValue> {
        self.sendArguments(5) { buffer in
            a0.writeBulkString(into: &buffer)
            a1.writeBulkString(into: &buffer)
            a2.writeBulkString(into: &buffer)
            a3.writeBulkString(into: &buffer)
            a4.writeBulkString(into: &buffer)
        }
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
        self.sendArguments(6) { buffer in
            a0.writeBulkString(into: &buffer)
            a1.writeBulkString(into: &buffer)
            a2.writeBulkString(into: &buffer)
            a3.writeBulkString(into: &buffer)
            a4.writeBulkString(into: &buffer)
            a5.writeBulkString(into: &buffer)
        }
    }
}
