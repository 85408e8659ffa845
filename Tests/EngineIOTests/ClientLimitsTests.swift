import EngineIOTestSupport
import MetricsTestKit
import NIOCore
import Testing

@testable import EngineIO

@Suite("Client addresses and networks")
struct ClientAddressTests {
    @Test func networksParseAndMatch() throws {
        let ten = try #require(IPNetwork("10.0.0.0/8"))
        #expect(ten.contains([10, 1, 2, 3]))
        #expect(!ten.contains([11, 0, 0, 1]))
        #expect(!ten.contains(Array(repeating: 0, count: 16)))
        let loopback6 = try #require(IPNetwork("::1"))
        #expect(loopback6.contains(Array(repeating: 0, count: 15) + [1]))
        #expect(!loopback6.contains(Array(repeating: 0, count: 16)))
        let unique = try #require(IPNetwork("fd00::/8"))
        #expect(unique.contains([0xFD, 0x12] + Array(repeating: 0, count: 14)))
        #expect(!unique.contains([0xFE] + Array(repeating: 0, count: 15)))
        let odd = try #require(IPNetwork("192.168.1.128/25"))
        #expect(odd.contains([192, 168, 1, 200]) && !odd.contains([192, 168, 1, 127]))
        #expect(IPNetwork("0.0.0.0/0")?.contains([8, 8, 8, 8]) == true)
        #expect(IPNetwork("::ffff:10.0.0.1")?.description == "10.0.0.1")
        #expect(IPNetwork("2001:db8::1")?.description == "2001:db8:0:0:0:0:0:1")
        #expect(IPNetwork("[2001:db8::1]")?.description == "2001:db8:0:0:0:0:0:1")
        for bad in ["300.1.1.1", "1.2.3", "1.2.3.4.5", "10.0.0.0/33", "::1::2", "abc", "", "1.2.3.4/", "12345::", "1:2:3:4:5:6:7:8:9"] {
            #expect(IPNetwork(bad) == nil, "\(bad)")
        }
    }

    @Test func anUntrustedPeerIsTheClientWhateverItForwards() throws {
        let peer = try SocketAddress(ipAddress: "203.0.113.9", port: 5000)
        let proxies = [IPNetwork("10.0.0.0/8")!]
        #expect(ClientAddress.resolve(peer: peer, forwardedFor: ["198.51.100.1"], trustedProxies: proxies) == "203.0.113.9")
        #expect(ClientAddress.resolve(peer: peer, forwardedFor: [], trustedProxies: []) == "203.0.113.9")
    }

    @Test func aTrustedProxyNamesTheRightmostAddressItDoesNotTrust() throws {
        let proxy = try SocketAddress(ipAddress: "10.0.0.2", port: 5000)
        let proxies = [IPNetwork("10.0.0.0/8")!]
        // The client put a made-up address first; only what the proxies appended counts.
        #expect(
            ClientAddress.resolve(peer: proxy, forwardedFor: ["1.1.1.1, 198.51.100.7"], trustedProxies: proxies)
                == "198.51.100.7"
        )
        // Two proxies in a row, the header split over two lines.
        #expect(
            ClientAddress.resolve(peer: proxy, forwardedFor: ["198.51.100.7", "10.0.0.9"], trustedProxies: proxies)
                == "198.51.100.7"
        )
        // No header: the proxy itself.
        #expect(ClientAddress.resolve(peer: proxy, forwardedFor: [], trustedProxies: proxies) == "10.0.0.2")
        // A hop that is not an address ends the walk at the last one known.
        #expect(
            ClientAddress.resolve(peer: proxy, forwardedFor: ["198.51.100.7, garbage, 10.0.0.3"], trustedProxies: proxies)
                == "10.0.0.3"
        )
        let mapped = try SocketAddress(ipAddress: "::ffff:10.0.0.2", port: 5000)
        #expect(ClientAddress.resolve(peer: mapped, forwardedFor: ["2001:db8::7"], trustedProxies: proxies) == "2001:db8:0:0:0:0:0:7")
    }
}

