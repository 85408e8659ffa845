import EngineIO
import Logging
import NIOCore
import Presence
import SocketIO

/// Runs asynchronous steps one at a time in the order they were queued, on one event loop. A failed
/// step does not stop the queue; a full queue refuses more.
final class OrderedWorkQueue: @unchecked Sendable {
    // @unchecked Sendable: used on `eventLoop` only.
    let eventLoop: EventLoop
    let capacity: Int
    private var tail: EventLoopFuture<Void>?
    private(set) var waiting = 0

    init(eventLoop: EventLoop, capacity: Int) {
        self.eventLoop = eventLoop
        self.capacity = capacity
    }

    /// Queues `work`; false (and `work` never runs) when `capacity` steps are already waiting,
    /// unless `evenIfFull` (clean-up that must happen whatever came before).
    @discardableResult
    func enqueue(evenIfFull: Bool = false, _ work: @escaping @Sendable () -> EventLoopFuture<Void>) -> Bool {
        eventLoop.assertInEventLoop()
        guard waiting < capacity || evenIfFull else { return false }
        waiting += 1
        let loop = eventLoop
        let previous = tail ?? loop.makeSucceededVoidFuture()
        let next = previous.flatMap {
            work().hop(to: loop).flatMapErrorThrowing { _ in }
        }
        next.whenComplete { _ in self.waiting -= 1 }
        tail = next
        return true
    }
}

/// One socket's state under the contract: its user once authenticated, and the queue that handles
/// its events one at a time in arrival order, including those that wait on the backend or Redis.
final class ContractSession: @unchecked Sendable {
    // @unchecked Sendable: every member is used on the socket's event loop only.

    /// Events waiting (or running) before a socket is disconnected for sending too many.
    static let maxWaitingEvents = 256

    var user: AuthenticatedUser?
    let queue: OrderedWorkQueue

    init(eventLoop: EventLoop) {
        queue = OrderedWorkQueue(eventLoop: eventLoop, capacity: Self.maxWaitingEvents)
    }

    static func of(_ socket: Socket) -> ContractSession {
        if let session = socket.userData as? ContractSession { return session }
        let session = ContractSession(eventLoop: socket.eventLoop)
        socket.userData = session
        return session
    }

    /// Runs `work` once every earlier event of the socket is done; closes the client when it has
    /// too many events waiting.
    func enqueue(_ socket: Socket, _ work: @escaping @Sendable () -> EventLoopFuture<Void>) {
        guard queue.enqueue(work) else {
            socket.session.close(reason: .eventBacklog, detail: "more than \(Self.maxWaitingEvents) events waiting")
            return
        }
    }
}

/// Open WebUI's real-time events on namespace `/` (docs/BACKEND.md, OPEN_WEBUI_CONTRACT.md).
struct OpenWebUIEvents: Sendable {
    let users: UserDirectory
    let presence: any PresenceStore
    let forwarder: EventForwarder
    let strict: Bool
    let broadcastPresence: Bool
    let nodeID: String
    let logger: Logger
    /// Epoch seconds.
    let now: @Sendable () -> Int

    static let channelEventNames = ["events:channel", "channel-events"]

