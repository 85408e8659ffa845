import NIOCore

/// The logic of one Redis connection: matches replies to the commands in flight (in order), recognises pub/sub
/// pushes, times commands out, and fails everything in flight when the connection ends.
///
/// A plain value: it performs no I/O and reads no clock; ``RedisChannelHandler`` feeds it events (with the time where
/// needed) and performs the actions it returns.
struct RedisConnectionStateMachine {
    /// How a command's outcome is reported.
    enum Completion {
        /// One command, one reply; an error reply fails the promise with a typed ``RedisError``.
        case value(EventLoopPromise<RESPValue>)
        /// A pipeline: all replies, in order; error replies stay in place as ``RESPValue/error(_:)``.
        case pipeline(EventLoopPromise<[RESPValue]>)
        /// `(P|S)(UN)SUBSCRIBE` with N names: N confirmations, or one error reply for the whole command.
        case subscription(EventLoopPromise<Void>)

        func fail(_ error: RedisError) {
            switch self {
            case .value(let promise): promise.fail(error)
            case .pipeline(let promise): promise.fail(error)
            case .subscription(let promise): promise.fail(error)
            }
        }
    }

    struct PendingCommand {
        var completion: Completion
        /// Replies still expected for this entry.
        var remainingReplies: Int
        /// When the command times out (`.distantFuture` for never).
        let deadline: NIODeadline
        /// When it was queued, if its round trip is measured.
        var sentAt: NIODeadline? = nil
        /// Set once the caller was told about the timeout; its replies are then read and dropped.
        var timedOut = false
    }

    private enum State {
        case active
        case closed(RedisError)
    }

    private var state: State = .active
    private var pending = CircularBuffer<PendingCommand>(initialCapacity: 64)
    /// Replies collected for the pipeline at the head of `pending`.
    private var pipelineReplies: [RESPValue] = []
    /// Subscriber connections recognise `message` / `pmessage` / `smessage` pushes.
    let isSubscriber: Bool

    /// Commands (or pipelines) that may wait for replies at once; beyond it `send` fails fast.
    let maximumPendingCommands: Int

    init(isSubscriber: Bool, maximumPendingCommands: Int = .max) {
        self.isSubscriber = isSubscriber
        self.maximumPendingCommands = maximumPendingCommands
    }

    var pendingCount: Int { self.pending.count }

    /// When the command the next reply belongs to was queued, if that was recorded.
    var oldestSentAt: NIODeadline? { self.pending.first?.sentAt }

    var isActive: Bool {
        if case .active = self.state { return true }
        return false
    }

    // MARK: sending

    enum SendAction {
        case write
        case fail(RedisError)
    }

    mutating func send(_ command: PendingCommand) -> SendAction {
        switch self.state {
        case .active:
            guard self.pending.count < self.maximumPendingCommands else {
                return .fail(
                    RedisError(
                        code: .tooManyPendingCommands,
                        message: "\(self.pending.count) commands are already waiting for Redis to reply"
                    )
                )
            }
            self.pending.append(command)
            return .write
        case .closed(let error):
            return .fail(error)
        }
    }

    // MARK: replies

    enum ReplyAction {
        case none
        case succeedValue(EventLoopPromise<RESPValue>, RESPValue)
        case failValue(EventLoopPromise<RESPValue>, RedisError)
        case succeedPipeline(EventLoopPromise<[RESPValue]>, [RESPValue])
        case succeedSubscription(EventLoopPromise<Void>)
        case failSubscription(EventLoopPromise<Void>, RedisError)
        case deliver(RedisPubSubMessage)
        /// A `sunsubscribe` / `unsubscribe` the server sent on its own (e.g. a slot moved): nothing to complete.
        case serverUnsubscribed(RESPValue)
        /// A reply no command is waiting for: the stream can no longer be trusted.
        case closeConnection(RedisError)
    }

