import EngineIOTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import EngineIO

@Suite("Engine.IO long-polling over EnginePipeline")
struct EnginePollingTests {
    // MARK: Handshake

    @Test func handshakeAnswersTheOpenPacket() throws {
        let harness = EngineHarness()
        let connection = try harness.connect()
        try connection.get(Target.handshake)
        let response = try connection.expectResponse()

        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/plain; charset=UTF-8")
        #expect(response.header("Cache-Control") == "no-store")
        #expect(response.header("Access-Control-Allow-Origin") == "*")
        #expect(response.header("Access-Control-Allow-Credentials") == nil)
        #expect(response.header("Content-Length") == String(response.body.count))
        let sid = try requireSIDHelper(response.bodyString)
        #expect(sid.count == 20)
        #expect(sid.utf8.allSatisfy { SessionID.alphabet.contains($0) })
        #expect(
            response.bodyString
                == #"0{"sid":"\#(sid)","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        )
        #expect(harness.server.sessionCount == 1)
        #expect(harness.application.sessions.map(\.id) == [sid])
        #expect(harness.application.sessions.first?.initialTransport == .polling)
        #expect(connection.isActive, "keep-alive connection stays open")
    }

    @Test func handshakeCarriesConfigurationAndHandshakeInfo() throws {
        let configuration = EngineConfiguration(
            path: "/socket.io",
            pingInterval: .milliseconds(1500),
            pingTimeout: .milliseconds(700),
            maxPayload: 4096,
            transports: .polling
        )
        let harness = EngineHarness(configuration: configuration)
        let connection = try harness.connect()
        try connection.get(
            "/socket.io/?EIO=4&transport=polling&token=a%20b+c&t=x",
            headers: ["Authorization: Bearer t0k3n", "User-Agent: tests", "Cookie: c=1"]
        )
        let response = try connection.expectResponse()
        let sid = try requireSIDHelper(response.bodyString)
        #expect(
            response.bodyString
                == #"0{"sid":"\#(sid)","upgrades":[],"pingInterval":1500,"pingTimeout":700,"maxPayload":4096}"#
        )
        let session = try #require(harness.application.session(sid))
        #expect(session.handshake.query["token"] == "a b c")
        #expect(session.handshake.query["EIO"] == "4")
        #expect(session.handshake.headers.authorization == "Bearer t0k3n")
        #expect(session.handshake.headers.userAgent == "tests")
        #expect(session.handshake.headers.cookie == "c=1")
        #expect(session.handshake.headers.origin == nil)
    }

    @Test func handshakeWithOriginEchoesItWithCredentials() throws {
        let harness = EngineHarness()
        let connection = try harness.connect()
        try connection.get(Target.handshake, headers: ["Origin: https://app.example"])
        let response = try connection.expectResponse()
        #expect(response.status == 200)
        #expect(response.header("Access-Control-Allow-Origin") == "https://app.example")
        #expect(response.header("Access-Control-Allow-Credentials") == "true")
        #expect(response.header("Vary") == "Origin")
    }

    @Test func corsOriginListAllowsOnlyListedOrigins() throws {
        let harness = EngineHarness(configuration: EngineConfiguration(cors: .origins(["https://ok.example"])))
        let allowed = try harness.connect()
        try allowed.get(Target.handshake, headers: ["Origin: https://ok.example"])
        #expect(try allowed.expectResponse().header("Access-Control-Allow-Origin") == "https://ok.example")

        // Another origin is refused outright (as python-engineio does), not merely denied CORS headers.
        let other = try harness.connect()
        try other.get(Target.handshake, headers: ["Origin: https://evil.example"])
        let response = try other.expectResponse()
        #expect(response.status == 400)
        #expect(response.bodyString == #"{"code":3,"message":"Origin not allowed"}"#)
        #expect(response.header("Access-Control-Allow-Origin") == nil)
        #expect(harness.server.sessionCount == 1)
    }

    @Test func corsDisabledSendsNoCORSHeaders() throws {
        let harness = EngineHarness(configuration: EngineConfiguration(cors: .disabled))
        let connection = try harness.connect()
        try connection.get(Target.handshake, headers: ["Origin: https://app.example"])
        let response = try connection.expectResponse()
        #expect(response.status == 200)
        #expect(!response.headers.contains(where: { $0.name.lowercased().hasPrefix("access-control-") }))
    }

    // MARK: Errors

    static let errorCases: [(request: String, status: Int, body: String)] = [
        (
            "GET /engine.io/?transport=polling HTTP/1.1\r\nHost: x\r\n\r\n", 400,
            #"{"code":5,"message":"Unsupported protocol version"}"#
        ),
        (
            "GET /engine.io/?EIO=3&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n", 400,
            #"{"code":5,"message":"Unsupported protocol version"}"#
        ),
        (
            "GET /engine.io/?EIO=4&transport=carrier-pigeon HTTP/1.1\r\nHost: x\r\n\r\n", 400,
            #"{"code":0,"message":"Transport unknown"}"#
        ),
        ("GET /engine.io/?EIO=4 HTTP/1.1\r\nHost: x\r\n\r\n", 400, #"{"code":0,"message":"Transport unknown"}"#),
        (
            "GET /engine.io/?EIO=4&transport=polling&sid=nope HTTP/1.1\r\nHost: x\r\n\r\n", 400,
            #"{"code":1,"message":"Session ID unknown"}"#
        ),
        (
            "POST /engine.io/?EIO=4&transport=polling&sid=nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n40",
            400, #"{"code":1,"message":"Session ID unknown"}"#
        ),
        (
            "POST /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n40", 400,
            #"{"code":2,"message":"Bad handshake method"}"#
        ),
        // A websocket handshake without the upgrade headers.
        (
            "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\r\n", 400,
            #"{"code":3,"message":"Bad request"}"#
        ),
    ]

    @Test("protocol errors answer 400 with a JSON body", arguments: errorCases)
    func protocolErrors(request: String, status: Int, body: String) throws {
        let harness = EngineHarness()
        let connection = try harness.connect()
        try connection.write(request)
        let response = try connection.expectResponse()
        #expect(response.status == status)
        #expect(response.bodyString == body)
        #expect(response.header("Content-Type") == "application/json")
        #expect(response.header("Access-Control-Allow-Origin") == "*")
        #expect(harness.server.sessionCount == 0)
        // The connection stays usable: a handshake on it still works.
        try connection.get(Target.handshake)
        #expect(try connection.expectResponse().status == 200)
    }

    @Test func disabledTransportIsUnknown() throws {
        let harness = EngineHarness(configuration: EngineConfiguration(transports: .websocket))
        let connection = try harness.connect()
        try connection.get(Target.handshake)
        let response = try connection.expectResponse()
        #expect(response.status == 400)
        #expect(response.bodyString == #"{"code":0,"message":"Transport unknown"}"#)
    }

    @Test func otherPathsGoToTheFallback() throws {
        let harness = EngineHarness()
        let connection = try harness.connect()
        try connection.get("/health")
        let response = try connection.expectResponse()
        #expect(response.status == 404)
        #expect(response.bodyString == "Not Found")
        #expect(response.header("Content-Type") == "text/plain")
    }

    @Test func pathWithoutTrailingSlashIsTheEndpoint() throws {
        let harness = EngineHarness()
        let connection = try harness.connect()
        try connection.get("/engine.io?EIO=4&transport=polling")
        #expect(try connection.expectResponse().status == 200)
    }

    @Test func optionsPreflightAnswers204() throws {
        let harness = EngineHarness()
        let connection = try harness.connect()
        try connection.write(
            "OPTIONS /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
                + "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"
        )
        let response = try connection.expectResponse()
        #expect(response.status == 204)
        #expect(response.body.isEmpty)
        #expect(response.header("Access-Control-Allow-Origin") == "https://app.example")
        #expect(response.header("Access-Control-Allow-Credentials") == "true")
        #expect(response.header("Access-Control-Allow-Methods") == "GET, POST, OPTIONS")
        #expect(response.header("Access-Control-Allow-Headers") == "content-type")
        #expect(response.header("Access-Control-Max-Age") == "86400")
        // RFC 9110 §8.6: no Content-Length on a 204.
        #expect(response.header("Content-Length") == nil)
        #expect(harness.server.sessionCount == 0)
        // Still usable afterwards.
        try connection.get(Target.handshake)
        #expect(try connection.expectResponse().status == 200)
    }

    // MARK: POST

    @Test func postDeliversMessagesAndAnswersOK() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let connection = try harness.connect()
        try connection.post(Target.polling(sid), body: "4hello")
        let response = try connection.expectResponse()
        #expect(response.status == 200)
        #expect(response.bodyString == "ok")
        #expect(response.header("Content-Type") == "text/html")
        #expect(response.header("Access-Control-Allow-Origin") == "*")
        #expect(harness.application.messages == [.text(ByteBuffer(string: "hello"))])
    }

    @Test func postWithSeveralRecordsDeliversThemInOrder() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let connection = try harness.connect()
        try connection.post(Target.polling(sid), body: "4a\(RS)bAQID\(RS)4\(RS)4é")
        #expect(try connection.expectResponse().bodyString == "ok")
        #expect(
            harness.application.messages == [
                .text(ByteBuffer(string: "a")), .binary(ByteBuffer(bytes: [1, 2, 3])), .text(ByteBuffer()),
                .text(ByteBuffer(string: "é")),
            ]
        )
    }

    @Test func postBodyInSeveralChunksIsReassembled() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let connection = try harness.connect()
        try connection.write(
            "POST \(Target.polling(sid)) HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "3\r\n4he\r\n3\r\nllo\r\n0\r\n\r\n"
        )
        #expect(try connection.expectResponse().bodyString == "ok")
        #expect(harness.application.messages == [.text(ByteBuffer(string: "hello"))])
    }

    static let invalidPayloads: [String] = ["", "9", "4a\u{1E}", "bA=A", "\u{1E}"]

    @Test("an invalid POST payload answers 400 and closes with parse_error", arguments: invalidPayloads)
    func invalidPayload(body: String) throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let connection = try harness.connect()
        try connection.post(Target.polling(sid), body: body)
        let response = try connection.expectResponse()
        #expect(response.status == 400)
        #expect(response.bodyString == #"{"code":3,"message":"Bad request"}"#)
        #expect(harness.application.closeReasons == [.parseError])
        #expect(harness.server.sessionCount == 0)
        #expect(harness.application.messages.isEmpty)
    }

    static let unexpectedClientPackets: [String] = ["2", "0", "5", "6", "4a\u{1E}2\u{1E}4b"]

    @Test("a client packet type the server never accepts closes with parse_error", arguments: unexpectedClientPackets)
    func unexpectedPacketType(body: String) throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let connection = try harness.connect()
        try connection.post(Target.polling(sid), body: body)
        _ = try connection.expectResponse()
        #expect(harness.application.closeReasons == [.parseError])
        // Packets after the offending one are not delivered.
        #expect(!harness.application.messages.contains(.text(ByteBuffer(string: "b"))))
    }

    @Test func closePacketEndsTheSession() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let poller = try harness.connect()
        try poller.get(Target.polling(sid))
        #expect(try poller.readResponse() == nil)

        let connection = try harness.connect()
        try connection.post(Target.polling(sid), body: "1")
        #expect(try connection.expectResponse().bodyString == "ok")
        #expect(harness.application.closeReasons == [.clientClose])
        // The parked poll is released with a noop, as the reference server does.
        #expect(try poller.expectResponse().bodyString == "6")
        #expect(harness.server.sessionCount == 0)

        try connection.get(Target.polling(sid))
        #expect(try connection.expectResponse().bodyString == #"{"code":1,"message":"Session ID unknown"}"#)
    }

    @Test func payloadTooLargeAnswers413AndClosesTheSession() throws {
        let harness = EngineHarness(configuration: EngineConfiguration(maxPayload: 16))
        let (sid, _) = try harness.handshake()

        let fits = try harness.connect()
        try fits.post(Target.polling(sid), body: "4" + String(repeating: "x", count: 15))
        #expect(try fits.expectResponse().status == 200)

        let connection = try harness.connect()
        try connection.post(Target.polling(sid), body: "4" + String(repeating: "x", count: 16))
        let response = try connection.expectResponse()
        #expect(response.status == 413)
        #expect(response.bodyString == #"{"code":3,"message":"Payload too large"}"#)
        #expect(response.header("Content-Type") == "application/json")
        #expect(response.header("Connection") == "close")
        #expect(!connection.isActive)
        #expect(harness.application.closeReasons == [.payloadTooLarge])
        #expect(harness.application.messages.count == 1)
        #expect(harness.server.sessionCount == 0)
    }

    @Test func unsupportedMethodOnASessionIsABadRequest() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let connection = try harness.connect()
        try connection.write("PUT \(Target.polling(sid)) HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        let response = try connection.expectResponse()
        #expect(response.status == 400)
        #expect(response.bodyString == #"{"code":3,"message":"Bad request"}"#)
        #expect(harness.server.sessionCount == 1)
    }

    // MARK: GET

    @Test func pollIsParkedUntilTheApplicationSends() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let session = try #require(harness.application.session(sid))
        let connection = try harness.connect()
        try connection.get(Target.polling(sid))
        #expect(try connection.readResponse() == nil)

        // Packets sent in one loop tick leave in one response.
        session.sendMessage(.text(ByteBuffer(string: "hi")))
        session.sendMessage(.binary(ByteBuffer(bytes: [1, 2])))
        session.send(.make(.noop))
        harness.loop.run()
        let response = try connection.expectResponse()
        #expect(response.status == 200)
        #expect(response.bodyString == "4hi\(RS)bAQI=\(RS)6")
        #expect(response.header("Content-Type") == "text/plain; charset=UTF-8")
        #expect(try connection.hasNoPendingOutput())
    }

    @Test func queuedPacketsAnswerTheNextPollAtOnce() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let session = try #require(harness.application.session(sid))
        session.sendMessage(.text(ByteBuffer(string: "one")))
        session.sendMessage(.text(ByteBuffer(string: "two")))
        let connection = try harness.connect()
        try connection.get(Target.polling(sid))
        #expect(try connection.expectResponse().bodyString == "4one\(RS)4two")
        // The queue was drained: the next poll parks.
        try connection.get(Target.polling(sid))
        #expect(try connection.readResponse() == nil)
    }

    @Test func keepAliveConnectionCarriesPollAfterPoll() throws {
        let harness = EngineHarness()
        let connection = try harness.connect()
        try connection.get(Target.handshake)
        let sid = try requireSIDHelper(try connection.expectResponse().bodyString)
        let session = try #require(harness.application.session(sid))
        for index in 0..<3 {
            try connection.get(Target.polling(sid))
            session.sendMessage(.text(ByteBuffer(string: "m\(index)")))
            harness.loop.run()
            #expect(try connection.expectResponse().bodyString == "4m\(index)")
        }
    }

    @Test func secondConcurrentPollIsRefusedAndClosesTheSession() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let first = try harness.connect()
        try first.get(Target.polling(sid))
        #expect(try first.readResponse() == nil)

        let second = try harness.connect()
        try second.get(Target.polling(sid))
        let refused = try second.expectResponse()
        #expect(refused.status == 400)
        #expect(refused.bodyString == #"{"code":3,"message":"Bad request"}"#)

        #expect(harness.application.closeReasons == [.concurrentPoll])
        #expect(try first.expectResponse().bodyString == "1")
        #expect(harness.server.sessionCount == 0)
    }

    @Test func droppingTheConnectionOfAParkedPollClosesTheSession() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let connection = try harness.connect()
        try connection.get(Target.polling(sid))
        #expect(try connection.readResponse() == nil)
        try connection.channel.close().wait()
        harness.loop.run()
        #expect(harness.application.closeReasons == [.transportClose])
        #expect(harness.server.sessionCount == 0)
    }

    @Test func serverCloseAnswersTheParkedPollWithClose() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let session = try #require(harness.application.session(sid))
        let connection = try harness.connect()
        try connection.get(Target.polling(sid))
        session.sendMessage(.text(ByteBuffer(string: "bye")))
        session.close(reason: .serverDisconnect)
        harness.loop.run()
        // Whatever was queued leaves with the close packet.
        #expect(try connection.expectResponse().bodyString == "4bye\(RS)1")
        #expect(harness.application.closeReasons == [.serverDisconnect])
        session.close(reason: .serverShutdown)
        #expect(harness.application.closeReasons == [.serverDisconnect], "close is idempotent")
    }

    /// Engine.IO closes a polling transport by answering the next GET with what was queued and a close
    /// packet; the session must not vanish with its last packets while the client is between polls.
    @Test func serverCloseWithoutParkedPollIsDeliveredOnTheNextPoll() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let session = try #require(harness.application.session(sid))
        session.sendMessage(.text(ByteBuffer(string: "bye")))
        session.close(reason: .serverDisconnect)
        harness.loop.run()
        #expect(harness.application.closeReasons == [.serverDisconnect])
        let connection = try harness.connect()
        try connection.get(Target.polling(sid))
        let response = try connection.expectResponse()
        #expect(response.status == 200, "\(response)")
        #expect(response.bodyString == "4bye\(RS)1")
    }

    @Test func slowConsumerIsDroppedWhenTheQueuePassesItsBound() throws {
        let harness = EngineHarness(configuration: EngineConfiguration(maxPayload: 10, maxOutboundBytes: 20))
        let (sid, _) = try harness.handshake()
        let session = try #require(harness.application.session(sid))
        session.sendMessage(.text(ByteBuffer(string: "123456789")))  // 10 bytes
        session.sendMessage(.text(ByteBuffer(string: "123456789")))  // 20 bytes: at the bound
        #expect(!session.isClosed)
        session.sendMessage(.text(ByteBuffer(string: "x")))  // 22 bytes
        #expect(session.isClosed)
        #expect(harness.application.closeReasons == [.slowConsumer])
    }

    // MARK: Heartbeat

    @Test func pingIsSentAfterPingInterval() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let connection = try harness.connect()
        try connection.get(Target.polling(sid))
        harness.loop.advanceTime(by: .seconds(24))
        #expect(try connection.readResponse() == nil)
        harness.loop.advanceTime(by: .seconds(1))
        #expect(try connection.expectResponse().bodyString == "2")
    }

    @Test func pongKeepsTheSessionAliveAndPingsContinue() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let poller = try harness.connect()
        let poster = try harness.connect()

        harness.loop.advanceTime(by: .seconds(25))  // t = 25: ping
        try poller.get(Target.polling(sid))
        #expect(try poller.expectResponse().bodyString == "2")
        harness.loop.advanceTime(by: .seconds(1))  // t = 26: pong
        try poster.post(Target.polling(sid), body: "3")
        #expect(try poster.expectResponse().bodyString == "ok")

        try poller.get(Target.polling(sid))
        harness.loop.advanceTime(by: .seconds(24))  // t = 50: past the first ping's deadline
        #expect(try poller.readResponse() == nil)
        #expect(harness.application.closeReasons.isEmpty)
        harness.loop.advanceTime(by: .seconds(1))  // t = 51: next ping
        #expect(try poller.expectResponse().bodyString == "2")
        #expect(harness.application.closeReasons.isEmpty)
    }

    @Test func missingPongClosesWithPingTimeout() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let connection = try harness.connect()
        harness.loop.advanceTime(by: .seconds(25))
        try connection.get(Target.polling(sid))
        #expect(try connection.expectResponse().bodyString == "2")

        try connection.get(Target.polling(sid))
        harness.loop.advanceTime(by: .seconds(19))
        #expect(harness.application.closeReasons.isEmpty)
        #expect(try connection.readResponse() == nil)
        harness.loop.advanceTime(by: .seconds(1))
        #expect(harness.application.closeReasons == [.pingTimeout])
        #expect(try connection.expectResponse().bodyString == "1")
        #expect(harness.server.sessionCount == 0)
    }

    @Test func unexpectedPongClosesTheSession() throws {
        let harness = EngineHarness()
        let (sid, _) = try harness.handshake()
        let connection = try harness.connect()
        try connection.post(Target.polling(sid), body: "3")
        #expect(try connection.expectResponse().status == 400)
        #expect(harness.application.closeReasons == [.parseError])
        #expect(harness.server.sessionCount == 0)
    }

    /// Engine.IO schedules the next ping `pingInterval` after the pong. With a pingTimeout longer than
    /// the pingInterval, the timer armed for the pong deadline must not delay the next ping.
    @Test func nextPingFollowsThePongWhenPingTimeoutExceedsPingInterval() throws {
        let harness = EngineHarness(
            configuration: EngineConfiguration(pingInterval: .seconds(1), pingTimeout: .seconds(5))
        )
        let (sid, _) = try harness.handshake()
        let poller = try harness.connect()
        let poster = try harness.connect()

        harness.loop.advanceTime(by: .seconds(1))  // t = 1: ping
        try poller.get(Target.polling(sid))
        #expect(try poller.expectResponse().bodyString == "2")
        try poster.post(Target.polling(sid), body: "3")  // t = 1: pong
        #expect(try poster.expectResponse().bodyString == "ok")

        try poller.get(Target.polling(sid))
        harness.loop.advanceTime(by: .seconds(1))  // t = 2: the next ping is due
        #expect(try poller.readResponse()?.bodyString == "2", "ping due at t=2 s was not sent")
    }
}