    func handlers() -> NamespaceHandlers {
        var handlers = NamespaceHandlers()
        if strict {
            handlers.authorize = { socket, auth in
                let session = ContractSession.of(socket)
                return users.authenticate(token: Self.token(in: auth), on: socket.eventLoop)
                    .hop(to: socket.eventLoop)
                    .map { user in session.user = user }
                    .flatMapError { error in
                        let reason = (error as? AuthenticationFailure)?.reason ?? "\(error)"
                        logger.info("connect refused", metadata: ["reason": "\(reason)", "sid": "\(socket.id)"])
                        return socket.eventLoop.makeFailedFuture(
                            ConnectionRefused(message: "unauthorized", data: ["reason": .string(reason)])
                        )
                    }
            }
        }
        handlers.connected = { socket, auth in
            let session = ContractSession.of(socket)
            session.enqueue(socket) {
                if let user = session.user { return register(socket, user) }
                return users.authenticate(token: Self.token(in: auth), on: socket.eventLoop)
                    .hop(to: socket.eventLoop)
                    .flatMap { user in
                        session.user = user
                        return register(socket, user)
                    }
                    .flatMapError { error in
                        report(error, "anonymous socket", socket)
                        return socket.eventLoop.makeSucceededVoidFuture()
                    }
            }
        }
        handlers.on("user-join") { socket, args, ack in
            let token = Self.token(in: args.first?["auth"])
            queue(socket, ack) { session in
                users.authenticate(token: token, on: socket.eventLoop).hop(to: socket.eventLoop).flatMap { user in
                    var registered = socket.eventLoop.makeSucceededVoidFuture()
                    if session.user == nil {
                        session.user = user
                        registered = register(socket, user)
                    }
                    return registered.flatMap { joinChannels(socket, token: token) }.map { () -> [JSONValue] in
                        [["id": .string(user.id), "name": .string(user.name)]]
                    }
                }.recover { error in
                    report(error, "user-join refused", socket)
                    return []
                }
            }
        }
        handlers.on("join-channels") { socket, args, ack in
            let token = Self.token(in: args.first?["auth"])
            queue(socket, ack) { _ in
                users.authenticate(token: token, on: socket.eventLoop).hop(to: socket.eventLoop).flatMap { _ in
                    joinChannels(socket, token: token)
                }.map { [] }.recover { error in
                    report(error, "join-channels refused", socket)
                    return []
                }
            }
        }
        handlers.on("heartbeat") { socket, _, ack in
            queue(socket, ack) { session in
                guard session.user != nil else { return socket.eventLoop.makeSucceededFuture([]) }
                return presence.touchSession(sid: socket.id, now: now()).map { _ in [] }.recover { error in
                    logger.warning("heartbeat not recorded", metadata: ["reason": "\(error)", "sid": "\(socket.id)"])
                    return []
                }
            }
        }
        handlers.on("usage") { socket, args, ack in
            let model = args.first?["model"]?.stringValue
            queue(socket, ack) { session in
                guard session.user != nil, let model, !model.isEmpty else {
                    return socket.eventLoop.makeSucceededFuture([])
                }
                return presence.recordUsage(sid: socket.id, model: model, now: now()).flatMap {
                    broadcastPresence ? broadcastUsage(socket.namespace, on: socket.eventLoop) : socket.eventLoop.makeSucceededVoidFuture()
                }.map { [] }.recover { error in
                    logger.warning("usage not recorded", metadata: ["reason": "\(error)", "sid": "\(socket.id)"])
                    return []
                }
            }
        }
        handlers.on("user-list") { socket, _, ack in
            queue(socket, ack) { session in
                guard session.user != nil else { return socket.eventLoop.makeSucceededFuture([]) }
                // With the broadcasts off, only the one who asked hears the answer.
                let audience: Set<String> = broadcastPresence ? [] : [socket.id]
                return broadcastUserList(socket.namespace, to: audience, on: socket.eventLoop).map { [] }
            }
        }
        for name in Self.channelEventNames {
            handlers.on(name) { socket, args, ack in
                queue(socket, ack) { session in
                    channelEvent(name, socket, session, args, wantsAck: ack != nil)
                }
            }
        }
        handlers.unhandled = { socket, event, args, ack in
            queue(socket, ack) { session in
                forward(event, socket, session, args, wantsAck: ack != nil)
            }
        }
        handlers.disconnected = { socket, _ in
            let session = ContractSession.of(socket)
            // After everything the socket sent (a late pool write must not outlive the clean-up),
            // and even when its queue is full.
            session.queue.enqueue(evenIfFull: true) {
                guard session.user != nil else { return socket.eventLoop.makeSucceededVoidFuture() }
                session.user = nil
                return presence.removeSession(sid: socket.id).flatMap { removal in
                    guard removal.removed, broadcastPresence else { return socket.eventLoop.makeSucceededVoidFuture() }
                    return broadcastUserList(socket.namespace, on: socket.eventLoop)
                }.flatMapErrorThrowing { error in
                    logger.warning("session not removed", metadata: ["reason": "\(error)", "sid": "\(socket.id)"])
                }
            }
        }
        return handlers
    }

    // MARK: Steps

    /// A refused token is the client's business (debug); a backend or Redis failure is the operator's.
    private func report(_ error: Error, _ message: Logger.Message, _ socket: Socket) {
        let metadata: Logger.Metadata = ["reason": "\(error)", "sid": "\(socket.id)"]
        if (error as? AuthenticationFailure)?.isInfrastructure == true {
            logger.warning(message, metadata: metadata)
        } else {
            logger.debug(message, metadata: metadata)
        }
    }

