import CoreMetrics

/// The Engine.IO layer's instruments: made once per server and shared by its sessions, so the data
/// path only bumps existing counters (the backend's atomics) and never builds labels.
public final class EngineMetrics: Sendable {
    /// Open sessions by transport (`transport` = polling|websocket); an upgrade moves one across.
    public static let connectionsLabel = "switchboard_engineio_connections"
    /// Engine.IO payload bytes from clients: WebSocket message payloads and polling POST bodies.
    public static let receivedBytesLabel = "switchboard_engineio_received_bytes_total"
    /// Engine.IO payload bytes to clients: WebSocket message payloads and polling GET bodies.
    public static let sentBytesLabel = "switchboard_engineio_sent_bytes_total"
    /// Closed sessions by `reason` (a `DisconnectReason` raw value).
    public static let disconnectsLabel = "switchboard_engineio_disconnects_total"
    /// Handshakes refused by a per-address limit, by `reason` (a `HandshakeRefusal` raw value).
    public static let refusedHandshakesLabel = "switchboard_engineio_refused_handshakes_total"

    /// The instruments of one transport.
    struct Transport: Sendable {
        let connections: Meter
        let receivedBytes: Counter
        let sentBytes: Counter

        init(name: String, factory: any MetricsFactory) {
            let dimensions = [("transport", name)]
            connections = Meter(label: EngineMetrics.connectionsLabel, dimensions: dimensions, factory: factory)
            receivedBytes = Counter(label: EngineMetrics.receivedBytesLabel, dimensions: dimensions, factory: factory)
            sentBytes = Counter(label: EngineMetrics.sentBytesLabel, dimensions: dimensions, factory: factory)
        }
    }

    let polling: Transport
    let websocket: Transport
    /// Every reason up front, so each series exists (at 0) before its first disconnect.
    private let disconnects: [DisconnectReason: Counter]
    private let refusedHandshakes: [HandshakeRefusal: Counter]

    /// - Parameter factory: where the instruments come from. The default is the bootstrapped factory
    ///   as it is now: bootstrap before creating servers.
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        polling = Transport(name: "polling", factory: factory)
        websocket = Transport(name: "websocket", factory: factory)
        disconnects = Self.counters(label: Self.disconnectsLabel, factory: factory)
        refusedHandshakes = Self.counters(label: Self.refusedHandshakesLabel, factory: factory)
    }

    /// One counter per reason, labelled `reason`.
    private static func counters<Reason: CaseIterable & RawRepresentable & Hashable>(
        label: String,
        factory: any MetricsFactory
    ) -> [Reason: Counter] where Reason.RawValue == String {
        var counters: [Reason: Counter] = [:]
        for reason in Reason.allCases {
            counters[reason] = Counter(label: label, dimensions: [("reason", reason.rawValue)], factory: factory)
        }
        return counters
    }

    func refusedHandshake(_ reason: HandshakeRefusal) {
        refusedHandshakes[reason]?.increment()
    }

    func disconnected(_ reason: DisconnectReason) {
        disconnects[reason]?.increment()
    }
}
