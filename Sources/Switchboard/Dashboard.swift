import Cluster
import EngineIO
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import OpenWebUI
import Presence
import Prometheus
import Redis
import SocketIO

/// Counts a node can report about its traffic, as running totals.
struct TrafficTotals: Sendable, Equatable {
    var eventsIn = 0
    var eventsOut = 0

    static let receivedFamily = "switchboard_socketio_events_received_total"
    static let sentFamily = "switchboard_socketio_events_sent_total"

    init(eventsIn: Int = 0, eventsOut: Int = 0) {
        self.eventsIn = eventsIn
        self.eventsOut = eventsOut
    }

    /// The Socket.IO event counters as the metrics registry holds them (read from its text form once
    /// per report, so the data path counts each event once, for both).
    init(_ registry: PrometheusCollectorRegistry) {
        var text: [UInt8] = []
        registry.emit(into: &text)
        self.init(prometheusText: String(decoding: text, as: UTF8.self))
    }

    init(prometheusText text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, let value = Double(parts[1]) else { continue }
            let name = parts[0].prefix(while: { $0 != "{" })
            if name == Self.receivedFamily { eventsIn += Int(value) }
            if name == Self.sentFamily { eventsOut += Int(value) }
        }
    }
}

/// Every second: this node's connections, sockets, rooms and message rates, kept for the dashboard
/// and, in a cluster, written to Redis (`{prefix}:stats:{node}`, expiring) so that any node's
/// dashboard shows the whole cluster.
final class StatsReporter: Sendable {
    static let interval: TimeAmount = .seconds(1)
    static let topRoomCount = 10

    let nodeID: String
    let endpoints: [EngineServer]
    let adapters: @Sendable () -> [InMemoryAdapter]
    let traffic: @Sendable () -> TrafficTotals
    let redis: RedisClient?
    let key: String
    let eventLoop: EventLoop
    private let state = NIOLockedValueBox<(latest: JSONValue, previous: (TrafficTotals, NIODeadline)?, task: RepeatedTask?)>(
        (.null, nil, nil)
    )

    init(
        nodeID: String,
        prefix: String,
        endpoints: [EngineServer],
        adapters: @escaping @Sendable () -> [InMemoryAdapter],
        traffic: @escaping @Sendable () -> TrafficTotals,
        redis: RedisClient?,
        eventLoop: EventLoop
    ) {
        self.nodeID = nodeID
        self.endpoints = endpoints
        self.adapters = adapters
        self.traffic = traffic
        self.redis = redis
        self.key = Self.statsKey(prefix: prefix, node: nodeID)
        self.eventLoop = eventLoop
    }

    static func statsKey(prefix: String, node: String) -> String { "\(prefix):stats:\(node)" }

    /// This node's latest report (`null` before the first).
    var latest: JSONValue { state.withLockedValue { $0.latest } }

    func start() {
        let task = eventLoop.scheduleRepeatedAsyncTask(initialDelay: .zero, delay: Self.interval) { _ in
            self.report()
        }
        state.withLockedValue { $0.task = task }
    }

    func stop() {
        state.withLockedValue { $0.task }?.cancel()
    }