    /// Queues a step whose result is the client's ack (sent if it asked for one).
    private func queue(
        _ socket: Socket,
        _ ack: AckResponder?,
        _ step: @escaping @Sendable (ContractSession) -> EventLoopFuture<[JSONValue]>
    ) {
        let session = ContractSession.of(socket)
        session.enqueue(socket) {
            step(session).hop(to: socket.eventLoop).map { answer in ack?(answer) }
        }
    }

    /// An authenticated socket enters the pools and its user's room; everyone learns the user list.
    private func register(_ socket: Socket, _ user: AuthenticatedUser) -> EventLoopFuture<Void> {
        socket.join("user:\(user.id)")
        return presence.addSession(
            sid: socket.id,
            userID: user.id,
            userJSON: JSONWriter.serialize(user.object),
            now: now()
        ).flatMap {
            broadcastPresence ? broadcastUserList(socket.namespace, on: socket.eventLoop) : socket.eventLoop.makeSucceededVoidFuture()
        }.flatMapErrorThrowing { error in
            logger.warning("session not recorded", metadata: ["reason": "\(error)", "sid": "\(socket.id)"])
        }
    }

    private func joinChannels(_ socket: Socket, token: String?) -> EventLoopFuture<Void> {
        guard let token else { return socket.eventLoop.makeSucceededVoidFuture() }
        return users.channelIDs(token: token, on: socket.eventLoop).hop(to: socket.eventLoop).map { ids in
            for id in ids { socket.join("channel:\(id)") }
        }.flatMapErrorThrowing { error in
            logger.warning("channels not joined", metadata: ["reason": "\(error)", "sid": "\(socket.id)"])
        }
    }

    /// Typing is relayed to the channel's members with the sender's user; other channel events go
    /// to the backend. Either only when the sender is a member of the channel.
    private func channelEvent(
        _ name: String,
        _ socket: Socket,
        _ session: ContractSession,
        _ args: [JSONValue],
        wantsAck: Bool
    ) -> EventLoopFuture<[JSONValue]> {
        guard let user = session.user, let payload = args.first, case .object(var members) = payload,
            let channel = UserDirectory.identifier(payload["channel_id"]), socket.isIn("channel:\(channel)")
        else {
            return socket.eventLoop.makeSucceededFuture([])
        }
        guard payload["data"]?["type"]?.stringValue == "typing" else {
            return forward(name, socket, session, args, wantsAck: wantsAck)
        }
        members.removeAll { $0.key == "user" }
        members.append((key: "user", value: ["id": .string(user.id), "name": .string(user.name)]))
        socket.namespace.emit(name, [.object(members)], to: ["channel:\(channel)"])
        return socket.eventLoop.makeSucceededFuture([])
    }

    private func forward(
        _ event: String,
        _ socket: Socket,
        _ session: ContractSession,
        _ args: [JSONValue],
        wantsAck: Bool
    ) -> EventLoopFuture<[JSONValue]> {
        let forwarded = ForwardedEvent(
            event: event,
            args: args,
            sid: socket.id,
            userID: session.user?.id,
            namespace: socket.namespace.name,
            node: nodeID,
            wantsAck: wantsAck
        )
        return forwarder.forward(forwarded, on: socket.eventLoop, logger: logger)
    }

    /// `user-list {user_ids}` to `rooms` (everyone when empty).
    private func broadcastUserList(_ namespace: Namespace, to rooms: Set<String> = [], on eventLoop: EventLoop)
        -> EventLoopFuture<Void>
    {
        presence.usersOnline().hop(to: eventLoop).map { ids in
            namespace.emit("user-list", [["user_ids": .array(ids.map(JSONValue.string))]], to: rooms)
        }.flatMapErrorThrowing { error in
            logger.warning("user-list not broadcast", metadata: ["reason": "\(error)"])
        }
    }

    private func broadcastUsage(_ namespace: Namespace, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        presence.modelsInUse().hop(to: eventLoop).map { models in
            namespace.emit("usage", [["models": .array(models.map(JSONValue.string))]])
        }.flatMapErrorThrowing { error in
            logger.warning("usage not broadcast", metadata: ["reason": "\(error)"])
        }
    }

    static func token(in auth: JSONValue?) -> String? {
        guard let token = auth?["token"]?.stringValue, !token.isEmpty else { return nil }
        return token
    }
}