@Suite("Token buckets and per-address admission")
struct AddressAdmissionTests {
    @Test func aBucketSpendsItsBurstThenRefillsAtItsRate() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var bucket = TokenBucket(rate: 2, burst: 3, now: start)
        var taken = 0
        while taken < 10, bucket.take(now: start) { taken += 1 }
        #expect(taken == 3)
        #expect(bucket.wait == .milliseconds(500))
        let tooSoon = bucket.take(now: start + .milliseconds(400))
        let onTime = bucket.take(now: start + .milliseconds(500))
        let fullAtOnce = bucket.isFull(now: start + .milliseconds(500))
        let fullLater = bucket.isFull(now: start + .seconds(10))
        #expect(!tooSoon && onTime && !fullAtOnce && fullLater)
        #expect(bucket.tokens == 3, "never more than the burst")
    }

    @Test func handshakesPerAddressAreRateLimitedApart() {
        let admission = AddressAdmission(limits: ClientLimits(handshakesPerSecond: 1, handshakeBurst: 2))
        let now = NIODeadline.uptimeNanoseconds(5_000_000_000)
        #expect(admission.admit("a", now: now) == nil)
        #expect(admission.admit("a", now: now) == nil)
        let refused = admission.admit("a", now: now)
        #expect(refused?.refusal == .handshakeRate)
        #expect(refused?.retryAfter == .seconds(1))
        #expect(admission.admit("b", now: now) == nil, "another address has its own bucket")
        #expect(admission.admit("a", now: now + .seconds(1)) == nil)
    }

    @Test func openSessionsPerAddressAreCountedUntilTheyClose() {
        let admission = AddressAdmission(limits: ClientLimits(connectionsPerAddress: 2))
        let now = NIODeadline.now()
        admission.opened("a")
        admission.opened("a")
        #expect(admission.admit("a", now: now)?.refusal == .connectionsPerAddress)
        #expect(admission.admit("b", now: now) == nil)
        admission.closed("a")
        #expect(admission.admit("a", now: now) == nil)
        admission.closed("a")
        admission.closed("a")
        #expect(admission.openSessions(from: "a") == 0, "a close without an open does not go negative")
    }

    @Test func theBucketTableStaysBoundedUnderAFloodOfAddresses() {
        let admission = AddressAdmission(limits: ClientLimits(handshakesPerSecond: 1, handshakeBurst: 1), maxTrackedAddresses: 100)
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        for index in 0..<1000 { _ = admission.admit("flood-\(index)", now: now) }
        #expect(admission.trackedAddresses <= 100)
        // Buckets that refilled are the ones forgotten first; a spent one in the same table is kept.
        let small = AddressAdmission(limits: ClientLimits(handshakesPerSecond: 1, handshakeBurst: 1), maxTrackedAddresses: 3)
        _ = small.admit("old-1", now: now)
        _ = small.admit("old-2", now: now)
        _ = small.admit("recent", now: now + .seconds(5))
        _ = small.admit("new", now: now + .seconds(5) + .milliseconds(100))
        #expect(small.trackedAddresses == 2)
        #expect(small.admit("recent", now: now + .seconds(5) + .milliseconds(200))?.refusal == .handshakeRate)
    }
}

@Suite("Client limits over EnginePipeline")
struct ClientLimitsPipelineTests {
    final class Fixture {
        let metrics = TestMetrics()
        let harness: EngineHarness

        init(_ limits: ClientLimits) {
            harness = EngineHarness(configuration: EngineConfiguration(limits: limits), metrics: EngineMetrics(factory: metrics))
        }

        func refused(_ reason: HandshakeRefusal) -> Int64 {
            metrics.counterTotal(label: EngineMetrics.refusedHandshakesLabel, dimensions: [("reason", reason.rawValue)])
        }
    }

    @Test func pollingHandshakesOverTheRateGet429WithRetryAfter() throws {
        let fixture = Fixture(ClientLimits(handshakesPerSecond: 0.5, handshakeBurst: 2))
        let connection = try fixture.harness.connect(from: "203.0.113.5")
        for _ in 0..<2 {
            try connection.get(Target.handshake)
            #expect(try connection.expectResponse().status == 200)
        }
        try connection.get(Target.handshake)
        let refused = try connection.expectResponse()
        #expect(refused.status == 429)
        #expect(refused.header("Retry-After") == "2")
        #expect(refused.bodyString == #"{"code":3,"message":"Too many handshakes from this address"}"#)
        #expect(fixture.refused(.handshakeRate) == 1)
        #expect(fixture.harness.server.sessionCount == 2)
        // Another address is not affected.
        let other = try fixture.harness.connect(from: "203.0.113.6")
        try other.get(Target.handshake)
        #expect(try other.expectResponse().status == 200)
    }

