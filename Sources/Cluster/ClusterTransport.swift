import NIOConcurrencyHelpers
import NIOCore

/// Whether the shared medium can be relied on right now.
public enum ClusterTransportState: Sendable, Equatable {
    /// Subscribed and able to publish.
    case connected
    /// Lost; messages published now may not arrive. The node falls back and resyncs after.
    case disconnected
}

/// What nodes share: pub/sub channels and a small store for the node and room registries.
/// Redis in production (`RedisClusterTransport`); in memory for tests (`InMemoryClusterHub`).
///
/// Commands issued from one node must reach the medium in the order they were issued (the room
/// registry relies on a room being recorded before its change is announced).
public protocol ClusterTransport: AnyObject, Sendable {
    /// Subscribes to `channels`. `onMessage` gets every message; `onState` every state change.
    /// After a reconnect the transport subscribes again before reporting `.connected`.
    func start(
        channels: [String],
        onMessage: @escaping @Sendable (_ channel: String, _ payload: ByteBuffer) -> Void,
        onState: @escaping @Sendable (ClusterTransportState) -> Void
    ) -> EventLoopFuture<Void>
    func stop() -> EventLoopFuture<Void>

    func publish(_ payload: ByteBuffer, to channel: String) -> EventLoopFuture<Void>

    /// Marks `node` alive for `ttl` and lists it among the cluster's nodes; true when it was not listed
    /// (its first beat, or the others reaped it meanwhile).
    func heartbeat(node: String, ttl: TimeAmount) -> EventLoopFuture<Bool>
    /// Every listed node and whether its heartbeat is current.
    func nodes() -> EventLoopFuture<[String: Bool]>
    /// Records rooms (`namespace` + NUL + room) held by `node`.
    func addRooms(_ keys: [String], node: String) -> EventLoopFuture<Void>
    func removeRooms(_ keys: [String], node: String) -> EventLoopFuture<Void>
    func rooms(ofNode node: String) -> EventLoopFuture<[String]>
    /// Claims the clean-up of a dead node; true for exactly one claimant within `ttl`.
    func claimReap(of node: String, by claimant: String, ttl: TimeAmount) -> EventLoopFuture<Bool>
    /// Removes a node and its room records.
    func forget(node: String) -> EventLoopFuture<Void>
}

/// An in-process medium for several nodes in one process, with optional faults (drop or delay
/// messages) for tests.
public final class InMemoryClusterHub: Sendable {
    public struct Faults: Sendable {
        /// Drop a published message when this returns true.
        public var drop: @Sendable (_ channel: String) -> Bool = { _ in false }
        /// Deliver a published message after this delay.
        public var delay: TimeAmount? = nil
        public init() {}
    }

    fileprivate struct State {
        var subscribers: [ObjectIdentifier: Subscriber] = [:]
        /// Transports cut off from the medium (a crashed node): their commands fail.
        var severed: Set<ObjectIdentifier> = []
        /// The subscriptions of severed transports, back on ``InMemoryClusterHub/heal(_:)``.
        var cutOff: [ObjectIdentifier: Subscriber] = [:]
        var publishCounts: [String: Int] = [:]
        var alive: [String: NIODeadline] = [:]
        var listed: Set<String> = []
        var rooms: [String: Set<String>] = [:]
        var reapClaims: [String: NIODeadline] = [:]
        var faults = Faults()
    }

    struct Subscriber {
        let channels: Set<String>
        let eventLoop: EventLoop
        let onMessage: @Sendable (String, ByteBuffer) -> Void
        let onState: @Sendable (ClusterTransportState) -> Void
    }

    private let state = NIOLockedValueBox(State())
    /// The hub's clock for heartbeat expiry; tests pass their event loop's virtual time.
    let now: @Sendable () -> NIODeadline

    public init(now: @escaping @Sendable () -> NIODeadline = { .now() }) {
        self.now = now
    }

    /// How many messages were published on each channel (for counting routed deliveries).
    public var publishCounts: [String: Int] {
        state.withLockedValue { $0.publishCounts }
    }

    public func resetPublishCounts() {
        state.withLockedValue { $0.publishCounts = [:] }
    }

    /// Cuts a node's transport off, as if its process died: it stops receiving, and its
    /// heartbeats and writes no longer land.
    public func sever(_ transport: ClusterTransport) {
        state.withLockedValue {
            let id = ObjectIdentifier(transport)
            $0.severed.insert(id)
            $0.cutOff[id] = $0.subscribers.removeValue(forKey: id)
        }
    }

    /// Ends a partition: a severed transport reaches the medium again, without ever having seen a
    /// disconnect (what a black-holed TCP connection looks like once the network heals).
    public func heal(_ transport: ClusterTransport) {
        state.withLockedValue {
            let id = ObjectIdentifier(transport)
            $0.severed.remove(id)
            if let subscriber = $0.cutOff.removeValue(forKey: id) { $0.subscribers[id] = subscriber }
        }
    }

    fileprivate func isSevered(_ transport: AnyObject) -> Bool {
        state.withLockedValue { $0.severed.contains(ObjectIdentifier(transport)) }
    }

