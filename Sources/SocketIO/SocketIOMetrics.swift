import CoreMetrics
import NIOCore
import Synchronization

/// The Socket.IO layer's instruments: made once per server or adapter (per namespace where they
/// carry one), so the data path only bumps existing counters and never builds labels.
public final class SocketIOMetrics: Sendable {
    /// Connected sockets by `namespace`.
    public static let socketsLabel = "switchboard_socketio_sockets"
    /// EVENT packets from clients (with or without binary attachments) handed to a handler.
    public static let eventsReceivedLabel = "switchboard_socketio_events_received_total"
    /// EVENT packets written to clients: a broadcast counts once per recipient.
    public static let eventsSentLabel = "switchboard_socketio_events_sent_total"
    /// Recipients on this node of each broadcast (a histogram).
    public static let broadcastRecipientsLabel = "switchboard_socketio_broadcast_recipients"
    /// Server→client acks that did not arrive in time, counted per socket.
    public static let ackTimeoutsLabel = "switchboard_socketio_ack_timeouts_total"
    /// Rooms with members on this node, by `namespace` (a room held on several loops counts once).
    public static let roomsLabel = "switchboard_socketio_rooms"

    let eventsReceived: Counter
    let eventsSent: Counter
    let broadcastRecipients: Recorder
    let ackTimeouts: Counter
    /// For the per-namespace instruments, made when a namespace or adapter is.
    private let factory: any MetricsFactory

    /// - Parameter factory: where the instruments come from. The default is the bootstrapped factory
    ///   as it is now: bootstrap before creating servers and adapters.
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        eventsReceived = Counter(label: Self.eventsReceivedLabel, factory: factory)
        eventsSent = Counter(label: Self.eventsSentLabel, factory: factory)
        broadcastRecipients = Recorder(label: Self.broadcastRecipientsLabel, aggregate: true, factory: factory)
        ackTimeouts = Counter(label: Self.ackTimeoutsLabel, factory: factory)
    }

    func sockets(namespace: String) -> Meter {
        Meter(label: Self.socketsLabel, dimensions: [("namespace", namespace)], factory: factory)
    }

    func rooms(namespace: String) -> Meter {
        Meter(label: Self.roomsLabel, dimensions: [("namespace", namespace)], factory: factory)
    }
}

/// Adds up a broadcast's recipients over the loops it hops to, and records the total once, when the
/// last loop is done.
final class FanOutTally: Sendable {
    private let pendingParts: Atomic<Int>
    private let recipients = Atomic<Int>(0)
    private let metrics: SocketIOMetrics

    init(parts: Int, metrics: SocketIOMetrics) {
        self.pendingParts = Atomic(parts)
        self.metrics = metrics
    }

    /// One loop reached `count` sockets.
    func partDone(recipients count: Int) {
        metrics.eventsSent.increment(by: count)
        recipients.add(count, ordering: .relaxed)
        // Each part adds before it releases the part counter, so the last part, acquiring it, reads
        // every part's count.
        guard pendingParts.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 else { return }
        metrics.broadcastRecipients.record(recipients.load(ordering: .relaxed))
    }
}

/// Counts the rooms of one namespace on this node. Shards report when a room becomes occupied or
/// empty on their loop; with several loops, one room may be held on many, so the changes meet on
/// one loop that knows how many loops hold each room.
final class RoomCounter: @unchecked Sendable {
    // @unchecked Sendable: `loopsHolding` is only touched on `loop`; with one shard (`loop` nil)
    // every change arrives on that shard's loop and only the gauge (atomic) is touched.
    private let gauge: Meter
    private let loop: EventLoop?
    private var loopsHolding: [String: Int] = [:]

    init(gauge: Meter, loop: EventLoop?) {
        self.gauge = gauge
        self.loop = loop
    }

    func roomChanged(_ room: String, occupied: Bool) {
        guard let loop else { return occupied ? gauge.increment() : gauge.decrement() }
        if loop.inEventLoop {
            apply(room, occupied: occupied)
        } else {
            loop.execute { self.apply(room, occupied: occupied) }
        }
    }

    private func apply(_ room: String, occupied: Bool) {
        let before = loopsHolding[room, default: 0]
        let after = before + (occupied ? 1 : -1)
        loopsHolding[room] = after > 0 ? after : nil
        if before == 0 && after > 0 {
            gauge.increment()
        } else if before > 0 && after == 0 {
            gauge.decrement()
        }
    }
}
