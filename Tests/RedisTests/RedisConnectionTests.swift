import RedisTestSupport
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

@testable import Redis

#if canImport(Glibc)
import Glibc
#endif

private func connect(
    _ server: TestRedisServer,
    _ configure: (inout RedisConfiguration) -> Void = { _ in }
)
    async throws -> RedisConnection
{
    var configuration = server.configuration
    configure(&configuration)
    return try await RedisConnection.connect(
        configuration: configuration,
        eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
        logger: testLogger
    )
}

@Suite("Redis connection against redis-server")
struct RedisConnectionTests {
    @Test func basicCommandsAndTypedErrors() async throws {
        try await withRedisServer { server in
            let connection = try await connect(server)
            #expect(try await connection.execute("SET", "greeting", "hello") == .simpleString("OK"))
            #expect(try await connection.execute("GET", "greeting").string == "hello")
            #expect(try await connection.execute("GET", "missing") == .null)
            #expect(try await connection.execute("INCRBY", "n", 41) == .integer(41))
            #expect(try await connection.execute("RPUSH", "list", "a", "b").int == 2)
            #expect(try await connection.execute("LRANGE", "list", 0, -1).array?.compactMap(\.string) == ["a", "b"])

            let wrongType = await #expect(throws: RedisError.self) {
                try await connection.execute("INCR", "list")
            }
            #expect(wrongType?.code == .wrongType)
            #expect(wrongType?.message.hasPrefix("WRONGTYPE") == true)
            let unknown = await #expect(throws: RedisError.self) {
                try await connection.execute("NOSUCHCOMMAND")
            }
            #expect(unknown?.code == .err)
            #expect(unknown?.message.contains("unknown command") == true)
            // The connection keeps working after error replies.
            #expect(try await connection.execute("PING") == .simpleString("PONG"))
            try await connection.close().get()
        }
    }

    @Test("10,000 pipelined commands, replies in order")
    func tenThousandPipelinedCommands() async throws {
        try await withRedisServer { server in
            let connection = try await connect(server)
            let count = 10_000

            // Futures issued in one event-loop tick: one flush, replies matched in order.
            let replies = try await connection.eventLoop.flatSubmit {
                let futures = (0..<count).map { _ in connection.send("INCR", "counter") }
                return EventLoopFuture.whenAllSucceed(futures, on: connection.eventLoop)
            }.get()
            #expect(replies == (1...count).map { .integer(Int64($0)) })

            // One encoded pipeline, one write.
            var pipeline = RedisPipeline()
            for index in 0..<count { pipeline.append("SET", "key:\(index)", index) }
            for index in 0..<count { pipeline.append("GET", "key:\(index)") }
            let results = try await connection.execute(pipeline)
            #expect(results.count == 2 * count)
            #expect(results[..<count].allSatisfy { $0 == .simpleString("OK") })
            #expect(results[count...].map(\.int) == (0..<count).map { $0 })

            // Many concurrent async callers from other threads.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        let reply = try await connection.execute("GET", "key:\(index)")
                        #expect(reply.int == index)
                    }
                }
                try await group.waitForAll()
            }
            try await connection.close().get()
        }
    }

    @Test func pipelineKeepsErrorRepliesInPlace() async throws {
        try await withRedisServer { server in
            let connection = try await connect(server)
            var pipeline = RedisPipeline()
            pipeline.append("SET", "s", "x")
            pipeline.append("INCR", "s")
            pipeline.append("GET", "s")
            let results = try await connection.execute(pipeline)
            #expect(results[0] == .simpleString("OK"))
            #expect(throws: RedisError.self) { try results[1].throwingServerError() }
            #expect(results[2].string == "x")
            try await connection.close().get()
        }
    }

    @Test func commandTimeoutFailsAndConnectionRecovers() async throws {
        try await withRedisServer { server in
            let connection = try await connect(server) { $0.commandTimeout = .milliseconds(200) }
            let slow = connection.send("DEBUG", "SLEEP", "0.6")
            let behind = connection.send("PING")
            let error = await #expect(throws: RedisError.self) { try await slow.get() }
            #expect(error?.code == .timeout)
            await #expect(throws: RedisError.self) { try await behind.get() }
            // Late replies are discarded; the next command gets its own reply.
            // (Redis is still sleeping: give this one a longer timeout of its own.)
            #expect(try await connection.execute(RESPCommand("ECHO", "after"), timeout: .seconds(5)).string == "after")
            try await connection.close().get()
        }
    }

    @Test func inFlightCommandsFailWhenTheConnectionCloses() async throws {
        try await withRedisServer { server in
            let connection = try await connect(server) { $0.commandTimeout = nil }
            let blocked = connection.send("BLPOP", "never", 0)
            // Once the server has BLPOP blocked, kill that client from a second connection.
            let admin = try await connect(server)
            while try await admin.execute("INFO", "clients").string?.contains("blocked_clients:1") != true {}
            _ = try await admin.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            let error = await #expect(throws: RedisError.self) { try await blocked.get() }
            #expect(error?.code == .connectionClosed)
            // Commands sent after the close fail at once.
            let after = await #expect(throws: RedisError.self) { try await connection.execute("PING") }
            #expect(after?.code == .connectionClosed)
            try await admin.close().get()
        }
    }

    @Test func connectFailureIsTyped() async throws {
        // A port bound but not listening refuses connections, and stays ours while the test runs: a
        // port that was merely free can be taken by a test server starting in parallel.
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(socket >= 0)
        defer { Glibc.close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0
            }
        }
        #expect(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let error = await #expect(throws: RedisError.self) {
            _ = try await RedisConnection.connect(
                configuration: RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port)),
                eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
                logger: testLogger
            )
        }
        #expect(error?.code == .connectFailed)
    }
}

