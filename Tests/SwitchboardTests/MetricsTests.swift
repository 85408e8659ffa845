import Cluster
import EngineIO
import EngineIOTestSupport
import MetricsTestKit
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Prometheus
import Redis
import SocketIO
import Synchronization
import Testing

@testable import Switchboard

@Suite("Node metrics: /metrics and the event-loop lag")
struct MetricsTests {
    /// The families every layer registers as soon as its objects exist.
    static let families: [String: String] = [
        EngineMetrics.connectionsLabel: "gauge",
        EngineMetrics.receivedBytesLabel: "counter",
        EngineMetrics.sentBytesLabel: "counter",
        EngineMetrics.disconnectsLabel: "counter",
        SocketIOMetrics.socketsLabel: "gauge",
        SocketIOMetrics.eventsReceivedLabel: "counter",
        SocketIOMetrics.eventsSentLabel: "counter",
        SocketIOMetrics.broadcastRecipientsLabel: "histogram",
        SocketIOMetrics.ackTimeoutsLabel: "counter",
        SocketIOMetrics.roomsLabel: "gauge",
        ClusterMetrics.publishedLabel: "counter",
        ClusterMetrics.receivedLabel: "counter",
        ClusterMetrics.undecodableLabel: "counter",
        ClusterMetrics.bridgeMessagesLabel: "counter",
        ClusterMetrics.bridgeRejectedLabel: "counter",
        RedisMetrics.commandDurationLabel: "histogram",
        RedisMetrics.reconnectsLabel: "counter",
        RedisMetrics.connectionsUpLabel: "gauge",
        RedisMetrics.stateChangesLabel: "counter",
        EventLoopLagMonitor.lagLabel: "histogram",
    ]

    @Test func bootstrappingTwiceReturnsTheSameRegistry() {
        #expect(SwitchboardMetrics.bootstrap() === SwitchboardMetrics.bootstrap())
    }

    @Test func metricsAreServedAsPrometheusTextWithEveryFamily() throws {
        // A registry of its own, so what other tests record cannot change the page.
        let registry = PrometheusCollectorRegistry()
        let factory = SwitchboardMetrics.makeFactory(registry: registry)
        let loop = EmbeddedEventLoop()
        let socketIOMetrics = SocketIOMetrics(factory: factory)
        let io = SocketIOServer(configuration: SocketIOConfiguration(), logger: silentLogger, metrics: socketIOMetrics)
        {
            InMemoryAdapter(namespace: $0, eventLoops: [loop], metrics: socketIOMetrics)
        }
        io.addNamespace("/", handlers: NamespaceHandlers())
        _ = EngineMetrics(factory: factory)
        _ = ClusterMetrics(factory: factory)
        _ = RedisMetrics(factory: factory)
        _ = EventLoopLagMonitor(loops: [loop], factory: factory)
        io.namespace("/")?.emit("nobody", [])
        loop.run()

        let response = try respond(MetricsResponder(registry: registry), .GET, "/metrics", on: loop)
        #expect(response.status == .ok)
        #expect(response.headers.first(name: "Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        let page = try PrometheusText(String(buffer: response.body))
        for (family, type) in Self.families {
            #expect(page.types[family] == type, "\(family)")
        }
        #expect(page.samples[#"switchboard_engineio_disconnects_total{reason="slow_consumer"}"#] == "0")
        #expect(page.samples[#"switchboard_socketio_sockets{namespace="/"}"#] == "0.0")
        #expect(page.samples[#"switchboard_socketio_broadcast_recipients_count"#] == "1")
        #expect(page.samples[#"switchboard_redis_command_duration_seconds_bucket{role="command",le="0.0001"}"#] == "0")
        #expect(page.samples[#"switchboard_event_loop_lag_seconds_bucket{loop="0",le="5.0"}"#] == "0")
        try loop.syncShutdownGracefully()
    }

    @Test func otherPathsAndMethodsAreRefused() throws {
        let loop = EmbeddedEventLoop()
        let responder = MetricsResponder(registry: PrometheusCollectorRegistry())
        #expect(try respond(responder, .GET, "/metrics/x", on: loop).status == .notFound)
        let post = try respond(responder, .POST, "/metrics", on: loop)
        #expect(post.status == .methodNotAllowed)
        #expect(post.headers.first(name: "Allow") == "GET")
    }