    public func setFaults(_ faults: Faults) {
        state.withLockedValue { $0.faults = faults }
    }

    /// A transport for one node, whose callbacks run on `eventLoop`.
    public func transport(on eventLoop: EventLoop) -> ClusterTransport {
        InMemoryClusterTransport(hub: self, eventLoop: eventLoop)
    }

    /// Simulates losing and regaining the medium for every node.
    public func setConnected(_ connected: Bool) {
        let subscribers = state.withLockedValue { Array($0.subscribers.values) }
        for subscriber in subscribers {
            subscriber.eventLoop.execute { subscriber.onState(connected ? .connected : .disconnected) }
        }
    }

    /// Simulates a node whose heartbeat stopped (it crashed): its liveness lapses now.
    public func expireHeartbeat(of node: String) {
        state.withLockedValue { _ = $0.alive.removeValue(forKey: node) }
    }

    fileprivate func subscribe(_ id: ObjectIdentifier, _ subscriber: Subscriber?) {
        state.withLockedValue { $0.subscribers[id] = subscriber }
    }

    fileprivate func publish(_ payload: ByteBuffer, to channel: String) {
        let (targets, faults) = state.withLockedValue { state in
            state.publishCounts[channel, default: 0] += 1
            return (state.subscribers.values.filter { $0.channels.contains(channel) }, state.faults)
        }
        guard !faults.drop(channel) else { return }
        for target in targets {
            if let delay = faults.delay {
                target.eventLoop.scheduleTask(in: delay) { target.onMessage(channel, payload) }
            } else {
                target.eventLoop.execute { target.onMessage(channel, payload) }
            }
        }
    }

    fileprivate func withState<T>(_ body: (inout State) -> T) -> T {
        state.withLockedValue(body)
    }
}

final class InMemoryClusterTransport: ClusterTransport {
    let hub: InMemoryClusterHub
    let eventLoop: EventLoop

    init(hub: InMemoryClusterHub, eventLoop: EventLoop) {
        self.hub = hub
        self.eventLoop = eventLoop
    }

    func start(
        channels: [String],
        onMessage: @escaping @Sendable (String, ByteBuffer) -> Void,
        onState: @escaping @Sendable (ClusterTransportState) -> Void
    ) -> EventLoopFuture<Void> {
        hub.subscribe(
            ObjectIdentifier(self),
            .init(channels: Set(channels), eventLoop: eventLoop, onMessage: onMessage, onState: onState)
        )
        eventLoop.execute { onState(.connected) }
        return eventLoop.makeSucceededVoidFuture()
    }

    func stop() -> EventLoopFuture<Void> {
        hub.subscribe(ObjectIdentifier(self), nil)
        return eventLoop.makeSucceededVoidFuture()
    }

    private struct Severed: Error {}

    func publish(_ payload: ByteBuffer, to channel: String) -> EventLoopFuture<Void> {
        guard !hub.isSevered(self) else { return eventLoop.makeFailedFuture(Severed()) }
        hub.publish(payload, to: channel)
        return eventLoop.makeSucceededVoidFuture()
    }

    func heartbeat(node: String, ttl: TimeAmount) -> EventLoopFuture<Bool> {
        guard !hub.isSevered(self) else { return eventLoop.makeFailedFuture(Severed()) }
        let now = hub.now()
        let added = hub.withState {
            $0.alive[node] = now + ttl
            return $0.listed.insert(node).inserted
        }
        return eventLoop.makeSucceededFuture(added)
    }

    func nodes() -> EventLoopFuture<[String: Bool]> {
        let now = hub.now()
        let result = hub.withState { state in
            Dictionary(uniqueKeysWithValues: state.listed.map { ($0, (state.alive[$0] ?? .distantPast) > now) })
        }
        return eventLoop.makeSucceededFuture(result)
    }

    func addRooms(_ keys: [String], node: String) -> EventLoopFuture<Void> {
        guard !hub.isSevered(self) else { return eventLoop.makeFailedFuture(Severed()) }
        hub.withState { $0.rooms[node, default: []].formUnion(keys) }
        return eventLoop.makeSucceededVoidFuture()
    }

    func removeRooms(_ keys: [String], node: String) -> EventLoopFuture<Void> {
        hub.withState { $0.rooms[node]?.subtract(keys) }
        return eventLoop.makeSucceededVoidFuture()
    }

    func rooms(ofNode node: String) -> EventLoopFuture<[String]> {
        eventLoop.makeSucceededFuture(hub.withState { Array($0.rooms[node] ?? []) })
    }

    func claimReap(of node: String, by claimant: String, ttl: TimeAmount) -> EventLoopFuture<Bool> {
        let now = hub.now()
        let claimed = hub.withState { state -> Bool in
            if let until = state.reapClaims[node], until > now { return false }
            state.reapClaims[node] = now + ttl
            return true
        }
        return eventLoop.makeSucceededFuture(claimed)
    }

    func forget(node: String) -> EventLoopFuture<Void> {
        hub.withState {
            $0.listed.remove(node)
            $0.alive[node] = nil
            $0.rooms[node] = nil
        }
        return eventLoop.makeSucceededVoidFuture()
    }
}
