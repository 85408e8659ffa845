import CoreMetrics
import Logging
import NIOCore

/// The I/O of one Redis connection: decodes replies with hiredis (``RESPDecoder``, embedded rather than a separate
/// pipeline stage), writes commands, and performs what ``RedisConnectionStateMachine`` decides.
///
/// Commands issued during one event-loop tick are encoded into one outbound buffer and flushed together once the tick
/// ends; pipelines are written and flushed immediately as one buffer. All methods must be called on the channel's
/// event loop.
@usableFromInline
final class RedisChannelHandler: ChannelInboundHandler {
    @usableFromInline
    typealias InboundIn = ByteBuffer
    @usableFromInline
    typealias OutboundOut = ByteBuffer

    /// Called on the event loop for every pub/sub message (subscriber connections only).
    typealias MessageHandler = @Sendable (RedisPubSubMessage) -> Void

    private var stateMachine: RedisConnectionStateMachine
    private let decoder: RESPDecoder
    private let eventLoop: EventLoop
    private let commandTimeout: TimeAmount?
    private let onMessage: MessageHandler?
    private let logger: Logger
    /// Records each command's round trip, if set.
    private let commandDuration: Timer?
    /// The clock reading shared by the replies of one read; cleared at each read.
    private var readNow: NIODeadline?

    private var context: ChannelHandlerContext?
    /// Commands encoded during this tick and not written yet.
    private var outbound: ByteBuffer
    private var flushScheduled = false
    /// The clock reading shared by the commands of this tick; cleared by the end-of-tick flush.
    private var cachedNow: NIODeadline?
    /// The armed timeout timer and the deadline it fires at.
    private var timeoutTimer: (task: Scheduled<Void>, deadline: NIODeadline)?
    /// The error a coming `channelInactive` should report (set when we close on purpose or on an error).
    private var closeReason: RedisError?

    private static let outboundCapacity = 16 * 1024

    init(
        eventLoop: EventLoop,
        commandTimeout: TimeAmount?,
        maximumPendingCommands: Int = .max,
        commandDuration: Timer? = nil,
        onMessage: MessageHandler?,
        logger: Logger
    ) {
        self.commandDuration = commandDuration
        self.eventLoop = eventLoop
        self.stateMachine = RedisConnectionStateMachine(
            isSubscriber: onMessage != nil,
            maximumPendingCommands: maximumPendingCommands
        )
        self.decoder = RESPDecoder()
        self.commandTimeout = commandTimeout
        self.onMessage = onMessage
        self.logger = logger
        self.outbound = ByteBufferAllocator().buffer(capacity: Self.outboundCapacity)
    }

    // MARK: sending (on the event loop)

    /// ``send(_:replies:timeout:encode:)`` for one command answered by one value; callable from inlinable code.
    @usableFromInline
    func sendValue(_ promise: EventLoopPromise<RESPValue>, encode: (inout ByteBuffer) -> Void) {
        self.send(.value(promise), encode: encode)
    }

    /// Queues one command (encoded by `encode` straight into the outbound buffer); it is flushed at the end of this
    /// event-loop tick together with every other command queued in the tick.
    func send(
        _ completion: RedisConnectionStateMachine.Completion,
        replies: Int = 1,
        timeout: TimeAmount? = nil,
        encode: (inout ByteBuffer) -> Void
    ) {
        guard let deadline = self.register(completion, replies: replies, timeout: timeout) else { return }
        encode(&self.outbound)
        self.scheduleFlush()
        self.armTimer(deadline)
    }

    /// Writes and flushes an already encoded batch (one write for the whole pipeline).
    func send(
        _ completion: RedisConnectionStateMachine.Completion,
        replies: Int,
        encoded buffer: ByteBuffer,
        timeout: TimeAmount? = nil
    ) {
        self.eventLoop.preconditionInEventLoop()
        guard let deadline = self.register(completion, replies: replies, timeout: timeout) else { return }
        guard let context = self.context else { return }
        if self.outbound.readableBytes > 0 {
            // Keep commands queued earlier in this tick ahead of the batch.
            context.write(Self.wrapOutboundOut(self.takeOutbound()), promise: nil)
        }
        context.writeAndFlush(Self.wrapOutboundOut(buffer), promise: nil)
        self.armTimer(deadline)
    }

    /// Records the command in the state machine; fails it and returns nil when the connection is closed.
    private func register(
        _ completion: RedisConnectionStateMachine.Completion,
        replies: Int,
        timeout: TimeAmount?
    ) -> NIODeadline? {
        let timeout = timeout ?? self.commandTimeout
        // One clock read per tick, and none when neither a timeout nor a timer needs it.
        let now = timeout != nil || self.commandDuration != nil ? self.tickNow() : nil
        let deadline = timeout.flatMap { timeout in now.map { $0 + timeout } } ?? .distantFuture
        let command = RedisConnectionStateMachine.PendingCommand(
            completion: completion,
            remainingReplies: replies,
            deadline: deadline,
            sentAt: self.commandDuration == nil ? nil : now
        )
        switch self.stateMachine.send(command) {
        case .write:
            return deadline
        case .fail(let error):
            completion.fail(error)
            return nil
        }
    }

    /// The loop's clock, read once per event-loop tick that sends commands (commands of one tick share their
    /// start time; timeouts are far coarser than a tick).
    private func tickNow() -> NIODeadline {
        if let now = self.cachedNow { return now }
        let now = self.eventLoop.now
        self.cachedNow = now
        self.scheduleFlush()  // also clears the cached time at the end of this tick
        return now
    }

