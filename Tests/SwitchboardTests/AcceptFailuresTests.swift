import Logging
import MetricsTestKit
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Switchboard

@Suite("Accept failures: a listener out of file descriptors waits, counts and warns instead of spinning")
struct AcceptFailuresTests {
    @Test func everyFailureWaitsAndCountsAndTheWarningIsThrottled() throws {
        let metrics = TestMetrics()
        let lines = NIOLockedValueBox<[String]>([])
        let logger = Logger(label: "test") { _ in Recorder(lines: lines) }
        let failures = AcceptFailures(listener: "api", logger: logger, factory: metrics)
        let counter = try metrics.expectCounter(AcceptFailures.label, [("listener", "api")])
        let emfile = IOError(errnoCode: EMFILE, reason: "accept")
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

        for step in 0..<40 {
            // A failure every 250 ms (what the backoff allows) for 10 s.
            #expect(failures.failed(emfile, now: start + .milliseconds(Int64(step) * 250)) == AcceptFailures.backoff)
        }
        #expect(counter.totalValue == 40)
        #expect(lines.withLockedValue { $0.count } == 1, "one warning per 10 s, not one per failure")
        #expect(lines.withLockedValue { $0.first?.contains("cannot accept connections") } == true)
        _ = failures.failed(emfile, now: start + .seconds(10))
        #expect(lines.withLockedValue { $0.count } == 2)
        #expect(lines.withLockedValue { $0.last?.contains("listener=api") } == true)
    }

    @Test func theHandlerGoesOnTheListenerAndSwallowsTheError() throws {
        let failures = AcceptFailures(listener: "main", logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }, factory: TestMetrics())
        let channel = EmbeddedChannel(handler: failures.makeHandler())
        // Not forwarded: the failure is handled (counted, logged once), not an error of the listener.
        channel.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept"))
        #expect(throws: Never.self) { try channel.throwIfErrorCaught() }
        _ = try channel.finish()
    }

    private struct Recorder: LogHandler {
        let lines: NIOLockedValueBox<[String]>
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            lines.withLockedValue { $0.append(([event.message.description] + fields).joined(separator: " ")) }
        }
    }
}
