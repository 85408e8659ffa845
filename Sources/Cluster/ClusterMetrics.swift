import CoreMetrics

/// The cluster layer's instruments: made once per node (and bridge), so publishing and receiving
/// only bump existing counters, picked by the message's kind without building a label.
public final class ClusterMetrics: Sendable {
    /// Messages this node published to other nodes, by `kind` (one per channel published to).
    public static let publishedLabel = "switchboard_cluster_messages_published_total"
    /// Messages received from other nodes, by `kind`.
    public static let receivedLabel = "switchboard_cluster_messages_received_total"
    /// Cluster messages that could not be decoded (and were dropped).
    public static let undecodableLabel = "switchboard_cluster_messages_undecodable_total"
    /// python-socketio messages from other hosts, by `method`.
    public static let bridgeMessagesLabel = "switchboard_python_bridge_messages_total"
    /// python-socketio payloads ignored, by `reason` (malformed | unknown_method).
    public static let bridgeRejectedLabel = "switchboard_python_bridge_messages_rejected_total"
    /// Times this node found the others had reaped it (cut off from Redis without a disconnect) and joined again.
    public static let rejoinsLabel = "switchboard_cluster_rejoins_total"

    /// Indexed by `ClusterMessage.Kind.rawValue - 1`.
    private let published: [Counter]
    private let received: [Counter]
    let undecodable: Counter
    let rejoins: Counter
    /// Indexed by `PythonBridgeMessage.Action.methodIndex`.
    private let bridgeMessages: [Counter]
    let bridgeMalformed: Counter
    let bridgeUnknownMethod: Counter

    /// - Parameter factory: where the instruments come from. The default is the bootstrapped factory
    ///   as it is now: bootstrap before creating nodes.
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        func counters(_ label: String, _ name: String, _ values: [String]) -> [Counter] {
            values.map { Counter(label: label, dimensions: [(name, $0)], factory: factory) }
        }
        let kinds = ClusterMessage.Kind.allCases.map(\.name)
        published = counters(Self.publishedLabel, "kind", kinds)
        received = counters(Self.receivedLabel, "kind", kinds)
        undecodable = Counter(label: Self.undecodableLabel, factory: factory)
        rejoins = Counter(label: Self.rejoinsLabel, factory: factory)
        bridgeMessages = counters(Self.bridgeMessagesLabel, "method", PythonBridgeMessage.Action.methods)
        let rejected = counters(Self.bridgeRejectedLabel, "reason", ["malformed", "unknown_method"])
        bridgeMalformed = rejected[0]
        bridgeUnknownMethod = rejected[1]
    }

    func published(_ kind: ClusterMessage.Kind, count: Int = 1) {
        published[Int(kind.rawValue) - 1].increment(by: count)
    }

    func received(_ kind: ClusterMessage.Kind) {
        received[Int(kind.rawValue) - 1].increment()
    }

    func bridgeMessage(_ action: PythonBridgeMessage.Action) {
        bridgeMessages[action.methodIndex].increment()
    }
}

extension PythonBridgeMessage.Action {
    /// python-socketio's method names, the `method` label of the bridge's counter.
    static let methods = ["emit", "disconnect", "enter_room", "leave_room", "close_room", "callback"]

    /// Index into `methods`.
    var methodIndex: Int {
        switch self {
        case .emit: return 0
        case .disconnect: return 1
        case .enterRoom: return 2
        case .leaveRoom: return 3
        case .closeRoom: return 4
        case .callback: return 5
        }
    }
}
