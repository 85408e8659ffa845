import EngineIO
import NIOConcurrencyHelpers
import NIOCore

/// Whom a broadcast reaches.
public struct BroadcastOptions: Sendable, Equatable {
    /// Target rooms (a socket id is a room too); empty means every socket of the namespace.
    public var rooms: Set<String>
    /// Rooms or socket ids excluded.
    public var except: Set<String>

    public init(rooms: Set<String> = [], except: Set<String> = []) {
        self.rooms = rooms
        self.except = except
    }
}

/// The answers to a broadcast that asked every recipient for an ack.
public struct BroadcastAckResult: Sendable, Equatable {
    /// Each recipient's ack arguments, in arrival order.
    public var responses: [[JSONValue]]
    /// How many sockets the broadcast reached.
    public var recipients: Int
    /// True if some recipients (or nodes) did not answer in time.
    public var timedOut: Bool

    public init(responses: [[JSONValue]] = [], recipients: Int = 0, timedOut: Bool = false) {
        self.responses = responses
        self.recipients = recipients
        self.timedOut = timedOut
    }
}

/// Sees a room's local membership start and end, per event loop (the cluster registers rooms).
public protocol RoomOccupancyObserver: AnyObject, Sendable {
    /// Called on `eventLoop` when its first local member joins `room` (`occupied`) or its last leaves.
    func roomOccupancyChanged(namespace: String, room: String, occupied: Bool, eventLoop: EventLoop)
    /// Called on `eventLoop` when a socket (whose id is a room of one) connects here (`present`) or goes.
    func socketPresenceChanged(namespace: String, sid: String, present: Bool, eventLoop: EventLoop)
}

extension RoomOccupancyObserver {
    public func socketPresenceChanged(namespace: String, sid: String, present: Bool, eventLoop: EventLoop) {}
}

/// Rooms and broadcasts of one namespace. The in-memory adapter serves one node; the cluster
/// adapter implements the same protocol across nodes.
///
/// `socketConnected`, `socketDisconnected`, `join` and `leave` are called on the socket's event
/// loop. The other methods may be called from any thread.
public protocol SocketIOAdapter: AnyObject, Sendable {
    func socketConnected(_ socket: Socket)
    func socketDisconnected(_ socket: Socket)
    func join(_ socket: Socket, room: String)
    func leave(_ socket: Socket, room: String)
    /// Delivers an encoded packet to the matching sockets. Returns without waiting.
    func broadcast(_ packet: EncodedPacket, options: BroadcastOptions)
    /// Delivers a packet carrying ack id `ackID` and collects every recipient's answer until `timeout`.
    func broadcast(
        _ packet: EncodedPacket,
        options: BroadcastOptions,
        ackID: Int,
        timeout: TimeAmount,
        completion: @escaping @Sendable (BroadcastAckResult) -> Void
    )
    /// Ids of the sockets matching `options`.
    func socketIDs(matching options: BroadcastOptions) -> EventLoopFuture<Set<String>>
    /// Makes the matching sockets join `rooms`.
    func addSockets(matching options: BroadcastOptions, to rooms: [String])
    /// Makes the matching sockets leave `rooms`.
    func removeSockets(matching options: BroadcastOptions, from rooms: [String])
    /// Disconnects the matching sockets (and their whole client with `closeClient`).
    func disconnectSockets(matching options: BroadcastOptions, closeClient: Bool)
}

/// Ack ids for broadcasts with acks: one id shared by every recipient, from a range no socket's
/// own counter reaches.
public enum BroadcastAckIDs {
    private static let counter = NIOLockedValueBox<Int>(0)
    public static let base = 1 << 40

    public static func next() -> Int {
        base + counter.withLockedValue { value in
            value = (value + 1) % (1 << 52 - base)
            return value
        }
    }
}

/// Rooms kept in memory, sharded per event loop: each loop owns the membership of the sockets
/// it serves, so joins and deliveries never take a lock, and a broadcast hops once per loop.
public final class InMemoryAdapter: SocketIOAdapter {
    private let shards: [RoomShard]
    private let shardIndex: [ObjectIdentifier: Int]
    /// A loop to answer queries on.
    private let queryLoop: EventLoop
    public let namespace: String
    let metrics: SocketIOMetrics