    private func takeOutbound() -> ByteBuffer {
        let buffer = self.outbound
        if self.outbound.capacity > 4 * Self.outboundCapacity {
            // A large burst grew the buffer: do not keep that much memory around.
            self.outbound = ByteBufferAllocator().buffer(capacity: Self.outboundCapacity)
        } else {
            // NIO still holds `buffer`, so this gives `outbound` fresh storage without copying.
            self.outbound.clear()
        }
        return buffer
    }

    private func scheduleFlush() {
        guard !self.flushScheduled else { return }
        self.flushScheduled = true
        self.eventLoop.assumeIsolated().execute {
            self.flushOutbound()
        }
    }

    private func flushOutbound() {
        self.flushScheduled = false
        self.cachedNow = nil
        guard let context = self.context, self.outbound.readableBytes > 0 else { return }
        context.writeAndFlush(Self.wrapOutboundOut(self.takeOutbound()), promise: nil)
    }

    // MARK: timeouts

    /// Makes sure a timer fires no later than `deadline`. One timer per connection, not one per command.
    private func armTimer(_ deadline: NIODeadline) {
        guard deadline != .distantFuture else { return }
        if let armed = self.timeoutTimer {
            guard deadline < armed.deadline else { return }
            // A shorter timeout than the armed one (e.g. after the setup commands' connect timeout).
            armed.task.cancel()
        }
        let task = self.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timerFired()
        }
        self.timeoutTimer = (task, deadline)
    }

    private func timerFired() {
        self.timeoutTimer = nil
        let (expired, next) = self.stateMachine.timeoutsFired(now: self.eventLoop.now)
        if !expired.isEmpty {
            self.logger.debug("redis commands timed out", metadata: ["redis.timed_out": "\(expired.count)"])
            let error = RedisError(code: .timeout, message: "no reply from Redis within the command timeout")
            for completion in expired { completion.fail(error) }
        }
        if let next { self.armTimer(next) }
    }

    // MARK: channel events

    @usableFromInline
    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    @usableFromInline
    func handlerRemoved(context: ChannelHandlerContext) {
        self.closeAll(RedisError(code: .connectionClosed, message: "the Redis handler was removed"))
        self.context = nil
    }

    @usableFromInline
    func channelInactive(context: ChannelHandlerContext) {
        let reason =
            self.closeReason
            ?? RedisError(code: .connectionClosed, message: "the connection to Redis closed")
        self.closeAll(reason)
        context.fireChannelInactive()
    }

    @usableFromInline
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let redisError =
            (error as? RedisError)
            ?? RedisError(
                code: .connectionClosed,
                message: "the connection to Redis failed: \(error)",
                underlyingError: error
            )
        self.close(context: context, reason: redisError)
    }

    @usableFromInline
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = Self.unwrapInboundIn(data)
        self.readNow = nil
        do {
            try self.decoder.decode(buffer) { reply in
                self.handle(reply, context: context)
            }
        } catch {
            self.logger.warning("malformed reply from Redis, closing", metadata: ["redis.error": "\(error.message)"])
            self.close(context: context, reason: error)
        }
    }

    private func handle(_ reply: RESPValue, context: ChannelHandlerContext) {
        let pendingBefore = self.stateMachine.pendingCount
        let sentAt = self.stateMachine.oldestSentAt
        let action = self.stateMachine.receivedReply(reply)
        if let sentAt, let timer = self.commandDuration, self.stateMachine.pendingCount < pendingBefore {
            // The reply completed the oldest command.
            let now = self.readNow ?? self.eventLoop.now
            self.readNow = now
            timer.recordNanoseconds((now - sentAt).nanoseconds)
        }
        switch action {
        case .none:
            break
        case .succeedValue(let promise, let value):
            promise.succeed(value)
        case .failValue(let promise, let error):
            promise.fail(error)
        case .succeedPipeline(let promise, let values):
            promise.succeed(values)
        case .succeedSubscription(let promise):
            promise.succeed()
        case .failSubscription(let promise, let error):
            promise.fail(error)
        case .deliver(let message):
            self.onMessage?(message)
        case .serverUnsubscribed(let reply):
            self.logger.info("redis ended a subscription", metadata: ["redis.reply": "\(reply)"])
        case .closeConnection(let error):
            self.logger.warning("unexpected reply from Redis, closing", metadata: ["redis.error": "\(error.message)"])
            self.close(context: context, reason: error)
        }
    }

    /// Fails everything in flight with `reason` and closes the channel.
    private func close(context: ChannelHandlerContext, reason: RedisError) {
        if self.closeReason == nil { self.closeReason = reason }
        self.closeAll(reason)
        context.close(promise: nil)
    }

    private func closeAll(_ reason: RedisError) {
        let completions = self.stateMachine.close(error: reason)
        self.timeoutTimer?.task.cancel()
        self.timeoutTimer = nil
        for completion in completions { completion.fail(reason) }
    }

    /// Closes the connection on purpose: commands in flight fail with ``RedisError/Code/connectionClosed``.
    func closeConnection(reason: RedisError) {
        guard let context = self.context else { return }
        self.close(context: context, reason: reason)
    }

    var isActive: Bool { self.stateMachine.isActive }
}

@available(*, unavailable)
extension RedisChannelHandler: Sendable {}
