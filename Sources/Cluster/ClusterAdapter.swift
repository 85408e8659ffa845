import NIOCore
import SocketIO

/// The adapter of one namespace across the cluster: local sockets through an in-memory adapter,
/// other nodes through the `ClusterNode`.
public final class ClusterAdapter: SocketIOAdapter {
    public let node: ClusterNode
    public let namespace: String
    public let local: InMemoryAdapter

    init(node: ClusterNode, namespace: String, local: InMemoryAdapter) {
        self.node = node
        self.namespace = namespace
        self.local = local
    }

    public func socketConnected(_ socket: Socket) { local.socketConnected(socket) }
    public func socketDisconnected(_ socket: Socket) { local.socketDisconnected(socket) }
    public func join(_ socket: Socket, room: String) { local.join(socket, room: room) }
    public func leave(_ socket: Socket, room: String) { local.leave(socket, room: room) }

    public func broadcast(_ packet: EncodedPacket, options: BroadcastOptions) {
        local.broadcast(packet, options: options)
        node.publishRouted(
            namespace: namespace,
            options: options,
            message: .broadcast(namespace: namespace, options: options, packet: packet, ack: nil)
        )
    }

    public func broadcast(
        _ packet: EncodedPacket,
        options: BroadcastOptions,
        ackID: Int,
        timeout: TimeAmount,
        completion: @escaping @Sendable (BroadcastAckResult) -> Void
    ) {
        node.broadcastWithAck(
            namespace: namespace,
            local: local,
            packet: packet,
            options: options,
            ackID: ackID,
            timeout: timeout,
            completion: completion
        )
    }

    public func socketIDs(matching options: BroadcastOptions) -> EventLoopFuture<Set<String>> {
        let local = self.local
        return node.query(.socketIDs(namespace: namespace, options: options)) {
            local.socketIDs(matching: options).map { Array($0) }
        }.map { answers in Set(answers.values.joined()) }
    }

    public func addSockets(matching options: BroadcastOptions, to rooms: [String]) {
        local.addSockets(matching: options, to: rooms)
        node.publishRouted(
            namespace: namespace,
            options: options,
            message: .socketsJoin(namespace: namespace, options: options, rooms: rooms)
        )
    }

    public func removeSockets(matching options: BroadcastOptions, from rooms: [String]) {
        local.removeSockets(matching: options, from: rooms)
        node.publishRouted(
            namespace: namespace,
            options: options,
            message: .socketsLeave(namespace: namespace, options: options, rooms: rooms)
        )
    }

    public func disconnectSockets(matching options: BroadcastOptions, closeClient: Bool) {
        local.disconnectSockets(matching: options, closeClient: closeClient)
        node.publishRouted(
            namespace: namespace,
            options: options,
            message: .disconnectSockets(namespace: namespace, options: options, closeClient: closeClient)
        )
    }

    /// Rooms held anywhere in the cluster, with the nodes that hold them.
    public func clusterRooms() -> EventLoopFuture<[String: [String]]> {
        let local = self.local
        return node.query(.rooms(namespace: namespace)) { local.roomSizes().map { Array($0.keys) } }
    }

    /// Connected sockets per node (all namespaces).
    public func connectionsPerNode() -> EventLoopFuture<[String: Int]> {
        let local = self.local
        return node.query(.connectionCount) { local.socketCount().map { [String($0)] } }
            .map { answers in answers.compactMapValues { $0.first.flatMap(Int.init) } }
    }
}