    /// - Parameter metrics: broadcast and room instruments; by default made from the bootstrapped factory.
    public init(
        namespace: String = "/",
        eventLoops: [EventLoop],
        observer: RoomOccupancyObserver? = nil,
        metrics: SocketIOMetrics = SocketIOMetrics()
    ) {
        precondition(!eventLoops.isEmpty, "an adapter needs at least one event loop")
        self.namespace = namespace
        self.metrics = metrics
        let rooms = RoomCounter(
            gauge: metrics.rooms(namespace: namespace),
            loop: eventLoops.count > 1 ? eventLoops[0] : nil
        )
        self.shards = eventLoops.map {
            RoomShard(eventLoop: $0, namespace: namespace, observer: observer, rooms: rooms)
        }
        var index: [ObjectIdentifier: Int] = [:]
        for (offset, loop) in eventLoops.enumerated() { index[ObjectIdentifier(loop)] = offset }
        self.shardIndex = index
        self.queryLoop = eventLoops[0]
    }

    public convenience init(
        namespace: String = "/",
        group: EventLoopGroup,
        observer: RoomOccupancyObserver? = nil,
        metrics: SocketIOMetrics = SocketIOMetrics()
    ) {
        self.init(namespace: namespace, eventLoops: Array(group.makeIterator()), observer: observer, metrics: metrics)
    }

    private func shard(for socket: Socket) -> RoomShard {
        guard let index = shardIndex[ObjectIdentifier(socket.eventLoop)] else {
            preconditionFailure("socket on an event loop the adapter does not know")
        }
        return shards[index]
    }

    public func socketConnected(_ socket: Socket) {
        shard(for: socket).add(socket)
    }

    public func socketDisconnected(_ socket: Socket) {
        shard(for: socket).remove(socket)
    }

    public func join(_ socket: Socket, room: String) {
        shard(for: socket).join(socket, room: room)
    }

    public func leave(_ socket: Socket, room: String) {
        shard(for: socket).leave(socket, room: room)
    }

    public func broadcast(_ packet: EncodedPacket, options: BroadcastOptions) {
        let tally = FanOutTally(parts: shards.count, metrics: metrics)
        let packets = packet.engineBroadcastPackets
        let deliver: @Sendable (RoomShard) -> Void = { shard in
            var count = 0
            let flushes = shard.flushes
            shard.forEach(matching: options) { socket in
                if socket.writeBroadcast(packets, flushes: flushes) { count += 1 }
            }
            tally.partDone(recipients: count)
        }
        for shard in shards {
            if shard.eventLoop.inEventLoop {
                deliver(shard)
            } else {
                shard.eventLoop.execute { deliver(shard) }
            }
        }
    }

    public func broadcast(
        _ packet: EncodedPacket,
        options: BroadcastOptions,
        ackID: Int,
        timeout: TimeAmount,
        completion: @escaping @Sendable (BroadcastAckResult) -> Void
    ) {
        let collector = AckCollector(expectedParts: shards.count, timeout: timeout, on: queryLoop, completion: completion)
        let tally = FanOutTally(parts: shards.count, metrics: metrics)
        let packets = packet.engineBroadcastPackets
        for shard in shards {
            shard.eventLoop.execute {
                var count = 0
                let flushes = shard.flushes
                shard.forEach(matching: options) { socket in
                    guard socket.isConnected else { return }
                    count += 1
                    socket.expectAck(id: ackID, timeout: timeout) { result in
                        if case .success(let args) = result { collector.answer(args) }
                    }
                    _ = socket.writeBroadcast(packets, flushes: flushes)
                }
                tally.partDone(recipients: count)
                collector.partReported(recipients: count)
            }
        }
    }

    public func addSockets(matching options: BroadcastOptions, to rooms: [String]) {
        forEachSocket(matching: options) { socket in
            for room in rooms { socket.join(room) }
        }
    }

    public func removeSockets(matching options: BroadcastOptions, from rooms: [String]) {
        forEachSocket(matching: options) { socket in
            for room in rooms { socket.leave(room) }
        }
    }

    public func disconnectSockets(matching options: BroadcastOptions, closeClient: Bool) {
        forEachSocket(matching: options) { socket in
            socket.disconnect(closeClient: closeClient)
        }
    }