    private func report() -> EventLoopFuture<Void> {
        let adapters = self.adapters()
        let sockets = EventLoopFuture.whenAllSucceed(adapters.map { $0.socketCount() }, on: eventLoop)
        let rooms = EventLoopFuture.whenAllSucceed(adapters.map { $0.roomSizes() }, on: eventLoop)
        return sockets.and(rooms).flatMap { socketCounts, roomSizes in
            let now = NIODeadline.now()
            let totals = self.traffic()
            var merged: [String: Int] = [:]
            for sizes in roomSizes { merged.merge(sizes, uniquingKeysWith: +) }
            let top = merged.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .prefix(Self.topRoomCount)
            let rates = self.state.withLockedValue { state -> (Double, Double) in
                defer { state.previous = (totals, now) }
                guard let (before, at) = state.previous else { return (0, 0) }
                let seconds = Double((now - at).nanoseconds) / 1e9
                guard seconds > 0 else { return (0, 0) }
                return (Double(totals.eventsIn - before.eventsIn) / seconds, Double(totals.eventsOut - before.eventsOut) / seconds)
            }
            let report: JSONValue = [
                "id": .string(self.nodeID),
                "connections": JSONValue(self.endpoints.map(\.sessionCount).reduce(0, +)),
                "sockets": JSONValue(socketCounts.reduce(0, +)),
                "rooms": JSONValue(merged.count),
                "events_in_per_second": .number(Self.format(rates.0)),
                "events_out_per_second": .number(Self.format(rates.1)),
                "top_rooms": .array(top.map { ["room": .string($0.key), "members": JSONValue($0.value)] }),
            ]
            self.state.withLockedValue { $0.latest = report }
            guard let redis = self.redis else { return self.eventLoop.makeSucceededVoidFuture() }
            let ttl = Int(Self.interval.nanoseconds / 1_000_000) * 5
            return redis.send(RESPCommand("SET", self.key, JSONWriter.serialize(report), "PX", String(ttl)))
                .map { _ in }
                .recover { _ in }
                .hop(to: self.eventLoop)
        }
    }

    static func format(_ rate: Double) -> String {
        String(Double(Int(rate * 10)) / 10)
    }
}

/// The count of users online, read at most once per `maxAge`: without USER_POOL it is a scan of SESSION_POOL,
/// and every open dashboard asks every second. -1 when the pools cannot be read.
final class UsersOnlineCount: Sendable {
    private struct State {
        var value: Int?
        var readAt = NIODeadline.distantPast
        var reading: EventLoopFuture<Int>?
    }

    private enum Step {
        case cached(Int)
        case wait(EventLoopFuture<Int>)
        case read(EventLoopPromise<Int>)
    }

    let presence: any PresenceStore
    let maxAge: TimeAmount
    private let state = NIOLockedValueBox(State())

    init(presence: any PresenceStore, maxAge: TimeAmount = .seconds(5)) {
        self.presence = presence
        self.maxAge = maxAge
    }

    func current(on eventLoop: EventLoop) -> EventLoopFuture<Int> {
        let now = NIODeadline.now()
        let step = state.withLockedValue { state -> Step in
            if let value = state.value, now - state.readAt < maxAge { return .cached(value) }
            if let reading = state.reading { return .wait(reading) }
            let promise = eventLoop.makePromise(of: Int.self)
            state.reading = promise.futureResult
            return .read(promise)
        }
        switch step {
        case .cached(let value):
            return eventLoop.makeSucceededFuture(value)
        case .wait(let reading):
            return reading.hop(to: eventLoop)
        case .read(let promise):
            // Started outside the lock: a store answering at once would run the completion below inline.
            promise.completeWith(presence.usersOnline().map(\.count).recover { _ in -1 }.hop(to: eventLoop))
            promise.futureResult.whenSuccess { count in
                self.state.withLockedValue { state in
                    state.reading = nil
                    if count >= 0 {
                        state.value = count
                        state.readAt = .now()
                    }
                }
            }
            return promise.futureResult
        }
    }
}

/// `/dashboard`: one self-contained page (no external assets) that polls `/dashboard/data` for the
/// whole cluster: nodes with liveness, connections, rooms and messages per second; top rooms; users
/// online; Redis status. Room names and users are not public: the data needs the API key in an
/// `Authorization` header (the page asks for it and keeps it for the tab only), never in the URL, where
/// proxies' access logs and browser history would keep it. Without a key configured the dashboard is off.
struct DashboardResponder: HTTPResponder {
    let keys: SecretBox
    let reporter: StatsReporter
    let cluster: ClusterNode?
    let redis: RedisClient?
    let prefix: String
    let usersOnline: UsersOnlineCount
    let readiness: ReadinessCheck

    var maxBodySize: Int { 0 }

