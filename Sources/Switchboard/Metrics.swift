import CoreMetrics
import EngineIO
import NIOCore
import NIOHTTP1
import Prometheus
import Redis
import ServiceLifecycle
import SocketIO

/// The node's metrics backend: swift-metrics bootstrapped with a Prometheus registry, which
/// `MetricsResponder` serves at `GET /metrics`.
public enum SwitchboardMetrics {
    /// Redis round trips on loopback or in one data centre: 0.1 ms to 1 s.
    static let redisBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1),
    ]
    /// A healthy loop runs a due task within a fraction of a millisecond; seconds mean a stalled loop.
    static let lagBuckets: [Duration] = redisBuckets + [.milliseconds(2500), .seconds(5)]
    /// Recipients per broadcast: one socket (a sid or a user's room) up to a large room.
    static let fanOutBuckets: [Double] = [0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]

    /// A Prometheus factory for `registry` with the node's histogram buckets.
    public static func makeFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[RedisMetrics.commandDurationLabel] = redisBuckets
        factory.durationHistogramBuckets[EventLoopLagMonitor.lagLabel] = lagBuckets
        factory.valueHistogramBuckets[SocketIOMetrics.broadcastRecipientsLabel] = fanOutBuckets
        return factory
    }

    /// Made on first use; a static's initialiser runs once per process, whoever calls first.
    private static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(makeFactory(registry: registry))
        return registry
    }()

    /// Bootstraps swift-metrics with the Prometheus factory (once per process: later calls return the
    /// same registry) and returns the registry to serve. Call it before creating servers, adapters,
    /// cluster nodes and Redis clients: their instruments come from the factory bootstrapped then.
    public static func bootstrap() -> PrometheusCollectorRegistry {
        registry
    }
}

/// Answers `GET /metrics` with the registry in Prometheus' text format; 404 for other paths, 405 for
/// other methods.
public struct MetricsResponder: HTTPResponder {
    public static let path = "/metrics"
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    public var maxBodySize: Int { 0 }

    public func respond(to request: HTTPRequest, on eventLoop: EventLoop) -> EventLoopFuture<HTTPResponse> {
        guard request.path == Self.path else {
            return eventLoop.makeSucceededFuture(
                HTTPResponse(status: .notFound, contentType: "text/plain", body: "Not Found")
            )
        }
        guard request.head.method == .GET else {
            var response = HTTPResponse(
                status: .methodNotAllowed,
                contentType: "text/plain",
                body: "Method Not Allowed"
            )
            response.headers.add(name: "Allow", value: "GET")
            return eventLoop.makeSucceededFuture(response)
        }
        // A scrape is rare (every few seconds) and small (a few hundred series): rendered inline.
        var text: [UInt8] = []
        registry.emit(into: &text)
        return eventLoop.makeSucceededFuture(
            HTTPResponse(status: .ok, headers: ["Content-Type": Self.contentType], body: ByteBuffer(bytes: text))
        )
    }
}

/// Measures how late each event loop runs a task due every `interval`: a busy or blocked loop
/// delays every connection it serves. Records into `switchboard_event_loop_lag_seconds{loop}`.
public final class EventLoopLagMonitor: Sendable {
    public static let lagLabel = "switchboard_event_loop_lag_seconds"

    public let interval: TimeAmount
    private let probes: [LagProbe]

    /// - Parameters:
    ///   - loops: the loops to watch, labelled by their index here.
    ///   - interval: how often each loop is probed. Default 500 ms.
    ///   - factory: where the timers come from. Default: the bootstrapped factory.
    ///   - now: the clock the lag is read from (tests inject one). Default: the monotonic clock.
    public init(
        loops: [EventLoop],
        interval: TimeAmount = .milliseconds(500),
        factory: any MetricsFactory = MetricsSystem.factory,
        now: @escaping @Sendable () -> NIODeadline = { .now() }
    ) {
        self.interval = interval
        self.probes = loops.enumerated().map { index, loop in
            LagProbe(
                loop: loop,
                interval: interval,
                timer: Timer(label: Self.lagLabel, dimensions: [("loop", String(index))], factory: factory),
                now: now
            )
        }
    }

    /// Starts probing every loop (again after `stop`). Callable from any thread.
    public func start() {
        for probe in probes { probe.loop.execute { probe.start() } }
    }

    /// Stops probing. Callable from any thread; each loop cancels its probe when it next runs.
    public func stop() {
        for probe in probes { probe.loop.execute { probe.stop() } }
    }
}

extension EventLoopLagMonitor: Service {
    /// Probes until graceful shutdown.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        stop()
    }
}

/// One loop's probe: a task rescheduled one interval after each run.
private final class LagProbe: @unchecked Sendable {
    // @unchecked Sendable: `due` and `task` are only touched on `loop` (asserted).
    let loop: EventLoop
    private let interval: TimeAmount
    private let timer: Timer
    private let now: @Sendable () -> NIODeadline
    /// When the scheduled task should run.
    private var due: NIODeadline?
    private var task: Scheduled<Void>?

    init(loop: EventLoop, interval: TimeAmount, timer: Timer, now: @escaping @Sendable () -> NIODeadline) {
        self.loop = loop
        self.interval = interval
        self.timer = timer
        self.now = now
    }

    func start() {
        loop.assertInEventLoop()
        guard task == nil else { return }
        schedule()
    }

    func stop() {
        loop.assertInEventLoop()
        task?.cancel()
        task = nil
        due = nil
    }

    private func schedule() {
        due = now() + interval
        task = loop.scheduleTask(in: interval) { [self] in fired() }
    }

    private func fired() {
        guard let due else { return }
        timer.recordNanoseconds(max(0, (now() - due).nanoseconds))
        schedule()
    }
}
