import RedisTestSupport
import NIOCore
import NIOPosix
import Testing

@testable import Redis

func fastReconnect(_ configuration: RedisConfiguration) -> RedisConfiguration {
    var configuration = configuration
    configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(200))
    configuration.connectTimeout = .seconds(2)
    return configuration
}

@Suite("Reconnecting client")
struct RedisReconnectTests {
    @Test("server restarted mid-stream: in-flight commands fail cleanly, the client reconnects")
    func serverRestartMidStream() async throws {
        try await withRedisServer { server in
            let watcher = StateWatcher()
            var configuration = fastReconnect(server.configuration)
            configuration.commandTimeout = nil
            let client = try RedisClient(
                configuration: configuration,
                eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
                logger: testLogger,
                onStateChange: watcher.handler
            )
            #expect(client.state == .connecting)
            client.start()
            try await watcher.next(.connected)
            #expect(try await client.execute("SET", "k", "v") == .simpleString("OK"))

            // A large burst and a command that blocks forever are in flight when the server dies.
            let burst = try await client.eventLoop.flatSubmit {
                client.eventLoop.makeSucceededFuture((0..<50_000).map { _ in client.send("INCR", "n") })
            }.get()
            let blocked = client.send(RESPCommand("BLPOP", "queue", 0))
            _ = try await burst[0].get()
            await server.stop()

            let error = await #expect(throws: RedisError.self) { try await blocked.get() }
            #expect(error?.code == .connectionClosed)
            var succeeded = 0
            var failed = 0
            for future in burst {
                do {
                    _ = try await future.get()
                    succeeded += 1
                } catch let error as RedisError {
                    #expect(error.code == .connectionClosed)
                    failed += 1
                }
            }
            #expect(succeeded + failed == 50_000)
            #expect(succeeded >= 1)

            try await watcher.next(.disconnected)
            #expect(client.state == .disconnected)
            let unavailable = await #expect(throws: RedisError.self) { try await client.execute("PING") }
            #expect(unavailable?.code == .connectionUnavailable)

            try await server.restart()
            try await watcher.next(.connected)
            #expect(try await client.execute("PING") == .simpleString("PONG"))
            await client.shutdown()
            #expect(client.state == .shutdown)
        }
    }

    @Test func firstConnectRetriesUntilTheServerIsUp() async throws {
        try await withRedisServer { server in
            await server.stop()
            let watcher = StateWatcher()
            let client = try RedisClient(
                configuration: fastReconnect(server.configuration),
                eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
                logger: testLogger,
                onStateChange: watcher.handler
            )
            client.start()
            try await watcher.next(.disconnected)
            try await server.restart()
            try await watcher.next(.connected)
            #expect(try await client.execute("ECHO", "up").string == "up")
            await client.shutdown()
        }
    }

    @Test func backoffGrowsWithJitterAndIsCapped() {
        let policy = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(10), jitter: 0.5)
        #expect(policy.delay(attempt: 0, random: 0) == .milliseconds(100))
        #expect(policy.delay(attempt: 0, random: 0.5) == .milliseconds(75))
        #expect(policy.delay(attempt: 3, random: 0) == .milliseconds(800))
        #expect(policy.delay(attempt: 30, random: 0) == .seconds(10))
        #expect(policy.delay(attempt: 1000, random: 0.999_999) >= .seconds(5))
    }

    @Test func stateMachinePublishesTransitionsOnlyOnce() {
        var machine = ReconnectStateMachine(policy: ReconnectPolicy())
        #expect(machine.start() == .connect)
        var (action, published) = machine.connectFailed(random: 0)
        #expect(published == .disconnected)
        #expect(action == .scheduleRetry(delay: .milliseconds(100), attempt: 1))
        #expect(machine.retryTimerFired() == .connect)
        (action, published) = machine.connectFailed(random: 0)
        #expect(published == nil)  // still disconnected: not published (nor logged) again
        #expect(action == .scheduleRetry(delay: .milliseconds(200), attempt: 2))
        #expect(machine.retryTimerFired() == .connect)
        (action, published) = machine.connected()
        #expect(published == .connected)
        (action, published) = machine.connectionLost(random: 0)
        #expect(published == .disconnected)
        #expect(action == .scheduleRetry(delay: .milliseconds(100), attempt: 1))
        (action, published) = machine.shutdown()
        #expect(action == .cancelRetry)
        #expect(published == .shutdown)
    }

    @Test func connectionLostDuringSetUpIsAFailedAttempt() {
        var machine = ReconnectStateMachine(policy: ReconnectPolicy())
        #expect(machine.start() == .connect)
        let (action, published) = machine.connectionLost(random: 0)
        #expect(action == .scheduleRetry(delay: .milliseconds(100), attempt: 1))
        #expect(published == .disconnected)
        #expect(machine.retryTimerFired() == .connect)
    }
}

