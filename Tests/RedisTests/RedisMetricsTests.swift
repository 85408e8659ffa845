import MetricsTestKit
import NIOCore
import NIOEmbedded
import NIOPosix
import RedisTestSupport
import Testing

@testable import Redis

@Suite("Redis metrics")
struct RedisMetricsTests {
    @Test func aRoundTripIsTimedFromItsTickToItsReplyAndAPipelineOnce() throws {
        let metrics = TestMetrics()
        let channel = EmbeddedChannel()
        let handler = RedisChannelHandler(
            eventLoop: channel.eventLoop,
            commandTimeout: nil,
            commandDuration: RedisMetrics(factory: metrics).command.commandDuration,
            onMessage: nil,
            logger: testLogger
        )
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        let connection = RedisConnection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
        let timer = try metrics.expectTimer(RedisMetrics.commandDurationLabel, [("role", "command")])

        let ping = connection.send("PING")
        channel.embeddedEventLoop.run()
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(3))
        try channel.writeInbound(ByteBuffer(string: "+PONG\r\n"))
        #expect(try ping.wait() == .simpleString("PONG"))
        #expect(timer.values == [3_000_000])

        var pipeline = RedisPipeline()
        pipeline.append("SET", "k", "v")
        pipeline.append("GET", "k")
        let replies = connection.send(pipeline)
        channel.embeddedEventLoop.advanceTime(by: .microseconds(250))
        try channel.writeInbound(ByteBuffer(string: "+OK\r\n"))
        #expect(timer.values.count == 1, "a pipeline is timed when its last reply arrives")
        try channel.writeInbound(ByteBuffer(string: "$1\r\nv\r\n"))
        #expect(try replies.wait().count == 2)
        #expect(timer.values == [3_000_000, 250_000])
        _ = try? channel.finish()
    }

    @Test func aReconnectIsCountedAndTheConnectionGaugeFollowsTheState() async throws {
        try await withRedisServer { server in
            let metrics = TestMetrics()
            let watcher = StateWatcher()
            let client = try RedisClient(
                configuration: fastReconnect(server.configuration),
                eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
                logger: testLogger,
                metrics: RedisMetrics(factory: metrics),
                onStateChange: watcher.handler
            )
            let role = [("role", "command")]
            let up = try metrics.expectMeter(RedisMetrics.connectionsUpLabel, role)
            func changes(to state: String) -> Int64 {
                metrics.counterTotal(label: RedisMetrics.stateChangesLabel, dimensions: role + [("state", state)])
            }

            client.start()
            try await watcher.next(.connected)
            #expect(up.lastValue == 1)
            #expect(
                metrics.counterTotal(label: RedisMetrics.reconnectsLabel) == 0,
                "the first connection is no reconnect"
            )
            _ = try await client.execute("PING")
            let timer = try metrics.expectTimer(RedisMetrics.commandDurationLabel, role)
            #expect(timer.values.count >= 2, "the connection's set-up PING and ours")

            await server.stop()
            try await watcher.next(.disconnected)
            #expect(up.lastValue == 0)
            try await server.restart()
            try await watcher.next(.connected)
            #expect(up.lastValue == 1)
            #expect(metrics.counterTotal(label: RedisMetrics.reconnectsLabel, dimensions: role) == 1)
            #expect(changes(to: "connected") == 2)
            #expect(changes(to: "disconnected") == 1)

            await client.shutdown()
            #expect(up.lastValue == 0)
            #expect(changes(to: "shutdown") == 1)
            #expect(
                metrics.counterTotal(label: RedisMetrics.reconnectsLabel, dimensions: [("role", "subscriber")]) == 0
            )
        }
    }

    @Test func aSubscriberCountsUnderItsOwnRole() async throws {
        try await withRedisServer { server in
            let metrics = TestMetrics()
            let watcher = StateWatcher()
            let subscriber = try RedisSubscriber(
                configuration: fastReconnect(server.configuration),
                eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
                logger: testLogger,
                metrics: RedisMetrics(factory: metrics),
                onStateChange: watcher.handler,
                onMessage: { _ in }
            )
            subscriber.start()
            try await watcher.next(.connected)
            try await subscriber.subscribe(channels: "news")
            #expect(try metrics.expectMeter(RedisMetrics.connectionsUpLabel, [("role", "subscriber")]).lastValue == 1)
            #expect(try metrics.expectMeter(RedisMetrics.connectionsUpLabel, [("role", "command")]).lastValue == nil)
            let timer = try metrics.expectTimer(RedisMetrics.commandDurationLabel, [("role", "subscriber")])
            #expect(timer.values.count >= 2, "the set-up PING and the SUBSCRIBE")
            await subscriber.shutdown()
        }
    }
}
