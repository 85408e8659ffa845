import CoreMetrics
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// What a listener does when `accept` fails — out of file descriptors (EMFILE, ENFILE) or kernel
/// memory, most often. The listening socket stays readable, so trying again at once spins a core
/// for as long as the shortage lasts: it stops reading for ``backoff`` instead, counts each failure,
/// and warns at most once per ``warningInterval``. Connections that arrive meanwhile wait in the backlog.
final class AcceptFailures: Sendable {
    static let label = "switchboard_accept_failures_total"
    static let backoff = TimeAmount.milliseconds(250)
    static let warningInterval = TimeAmount.seconds(10)

    private let listener: String
    private let logger: Logger
    private let counter: Counter
    private let lastWarning = NIOLockedValueBox<NIODeadline?>(nil)

    /// - Parameter listener: which listener, for the log and the metric's `listener` label.
    init(listener: String, logger: Logger, factory: any MetricsFactory = MetricsSystem.factory) {
        self.listener = listener
        self.logger = logger
        self.counter = Counter(label: Self.label, dimensions: [("listener", listener)], factory: factory)
    }

    /// The handler for a server channel's pipeline.
    func makeHandler() -> AcceptBackoff {
        AcceptBackoff { error in self.failed(error) }
    }

    /// Counts a failed accept and says how long to wait before the next.
    func failed(_ error: IOError, now: NIODeadline = .now()) -> TimeAmount? {
        counter.increment()
        let warn = lastWarning.withLockedValue { last -> Bool in
            if let last, now - last < Self.warningInterval { return false }
            last = now
            return true
        }
        if warn {
            logger.warning(
                "cannot accept connections; trying again every \(Self.backoff.nanoseconds / 1_000_000) ms",
                metadata: ["listener": "\(listener)", "error": "\(error)"]
            )
        }
        return Self.backoff
    }
}

/// Pauses a listener's reads after a failed accept. NIO's `AcceptBackoffHandler` delays the next
/// `read()`, but after a failed accept NIO never asks for one (the read it has is still pending) and
/// keeps the socket registered for readability, so the loop spins regardless; turning `autoRead` off
/// unregisters it, and turning it on again after the backoff registers it again.
final class AcceptBackoff: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Channel
    typealias InboundOut = Channel

    private let backoff: (IOError) -> TimeAmount?
    private var resume: Scheduled<Void>?

    init(backoff: @escaping (IOError) -> TimeAmount?) {
        self.backoff = backoff
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, let delay = backoff(error) else {
            return context.fireErrorCaught(error)
        }
        guard resume == nil, let options = context.channel.syncOptions else { return }
        try? options.setOption(.autoRead, value: false)
        resume = context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            self.resume = nil
            try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        resume?.cancel()
        resume = nil
        context.fireChannelInactive()
    }
}
