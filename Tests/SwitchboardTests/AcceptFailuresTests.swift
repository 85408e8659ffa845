import EngineIOTestSupport
import Logging
import MetricsTestKit
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
        let logs = LogCapture()
        let failures = AcceptFailures(listener: "api", logger: logs.logger, factory: metrics)
        let counter = try metrics.expectCounter(AcceptFailures.label, [("listener", "api")])
        let emfile = IOError(errnoCode: EMFILE, reason: "accept")
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

        for step in 0..<40 {
            // A failure every 250 ms (what the backoff allows) for 10 s.
            #expect(failures.failed(emfile, now: start + .milliseconds(Int64(step) * 250)) == AcceptFailures.backoff)
        }
        #expect(counter.totalValue == 40)
        #expect(logs.all.count == 1, "one warning per 10 s, not one per failure")
        #expect(logs.all.first?.message.hasPrefix("cannot accept connections") == true)
        #expect(logs.all.first?.level == .warning)
        _ = failures.failed(emfile, now: start + .seconds(10))
        #expect(logs.all.count == 2)
        #expect(logs.all.last?.metadata["listener"] == "api")
    }

    @Test func theHandlerGoesOnTheListenerAndSwallowsTheError() throws {
        let failures = AcceptFailures(listener: "main", logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }, factory: TestMetrics())
        let channel = EmbeddedChannel(handler: failures.makeHandler())
        // Not forwarded: the failure is handled (counted, logged once), not an error of the listener.
        channel.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept"))
        #expect(throws: Never.self) { try channel.throwIfErrorCaught() }
        _ = try channel.finish()
    }
}