    mutating func receivedReply(_ reply: RESPValue) -> ReplyAction {
        guard case .active = self.state else { return .none }

        if self.isSubscriber, case .array(let elements) = reply, elements.count >= 3,
            case .bulkString(let kind) = elements[0]
        {
            if let action = self.subscriberArray(kind: kind, elements: elements, reply: reply) {
                return action
            }
        }

        guard var head = self.pending.first else {
            let error = RedisError(code: .unexpectedReply, message: "reply with no command in flight: \(reply)")
            return .closeConnection(error)
        }

        switch head.completion {
        case .value(let promise):
            self.pending.removeFirst()
            if head.timedOut { return .none }
            if case .error(let message) = reply {
                return .failValue(promise, RedisError(serverMessage: message))
            }
            return .succeedValue(promise, reply)

        case .pipeline(let promise):
            self.pipelineReplies.append(reply)
            head.remainingReplies -= 1
            if head.remainingReplies > 0 {
                self.pending[self.pending.startIndex] = head
                return .none
            }
            self.pending.removeFirst()
            let replies = self.pipelineReplies
            self.pipelineReplies = []
            if head.timedOut { return .none }
            return .succeedPipeline(promise, replies)

        case .subscription(let promise):
            if case .error(let message) = reply {
                // Redis rejects a whole (P|S)SUBSCRIBE with one error (ACL, wrong mode, cross-slot).
                self.pending.removeFirst()
                return head.timedOut ? .none : .failSubscription(promise, RedisError(serverMessage: message))
            }
            let error = RedisError(
                code: .unexpectedReply,
                message: "subscription command answered with \(reply)"
            )
            return .closeConnection(error)
        }
    }

    /// Pushes and subscription confirmations on a subscriber connection; `nil` for anything else (e.g. `pong`).
    private mutating func subscriberArray(
        kind: ByteBuffer,
        elements: [RESPValue],
        reply: RESPValue
    ) -> ReplyAction? {
        let view = kind.readableBytesView
        switch view.count {
        case 7 where view.elementsEqual("message".utf8):
            guard case .bulkString(let channel) = elements[1], case .bulkString(let payload) = elements[2] else {
                return nil
            }
            return .deliver(RedisPubSubMessage(kind: .message, channel: channel, payload: payload))
        case 8 where view.elementsEqual("pmessage".utf8):
            guard elements.count == 4, case .bulkString(let pattern) = elements[1],
                case .bulkString(let channel) = elements[2], case .bulkString(let payload) = elements[3]
            else { return nil }
            return .deliver(
                RedisPubSubMessage(kind: .patternMessage, channel: channel, pattern: pattern, payload: payload)
            )
        case 8 where view.elementsEqual("smessage".utf8):
            guard case .bulkString(let channel) = elements[1], case .bulkString(let payload) = elements[2] else {
                return nil
            }
            return .deliver(RedisPubSubMessage(kind: .shardMessage, channel: channel, payload: payload))
        default:
            break
        }
        guard Self.isSubscriptionConfirmation(view) else { return nil }
        guard var head = self.pending.first, case .subscription(let promise) = head.completion else {
            return .serverUnsubscribed(reply)
        }
        head.remainingReplies -= 1
        if head.remainingReplies > 0 {
            self.pending[self.pending.startIndex] = head
            return ReplyAction.none
        }
        self.pending.removeFirst()
        return head.timedOut ? ReplyAction.none : .succeedSubscription(promise)
    }

    private static func isSubscriptionConfirmation(_ view: ByteBufferView) -> Bool {
        switch view.count {
        case 9: return view.elementsEqual("subscribe".utf8)
        case 10: return view.elementsEqual("psubscribe".utf8) || view.elementsEqual("ssubscribe".utf8)
        case 11: return view.elementsEqual("unsubscribe".utf8)
        case 12: return view.elementsEqual("punsubscribe".utf8) || view.elementsEqual("sunsubscribe".utf8)
        default: return false
        }
    }

    // MARK: timeouts

    /// Marks every command whose deadline has passed as timed out. Returns their completions (to fail) and the
    /// earliest deadline of the commands still waiting, if any (to arm the next timer). Runs when a timer fires,
    /// i.e. about once per timeout period, so scanning the queue is cheap.
    mutating func timeoutsFired(now: NIODeadline) -> (expired: [Completion], nextDeadline: NIODeadline?) {
        var expired: [Completion] = []
        var next: NIODeadline?
        var index = self.pending.startIndex
        while index != self.pending.endIndex {
            if !self.pending[index].timedOut {
                let deadline = self.pending[index].deadline
                if deadline <= now {
                    self.pending[index].timedOut = true
                    expired.append(self.pending[index].completion)
                } else if deadline != .distantFuture, next.map({ deadline < $0 }) ?? true {
                    next = deadline
                }
            }
            index = self.pending.index(after: index)
        }
        return (expired, next)
    }

    // MARK: closing

    /// The connection ended (or must end): every command in flight fails with `error`. Idempotent.
    mutating func close(error: RedisError) -> [Completion] {
        guard case .active = self.state else { return [] }
        self.state = .closed(error)
        var completions: [Completion] = []
        completions.reserveCapacity(self.pending.count)
        while let command = self.pending.popFirst() {
            if !command.timedOut { completions.append(command.completion) }
        }
        self.pipelineReplies = []
        return completions
    }
}
