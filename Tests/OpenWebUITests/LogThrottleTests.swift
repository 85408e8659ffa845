import EngineIOTestSupport
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import OpenWebUI

@Suite("LogThrottle: a message once per window, with what was left out")
struct LogThrottleTests {
    final class ManualClock: Sendable {
        private let now = NIOLockedValueBox(NIODeadline.uptimeNanoseconds(1_000_000_000))
        var read: @Sendable () -> NIODeadline { { self.now.withLockedValue { $0 } } }
        func advance(_ amount: TimeAmount) { now.withLockedValue { $0 = $0 + amount } }
    }

    @Test("the first occurrence is written, the rest of the window counted, and the count goes with the next")
    func window() {
        let clock = ManualClock()
        let throttle = LogThrottle(window: .seconds(10), clock: clock.read)
        #expect(throttle.admit("channels not joined yet") == 0)
        for _ in 0..<999 { #expect(throttle.admit("channels not joined yet") == nil) }
        // Another message has its own window.
        #expect(throttle.admit("session not recorded") == 0)
        clock.advance(.milliseconds(9_999))
        #expect(throttle.admit("channels not joined yet") == nil)
        clock.advance(.milliseconds(1))
        #expect(throttle.admit("channels not joined yet") == 1000)
        #expect(throttle.admit("channels not joined yet") == nil)
        clock.advance(.seconds(10))
        #expect(throttle.admit("channels not joined yet") == 1)
        // A quiet window starts afresh.
        clock.advance(.seconds(60))
        #expect(throttle.admit("channels not joined yet") == 0)
    }

    @Test("ThrottledWarnings writes one line per window and names how many it left out")
    func warnings() {
        let capture = LogCapture()
        let logger = capture.logger
        let clock = ManualClock()
        let warnings = ThrottledWarnings(logger: logger, throttle: LogThrottle(window: .seconds(10), clock: clock.read))
        for sid in 0..<10_000 { warnings.warning("user not authenticated yet", metadata: ["sid": "\(sid)"]) }
        clock.advance(.seconds(10))
        warnings.warning("user not authenticated yet", metadata: ["sid": "last"])
        let written = capture.all
        #expect(written.count == 2)
        #expect(written.first?.message == "user not authenticated yet" && written.first?.metadata["suppressed"] == nil)
        #expect(written.last?.metadata["suppressed"].map { "\($0)" } == "9999")
    }
}
