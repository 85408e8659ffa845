import Logging
import Synchronization

/// Keeps what a logger logs, for tests that check what was reported and how often.
package final class LogCapture: Sendable {
    package struct Entry: Sendable {
        package var level: Logger.Level
        package var message: String
        package var metadata: Logger.Metadata
    }

    private let entries = Mutex<[Entry]>([])

    package init() {}

    package var all: [Entry] { entries.withLock { $0 } }

    package var logger: Logger {
        Logger(label: "switchboard.tests") { _ in Handler(capture: self) }
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let entry = Entry(
                level: event.level,
                message: "\(event.message)",
                metadata: metadata.merging(event.metadata ?? [:]) { $1 }
            )
            capture.entries.withLock { $0.append(entry) }
        }
    }
}
