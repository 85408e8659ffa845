import EngineIOTestSupport
import NIOCore
import Synchronization
import Testing

@testable import EngineIO
@testable import SocketIO

/// A node holds its clients for hours while thousands come and go: whatever a closed connection leaves
/// referenced is memory lost for good.
@Suite("Connection lifecycle: nothing outlives a closed connection")
struct ConnectionLifecycleTests {
    /// Weak references to what a connection made, filled by the handlers.
    final class Traces: Sendable {
        struct Weak: @unchecked Sendable {
            weak var socket: Socket?
            weak var session: EngineSession?
        }
        let entries = Mutex<[Weak]>([])

        func record(_ socket: Socket) {
            entries.withLock { $0.append(Weak(socket: socket, session: socket.session)) }
        }

        var alive: (sockets: Int, sessions: Int) {
            entries.withLock { entries in
                (entries.filter { $0.socket != nil }.count, entries.filter { $0.session != nil }.count)
            }
        }
        var count: Int { entries.withLock { $0.count } }
    }

    static func harness(_ traces: Traces) -> SocketIOHarness {
        SocketIOHarness(rootHandlers: { _ in
            var handlers = NamespaceHandlers()
            handlers.connected = { socket, _ in
                traces.record(socket)
                socket.join("room-a")
                socket.join("user:\(socket.id.prefix(4))")
            }
            handlers.on("echo") { socket, args, ack in
                ack?(args)
                socket.emit("echoed", args)
            }
            return handlers
        })
    }

    @Test(arguments: ["client close", "namespace disconnect", "server disconnect"])
    func aClosedClientFreesItsSocketAndSession(_ how: String) throws {
        let traces = Traces()
        let harness = Self.harness(traces)
        for _ in 0..<3 {
            let client = try harness.client()
            try client.send("0")
            _ = try client.receive()
            // Traffic that leaves acks, timers and room entries behind if anything forgets to clean up.
            try client.send(#"21["echo",{"a":[1,2,3]}]"#)
            _ = try client.receive()
            harness.root.emit("to-room", ["x"], to: ["room-a"])
            _ = try client.receive()
            switch how {
            case "client close": try client.send("1")
            case "namespace disconnect": try client.send("41")
            default: harness.engine.session(id: client.sid)?.close(reason: .serverDisconnect)
            }
            harness.runAll()
            _ = try? client.receive()
            client.close()
            harness.runAll()
        }
        #expect(traces.count == 3)
        let alive = traces.alive
        #expect(alive.sockets == 0, "sockets still referenced after \(how)")
        #expect(alive.sessions == 0, "sessions still referenced after \(how)")
        #expect(harness.engine.sessionCount == 0)
    }
}
