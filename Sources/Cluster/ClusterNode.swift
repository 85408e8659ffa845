import EngineIO
import Logging
import NIOCore
import SocketIO

/// Cluster settings. Every field documents its default.
public struct ClusterConfiguration: Sendable {
    /// This node's id: the prefix of every sid it issues, so a sid names its node. Default: 6
    /// random base64url characters, new at every start.
    public var nodeID: String
    /// Prefix of the cluster's channels and keys. Default `switchboard`.
    public var prefix: String
    /// How often the node renews its heartbeat and checks the others. Default 2 s.
    public var heartbeatInterval: TimeAmount
    /// A node whose heartbeat is older than this is dead. Default 10 s, so a dead node is found
    /// within `nodeTTL + heartbeatInterval` (12 s).
    public var nodeTTL: TimeAmount
    /// Longest wait for other nodes' answers to a cluster-wide question. Default 3 s.
    public var requestTimeout: TimeAmount

    public static let nodeIDLength = 6

    public init(
        nodeID: String = SessionID.make(length: ClusterConfiguration.nodeIDLength),
        prefix: String = "switchboard",
        heartbeatInterval: TimeAmount = .seconds(2),
        nodeTTL: TimeAmount = .seconds(10),
        requestTimeout: TimeAmount = .seconds(3)
    ) {
        self.nodeID = nodeID
        self.prefix = prefix
        self.heartbeatInterval = heartbeatInterval
        self.nodeTTL = nodeTTL
        self.requestTimeout = requestTimeout
    }

    func nodeChannel(_ node: String) -> String { "\(prefix):node:\(node)" }
    var broadcastChannel: String { "\(prefix):all" }
    var registryChannel: String { "\(prefix):registry" }
}

/// Where a broadcast must go besides this node.
enum Route: Equatable {
    case none
    /// Every node (the cluster-wide channel).
    case everyone
    case nodes(Set<String>)
}

/// This node's view of the room registry, one copy per event loop so that routing a broadcast
/// reads memory owned by the loop it runs on — no lock, no hop.
final class RouteTable: @unchecked Sendable {
    // @unchecked Sendable: fields are only read and written on `eventLoop`.
    let eventLoop: EventLoop
    var roomNodes: [String: Set<String>] = [:]
    var liveNodes: Set<String> = []
    var trusted = false

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }
}

/// The registry key of a room: namespace, NUL, room.
func roomKey(_ namespace: String, _ room: String) -> String {
    namespace + "\u{0}" + room
}

/// One node of the cluster: it registers the rooms its sockets hold, routes broadcasts to the
/// nodes that hold members, serves other nodes' requests, watches heartbeats and reaps dead nodes.
///
/// Mutable state lives on `controlLoop` (where the transport delivers messages); routing state is
/// mirrored into one `RouteTable` per event loop.
public final class ClusterNode: RoomOccupancyObserver, @unchecked Sendable {
    // @unchecked Sendable: every `var` below is confined to `controlLoop`; route tables to their loops.

    public let configuration: ClusterConfiguration
    public var id: String { configuration.nodeID }
    let transport: ClusterTransport
    let controlLoop: EventLoop
    private let routeTables: [ObjectIdentifier: RouteTable]
    private let allLoops: [EventLoop]
    let logger: Logger
    let metrics: ClusterMetrics