    /// Runs `body` for every matching socket on its own loop.
    public func forEachSocket(matching options: BroadcastOptions, _ body: @escaping @Sendable (Socket) -> Void) {
        for shard in shards {
            if shard.eventLoop.inEventLoop {
                shard.forEach(matching: options, body)
            } else {
                shard.eventLoop.execute { shard.forEach(matching: options, body) }
            }
        }
    }

    public func socketIDs(matching options: BroadcastOptions) -> EventLoopFuture<Set<String>> {
        let futures = shards.map { shard in
            shard.eventLoop.submit {
                var ids: Set<String> = []
                shard.forEach(matching: options) { ids.insert($0.id) }
                return ids
            }
        }
        return EventLoopFuture.reduce(into: Set<String>(), futures, on: queryLoop) { $0.formUnion($1) }
    }

    /// Connected sockets of this namespace on this node.
    public func socketCount() -> EventLoopFuture<Int> {
        let futures = shards.map { shard in shard.eventLoop.submit { shard.socketCount } }
        return EventLoopFuture.reduce(0, futures, on: queryLoop, +)
    }

    /// Local rooms and their sizes (for introspection and metrics).
    public func roomSizes() -> EventLoopFuture<[String: Int]> {
        let futures = shards.map { shard in shard.eventLoop.submit { shard.roomSizes() } }
        return EventLoopFuture.reduce(into: [String: Int](), futures, on: queryLoop) { total, part in
            total.merge(part, uniquingKeysWith: +)
        }
    }
}

/// Sessions one loop's broadcasts wrote to without flushing. They are flushed together by one task
/// queued behind the loop's current work, so every broadcast handled in that stretch (a batch of
/// messages from one Redis read, say) reaches each client in a single write.
final class BroadcastFlushQueue: @unchecked Sendable {
    // @unchecked Sendable: only used on `eventLoop` (asserted).
    let eventLoop: EventLoop
    private var waiting: [EngineSession] = []
    private var spare: [EngineSession] = []
    private var flushScheduled = false

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    func append(_ session: EngineSession) {
        eventLoop.assertInEventLoop()
        waiting.append(session)
        guard !flushScheduled else { return }
        flushScheduled = true
        eventLoop.execute { self.flush() }
    }

    private func flush() {
        flushScheduled = false
        swap(&waiting, &spare)
        for session in spare { session.flushBroadcastWrites() }
        spare.removeAll(keepingCapacity: true)
    }
}

/// The rooms of the sockets on one event loop.
final class RoomShard: @unchecked Sendable {
    // @unchecked Sendable: `sockets` and `rooms` are only touched on `eventLoop` (asserted).
    let eventLoop: EventLoop
    let namespace: String
    let observer: RoomOccupancyObserver?
    let roomCounter: RoomCounter
    private var sockets: [String: Socket] = [:]
    private var rooms: [String: Set<Socket>] = [:]
    /// Sessions this loop's broadcasts wrote to and did not flush yet.
    let flushes: BroadcastFlushQueue

    init(eventLoop: EventLoop, namespace: String, observer: RoomOccupancyObserver?, rooms: RoomCounter) {
        self.flushes = BroadcastFlushQueue(eventLoop: eventLoop)
        self.eventLoop = eventLoop
        self.namespace = namespace
        self.observer = observer
        self.roomCounter = rooms
    }

    var socketCount: Int { sockets.count }

    func add(_ socket: Socket) {
        eventLoop.assertInEventLoop()
        sockets[socket.id] = socket
        observer?.socketPresenceChanged(namespace: namespace, sid: socket.id, present: true, eventLoop: eventLoop)
    }

    func remove(_ socket: Socket) {
        eventLoop.assertInEventLoop()
        guard sockets.removeValue(forKey: socket.id) != nil else { return }
        for room in socket.rooms {
            leave(socket, room: room)
        }
        observer?.socketPresenceChanged(namespace: namespace, sid: socket.id, present: false, eventLoop: eventLoop)
    }

    func join(_ socket: Socket, room: String) {
        eventLoop.assertInEventLoop()
        let inserted = rooms[room, default: []].insert(socket).inserted
        if inserted, rooms[room]?.count == 1 {
            roomCounter.roomChanged(room, occupied: true)
            observer?.roomOccupancyChanged(namespace: namespace, room: room, occupied: true, eventLoop: eventLoop)
        }
    }