    @Test func lagIsHowLateEachLoopRanItsProbe() throws {
        let metrics = TestMetrics()
        let loop = EmbeddedEventLoop()
        let late = Lateness()
        let monitor = EventLoopLagMonitor(
            loops: [loop],
            interval: .milliseconds(500),
            factory: metrics,
            now: { loop.now + late.amount.withLock { $0 } }
        )
        let timer = try metrics.expectTimer(EventLoopLagMonitor.lagLabel, [("loop", "0")])
        monitor.start()
        loop.run()
        late.amount.withLock { $0 = .milliseconds(120) }
        loop.advanceTime(by: .milliseconds(500))
        #expect(timer.values == [120_000_000])
        late.amount.withLock { $0 = .zero }
        // Due one interval after the late run; the clock's jump back reads as no lag, never negative.
        loop.advanceTime(by: .milliseconds(500))
        #expect(timer.values == [120_000_000, 0])

        monitor.stop()
        loop.run()
        loop.advanceTime(by: .seconds(2))
        #expect(timer.values.count == 2)
        monitor.start()
        loop.run()
        loop.advanceTime(by: .milliseconds(500))
        #expect(timer.values == [120_000_000, 0, 0])
        try loop.syncShutdownGracefully()
    }

    private func respond(
        _ responder: MetricsResponder,
        _ method: HTTPMethod,
        _ path: String,
        on loop: EmbeddedEventLoop
    ) throws -> HTTPResponse {
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        let request = HTTPRequest(head: head, path: path[...], query: [:], body: ByteBuffer())
        return try responder.respond(to: request, on: loop).wait()
    }
}

/// How far the lag monitor's clock runs ahead of the loop's.
private final class Lateness: Sendable {
    let amount = Mutex(TimeAmount.zero)
}

/// The Prometheus text exposition format (0.0.4), strictly: every line a TYPE or HELP comment or a
/// sample of a family typed before it.
private struct PrometheusText {
    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    /// Family name → type.
    var types: [String: String] = [:]
    /// Sample name with its labels, as written → value.
    var samples: [String: String] = [:]

    init(_ text: String) throws {
        let name = #/[a-zA-Z_:][a-zA-Z0-9_:]*/#
        let typeLine = #/# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)/#
        let sample = #/
            ([a-zA-Z_:][a-zA-Z0-9_:]*)
            ( \{ [a-zA-Z_][a-zA-Z0-9_]* = "(?:[^"\\\n]|\\.)*"
                (?: , [a-zA-Z_][a-zA-Z0-9_]* = "(?:[^"\\\n]|\\.)*" )* \} )?
            \x20 ( [-+]? (?: [0-9]+ (?:\.[0-9]+)? (?:[eE][-+]?[0-9]+)? | NaN | Inf ) )
            /#
        guard text.hasSuffix("\n") else { throw Malformed(description: "no final newline") }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            if let match = line.wholeMatch(of: typeLine) {
                let family = String(match.1)
                guard types[family] == nil else { throw Malformed(description: "second TYPE for \(family)") }
                types[family] = String(match.2)
            } else if line.hasPrefix("# HELP "),
                line.dropFirst(7).prefix(while: { $0 != " " }).wholeMatch(of: name) != nil
            {
                continue
            } else if let match = line.wholeMatch(of: sample) {
                let sampleName = String(match.1)
                let family = types[sampleName] != nil ? sampleName : Self.histogramFamily(of: sampleName)
                guard let family, types[family] != nil else {
                    throw Malformed(description: "sample of an untyped family: \(line)")
                }
                samples[String(match.1) + String(match.2 ?? "")] = String(match.3)
            } else {
                throw Malformed(description: "not a comment or a sample: \(line)")
            }
        }
    }

    private static func histogramFamily(of sample: String) -> String? {
        for suffix in ["_bucket", "_sum", "_count"] where sample.hasSuffix(suffix) {
            return String(sample.dropLast(suffix.count))
        }
        return nil
    }
}