    private var adapters: [String: ClusterAdapter] = [:]
    /// The authoritative copy of the registry view.
    private var roomNodes: [String: Set<String>] = [:]
    private var liveNodes: Set<String> = []
    private var trusted = false
    /// Registry messages received while a snapshot loads, replayed on top of it.
    private var resyncBuffer: [(origin: String, message: ClusterMessage)]?
    /// Local occupancy of each room key: how many loops hold members.
    private var localOccupancy: [String: Int] = [:]
    private var pendingAdded: Set<String> = []
    private var pendingRemoved: Set<String> = []
    private var flushScheduled = false
    private var pendingAcks: [UInt64: AckCollector] = [:]
    private var pendingQueries: [UInt64: QueryCollector] = [:]
    /// Readiness probes in flight: a message to this node's own channel, waiting to come back.
    private var pendingProbes: [UInt64: EventLoopPromise<Void>] = [:]
    private var nextRequestID: UInt64 = 1
    private var heartbeatTask: RepeatedTask?
    private var stopped = false
    public private(set) var transportState: ClusterTransportState = .disconnected
    /// Called (on the control loop) after this node reaps a dead node, e.g. to clean shared pools.
    public var onNodeReaped: (@Sendable (String) -> Void)?
    /// Called on the control loop when a room gets its first member on this node or loses its last, and when a
    /// socket (a room of one) connects here or goes: what the python-socketio bridge subscribes per room.
    public var onLocalRoomChange: (@Sendable (_ namespace: String, _ room: String, _ occupied: Bool) -> Void)?
    /// Called on the control loop when the transport comes back after it was lost. Redis may have restarted
    /// without its data: resync rewrites the room registry, and this is for what others keep there.
    public var onTransportRestored: (@Sendable () -> Void)?
    private var hasConnected = false
    private var hasBeaten = false