@Suite("Subscriber")
struct RedisSubscriberTests {
    final class Inbox: Sendable {
        let stream: AsyncStream<RedisPubSubMessage>
        let continuation: AsyncStream<RedisPubSubMessage>.Continuation
        init() { (self.stream, self.continuation) = AsyncStream.makeStream() }
        var handler: @Sendable (RedisPubSubMessage) -> Void { { [continuation] in continuation.yield($0) } }
    }

    @Test("channels, patterns and shard channels; resubscribed after a server restart")
    func pubSubAndResubscribe() async throws {
        try await withRedisServer { server in
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let inbox = Inbox()
            let watcher = StateWatcher()
            let subscriber = try RedisSubscriber(
                configuration: fastReconnect(server.configuration),
                eventLoop: loop,
                logger: testLogger,
                onStateChange: watcher.handler,
                onMessage: { message in
                    loop.preconditionInEventLoop()
                    inbox.handler(message)
                }
            )
            subscriber.start()
            try await watcher.next(.connected)
            try await subscriber.ping().get()
            try await subscriber.subscribe(channels: "news", "sport")
            try await subscriber.ping().get()
            try await subscriber.subscribe(patterns: "room:*")
            try await subscriber.subscribe(shardChannels: "shard-a")

            let publisherWatcher = StateWatcher()
            let publisher = try RedisClient(
                configuration: fastReconnect(server.configuration),
                eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
                logger: testLogger,
                onStateChange: publisherWatcher.handler
            )
            publisher.start()
            try await publisherWatcher.next(.connected)

            var messages = inbox.stream.makeAsyncIterator()
            #expect(try await publisher.execute("PUBLISH", "news", "hello") == .integer(1))
            #expect(try await publisher.execute("PUBLISH", "room:42", "in room") == .integer(1))
            #expect(try await publisher.execute("SPUBLISH", "shard-a", "sharded") == .integer(1))

            var message = await messages.next()
            #expect(message?.kind == .message)
            #expect(message?.channelName == "news")
            #expect(message.map { String(buffer: $0.payload) } == "hello")
            message = await messages.next()
            #expect(message?.kind == .patternMessage)
            #expect(message?.channelName == "room:42")
            #expect(message?.pattern.map { String(buffer: $0) } == "room:*")
            #expect(message.map { String(buffer: $0.payload) } == "in room")
            message = await messages.next()
            #expect(message?.kind == .shardMessage)
            #expect(message?.channelName == "shard-a")

            try await subscriber.unsubscribe(channels: "news")
            #expect(try await publisher.execute("PUBLISH", "news", "unheard") == .integer(0))
            #expect(try await publisher.execute("PUBLISH", "sport", "heard") == .integer(1))
            message = await messages.next()
            #expect(message?.channelName == "sport")

            // Restart: the subscriber reconnects and restores sport, room:* and shard-a (not news).
            await server.stop()
            try await watcher.next(.disconnected)
            try await server.restart()
            try await watcher.next(.connected)
            #expect(await subscriber.subscriptions()[.channel] == ["sport"])
            try await publisherWatcher.next(.connected)
            #expect(
                try await publisher.execute("PUBSUB", "NUMSUB", "sport", "news").array?.map(\.int) == [nil, 1, nil, 0]
            )
            #expect(try await publisher.execute("PUBLISH", "sport", "after restart") == .integer(1))
            #expect(try await publisher.execute("PUBLISH", "room:7", "room after restart") == .integer(1))
            #expect(try await publisher.execute("SPUBLISH", "shard-a", "shard after restart") == .integer(1))
            #expect(await messages.next().map { String(buffer: $0.payload) } == "after restart")
            #expect(await messages.next().map { String(buffer: $0.payload) } == "room after restart")
            #expect(await messages.next().map { String(buffer: $0.payload) } == "shard after restart")

            await subscriber.shutdown()
            await publisher.shutdown()
        }
    }
}