    func respond(to request: HTTPRequest, on eventLoop: EventLoop) -> EventLoopFuture<HTTPResponse> {
        guard request.head.method == .GET else {
            return eventLoop.makeSucceededFuture(BackendAPI.json(.methodNotAllowed, ["error": "use GET"]))
        }
        switch request.path {
        case "/dashboard", "/dashboard/":
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/html; charset=utf-8")
            headers.add(name: "Cache-Control", value: "no-store")
            // The page runs only its own inline script and talks only to this node.
            headers.add(
                name: "Content-Security-Policy",
                value: "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'"
            )
            return eventLoop.makeSucceededFuture(
                HTTPResponse(status: .ok, headers: headers, body: ByteBuffer(string: DashboardPage.html))
            )
        case "/dashboard/data":
            guard let key = keys.value else {
                return eventLoop.makeSucceededFuture(
                    BackendAPI.json(.forbidden, ["error": "the dashboard is off: no API key is configured"])
                )
            }
            guard request.query["key"] == nil else {
                return eventLoop.makeSucceededFuture(
                    BackendAPI.json(
                        .badRequest,
                        ["error": "the API key goes in the Authorization header, never in the URL"]
                    )
                )
            }
            let presented = request.head.headers.first(name: "Authorization").map(BackendAPI.bearerToken)
            guard let presented, BackendAPI.constantTimeEqual(presented, key) else {
                return eventLoop.makeSucceededFuture(BackendAPI.json(.unauthorized, ["error": "the dashboard needs the API key"]))
            }
            return data(on: eventLoop).map { BackendAPI.ok($0) }
        default:
            return eventLoop.makeSucceededFuture(BackendAPI.json(.notFound, ["error": "no such page"]))
        }
    }

    private func data(on eventLoop: EventLoop) -> EventLoopFuture<JSONValue> {
        let users = usersOnline.current(on: eventLoop)
        let ready = readiness.check().hop(to: eventLoop)
        let nodes = clusterNodes(on: eventLoop)
        return users.and(ready).and(nodes).map { usersAndReady, nodes in
            let (userCount, readiness) = usersAndReady
            var rooms: [String: Int] = [:]
            for node in nodes {
                for entry in node["top_rooms"]?.arrayValue ?? [] {
                    if let room = entry["room"]?.stringValue, let members = entry["members"]?.intValue {
                        rooms[room, default: 0] += members
                    }
                }
            }
            let top = rooms.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .prefix(StatsReporter.topRoomCount)
            let redisStatus: String
            if cluster == nil {
                redisStatus = "none (alone, in memory)"
            } else {
                redisStatus = readiness.ready ? "connected" : readiness.reason
            }
            return [
                "this_node": .string(reporter.nodeID),
                "nodes": .array(nodes),
                "top_rooms": .array(top.map { ["room": .string($0.key), "members": JSONValue($0.value)] }),
                "users_online": JSONValue(userCount),
                "redis": .string(redisStatus),
            ]
        }
    }

    /// Every node of the cluster with its liveness and latest report; alone, just this node.
    private func clusterNodes(on eventLoop: EventLoop) -> EventLoopFuture<[JSONValue]> {
        let local = reporter.latest
        guard let cluster, let redis else {
            return eventLoop.makeSucceededFuture([Self.withLiveness(local, alive: true)])
        }
        return cluster.nodes().flatMap { liveness -> EventLoopFuture<[JSONValue]> in
            let ids = liveness.keys.sorted()
            guard !ids.isEmpty else { return eventLoop.makeSucceededFuture([Self.withLiveness(local, alive: true)]) }
            let keys = ids.map { StatsReporter.statsKey(prefix: prefix, node: $0) }
            return redis.send(RESPCommand("MGET", arguments: keys)).map { reply in
                let values = reply.array ?? []
                return ids.enumerated().map { index, id in
                    let stored = index < values.count ? values[index].string.flatMap { try? JSONParser.parse($0) } : nil
                    let report = stored ?? (id == reporter.nodeID ? local : ["id": .string(id)])
                    return Self.withLiveness(report, alive: liveness[id] ?? false)
                }
            }
        }.recover { _ in [Self.withLiveness(local, alive: true)] }.hop(to: eventLoop)
    }

    static func withLiveness(_ report: JSONValue, alive: Bool) -> JSONValue {
        guard case .object(var members) = report else { return ["alive": .bool(alive)] }
        members.append((key: "alive", value: .bool(alive)))
        return .object(members)
    }
}