    public init(
        configuration: ClusterConfiguration,
        transport: ClusterTransport,
        controlLoop: EventLoop,
        eventLoops: [EventLoop],
        logger: Logger,
        metrics: ClusterMetrics = ClusterMetrics()
    ) {
        self.configuration = configuration
        self.metrics = metrics
        self.transport = transport
        self.controlLoop = controlLoop
        var loops = eventLoops
        if !loops.contains(where: { $0 === controlLoop }) { loops.append(controlLoop) }
        self.allLoops = loops
        var tables: [ObjectIdentifier: RouteTable] = [:]
        for loop in loops { tables[ObjectIdentifier(loop)] = RouteTable(eventLoop: loop) }
        self.routeTables = tables
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.nodeID)"
        self.logger = logger
    }

    /// The adapter of a namespace; pass it to `SocketIOServer`'s adapter factory. `metrics` are the
    /// local rooms' and broadcasts' instruments, by default made from the bootstrapped factory.
    public func makeAdapter(
        namespace: String,
        eventLoops: [EventLoop],
        metrics: SocketIOMetrics = SocketIOMetrics()
    ) -> ClusterAdapter {
        let adapter = ClusterAdapter(
            node: self,
            namespace: namespace,
            local: InMemoryAdapter(namespace: namespace, eventLoops: eventLoops, observer: self, metrics: metrics)
        )
        controlLoop.execute { self.adapters[namespace] = adapter }
        return adapter
    }

    /// True while the registry can be trusted and the transport is up.
    public var isReady: EventLoopFuture<Bool> {
        controlLoop.submit { self.transportState == .connected && self.trusted }
    }

    /// Every node listed in the registry and whether its heartbeat is current.
    public func nodes() -> EventLoopFuture<[String: Bool]> {
        transport.nodes()
    }

    private struct ProbeTimedOut: Error {}

    /// A round trip through the medium: a message published to this node's own channel comes back
    /// within `deadline`. False when the transport is down, the registry untrusted, or the trip slow.
    public func probe(within deadline: TimeAmount) -> EventLoopFuture<Bool> {
        controlLoop.flatSubmit {
            guard self.transportState == .connected, self.trusted, !self.stopped else {
                return self.controlLoop.makeSucceededFuture(false)
            }
            let requestID = self.nextRequestID
            self.nextRequestID += 1
            let promise = self.controlLoop.makePromise(of: Void.self)
            self.pendingProbes[requestID] = promise
            let timer = self.controlLoop.scheduleTask(in: deadline) {
                self.pendingProbes.removeValue(forKey: requestID)?.fail(ProbeTimedOut())
            }
            self.publish(.reply(requestID: requestID, values: []), to: self.configuration.nodeChannel(self.id))
                .whenFailure { error in self.pendingProbes.removeValue(forKey: requestID)?.fail(error) }
            return promise.futureResult.map { _ in
                timer.cancel()
                return true
            }.recover { _ in
                timer.cancel()
                return false
            }
        }
    }

    // MARK: Lifecycle

    public func start() -> EventLoopFuture<Void> {
        let channels = [configuration.nodeChannel(id), configuration.broadcastChannel, configuration.registryChannel]
        return transport.start(
            channels: channels,
            onMessage: { [self] channel, payload in
                self.controlLoop.execute { self.receive(channel: channel, payload: payload) }
            },
            onState: { [self] state in
                self.controlLoop.execute { self.transportStateChanged(state) }
            }
        ).flatMap {
            self.controlLoop.submit {
                self.heartbeatTask = self.controlLoop.scheduleRepeatedTask(
                    initialDelay: self.configuration.heartbeatInterval,
                    delay: self.configuration.heartbeatInterval
                ) { _ in self.heartbeatTick() }
            }
        }
    }

    /// Leaves the cluster: stops heartbeats and removes this node's records.
    public func stop() -> EventLoopFuture<Void> {
        controlLoop.flatSubmit {
            self.stopped = true
            self.heartbeatTask?.cancel()
            self.heartbeatTask = nil
            return self.transport.forget(node: self.id)
                .flatMap { self.publish(.nodeGone(node: self.id), to: self.configuration.broadcastChannel) }
                .flatMapError { _ in self.controlLoop.makeSucceededVoidFuture() }
                .flatMap { self.transport.stop() }
        }
    }

    private func transportStateChanged(_ state: ClusterTransportState) {
        guard !stopped, state != transportState else { return }
        transportState = state
        switch state {
        case .disconnected:
            logger.warning("cluster transport lost; delivering locally and falling back until it returns")
            setTrusted(false)
        case .connected:
            logger.info("cluster transport connected; syncing the room registry")
            resync()
            if hasConnected { onTransportRestored?() }
            hasConnected = true
        }
    }

    /// The others reaped this node — its Redis was out of reach longer than the node TTL without the
    /// connection breaking (a partition), so no reconnect will tell it — and deleted its room records and
    /// sessions: it writes them again, as after a reconnect.
    private func rejoin(_ why: String) {
        guard !stopped, transportState == .connected else { return }
        logger.warning("this node was reaped by the others; joining the cluster again", metadata: ["why": "\(why)"])
        metrics.rejoins.increment()
        resync()
        onTransportRestored?()
    }

    // MARK: Registry

    public func roomOccupancyChanged(namespace: String, room: String, occupied: Bool, eventLoop: EventLoop) {
        let key = roomKey(namespace, room)
        controlLoop.execute {
            let before = self.localOccupancy[key, default: 0]
            let after = before + (occupied ? 1 : -1)
            self.localOccupancy[key] = after > 0 ? after : nil
            if before == 0 && after > 0 {
                if self.pendingRemoved.remove(key) == nil { self.pendingAdded.insert(key) }
                self.onLocalRoomChange?(namespace, room, true)
            } else if before > 0 && after <= 0 {
                if self.pendingAdded.remove(key) == nil { self.pendingRemoved.insert(key) }
                self.onLocalRoomChange?(namespace, room, false)
            }
            self.scheduleRegistryFlush()
        }
    }

    public func socketPresenceChanged(namespace: String, sid: String, present: Bool, eventLoop: EventLoop) {
        controlLoop.execute { self.onLocalRoomChange?(namespace, sid, present) }
    }

    /// Writes registry changes once per loop tick: one SADD/SREM and one announcement.
    private func scheduleRegistryFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        controlLoop.execute {
            self.flushScheduled = false
            self.flushRegistry()
        }
    }

    private func flushRegistry() {
        guard !pendingAdded.isEmpty || !pendingRemoved.isEmpty else { return }
        // While resyncing, the snapshot step registers the current local rooms in full.
        guard transportState == .connected, resyncBuffer == nil else {
            pendingAdded.removeAll()
            pendingRemoved.removeAll()
            return
        }
        let added = Array(pendingAdded)
        let removed = Array(pendingRemoved)
        pendingAdded.removeAll()
        pendingRemoved.removeAll()
        var writes: [EventLoopFuture<Void>] = []
        if !added.isEmpty { writes.append(transport.addRooms(added, node: id)) }
        if !removed.isEmpty { writes.append(transport.removeRooms(removed, node: id)) }
        // Announced after the write on the same connection, so a resyncing peer that misses the
        // announcement finds the record in its snapshot.
        writes.append(publish(.registry(added: added, removed: removed), to: configuration.registryChannel))
        EventLoopFuture.andAllSucceed(writes, on: controlLoop).whenFailure { error in
            self.logger.warning("room registry write failed; falling back until resynced", metadata: ["error": "\(error)"])
            self.setTrusted(false)
            self.resync()
        }
    }

    private func applyRegistry(origin: String, _ message: ClusterMessage) {
        switch message {
        case .registry(let added, let removed):
            liveNodes.insert(origin)
            for key in added { roomNodes[key, default: []].insert(origin) }
            for key in removed {
                roomNodes[key]?.remove(origin)
                if roomNodes[key]?.isEmpty == true { roomNodes[key] = nil }
            }
            let live = liveNodes
            updateTables { table in
                table.liveNodes = live
                for key in added { table.roomNodes[key, default: []].insert(origin) }
                for key in removed {
                    table.roomNodes[key]?.remove(origin)
                    if table.roomNodes[key]?.isEmpty == true { table.roomNodes[key] = nil }
                }
            }
        case .nodeGone(let node):
            if node == id, !stopped {
                rejoin("another node announced it gone")
            } else {
                forgetLocally(node)
            }
        default:
            break
        }
    }

    private func forgetLocally(_ node: String) {
        guard node != id else { return }
        liveNodes.remove(node)
        for key in roomNodes.keys {
            roomNodes[key]?.remove(node)
            if roomNodes[key]?.isEmpty == true { roomNodes[key] = nil }
        }
        let snapshot = roomNodes
        let live = liveNodes
        updateTables { table in
            table.roomNodes = snapshot
            table.liveNodes = live
        }
    }

    /// Reloads the registry: re-registers this node's rooms, loads every live node's rooms, and
    /// replays what arrived meanwhile. Until it succeeds, broadcasts use the cluster-wide channel.
    private func resync() {
        guard !stopped, transportState == .connected, resyncBuffer == nil else { return }
        resyncBuffer = []
        setTrusted(false)
        let localKeys = Array(localOccupancy.keys)
        transport.heartbeat(node: id, ttl: configuration.nodeTTL)
            .flatMap { _ in localKeys.isEmpty ? self.controlLoop.makeSucceededVoidFuture() : self.transport.addRooms(localKeys, node: self.id) }
            .flatMap { self.publish(.registry(added: localKeys, removed: []), to: self.configuration.registryChannel) }
            .flatMap { self.transport.nodes() }
            .flatMap { nodes -> EventLoopFuture<[(String, [String])]> in
                let alive = nodes.filter { $0.value && $0.key != self.id }.map(\.key)
                let loads = alive.map { node in self.transport.rooms(ofNode: node).map { (node, $0) } }
                return EventLoopFuture.whenAllSucceed(loads, on: self.controlLoop)
            }
            .hop(to: controlLoop)
            .whenComplete { result in
                let buffered = self.resyncBuffer ?? []
                self.resyncBuffer = nil
                switch result {
                case .success(let snapshot):
                    // Its heartbeat landed: from now on, a beat that finds it unlisted means it was reaped.
                    self.hasBeaten = true
                    var rooms: [String: Set<String>] = [:]
                    var live: Set<String> = [self.id]
                    for (node, keys) in snapshot {
                        live.insert(node)
                        for key in keys { rooms[key, default: []].insert(node) }
                    }
                    for key in self.localOccupancy.keys { rooms[key, default: []].insert(self.id) }
                    self.roomNodes = rooms
                    self.liveNodes = live
                    for (origin, message) in buffered { self.applyRegistry(origin: origin, message) }
                    let finalRooms = self.roomNodes
                    let finalLive = self.liveNodes
                    self.updateTables { table in
                        table.roomNodes = finalRooms
                        table.liveNodes = finalLive
                    }
                    self.setTrusted(true)
                    self.logger.info(
                        "room registry synced",
                        metadata: ["nodes": "\(finalLive.count)", "rooms": "\(finalRooms.count)"]
                    )
                case .failure(let error):
                    self.logger.warning("registry sync failed; retrying", metadata: ["error": "\(error)"])
                    self.controlLoop.scheduleTask(in: .seconds(1)) { self.resync() }
                }
            }
    }

    private func setTrusted(_ value: Bool) {
        trusted = value
        updateTables { $0.trusted = value }
    }

    private func updateTables(_ update: @escaping @Sendable (RouteTable) -> Void) {
        for table in routeTables.values {
            if table.eventLoop.inEventLoop {
                update(table)
            } else {
                table.eventLoop.execute { update(table) }
            }
        }
    }

    // MARK: Heartbeats and reaping

    private func heartbeatTick() {
        guard !stopped, transportState == .connected else { return }
        transport.heartbeat(node: id, ttl: configuration.nodeTTL)
            .flatMap { unlisted in self.transport.nodes().map { (unlisted, $0) } }
            .hop(to: controlLoop)
            .whenComplete { result in
                guard case .success(let (unlisted, nodes)) = result else { return }
                if unlisted, self.hasBeaten { self.rejoin("its heartbeat found it unlisted") }
                self.hasBeaten = true
                for (node, alive) in nodes where node != self.id {
                    if alive {
                        if !self.liveNodes.contains(node) {
                            self.liveNodes.insert(node)
                            let live = self.liveNodes
                            self.updateTables { $0.liveNodes = live }
                        }
                    } else {
                        // Stop routing to it at once; one survivor cleans its records.
                        if self.liveNodes.contains(node) || self.roomNodes.values.contains(where: { $0.contains(node) }) {
                            self.logger.warning("node is dead", metadata: ["dead": "\(node)"])
                            self.forgetLocally(node)
                        }
                        self.reap(node)
                    }
                }
            }
    }

    private func reap(_ node: String) {
        transport.claimReap(of: node, by: id, ttl: configuration.nodeTTL)
            .hop(to: controlLoop)
            .whenSuccess { claimed in
                guard claimed else { return }
                self.transport.forget(node: node)
                    .flatMap { self.publish(.nodeGone(node: node), to: self.configuration.broadcastChannel) }
                    .whenSuccess {
                        self.logger.info("reaped dead node", metadata: ["dead": "\(node)"])
                        self.onNodeReaped?(node)
                    }
            }
    }

    // MARK: Routing (any loop)

    /// The route table of the current loop, if the caller is on one the node knows.
    private func currentTable() -> RouteTable? {
        for table in routeTables.values where table.eventLoop.inEventLoop { return table }
        return nil
    }

    static let sidLength = 20

    /// Where a broadcast in `namespace` matching `options` must go besides this node.
    func route(namespace: String, options: BroadcastOptions, table: RouteTable) -> Route {
        guard table.trusted else { return .everyone }
        if options.rooms.isEmpty {
            return table.liveNodes.contains(where: { $0 != id }) ? .everyone : .none
        }
        // Allocates only when some other node must be reached.
        var nodes: Set<String> = []
        for room in options.rooms {
            if let holders = table.roomNodes[roomKey(namespace, room)] { nodes.formUnion(holders) }
            // A sid names its node: no registry entry needed.
            if room.utf8.count == Self.sidLength {
                let owner = String(room.prefix(ClusterConfiguration.nodeIDLength))
                if owner != id, table.liveNodes.contains(owner) { nodes.insert(owner) }
            }
        }
        nodes.remove(id)
        return nodes.isEmpty ? .none : .nodes(nodes)
    }

    /// Sends `message` wherever `options` route it (runs the routing on the caller's loop).
    func publishRouted(namespace: String, options: BroadcastOptions, message: ClusterMessage) {
        if let table = currentTable() {
            send(message, route: route(namespace: namespace, options: options, table: table))
        } else {
            let table = routeTables[ObjectIdentifier(controlLoop)]!
            controlLoop.execute {
                self.send(message, route: self.route(namespace: namespace, options: options, table: table))
            }
        }
    }

    private func send(_ message: ClusterMessage, route: Route) {
        switch route {
        case .none:
            return
        case .everyone:
            publish(message, to: configuration.broadcastChannel).whenFailure { _ in }
        case .nodes(let nodes):
            let payload = message.encoded(origin: id)
            metrics.published(message.kind, count: nodes.count)
            for node in nodes {
                transport.publish(payload, to: configuration.nodeChannel(node)).whenFailure { _ in }
            }
        }
    }

    @discardableResult
    private func publish(_ message: ClusterMessage, to channel: String) -> EventLoopFuture<Void> {
        metrics.published(message.kind)
        return transport.publish(message.encoded(origin: id), to: channel)
    }

    // MARK: Requests that wait for other nodes

    /// A broadcast with acks: local sockets through the local adapter, others through their nodes.
    func broadcastWithAck(
        namespace: String,
        local: InMemoryAdapter,
        packet: EncodedPacket,
        options: BroadcastOptions,
        ackID: Int,
        timeout: TimeAmount,
        completion: @escaping @Sendable (BroadcastAckResult) -> Void
    ) {
        controlLoop.execute {
            let table = self.routeTables[ObjectIdentifier(self.controlLoop)]!
            let route = self.route(namespace: namespace, options: options, table: table)
            let remote: Set<String>
            switch route {
            case .none: remote = []
            case .everyone: remote = self.liveNodes.subtracting([self.id])
            case .nodes(let nodes): remote = nodes
            }
            let requestID = self.nextRequestID
            self.nextRequestID += 1
            // Remote nodes get the same timeout; the origin allows a little more for the trip back.
            let collector = AckCollector(
                expectedParts: 1 + remote.count,
                timeout: timeout + .milliseconds(500),
                on: self.controlLoop
            ) { result in
                self.controlLoop.execute { self.pendingAcks[requestID] = nil }
                completion(result)
            }
            local.broadcast(packet, options: options, ackID: ackID, timeout: timeout) { collector.partCompleted($0) }
            guard !remote.isEmpty else { return }
            self.pendingAcks[requestID] = collector
            let ack = ClusterMessage.AckRequest(
                ackID: ackID,
                requestID: requestID,
                timeoutMilliseconds: UInt32(clamping: timeout.nanoseconds / 1_000_000)
            )
            let message = ClusterMessage.broadcast(namespace: namespace, options: options, packet: packet, ack: ack)
            // Answers come back on this node's channel, so the message goes to each node's channel.
            self.send(message, route: .nodes(remote))
        }
    }

    /// Asks every live node and gathers the answers (partial after `requestTimeout`).
    func query(_ query: ClusterQuery, local: @escaping @Sendable () -> EventLoopFuture<[String]>) -> EventLoopFuture<
        [String: [String]]
    > {
        controlLoop.flatSubmit {
            let others = self.liveNodes.subtracting([self.id])
            let requestID = self.nextRequestID
            self.nextRequestID += 1
            let promise = self.controlLoop.makePromise(of: [String: [String]].self)
            let collector = QueryCollector(expected: others, promise: promise)
            self.pendingQueries[requestID] = collector
            let timer = self.controlLoop.scheduleTask(in: self.configuration.requestTimeout) {
                if let collector = self.pendingQueries.removeValue(forKey: requestID) { collector.finish() }
            }
            if others.isEmpty {
                self.pendingQueries[requestID] = nil
                collector.finish()
            } else {
                self.send(.query(requestID: requestID, query: query), route: .nodes(others))
            }
            return local().and(promise.futureResult).map { localValues, remote in
                timer.cancel()
                var all = remote
                all[self.id] = localValues
                return all
            }
        }
    }

    // MARK: Receiving

    private func receive(channel: String, payload: ByteBuffer) {
        let origin: String
        let message: ClusterMessage
        do {
            (origin, message) = try ClusterMessage.decode(payload)
        } catch {
            metrics.undecodable.increment()
            logger.warning("dropping undecodable cluster message", metadata: ["channel": "\(channel)", "error": "\(error)"])
            return
        }
        guard origin != id else {
            // Only a readiness probe comes back to its sender.
            if case .reply(let requestID, _) = message { pendingProbes.removeValue(forKey: requestID)?.succeed() }
            return
        }
        metrics.received(message.kind)
        switch message {
        case .registry, .nodeGone:
            if resyncBuffer != nil {
                resyncBuffer?.append((origin, message))
            } else {
                applyRegistry(origin: origin, message)
            }
        case .broadcast(let namespace, let options, let packet, let ack):
            guard let adapter = adapters[namespace] else { return }
            guard let ack else {
                adapter.local.broadcast(packet, options: options)
                return
            }
            let timeout = TimeAmount.milliseconds(Int64(ack.timeoutMilliseconds))
            adapter.local.broadcast(packet, options: options, ackID: ack.ackID, timeout: timeout) { result in
                let responses = result.responses.map(Self.encodeAckArguments)
                let reply = ClusterMessage.ackResult(
                    requestID: ack.requestID,
                    recipients: result.recipients,
                    responses: responses,
                    timedOut: result.timedOut
                )
                self.publish(reply, to: self.configuration.nodeChannel(origin)).whenFailure { _ in }
            }
        case .ackResult(let requestID, let recipients, let responses, let timedOut):
            guard let collector = pendingAcks[requestID] else { return }
            var result = BroadcastAckResult(recipients: recipients, timedOut: timedOut)
            for response in responses {
                if let args = Self.ackArguments(response) { result.responses.append(args) }
            }
            collector.partCompleted(result)
        case .socketsJoin(let namespace, let options, let rooms):
            adapters[namespace]?.local.addSockets(matching: options, to: rooms)
        case .socketsLeave(let namespace, let options, let rooms):
            adapters[namespace]?.local.removeSockets(matching: options, from: rooms)
        case .disconnectSockets(let namespace, let options, let closeClient):
            adapters[namespace]?.local.disconnectSockets(matching: options, closeClient: closeClient)
        case .query(let requestID, let query):
            answer(query).whenSuccess { values in
                self.publish(.reply(requestID: requestID, values: values), to: self.configuration.nodeChannel(origin))
                    .whenFailure { _ in }
            }
        case .reply(let requestID, let values):
            guard let collector = pendingQueries[requestID] else { return }
            if collector.receive(from: origin, values) { pendingQueries[requestID] = nil }
        }
    }

    private func answer(_ query: ClusterQuery) -> EventLoopFuture<[String]> {
        switch query {
        case .socketIDs(let namespace, let options):
            guard let adapter = adapters[namespace] else { return controlLoop.makeSucceededFuture([]) }
            return adapter.local.socketIDs(matching: options).map { Array($0) }
        case .rooms(let namespace):
            guard let adapter = adapters[namespace] else { return controlLoop.makeSucceededFuture([]) }
            return adapter.local.roomSizes().map { Array($0.keys) }
        case .connectionCount:
            let futures = adapters.values.map { $0.local.socketCount() }
            return EventLoopFuture.whenAllSucceed(futures, on: controlLoop).map { [String($0.reduce(0, +))] }
        }
    }

    /// An ack's arguments for the trip back to the origin: the JSON array's text, attachments apart.
    static func encodeAckArguments(_ args: [JSONValue]) -> EncodedPacket {
        var writer = JSONWriter()
        var text = ByteBuffer()
        writer.write(.array(args), into: &text)
        return EncodedPacket(text: text, attachments: writer.attachments)
    }

    static func ackArguments(_ packet: EncodedPacket) -> [JSONValue]? {
        guard var value = try? JSONParser.parse(packet.text) else { return nil }
        if !packet.attachments.isEmpty {
            guard let rebuilt = try? SocketIOPacketCodec.reconstruct(value, attachments: packet.attachments) else {
                return nil
            }
            value = rebuilt
        }
        return value.arrayValue
    }
}

/// Gathers one answer from each expected node.
final class QueryCollector: @unchecked Sendable {
    // @unchecked Sendable: used only on the node's control loop.
    private var expected: Set<String>
    private var answers: [String: [String]] = [:]
    private let promise: EventLoopPromise<[String: [String]]>
    private var finished = false

    init(expected: Set<String>, promise: EventLoopPromise<[String: [String]]>) {
        self.expected = expected
        self.promise = promise
    }

    /// Returns true once every expected node has answered.
    func receive(from node: String, _ values: [String]) -> Bool {
        answers[node] = values
        expected.remove(node)
        if expected.isEmpty {
            finish()
            return true
        }
        return false
    }

    func finish() {
        guard !finished else { return }
        finished = true
        promise.succeed(answers)
    }
}