    @Test func aWebSocketHandshakeOverTheLimitIsAnswered429InsteadOfUpgraded() throws {
        let fixture = Fixture(ClientLimits(connectionsPerAddress: 1))
        let first = try fixture.harness.connect(from: "198.51.100.20")
        try first.upgrade(Target.websocket)
        #expect(try first.expectResponse().status == 101)
        let second = try fixture.harness.connect(from: "198.51.100.20")
        try second.upgrade(Target.websocket)
        let refused = try second.expectResponse()
        #expect(refused.status == 429)
        #expect(refused.bodyString == #"{"code":3,"message":"Too many connections from this address"}"#)
        #expect(fixture.refused(.connectionsPerAddress) == 1)
        // Once the first session closes, the address may connect again.
        let session = try #require(fixture.harness.application.sessions.first)
        session.close(reason: .serverDisconnect)
        fixture.harness.loop.run()
        let third = try fixture.harness.connect(from: "198.51.100.20")
        try third.upgrade(Target.websocket)
        #expect(try third.expectResponse().status == 101)
    }

    @Test func clientsBehindATrustedProxyAreLimitedOneByOne() throws {
        let fixture = Fixture(ClientLimits(connectionsPerAddress: 1, trustedProxies: [IPNetwork("127.0.0.1")!]))
        let viaProxy = { (client: String) throws -> Int in
            let connection = try fixture.harness.connect()
            try connection.get(Target.handshake, headers: ["X-Forwarded-For: \(client)"])
            return try connection.expectResponse().status
        }
        #expect(try viaProxy("198.51.100.1") == 200)
        #expect(try viaProxy("198.51.100.2") == 200)
        #expect(try viaProxy("198.51.100.1") == 429)
        let sessions = fixture.harness.application.sessions
        #expect(Set(sessions.map(\.handshake.clientAddress)) == ["198.51.100.1", "198.51.100.2"])
        // A peer that is not trusted cannot pick its address with the header.
        let direct = try fixture.harness.connect(from: "203.0.113.50")
        try direct.get(Target.handshake, headers: ["X-Forwarded-For: 198.51.100.3"])
        #expect(try direct.expectResponse().status == 200)
        #expect(fixture.harness.application.sessions.last?.handshake.clientAddress == "203.0.113.50")
    }

    @Test func aClientSendingTooManyPacketsIsClosedWithPolicyViolation() throws {
        let fixture = Fixture(ClientLimits(packetsPerSecond: 1, packetBurst: 5))
        let connection = try fixture.harness.connect()
        try connection.upgrade(Target.websocket)
        #expect(try connection.expectResponse().status == 101)
        _ = try connection.readFrames()
        let session = try #require(fixture.harness.application.sessions.first)
        for index in 0..<6 { try connection.sendText("4m\(index)") }
        #expect(session.closeReason == .packetRate)
        let frames = try connection.readFrames()
        #expect(frames.last?.closeCode == 1008)
        #expect(fixture.harness.application.messages.count == 5)
        #expect(
            fixture.metrics.counterTotal(label: EngineMetrics.disconnectsLabel, dimensions: [("reason", "packet_rate")]) == 1
        )
    }

    @Test func aRequestHeadThatDoesNotArriveInTimeClosesTheConnection() throws {
        let harness = EngineHarness(requestHeadTimeout: .seconds(20))
        let loris = try harness.connect()
        try loris.write("GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
        harness.loop.advanceTime(by: .seconds(19))
        // A header now and then resets the idle timeout, not this one.
        try loris.write("X-Slow: 1\r\n")
        #expect(loris.isActive)
        harness.loop.advanceTime(by: .seconds(2))
        #expect(!loris.isActive)
        #expect(harness.server.sessionCount == 0)

        // A keep-alive connection gets the whole time again after each response.
        let polite = try harness.connect()
        harness.loop.advanceTime(by: .seconds(15))
        try polite.get(Target.handshake)
        #expect(try polite.expectResponse().status == 200)
        harness.loop.advanceTime(by: .seconds(15))
        #expect(polite.isActive)
        try polite.get(Target.handshake)
        #expect(try polite.expectResponse().status == 200)
    }

    @Test func aBodyDeclaredOverTheLimitIsRefusedBeforeItIsRead() throws {
        let harness = EngineHarness(configuration: EngineConfiguration(maxPayload: 1000))
        let (sid, _) = try harness.handshake()
        let connection = try harness.connect()
        try connection.write(
            "POST \(Target.polling(sid)) HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n4abc"
        )
        let response = try connection.expectResponse()
        #expect(response.status == 413)
        #expect(response.header("Connection") == "close")
        #expect(harness.application.closeReasons == [.payloadTooLarge])
    }
}
