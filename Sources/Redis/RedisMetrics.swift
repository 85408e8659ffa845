import CoreMetrics

/// The Redis layer's instruments, by connection role (`command` | `subscriber`): made once per client,
/// so a reply only records into an existing timer.
public final class RedisMetrics: Sendable {
    /// Round trip of each command (a pipeline counts once), from the loop tick it was queued in to its
    /// last reply.
    public static let commandDurationLabel = "switchboard_redis_command_duration_seconds"
    /// Connections re-established after the first one.
    public static let reconnectsLabel = "switchboard_redis_reconnects_total"
    /// Clients whose connection is up (connected and set up).
    public static let connectionsUpLabel = "switchboard_redis_connections_up"
    /// Changes of a client's published state, by the `state` entered.
    public static let stateChangesLabel = "switchboard_redis_state_changes_total"

    /// The instruments of one role.
    struct Role: Sendable {
        let commandDuration: Timer
        let reconnects: Counter
        let connectionsUp: Meter
        private let stateChanges: [RedisConnectionState: Counter]

        init(name: String, factory: any MetricsFactory) {
            let role = ("role", name)
            commandDuration = Timer(label: RedisMetrics.commandDurationLabel, dimensions: [role], factory: factory)
            reconnects = Counter(label: RedisMetrics.reconnectsLabel, dimensions: [role], factory: factory)
            connectionsUp = Meter(label: RedisMetrics.connectionsUpLabel, dimensions: [role], factory: factory)
            var stateChanges: [RedisConnectionState: Counter] = [:]
            for state in [RedisConnectionState.connecting, .connected, .disconnected, .shutdown] {
                stateChanges[state] = Counter(
                    label: RedisMetrics.stateChangesLabel,
                    dimensions: [role, ("state", state.description)],
                    factory: factory
                )
            }
            self.stateChanges = stateChanges
        }

        func stateChanged(from old: RedisConnectionState, to new: RedisConnectionState) {
            stateChanges[new]?.increment()
            if new == .connected {
                connectionsUp.increment()
            } else if old == .connected {
                connectionsUp.decrement()
            }
        }
    }

    let command: Role
    let subscriber: Role

    /// - Parameter factory: where the instruments come from. The default is the bootstrapped factory
    ///   as it is now: bootstrap before creating clients.
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        command = Role(name: "command", factory: factory)
        subscriber = Role(name: "subscriber", factory: factory)
    }
}
