import NIOCore
import NIOEmbedded
import Testing

@testable import EngineIO

@Suite("LoopTimers: one heap of session timers behind one NIO task")
struct LoopTimersTests {
    final class Log {
        var fired: [String] = []
    }

    @Test func timersFireAtTheirDeadlinesInOrder() throws {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let timers = LoopTimers(eventLoop: loop)
        let log = Log()
        timers.schedule(in: .seconds(3)) { log.fired.append("c") }
        timers.schedule(in: .seconds(1)) { log.fired.append("a1") }
        timers.schedule(in: .seconds(1)) { log.fired.append("a2") }
        timers.schedule(in: .seconds(2)) { log.fired.append("b") }

        loop.advanceTime(by: .milliseconds(999))
        #expect(log.fired.isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        #expect(log.fired == ["a1", "a2"], "due exactly at the deadline; equal deadlines in the order scheduled")
        loop.advanceTime(by: .seconds(2))
        #expect(log.fired == ["a1", "a2", "b", "c"])
        #expect(timers.count == 0)
    }

    @Test func anEarlierTimerScheduledLaterStillFiresOnTime() throws {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let timers = LoopTimers(eventLoop: loop)
        let log = Log()
        timers.schedule(in: .seconds(30)) { log.fired.append("late") }
        timers.schedule(in: .seconds(5)) { log.fired.append("early") }
        loop.advanceTime(by: .seconds(5))
        #expect(log.fired == ["early"])
        loop.advanceTime(by: .seconds(25))
        #expect(log.fired == ["early", "late"])
    }

    @Test func aCancelledTimerNeverRunsAndLeavesWhenDue() throws {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let timers = LoopTimers(eventLoop: loop)
        let log = Log()
        let cancelled = timers.schedule(in: .seconds(1)) { log.fired.append("cancelled") }
        let kept = timers.schedule(in: .seconds(1)) { log.fired.append("kept") }
        cancelled.cancel()
        #expect(!cancelled.isPending)
        #expect(kept.isPending)
        #expect(timers.count == 2, "a cancel only drops the action")
        loop.advanceTime(by: .seconds(1))
        #expect(log.fired == ["kept"])
        #expect(!kept.isPending)
        #expect(timers.count == 0)
        kept.cancel()  // after firing: harmless
    }

    @Test func anActionMaySchedule() throws {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let timers = LoopTimers(eventLoop: loop)
        let log = Log()
        timers.schedule(in: .seconds(1)) {
            log.fired.append("first")
            timers.schedule(in: .zero) { log.fired.append("due at once") }
            timers.schedule(in: .seconds(1)) { log.fired.append("next") }
        }
        loop.advanceTime(by: .seconds(1))
        #expect(log.fired == ["first", "due at once"])
        loop.advanceTime(by: .seconds(1))
        #expect(log.fired == ["first", "due at once", "next"])
    }

    @Test func sessionsOnOneLoopShareItsTimers() throws {
        let harness = EngineHarness()
        let sessions = try (0..<3).map { _ in
            let (sid, _) = try harness.handshake()
            return try #require(harness.application.session(sid))
        }
        let timers = sessions[0].timers
        #expect(sessions.allSatisfy { $0.timers === timers })
        #expect(timers.count == 3, "one heartbeat each")
        sessions[0].close(reason: .serverShutdown)
        harness.loop.run()
        // The closed heartbeat stays until due, without its action; the close packet lingers for
        // the client's next poll on a timer of its own.
        #expect(timers.count == 4)

        // By the ping interval the linger ended and the dead entry went; the live sessions pinged and
        // re-armed for the pong.
        harness.loop.advanceTime(by: .seconds(25))
        #expect(timers.count == 2)
        #expect(!sessions[1].isClosed && !sessions[2].isClosed)
        harness.loop.advanceTime(by: .seconds(20))
        #expect(sessions[1].closeReason == .pingTimeout, "the heartbeat kept running from the shared heap")
    }
}
