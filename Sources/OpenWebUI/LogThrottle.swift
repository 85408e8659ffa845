import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Decides which occurrences of a repeated log message are written: the first of each message in a window, and
/// then nothing until the window has passed, when the next one is written with how many were left out. A Redis
/// or backend outage, or ten thousand clients reconnecting at once, then costs a line per message and window, not
/// a line per socket.
package final class LogThrottle: Sendable {
    private struct Window {
        var openedAt: NIODeadline
        var suppressed: Int
    }

    private let window: TimeAmount
    private let clock: @Sendable () -> NIODeadline
    private let windows = NIOLockedValueBox<[String: Window]>([:])

    package init(window: TimeAmount = .seconds(10), clock: @escaping @Sendable () -> NIODeadline = { .now() }) {
        self.window = window
        self.clock = clock
    }

    /// Whether this occurrence of `key` is written: nil when it is left out (and counted), else how many were
    /// left out since the last one written. Keys are the messages themselves, a fixed set.
    package func admit(_ key: String) -> Int? {
        let now = clock()
        return windows.withLockedValue { windows in
            guard var open = windows[key], now - open.openedAt < window else {
                let suppressed = windows[key]?.suppressed ?? 0
                windows[key] = Window(openedAt: now, suppressed: 0)
                return suppressed
            }
            open.suppressed += 1
            windows[key] = open
            return nil
        }
    }
}

/// Warnings that many sockets can raise at once, written through a ``LogThrottle``; a written line carries
/// `suppressed` when occurrences were left out before it.
package struct ThrottledWarnings: Sendable {
    let logger: Logger
    let throttle: LogThrottle

    package init(logger: Logger, throttle: LogThrottle = LogThrottle()) {
        self.logger = logger
        self.throttle = throttle
    }

    func warning(_ message: Logger.Message, metadata: Logger.Metadata = [:]) {
        guard let suppressed = throttle.admit(message.description) else { return }
        var metadata = metadata
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        logger.warning(message, metadata: metadata)
    }
}