@Suite("Redis channel handler on EmbeddedChannel")
struct RedisChannelHandlerTests {
    private func makeChannel() throws -> (EmbeddedChannel, RedisConnection) {
        let channel = EmbeddedChannel()
        let handler = RedisChannelHandler(
            eventLoop: channel.eventLoop,
            commandTimeout: .seconds(1),
            onMessage: nil,
            logger: testLogger
        )
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        let connection = RedisConnection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
        return (channel, connection)
    }

    @Test func commandsOfOneTickShareOneFlush() throws {
        let (channel, connection) = try self.makeChannel()
        let first = connection.send("SET", "a", "1")
        let second = connection.send("GET", "a")
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.embeddedEventLoop.run()
        let written = try channel.readOutbound(as: ByteBuffer.self)
        #expect(
            written.map { String(buffer: $0) }
                == "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
        )
        try channel.writeInbound(ByteBuffer(string: "+OK\r\n$1\r\n1\r\n"))
        #expect(try first.wait() == .simpleString("OK"))
        #expect(try second.wait().string == "1")
        _ = try? channel.finish()
    }

    @Test func malformedReplyClosesWithProtocolError() throws {
        let (channel, connection) = try self.makeChannel()
        let first = connection.send("PING")
        let second = connection.send("PING")
        channel.embeddedEventLoop.run()
        // Valid reply first, then garbage: the first command succeeds, the second fails, the channel closes.
        try channel.writeInbound(ByteBuffer(string: "+PONG\r\n%garbage\r\n"))
        #expect(try first.wait() == .simpleString("PONG"))
        #expect(throws: RedisError.self) { try second.wait() }
        do {
            _ = try second.wait()
        } catch let error as RedisError {
            #expect(error.code == .protocolError)
        }
        #expect(!channel.isActive)
    }

    @Test func pendingCommandsAreBounded() throws {
        let channel = EmbeddedChannel()
        let handler = RedisChannelHandler(
            eventLoop: channel.eventLoop,
            commandTimeout: nil,
            maximumPendingCommands: 2,
            onMessage: nil,
            logger: testLogger
        )
        try channel.pipeline.syncOperations.addHandler(handler)
        let connection = RedisConnection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
        let first = connection.send("PING")
        _ = connection.send("PING")
        do {
            _ = try connection.send("PING").wait()
            Issue.record("expected back-pressure")
        } catch let error as RedisError {
            #expect(error.code == .tooManyPendingCommands)
        }
        channel.embeddedEventLoop.run()
        try channel.writeInbound(ByteBuffer(string: "+PONG\r\n"))
        #expect(try first.wait() == .simpleString("PONG"))
        // One reply freed one place.
        _ = connection.send("PING")
        _ = try? channel.finish()
    }

    @Test func unexpectedReplyClosesTheConnection() throws {
        let (channel, _) = try self.makeChannel()
        try channel.writeInbound(ByteBuffer(string: "+OK\r\n"))
        #expect(!channel.isActive)
    }

    @Test func timeoutUsesTheEventLoopClock() throws {
        let (channel, connection) = try self.makeChannel()
        let pending = connection.send("GET", "x")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(999))
        #expect(throws: Never.self) { channel.embeddedEventLoop.run() }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        do {
            _ = try pending.wait()
            Issue.record("expected a timeout")
        } catch let error as RedisError {
            #expect(error.code == .timeout)
        }
        // The late reply is consumed silently; the next command matches its own reply.
        let next = connection.send("GET", "y")
        channel.embeddedEventLoop.run()
        try channel.writeInbound(ByteBuffer(string: "$1\r\nx\r\n$1\r\ny\r\n"))
        #expect(try next.wait().string == "y")
        #expect(channel.isActive)
        _ = try? channel.finish()
    }
}