    func leave(_ socket: Socket, room: String) {
        eventLoop.assertInEventLoop()
        guard var members = rooms[room], members.remove(socket) != nil else { return }
        if members.isEmpty {
            rooms[room] = nil
            roomCounter.roomChanged(room, occupied: false)
            observer?.roomOccupancyChanged(namespace: namespace, room: room, occupied: false, eventLoop: eventLoop)
        } else {
            rooms[room] = members
        }
    }

    func roomSizes() -> [String: Int] {
        rooms.mapValues(\.count)
    }

    /// Calls `body` once for each socket matching `options`.
    func forEach(matching options: BroadcastOptions, _ body: (Socket) -> Void) {
        eventLoop.assertInEventLoop()
        let excluded = options.except.isEmpty ? nil : sockets(in: options.except)
        if options.rooms.isEmpty {
            for socket in sockets.values where excluded?.contains(socket) != true { body(socket) }
            return
        }
        if options.rooms.count == 1, let room = options.rooms.first {
            if let members = rooms[room] {
                for socket in members where excluded?.contains(socket) != true { body(socket) }
            } else if let socket = sockets[room], excluded?.contains(socket) != true {
                body(socket)
            }
            return
        }
        // Several rooms: each socket once.
        for socket in sockets(in: options.rooms) where excluded?.contains(socket) != true { body(socket) }
    }

    private func sockets(in names: Set<String>) -> Set<Socket> {
        var result: Set<Socket> = []
        for name in names {
            if let members = rooms[name] {
                result.formUnion(members)
            } else if let socket = sockets[name] {
                result.insert(socket)
            }
        }
        return result
    }
}

/// Gathers the answers of a broadcast with acks from several parts (loops, or nodes).
public final class AckCollector: Sendable {
    private struct State {
        var pendingParts: Int
        var expected = 0
        var result = BroadcastAckResult()
        var done = false
        var timer: Scheduled<Void>?
    }

    private let lock: NIOLockedValueBox<State>
    private let completion: @Sendable (BroadcastAckResult) -> Void

    public init(
        expectedParts: Int,
        timeout: TimeAmount,
        on eventLoop: EventLoop,
        completion: @escaping @Sendable (BroadcastAckResult) -> Void
    ) {
        self.lock = NIOLockedValueBox(State(pendingParts: expectedParts))
        self.completion = completion
        // The timer keeps the collector alive until it finishes: the recipients' own ack timers may
        // release their references first. Finishing cancels the timer, which drops it.
        let scheduled = eventLoop.scheduleTask(in: timeout) { () -> Void in
            self.finish(timedOut: true)
        }
        lock.withLockedValue { $0.timer = scheduled }
    }

    /// A part (a loop or a node) says how many sockets it reached.
    public func partReported(recipients: Int) {
        let ready = lock.withLockedValue { state -> Bool in
            state.pendingParts -= 1
            state.expected += recipients
            state.result.recipients += recipients
            return state.pendingParts <= 0 && state.result.responses.count >= state.expected
        }
        if ready { finish(timedOut: false) }
    }

    /// A part reports its whole result at once.
    public func partCompleted(_ part: BroadcastAckResult) {
        let ready = lock.withLockedValue { state -> Bool in
            state.pendingParts -= 1
            state.expected += part.recipients
            state.result.recipients += part.recipients
            state.result.responses.append(contentsOf: part.responses)
            if part.timedOut { state.result.timedOut = true }
            return state.pendingParts <= 0 && state.result.responses.count >= state.expected
        }
        if ready { finish(timedOut: lock.withLockedValue { $0.result.timedOut }) }
    }

    public func answer(_ args: [JSONValue]) {
        let ready = lock.withLockedValue { state -> Bool in
            state.result.responses.append(args)
            return state.pendingParts <= 0 && state.result.responses.count >= state.expected
        }
        if ready { finish(timedOut: false) }
    }

    private func finish(timedOut: Bool) {
        let finished = lock.withLockedValue { state -> (BroadcastAckResult, Scheduled<Void>?)? in
            guard !state.done else { return nil }
            state.done = true
            state.result.timedOut = timedOut
            return (state.result, state.timer)
        }
        guard let (result, timer) = finished else { return }
        timer?.cancel()
        completion(result)
    }
}
