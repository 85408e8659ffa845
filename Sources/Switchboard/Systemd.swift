import CSystemd
import Logging
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The service manager's protocol (sd_notify, the watchdog, socket activation). Without systemd
/// (no `NOTIFY_SOCKET`, no `LISTEN_FDS`) every call does nothing.
enum Systemd {
    static var isNotifying: Bool { getenv("NOTIFY_SOCKET") != nil }

    static func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    /// The watchdog period systemd expects pings within (`WatchdogSec`), if it set one for us.
    static func watchdogInterval() -> TimeAmount? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(microseconds))
    }

    /// The listening sockets handed over by socket activation, in order. The variables are unset so
    /// that children do not inherit them.
    static func takeListeningSockets() -> [CInt] {
        let count = sd_listen_fds(1)
        guard count > 0 else { return [] }
        return (0..<count).map { SD_LISTEN_FDS_START + $0 }
    }
}

/// What the operations side knows of the node: whether it listens, and whether it drains.
final class NodeState: Sendable {
    private struct State {
        var listening = false
        var draining = false
    }

    private let state = NIOLockedValueBox(State())

    var isListening: Bool { state.withLockedValue { $0.listening } }
    var isDraining: Bool { state.withLockedValue { $0.draining } }

    func setListening() { state.withLockedValue { $0.listening = true } }
    func setDraining() { state.withLockedValue { $0.draining = true } }
}

/// Tells systemd `READY=1` once the node listens and can serve, pings the watchdog at half its
/// period, keeps `STATUS=` current, and says `STOPPING=1` when the drain begins. The pings run on
/// an event loop, not as a service, so they go on through the drain until the process ends.
final class SystemdNotifier: Sendable {
    let eventLoop: EventLoop
    let state: NodeState
    let isReady: @Sendable () -> EventLoopFuture<Bool>
    let status: @Sendable () -> String
    let logger: Logger
    private let tasks = NIOLockedValueBox<[RepeatedTask]>([])

    init(
        eventLoop: EventLoop,
        state: NodeState,
        isReady: @escaping @Sendable () -> EventLoopFuture<Bool>,
        status: @escaping @Sendable () -> String,
        logger: Logger
    ) {
        self.eventLoop = eventLoop
        self.state = state
        self.isReady = isReady
        self.status = status
        self.logger = logger
    }

    func start() {
        guard Systemd.isNotifying else { return }
        let readyAnnounced = NIOLockedValueBox(false)
        let readiness = eventLoop.scheduleRepeatedAsyncTask(initialDelay: .zero, delay: .milliseconds(100)) {
            [self] task in
            guard state.isListening, !state.isDraining else { return eventLoop.makeSucceededVoidFuture() }
            return isReady().map { ready in
                guard ready, !readyAnnounced.withLockedValue({ $0 }) else { return }
                readyAnnounced.withLockedValue { $0 = true }
                Systemd.notify("READY=1\nSTATUS=\(self.status())")
                self.logger.info("told systemd the node is ready")
                task.cancel()
            }
        }
        var started = [readiness]
        if let interval = Systemd.watchdogInterval() {
            let period = TimeAmount.nanoseconds(max(interval.nanoseconds / 2, 1_000_000))
            started.append(eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: period) { _ in
                Systemd.notify("WATCHDOG=1")
            })
            logger.info("systemd watchdog enabled", metadata: ["ping_every": "\(period.nanoseconds / 1_000_000)ms"])
        }
        started.append(eventLoop.scheduleRepeatedTask(initialDelay: .seconds(2), delay: .seconds(2)) { [self] _ in
            Systemd.notify("STATUS=\(self.status())")
        })
        tasks.withLockedValue { $0 = started }
    }

    /// The drain begins.
    func stopping() {
        guard Systemd.isNotifying else { return }
        Systemd.notify("STOPPING=1\nSTATUS=draining: \(status())")
    }

    func stop() {
        for task in tasks.withLockedValue({ $0 }) { task.cancel() }
    }
}
