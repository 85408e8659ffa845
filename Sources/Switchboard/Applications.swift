import EngineIO
import Logging
import NIOCore
import SocketIO

/// The relay node's own events on namespace `/`: a generic room join and room emit for plain
/// fan-out workloads (the same events the python-socketio baseline serves).
public enum RelayEvents {
    public static func handlers() -> NamespaceHandlers {
        var handlers = NamespaceHandlers()
        handlers.on("join") { socket, args, ack in
            guard let room = args.first?["room"]?.stringValue else { return }
            socket.join(room)
            ack?([.bool(true)])
        }
        handlers.on("leave") { socket, args, ack in
            guard let room = args.first?["room"]?.stringValue else { return }
            socket.leave(room)
            ack?([.bool(true)])
        }
        handlers.on("publish") { socket, args, ack in
            guard let room = args.first?["room"]?.stringValue, let data = args.first?["data"] else { return }
            socket.namespace.emit("message", [data], to: [room])
            ack?([.bool(true)])
        }
        return handlers
    }
}

/// The Socket.IO side of the conformance fixture: what the published Socket.IO protocol test
/// suite expects of a server, plus a few events that live client tests use.
public enum ConformanceEvents {
    public static func handlers() -> NamespaceHandlers {
        var handlers = NamespaceHandlers()
        handlers.connected = { socket, auth in
            socket.emit("auth", [auth ?? .object([])])
        }
        handlers.on("message") { socket, args, _ in
            socket.emit("message-back", args)
        }
        handlers.on("message-with-ack") { _, args, ack in
            ack?(args)
        }
        handlers.on("join") { socket, args, ack in
            guard let room = args.first?.stringValue else { return }
            socket.join(room)
            ack?([.bool(true)])
        }
        handlers.on("leave") { socket, args, ack in
            guard let room = args.first?.stringValue else { return }
            socket.leave(room)
            ack?([.bool(true)])
        }
        handlers.on("to-room") { socket, args, _ in
            guard let room = args.first?.stringValue else { return }
            socket.namespace.emit("room-message", Array(args.dropFirst()), to: [room])
        }
        handlers.on("call-me") { socket, args, _ in
            socket.emit("ack-me", args, ackTimeout: .seconds(5)) { result in
                switch result {
                case .success(let answer): socket.emit("ack-result", answer)
                case .failure: socket.emit("ack-result", ["timeout"])
                }
            }
        }
        handlers.on("disconnect-me") { socket, _, _ in
            socket.disconnect()
        }
        return handlers
    }
}

/// Raw Engine.IO that sends every message back unchanged (the Engine.IO test suite's fixture).
public struct EngineEchoApplication: EngineApplication {
    public init() {}

    public func sessionOpened(_ session: EngineSession) {
        session.setDelegate(EchoDelegate())
    }

    final class EchoDelegate: EngineSessionDelegate {
        func engineSession(_ session: EngineSession, didReceive message: EngineMessage) {
            session.sendMessage(message)
        }

        func engineSessionDidClose(_ session: EngineSession, reason: DisconnectReason) {}
    }
}
