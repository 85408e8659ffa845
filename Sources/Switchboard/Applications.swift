import EngineIO
import Logging
import NIOCore
import Presence
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
    public static func handlers(presence: (any PresenceStore)? = nil) -> NamespaceHandlers {
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
        addClusterProbes(to: &handlers)
        if let presence { addPresenceProbes(to: &handlers, store: presence) }
        return handlers
    }

    /// `register-session {id, name}` records the socket in the presence pools as an authenticated
    /// connect would (acks true once written); a disconnect removes it.
    static func addPresenceProbes(to handlers: inout NamespaceHandlers, store: any PresenceStore) {
        handlers.on("register-session") { socket, args, ack in
            guard let user = args.first, user.isObject, let id = user["id"]?.stringValue else { return }
            store.addSession(
                sid: socket.id,
                userID: id,
                userJSON: JSONWriter.serialize(user),
                now: PresenceSweeper.systemClock()
            ).whenComplete { result in
                let stored = (try? result.get()) != nil
                socket.eventLoop.execute { ack?([.bool(stored)]) }
            }
        }
        handlers.disconnected = { socket, _ in
            _ = store.removeSession(sid: socket.id)
        }
    }

    /// Events that drive the adapter from a client, so live tests can exercise every cluster
    /// operation from any node: targeting, exceptions, remote membership, acks and queries.
    static func addClusterProbes(to handlers: inout NamespaceHandlers) {
        // ["to-sid", sid, ...args] → `direct` with args to that sid, wherever it is.
        handlers.on("to-sid") { socket, args, _ in
            guard let sid = args.first?.stringValue else { return }
            socket.namespace.emit("direct", Array(args.dropFirst()), to: [sid])
        }
        // ["to-rooms", [rooms], [except], ...args] → `room-message` to the rooms except those.
        handlers.on("to-rooms") { socket, args, _ in
            guard args.count >= 2, let rooms = args[0].arrayValue, let except = args[1].arrayValue else { return }
            socket.namespace.emit(
                "room-message",
                Array(args.dropFirst(2)),
                to: Set(rooms.compactMap(\.stringValue)),
                except: Set(except.compactMap(\.stringValue))
            )
        }
        // ["call-sid", sid, ...args] → `ack-me` with ack to that sid; the caller's ack gets
        // `{responses, recipients, timedOut}`.
        handlers.on("call-sid") { socket, args, ack in
            guard let sid = args.first?.stringValue else { return }
            socket.namespace.emit("ack-me", Array(args.dropFirst()), to: [sid], ackTimeout: .seconds(3)) { result in
                let answer: JSONValue = [
                    "responses": .array(result.responses.map { .array($0) }),
                    "recipients": JSONValue(result.recipients),
                    "timedOut": .bool(result.timedOut),
                ]
                socket.eventLoop.execute { ack?([answer]) }
            }
        }
        // ["remote-join", {rooms: [...], except: [...]}, room] → matching sockets join `room`.
        handlers.on("remote-join") { socket, args, ack in
            guard args.count == 2, let room = args[1].stringValue else { return }
            socket.namespace.adapter.addSockets(matching: options(args[0]), to: [room])
            ack?([.bool(true)])
        }
        handlers.on("remote-leave") { socket, args, ack in
            guard args.count == 2, let room = args[1].stringValue else { return }
            socket.namespace.adapter.removeSockets(matching: options(args[0]), from: [room])
            ack?([.bool(true)])
        }
        handlers.on("remote-disconnect") { socket, args, ack in
            guard let target = args.first else { return }
            socket.namespace.adapter.disconnectSockets(matching: options(target), closeClient: false)
            ack?([.bool(true)])
        }
        // ["close-room", room] → every member, on any node, leaves the room.
        handlers.on("close-room") { socket, args, ack in
            guard let room = args.first?.stringValue else { return }
            socket.namespace.closeRoom(room)
            ack?([.bool(true)])
        }
        // ["members", room] → ack with the sorted sids in the room, cluster-wide.
        handlers.on("members") { socket, args, ack in
            guard let room = args.first?.stringValue else { return }
            socket.namespace.adapter.socketIDs(matching: BroadcastOptions(rooms: [room])).whenComplete { result in
                let sids = ((try? result.get()) ?? []).sorted().map(JSONValue.string)
                socket.eventLoop.execute { ack?([.array(sids)]) }
            }
        }
    }

    private static func options(_ value: JSONValue) -> BroadcastOptions {
        BroadcastOptions(
            rooms: Set(value["rooms"]?.arrayValue?.compactMap(\.stringValue) ?? []),
            except: Set(value["except"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        )
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