@Suite("Subscriber handler on EmbeddedChannel")
struct RedisSubscriberHandlerTests {
    /// Collects messages delivered on the (embedded) loop.
    final class Received: @unchecked Sendable {
        // `@unchecked Sendable`: only touched on the EmbeddedEventLoop, i.e. the test's own thread.
        var messages: [RedisPubSubMessage] = []
        var subscribed = false
    }

    private func makeChannel() throws -> (EmbeddedChannel, RedisConnection, Received) {
        let channel = EmbeddedChannel()
        let received = Received()
        let handler = RedisChannelHandler(
            eventLoop: channel.eventLoop,
            commandTimeout: nil,
            onMessage: { received.messages.append($0) },
            logger: testLogger
        )
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        let connection = RedisConnection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
        return (channel, connection, received)
    }

    @Test func confirmationsPerNameWithMessagesInterleaved() throws {
        let (channel, connection, received) = try self.makeChannel()
        let subscribed = connection.sendSubscription(.channel, subscribe: true, names: ["a", "b"])
        let ping = connection.send("PING")
        channel.embeddedEventLoop.run()
        #expect(
            try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) }
                == "*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n*1\r\n$4\r\nPING\r\n"
        )
        subscribed.whenSuccess { received.subscribed = true }
        try channel.writeInbound(ByteBuffer(string: "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"))
        #expect(!received.subscribed)
        try channel.writeInbound(ByteBuffer(string: "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"))
        try channel.writeInbound(
            ByteBuffer(string: "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        )
        #expect(received.subscribed)
        #expect(try ping.wait().array?.first?.string == "pong")
        try channel.writeInbound(
            ByteBuffer(string: "*4\r\n$8\r\npmessage\r\n$2\r\nr*\r\n$2\r\nr1\r\n$1\r\nx\r\n")
        )
        #expect(received.messages.map(\.kind) == [.message, .patternMessage])
        #expect(received.messages.last?.pattern == ByteBuffer(string: "r*"))
        _ = try? channel.finish()
    }

    @Test func errorReplyFailsTheWholeSubscription() throws {
        let (channel, connection, _) = try self.makeChannel()
        let subscribed = connection.sendSubscription(.shardChannel, subscribe: true, names: ["x", "y"])
        channel.embeddedEventLoop.run()
        try channel.writeInbound(
            ByteBuffer(string: "-NOPERM this user has no permissions to access one of the channels\r\n")
        )
        do {
            try subscribed.wait()
            Issue.record("expected NOPERM")
        } catch let error as RedisError {
            #expect(error.code == .noperm)
        }
        #expect(channel.isActive)
        _ = try? channel.finish()
    }
}
