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

/// Rooms and broadcasts of one namespace. The in-memory adapter serves one node; the cluster
/// adapter implements the same protocol across nodes.
///
/// `socketConnected`, `socketDisconnected`, `join` and `leave` are called on the socket's event
/// loop. `broadcast` and the queries may be called from any thread.
public protocol SocketIOAdapter: AnyObject, Sendable {
    func socketConnected(_ socket: Socket)
    func socketDisconnected(_ socket: Socket)
    func join(_ socket: Socket, room: String)
    func leave(_ socket: Socket, room: String)
    /// Delivers an encoded packet to the matching sockets. Returns without waiting.
    func broadcast(_ packet: EncodedPacket, options: BroadcastOptions)
    /// Ids of the sockets matching `options`.
    func socketIDs(matching options: BroadcastOptions) -> EventLoopFuture<Set<String>>
    /// Runs `body` on every matching socket, on the socket's own loop (remote join/leave/disconnect).
    func forEachSocket(matching options: BroadcastOptions, _ body: @escaping @Sendable (Socket) -> Void)
}

/// Rooms kept in memory, sharded per event loop: each loop owns the membership of the sockets
/// it serves, so joins and deliveries never take a lock, and a broadcast hops once per loop.
public final class InMemoryAdapter: SocketIOAdapter {
    private let shards: [RoomShard]
    private let shardIndex: [ObjectIdentifier: Int]
    /// A loop to answer queries on.
    private let queryLoop: EventLoop

    public init(eventLoops: [EventLoop]) {
        precondition(!eventLoops.isEmpty, "an adapter needs at least one event loop")
        self.shards = eventLoops.map(RoomShard.init(eventLoop:))
        var index: [ObjectIdentifier: Int] = [:]
        for (offset, loop) in eventLoops.enumerated() { index[ObjectIdentifier(loop)] = offset }
        self.shardIndex = index
        self.queryLoop = eventLoops[0]
    }

    public convenience init(group: EventLoopGroup) {
        self.init(eventLoops: Array(group.makeIterator()))
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
        forEachSocket(matching: options) { $0.deliver(packet) }
    }

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

    /// Local rooms and their sizes (for introspection and metrics).
    public func roomSizes() -> EventLoopFuture<[String: Int]> {
        let futures = shards.map { shard in shard.eventLoop.submit { shard.roomSizes() } }
        return EventLoopFuture.reduce(into: [String: Int](), futures, on: queryLoop) { total, part in
            total.merge(part, uniquingKeysWith: +)
        }
    }
}

/// The rooms of the sockets on one event loop.
final class RoomShard: @unchecked Sendable {
    // @unchecked Sendable: `sockets` and `rooms` are only touched on `eventLoop` (asserted).
    let eventLoop: EventLoop
    private var sockets: [String: Socket] = [:]
    private var rooms: [String: Set<Socket>] = [:]

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    func add(_ socket: Socket) {
        eventLoop.assertInEventLoop()
        sockets[socket.id] = socket
    }

    func remove(_ socket: Socket) {
        eventLoop.assertInEventLoop()
        sockets[socket.id] = nil
        for room in socket.rooms {
            leave(socket, room: room)
        }
    }

    func join(_ socket: Socket, room: String) {
        eventLoop.assertInEventLoop()
        rooms[room, default: []].insert(socket)
    }

    func leave(_ socket: Socket, room: String) {
        eventLoop.assertInEventLoop()
        guard var members = rooms[room] else { return }
        members.remove(socket)
        rooms[room] = members.isEmpty ? nil : members
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
