import HeapModule
import NIOCore

/// The timers of one event loop's sessions (heartbeats, connect timeouts) in one heap, behind a
/// single NIO scheduled task.
///
/// NIO finds a cancelled task by scanning its whole queue. With a NIO timer per session, every
/// cancel on the loop (a backend call's timeout, an ack's, a closing session's heartbeat) would
/// cost a pass over every connection it serves: at 50,000 connections, a mass disconnect is
/// quadratic. Here a cancel only drops the entry's action; the entry leaves the heap when due.
public final class LoopTimers: @unchecked Sendable {
    // @unchecked Sendable: all state is confined to `eventLoop` (asserted); other threads only
    // hold the reference to hop there.

    /// One scheduled action; `cancel()` on the loop before it fires keeps it from running.
    public final class Timer {
        fileprivate var action: (() -> Void)?

        fileprivate init(_ action: @escaping () -> Void) {
            self.action = action
        }

        var isPending: Bool { action != nil }

        public func cancel() {
            action = nil
        }
    }

    private struct Entry: Comparable {
        var deadline: NIODeadline
        /// Keeps timers with equal deadlines in the order they were scheduled.
        var sequence: UInt64
        var timer: Timer

        static func < (lhs: Entry, rhs: Entry) -> Bool {
            (lhs.deadline, lhs.sequence) < (rhs.deadline, rhs.sequence)
        }

        static func == (lhs: Entry, rhs: Entry) -> Bool {
            lhs.sequence == rhs.sequence
        }
    }

    public let eventLoop: EventLoop
    private var heap = Heap<Entry>()
    private var nextSequence: UInt64 = 0
    private var armed: (task: Scheduled<Void>, deadline: NIODeadline)?

    public init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Entries in the heap, cancelled ones included until they come due.
    var count: Int {
        eventLoop.assertInEventLoop()
        return heap.count
    }

    @discardableResult
    public func schedule(deadline: NIODeadline, _ action: @escaping () -> Void) -> Timer {
        eventLoop.assertInEventLoop()
        let timer = Timer(action)
        heap.insert(Entry(deadline: deadline, sequence: nextSequence, timer: timer))
        nextSequence &+= 1
        armForEarliest()
        return timer
    }

    @discardableResult
    public func schedule(in delay: TimeAmount, _ action: @escaping () -> Void) -> Timer {
        schedule(deadline: eventLoop.now + delay, action)
    }

    /// Keeps one NIO task armed for the earliest entry.
    private func armForEarliest() {
        guard let earliest = heap.min?.deadline else { return }
        if let armed {
            guard earliest < armed.deadline else { return }
            armed.task.cancel()
        }
        let task = eventLoop.scheduleTask(deadline: earliest) { [self] () -> Void in
            armed = nil
            fireDue()
        }
        armed = (task, earliest)
    }

    private func fireDue() {
        let now = eventLoop.now
        while let earliest = heap.min, earliest.deadline <= now {
            let timer = heap.removeMin().timer
            guard let action = timer.action else { continue }
            timer.action = nil
            action()
        }
        armForEarliest()
    }
}
