import NIOCore
import NIOEmbedded
import Testing

@testable import OpenWebUI

@Suite("OrderedWorkQueue: a socket's events one at a time, in arrival order")
struct OrderedWorkQueueTests {
    struct StepFailed: Error {}

    @Test("a step starts only after the one before it finished, even if the later one is quicker")
    func stepsRunInOrder() {
        let loop = EmbeddedEventLoop()
        let queue = OrderedWorkQueue(eventLoop: loop, capacity: 8)
        let started = NIOLoopBoundBox<[Int]>([], eventLoop: loop)
        let slow = loop.makePromise(of: Void.self)
        queue.enqueue {
            started.value.append(1)
            return slow.futureResult
        }
        queue.enqueue {
            started.value.append(2)
            return loop.makeSucceededVoidFuture()
        }
        loop.run()
        #expect(started.value == [1])
        #expect(queue.waiting == 2)
        slow.succeed()
        loop.run()
        #expect(started.value == [1, 2])
        #expect(queue.waiting == 0)
    }

    @Test("a failed step does not stop the steps after it")
    func failureDoesNotStopTheQueue() {
        let loop = EmbeddedEventLoop()
        let queue = OrderedWorkQueue(eventLoop: loop, capacity: 8)
        let ran = NIOLoopBoundBox<[String]>([], eventLoop: loop)
        queue.enqueue {
            ran.value.append("fails")
            return loop.makeFailedFuture(StepFailed())
        }
        queue.enqueue {
            ran.value.append("after")
            return loop.makeSucceededVoidFuture()
        }
        loop.run()
        #expect(ran.value == ["fails", "after"])
    }

    @Test("a full queue refuses more steps and never runs them")
    func fullQueueRefuses() {
        let loop = EmbeddedEventLoop()
        let queue = OrderedWorkQueue(eventLoop: loop, capacity: 2)
        let blocker = loop.makePromise(of: Void.self)
        let ran = NIOLoopBoundBox<Int>(0, eventLoop: loop)
        #expect(queue.enqueue { blocker.futureResult })
        #expect(queue.enqueue { ran.value += 1; return loop.makeSucceededVoidFuture() })
        #expect(!queue.enqueue { ran.value += 100; return loop.makeSucceededVoidFuture() })
        blocker.succeed()
        loop.run()
        #expect(ran.value == 1)
        // Room again once the queue drained.
        #expect(queue.enqueue { loop.makeSucceededVoidFuture() })
    }

    @Test("clean-up is queued even when the queue is full, and runs after what came before")
    func cleanUpWhenFull() {
        let loop = EmbeddedEventLoop()
        let queue = OrderedWorkQueue(eventLoop: loop, capacity: 1)
        let blocker = loop.makePromise(of: Void.self)
        let ran = NIOLoopBoundBox<[String]>([], eventLoop: loop)
        #expect(queue.enqueue { ran.value.append("first"); return blocker.futureResult })
        #expect(queue.enqueue(evenIfFull: true) { ran.value.append("clean-up"); return loop.makeSucceededVoidFuture() })
        loop.run()
        #expect(ran.value == ["first"])
        blocker.succeed()
        loop.run()
        #expect(ran.value == ["first", "clean-up"])
    }

    @Test("a step completing on another event loop still hands over in order on the queue's loop")
    func stepsCompletingElsewhere() throws {
        let loop = EmbeddedEventLoop()
        let other = EmbeddedEventLoop()
        let queue = OrderedWorkQueue(eventLoop: loop, capacity: 4)
        let order = NIOLoopBoundBox<[Int]>([], eventLoop: loop)
        let remote = other.makePromise(of: Void.self)
        queue.enqueue {
            order.value.append(1)
            return remote.futureResult
        }
        queue.enqueue {
            order.value.append(2)
            return loop.makeSucceededVoidFuture()
        }
        loop.run()
        remote.succeed()
        other.run()
        loop.run()
        #expect(order.value == [1, 2])
        try loop.syncShutdownGracefully()
        try other.syncShutdownGracefully()
    }
}
