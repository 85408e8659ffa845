/// Why a connection ended. Logs and metrics name one of these for every disconnect.
public enum DisconnectReason: String, Sendable, CaseIterable, CustomStringConvertible {
    /// The client sent a close packet or a Socket.IO DISCONNECT.
    case clientClose = "client_close"
    /// The client's transport went away (TCP closed, WebSocket closed).
    case transportClose = "transport_close"
    /// The transport failed (I/O error, WebSocket protocol error).
    case transportError = "transport_error"
    /// No pong within pingTimeout.
    case pingTimeout = "ping_timeout"
    /// A malformed Engine.IO packet or payload.
    case parseError = "parse_error"
    /// A packet the application protocol does not allow (bad Socket.IO packet, bad JSON, bad attachments).
    case invalidPacket = "invalid_packet"
    /// A payload or message larger than maxPayload.
    case payloadTooLarge = "payload_too_large"
    /// The client sent more Engine.IO packets a second than its limit (`ClientLimits.packetsPerSecond`).
    case packetRate = "packet_rate"
    /// The client did not read fast enough and its outbound queue passed its bound.
    case slowConsumer = "slow_consumer"
    /// A second long-polling GET while one was pending.
    case concurrentPoll = "concurrent_poll"
    /// No Socket.IO CONNECT within connectTimeout.
    case connectTimeout = "connect_timeout"
    /// The server (an application handler or an operator) disconnected the client.
    case serverDisconnect = "server_disconnect"
    /// The client sent events faster than the node could handle them (its queue of waiting events
    /// passed its bound).
    case eventBacklog = "event_backlog"
    /// The node could not decide on the client's CONNECT because the service it asks was busy or down; the
    /// transport is closed so that the client reconnects after its backoff, where a refusal would end its retries.
    case backendUnavailable = "backend_unavailable"
    /// The client's user already had as many sockets on this node as it may (`--max-connections-per-user`).
    case connectionsPerUser = "connections_per_user"
    /// The node is shutting down.
    case serverShutdown = "server_shutdown"

    public var description: String { rawValue }
}
