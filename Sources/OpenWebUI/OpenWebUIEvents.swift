import EngineIO
import Logging
import NIOCore
import Presence
import Redis
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
    /// The token `user` was authenticated with: kept in memory to re-validate it, never logged.
    var token: String?
    /// The shared chats this socket has open (its `chat:{id}` rooms), as SESSION_POOL's `chat_ids` says.
    var chatIDs: [String] = []
    /// Whether an event of this socket went to the forward target (which then hears of its disconnect).
    var forwardedEvents = false
    /// The user this socket is counted for in the per-user limit, until it goes.
    var countedUser: String?
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

/// Open WebUI's real-time events on namespace `/` (docs/OPENWEBUI.md, docs/BACKEND.md).
package struct OpenWebUIEvents: Sendable {
    let users: UserDirectory
    let presence: any PresenceStore
    let forwarder: EventForwarder
    /// Re-checks the tokens of authenticated sockets; nil in tests that do not need it.
    package var revalidator: SessionRevalidator?
    /// Where direct-completion chunks are published (the Redis Open WebUI's `redis_event_listener` reads).
    package var directCompletions: DirectCompletionChannel?
    /// Publishes who has a shared chat open; nil keeps `events:chat` join/leave from publishing presence.
    package var chatPresence: ChatPresence?
    /// Sockets per user on this node; nil for no limit.
    package var connectionsPerUser: UserConnectionLimit?
    let strict: Bool
    let broadcastPresence: Bool
    let nodeID: String
    let logger: Logger
    /// Per-socket warnings, which a Redis or backend outage raises on every socket at once.
    let warnings: ThrottledWarnings
    /// Epoch seconds.
    let now: @Sendable () -> Int

    package init(
        users: UserDirectory,
        presence: any PresenceStore,
        forwarder: EventForwarder,
        strict: Bool,
        broadcastPresence: Bool,
        nodeID: String,
        logger: Logger,
        now: @escaping @Sendable () -> Int
    ) {
        self.users = users
        self.presence = presence
        self.forwarder = forwarder
        self.strict = strict
        self.broadcastPresence = broadcastPresence
        self.nodeID = nodeID
        self.logger = logger
        self.warnings = ThrottledWarnings(logger: logger)
        self.now = now
    }

    static let channelEventNames = ["events:channel", "channel-events"]

    package func handlers() -> NamespaceHandlers {
        var handlers = NamespaceHandlers()
        if strict {
            handlers.authorize = { socket, auth in
                let session = ContractSession.of(socket)
                let token = Self.token(in: auth)
                return users.authenticate(token: token, on: socket.eventLoop)
                    .hop(to: socket.eventLoop)
                    .map { user in
                        session.user = user
                        session.token = token
                    }
                    .flatMapError { error in
                        let failure = error as? AuthenticationFailure
                        let reason = failure?.reason ?? "\(error)"
                        // The token was not judged: a refusal would end the client's reconnects, so close the
                        // transport and let its backoff bring it back (and spread a storm over time).
                        if failure?.isInfrastructure == true {
                            warnings.warning("connect deferred", metadata: ["reason": "\(reason)", "sid": "\(socket.id)"])
                            return socket.eventLoop.makeFailedFuture(
                                ConnectionDeferred(reason: .backendUnavailable, detail: reason)
                            )
                        }
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
                return authenticateOnConnect(socket, token: Self.token(in: auth), attempt: 1)
            }
        }
        handlers.on("user-join") { socket, args, ack in
            let token = Self.token(in: args.first?["auth"])
            queue(socket, ack) { session in userJoin(socket, session, token: token, attempt: 1) }
        }
        handlers.on("join-channels") { socket, args, ack in
            let token = Self.token(in: args.first?["auth"])
            queue(socket, ack) { _ in
                users.authenticate(token: token, on: socket.eventLoop).hop(to: socket.eventLoop).flatMap { _ in
                    joinChannels(socket, token: token, fresh: true)
                }.map { [] }.recover { error in
                    report(error, "join-channels refused", socket)
                    return []
                }
            }
        }
        handlers.on("heartbeat") { socket, _, ack in
            queue(socket, ack) { session in
                guard let user = session.user else { return socket.eventLoop.makeSucceededFuture([]) }
                let now = now()
                // Python's heartbeat rewrites the entry, so one that a reaper removed after a missed beat comes back.
                return presence.touchSession(sid: socket.id, now: now).flatMap { found in
                    found
                        ? socket.eventLoop.makeSucceededVoidFuture()
                        : presence.addSession(sid: socket.id, userID: user.id, userJSON: JSONWriter.serialize(user.object), now: now)
                }.map { [] }.recover { error in
                    warnings.warning("heartbeat not recorded", metadata: ["reason": "\(error)", "sid": "\(socket.id)"])
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
                    warnings.warning("usage not recorded", metadata: ["reason": "\(error)", "sid": "\(socket.id)"])
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
        handlers.on("events:chat") { socket, args, ack in
            queue(socket, ack) { session in chatEvent(socket, session, args, wantsAck: ack != nil) }
        }
        handlers.on("join-note") { socket, args, ack in
            let token = Self.token(in: args.first?["auth"])
            let noteID = args.first?["note_id"]
            queue(socket, ack) { _ in joinNote(socket, token: token, noteID: noteID).map { [] } }
        }
        handlers.unhandled = { socket, event, args, ack in
            if Self.isDirectCompletion(event) {
                queue(socket, ack) { session in directCompletion(event, socket, session, args) }
                return
            }
            queue(socket, ack) { session in
                forward(event, socket, session, args, wantsAck: ack != nil)
            }
        }
        handlers.disconnected = { socket, reason in
            let session = ContractSession.of(socket)
            if let counted = session.countedUser {
                connectionsPerUser?.release(counted)
                session.countedUser = nil
            }
            if let user = session.user, let token = session.token {
                revalidator?.untrack(socket, token: token)
                // Open WebUI disconnects a user's sockets when it ends their session; the client reconnects at
                // once, and that reconnect must reach the backend, not a cached answer.
                if reason == .serverDisconnect {
                    users.markForRecheck(userID: user.id, on: socket.eventLoop).whenFailure { error in
                        warnings.warning("recheck mark not stored", metadata: ["reason": "\(error)", "user": "\(user.id)"])
                    }
                }
            }
            // After everything the socket sent (a late pool write must not outlive the clean-up),
            // and even when its queue is full.
            session.queue.enqueue(evenIfFull: true) {
                if session.forwardedEvents, forwarder.forwardsDisconnects {
                    // Not awaited: the receiver's clean-up must not hold up this node's.
                    _ = forward("disconnect", socket, session, [.string(reason.rawValue)], wantsAck: false)
                }
                guard session.user != nil else { return socket.eventLoop.makeSucceededVoidFuture() }
                session.user = nil
                session.token = nil
                let chats = session.chatIDs
                session.chatIDs = []
                return presence.removeSession(sid: socket.id).flatMap { removal in
                    // As Python: the shared chats this socket had open learn it left.
                    var steps = chats.map { publishChatPresence($0, socket) }
                    if removal.removed, broadcastPresence { steps.append(broadcastUserList(socket.namespace, on: socket.eventLoop)) }
                    return EventLoopFuture.andAllComplete(steps, on: socket.eventLoop)
                }.flatMapErrorThrowing { error in
                    warnings.warning("session not removed", metadata: ["reason": "\(error)", "sid": "\(socket.id)"])
                }
            }
        }
        return handlers
    }

    /// Open WebUI follows each `channel:created` it sends to `user:{id}` (a DM or group opened, members added) with
    /// `enter_room_for_users`, which joins only the sockets of its own process, so none of Switchboard's. Those
    /// users' sockets here look their channels up afresh and join them, after whatever they were doing.
    package func backendEmitted(_ event: String, _ args: [JSONValue], rooms: Set<String>?, local: InMemoryAdapter) {
        guard event == "events:channel", args.first?["data"]?["type"]?.stringValue == "channel:created", let rooms
        else { return }
        let users = rooms.filter { $0.hasPrefix("user:") }
        guard !users.isEmpty else { return }
        local.forEachSocket(matching: BroadcastOptions(rooms: users)) { socket in
            let session = ContractSession.of(socket)
            guard session.user != nil, let token = session.token else { return }
            session.enqueue(socket) { joinChannels(socket, token: token, fresh: true) }
        }
    }

    /// Redis came back after it was lost, perhaps without its data (restarted empty, or a replica promoted
    /// that missed writes): every authenticated socket here is written into the pools again, with the chats
    /// it has open, instead of waiting for its next heartbeat. The writes are idempotent when nothing was lost.
    package func restoreSessions(local: InMemoryAdapter) {
        local.forEachSocket(matching: BroadcastOptions()) { socket in
            let session = ContractSession.of(socket)
            guard session.user != nil else { return }
            // Behind what the socket already sent, and never a reason to drop a busy client.
            session.queue.enqueue(evenIfFull: true) {
                // Gone or signed out while waiting: its disconnect step removed it, so it stays out.
                guard let user = session.user else { return socket.eventLoop.makeSucceededVoidFuture() }
                let chatIDs = session.chatIDs
                return presence.addSession(
                    sid: socket.id,
                    userID: user.id,
                    userJSON: JSONWriter.serialize(user.object),
                    now: now()
                ).flatMap { () -> EventLoopFuture<Void> in
                    guard !chatIDs.isEmpty else { return socket.eventLoop.makeSucceededVoidFuture() }
                    return storeChatIDs(chatIDs, of: socket).map { _ in }
                }.hop(to: socket.eventLoop).flatMapErrorThrowing { error in
                    warnings.warning("session not restored", metadata: ["reason": "\(error)", "sid": "\(socket.id)"])
                }
            }
        }
    }

    // MARK: Steps

    /// `user-join`: authenticate (if not yet), then join the user's channels; acked with the user. A token that
    /// could not be checked is tried again later (see ``retryLater(_:attempt:_:)``), without an ack.
    private func userJoin(_ socket: Socket, _ session: ContractSession, token: String?, attempt: Int)
        -> EventLoopFuture<[JSONValue]>
    {
        users.authenticate(token: token, on: socket.eventLoop).hop(to: socket.eventLoop).flatMap { user in
            var registered = socket.eventLoop.makeSucceededVoidFuture()
            if session.user == nil {
                session.user = user
                session.token = token
                registered = register(socket, user)
            } else if let token, user.id == session.user?.id {
                // The newest token is the one re-validated from now on, as Python keeps it in the session.
                revalidator?.track(socket, token: token, userID: user.id, previousToken: session.token)
                session.token = token
            }
            return registered.flatMap { () -> EventLoopFuture<[JSONValue]> in
                // Refused (over its user's limit): disconnected, nothing more to join or answer.
                guard session.user != nil else { return socket.eventLoop.makeSucceededFuture([]) }
                return joinChannels(socket, token: token).map { () -> [JSONValue] in
                    [["id": .string(user.id), "name": .string(user.name)]]
                }
            }
        }.recover { error in
            report(error, attempt == 1 ? "user-join refused" : "user-join refused again", socket)
            if token != nil, (error as? AuthenticationFailure)?.isInfrastructure == true {
                retryLater(socket, attempt: attempt) {
                    userJoin(socket, session, token: token, attempt: attempt + 1).map { _ in }
                }
            }
            return []
        }
    }

    /// Most seconds between two tries of a step the backend could not answer.
    static let maxRetryDelaySeconds = 30

    /// Authenticates a connect's token. One that could not be checked (the backend busy or down, Redis failing)
    /// is tried again while the socket stays connected and anonymous, about 1, 2, 4 … 30 s apart with jitter:
    /// a reconnect storm that the backend gate sheds still ends with every user registered.
    private func authenticateOnConnect(_ socket: Socket, token: String?, attempt: Int) -> EventLoopFuture<Void> {
        let session = ContractSession.of(socket)
        return users.authenticate(token: token, on: socket.eventLoop)
            .hop(to: socket.eventLoop)
            .flatMap { user in
                guard session.user == nil else { return socket.eventLoop.makeSucceededVoidFuture() }
                session.user = user
                session.token = token
                return register(socket, user)
            }
            .flatMapError { error in
                report(error, attempt == 1 ? "anonymous socket" : "anonymous socket, again", socket)
                if let token, (error as? AuthenticationFailure)?.isInfrastructure == true {
                    retryLater(socket, attempt: attempt) {
                        guard session.user == nil else { return socket.eventLoop.makeSucceededVoidFuture() }
                        return authenticateOnConnect(socket, token: token, attempt: attempt + 1)
                    }
                }
                return socket.eventLoop.makeSucceededVoidFuture()
            }
    }

    /// Queues `step` behind the socket's events after about 1, 2, 4 … 30 s (the `attempt`-th retry), jittered to
    /// half to one and a half times that, as Socket.IO clients spread their reconnects; not once the socket is gone.
    private func retryLater(_ socket: Socket, attempt: Int, _ step: @escaping @Sendable () -> EventLoopFuture<Void>) {
        let seconds = min(1 << min(attempt - 1, 8), Self.maxRetryDelaySeconds)
        let delay = TimeAmount.milliseconds(Int64(seconds * 500 + Int.random(in: 0...(seconds * 1000))))
        socket.eventLoop.scheduleTask(in: delay) {
            guard socket.isConnected else { return }
            ContractSession.of(socket).enqueue(socket, step)
        }
    }

    /// A backend that did not answer, answered 5xx or 429, or was not asked because the node's gate was full:
    /// worth asking again later. A 4xx is the backend's verdict.
    static func isRetryable(_ error: Error) -> Bool {
        guard let failure = error as? BackendFailure else { return false }
        switch failure.kind {
        case .unavailable, .busy: return true
        case .refused: return failure.status.map { $0 >= 500 || $0 == 429 } ?? false
        case .invalidAnswer: return false
        }
    }

    /// A refused token is the client's business (debug); a backend or Redis failure is the operator's.
    private func report(_ error: Error, _ message: Logger.Message, _ socket: Socket) {
        let metadata: Logger.Metadata = ["reason": "\(error)", "sid": "\(socket.id)"]
        if (error as? AuthenticationFailure)?.isInfrastructure == true {
            warnings.warning(message, metadata: metadata)
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
        // Gone while its token was checked: its disconnect step has run, and nothing may be counted or pooled.
        guard socket.isConnected else { return socket.eventLoop.makeSucceededVoidFuture() }
        if let limit = connectionsPerUser {
            guard limit.admit(user.id) else {
                let session = ContractSession.of(socket)
                session.user = nil
                session.token = nil
                logger.info(
                    "socket refused: its user has too many connections on this node",
                    metadata: ["sid": "\(socket.id)", "user": "\(user.id)", "limit": "\(limit.limit)"]
                )
                // A DISCONNECT, so the stock client stays off instead of retrying into the same refusal.
                socket.disconnect(reason: .connectionsPerUser, closeClient: true)
                return socket.eventLoop.makeSucceededVoidFuture()
            }
            ContractSession.of(socket).countedUser = user.id
        }
        socket.join("user:\(user.id)")
        if let token = ContractSession.of(socket).token {
            revalidator?.track(socket, token: token, userID: user.id, previousToken: nil)
        }
        return presence.addSession(
            sid: socket.id,
            userID: user.id,
            userJSON: JSONWriter.serialize(user.object),
            now: now()
        ).flatMap {
            broadcastPresence ? broadcastUserList(socket.namespace, on: socket.eventLoop) : socket.eventLoop.makeSucceededVoidFuture()
        }.flatMapErrorThrowing { error in
            warnings.warning("session not recorded", metadata: ["reason": "\(error)", "sid": "\(socket.id)"])
        }
    }

    /// Joins the token's channels; a lookup the backend could not answer is tried again later.
    private func joinChannels(_ socket: Socket, token: String?, fresh: Bool = false, attempt: Int = 1)
        -> EventLoopFuture<Void>
    {
        guard let token else { return socket.eventLoop.makeSucceededVoidFuture() }
        return users.channelIDs(token: token, fresh: fresh, on: socket.eventLoop).hop(to: socket.eventLoop).map { ids in
            for id in ids { socket.join("channel:\(id)") }
        }.flatMapErrorThrowing { error in
            let retry = Self.isRetryable(error)
            warnings.warning(
                retry ? "channels not joined yet" : "channels not joined",
                metadata: ["reason": "\(error)", "sid": "\(socket.id)", "attempt": "\(attempt)"]
            )
            if retry {
                retryLater(socket, attempt: attempt) {
                    joinChannels(socket, token: token, fresh: fresh, attempt: attempt + 1)
                }
            }
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
        guard let user = session.user, let payload = args.first, payload.isObject,
            let channel = UserDirectory.identifier(payload["channel_id"]), socket.isIn("channel:\(channel)")
        else {
            return socket.eventLoop.makeSucceededFuture([])
        }
        guard payload["data"]?["type"]?.stringValue == "typing" else {
            return forward(name, socket, session, args, wantsAck: wantsAck)
        }
        // Exactly what Python emits: `message_id` null when absent, `user` a UserNameResponse (id, name, role).
        let typing: JSONValue = .object([
            (key: "channel_id", value: payload["channel_id"] ?? .null),
            (key: "message_id", value: payload["message_id"] ?? .null),
            (key: "data", value: payload["data"] ?? .null),
            (key: "user", value: ["id": .string(user.id), "name": .string(user.name), "role": .string(user.role)]),
        ])
        socket.namespace.emit(name, [typing], to: ["channel:\(channel)"])
        return socket.eventLoop.makeSucceededFuture([])
    }

    /// Open WebUI's `events:chat` (0.12.4 `chat_events`): `join`/`leave` a shared chat's room (acked true/false),
    /// `typing` relayed to the others in it, `last_read_at` to the backend.
    private func chatEvent(_ socket: Socket, _ session: ContractSession, _ args: [JSONValue], wantsAck: Bool)
        -> EventLoopFuture<[JSONValue]>
    {
        let loop = socket.eventLoop
        guard let user = session.user, let token = session.token, let payload = args.first else {
            return loop.makeSucceededFuture([])
        }
        let type = payload["data"]?["type"]?.stringValue
        let chatID = payload["chat_id"]?.stringValue
        let refused = loop.makeSucceededFuture([JSONValue.bool(false)])
        switch type {
        case "typing"?:
            guard let chatID, Self.isSavedChatID(chatID), case .bool(let typing)? = payload["data"]?["data"]?["typing"]
            else { return refused }
            let room = "chat:\(chatID)"
            guard socket.isIn(room), Self.isPathSafe(chatID) else { return refused }
            return users.canWriteChat(chatID, token: token, on: loop).hop(to: loop).map { allowed in
                guard allowed else { return [false] }
                let event: JSONValue = [
                    "chat_id": .string(chatID), "user_id": .string(user.id),
                    "user": ["id": .string(user.id), "name": .string(user.name)], "shared": true,
                    "data": ["type": "typing", "data": ["typing": .bool(typing)]],
                ]
                socket.namespace.emit("events", [event], to: [room], except: [socket.id])
                return [true]
            }.recover { error in
                report(error, "chat typing not relayed", socket)
                return [false]
            }
        case "join"?, "leave"?:
            guard let chatID, Self.isSavedChatID(chatID), Self.isPathSafe(chatID) else { return refused }
            let room = "chat:\(chatID)"
            let entered: EventLoopFuture<Bool>
            if type == "leave" {
                socket.leave(room)
                entered = loop.makeSucceededFuture(true)
            } else {
                entered = users.canReadChat(chatID, token: token, on: loop).hop(to: loop).map { allowed in
                    if allowed { socket.join(room) }
                    return allowed
                }
            }
            return entered.flatMap { accepted -> EventLoopFuture<[JSONValue]> in
                guard accepted else { return loop.makeSucceededFuture([false]) }
                let chatIDs = socket.rooms.filter { $0.hasPrefix("chat:") }.map { String($0.dropFirst(5)) }.sorted()
                return storeChatIDs(chatIDs, of: socket).hop(to: loop).flatMap {
                    stored in
                    guard stored else {
                        // No session entry to hold it (reaped, or not yet written): Python leaves the room again.
                        socket.leave(room)
                        return loop.makeSucceededFuture([false])
                    }
                    session.chatIDs = chatIDs
                    return publishChatPresence(chatID, socket).map { [true] }
                }
            }.recover { error in
                report(error, "chat \(type ?? "") refused", socket)
                return [false]
            }
        case "last_read_at"?:
            // Needs Open WebUI's database; no HTTP route writes it.
            return forward("events:chat", socket, session, args, wantsAck: wantsAck)
        default:
            return loop.makeSucceededFuture([])
        }
    }

    /// SESSION_POOL's `chat_ids` of the socket's entry; false when it has no entry.
    private func storeChatIDs(_ chatIDs: [String], of socket: Socket) -> EventLoopFuture<Bool> {
        let list = JSONWriter.serialize(.array(chatIDs.map(JSONValue.string)))
        return presence.setSessionMember(sid: socket.id, name: "chat_ids", json: list)
    }

    private func publishChatPresence(_ chatID: String, _ socket: Socket) -> EventLoopFuture<Void> {
        guard let chatPresence else { return socket.eventLoop.makeSucceededVoidFuture() }
        return chatPresence.publish(chatID: chatID, namespace: socket.namespace, on: socket.eventLoop)
    }

    /// Open WebUI's `is_saved_chat_id`: not a temporary (`temporary:`, `local:`) or channel (`channel:`) chat.
    static func isSavedChatID(_ id: String) -> Bool {
        !id.isEmpty && !id.hasPrefix("temporary:") && !id.hasPrefix("local:") && !id.hasPrefix("channel:")
    }

    /// Open WebUI's `join-note`: the token in the payload must authenticate, and the backend must let that user
    /// read the note (`GET /api/v1/notes/{id}` runs the same notes-feature, existence and access checks).
    private func joinNote(_ socket: Socket, token: String?, noteID: JSONValue?) -> EventLoopFuture<Void> {
        guard let noteID = UserDirectory.identifier(noteID), Self.isPathSafe(noteID) else {
            return socket.eventLoop.makeSucceededVoidFuture()
        }
        return users.authenticate(token: token, on: socket.eventLoop).flatMap { _ in
            users.canReadNote(noteID, token: token ?? "", on: socket.eventLoop)
        }.hop(to: socket.eventLoop).map { allowed in
            if allowed { socket.join("note:\(noteID)") }
        }.recover { error in
            report(error, "join-note refused", socket)
        }
    }

    /// An id that can stand in a URL path as it is: what Open WebUI's ids (UUIDs) are made of.
    static func isPathSafe(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128
            && id.utf8.allSatisfy { byte in
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
            }
    }

    /// Open WebUI's handlers whose names have the `a:b:c` shape of a direct-completion event.
    static let namesLikeDirectCompletions: Set<String> = [
        "ydoc:document:join", "ydoc:document:state", "ydoc:document:update", "ydoc:document:leave",
        "ydoc:awareness:update",
    ]

    /// `{user_id}:{session_id}:{request_id}`: exactly two colons, and not one of Open WebUI's handlers.
    static func isDirectCompletion(_ event: String) -> Bool {
        event.utf8.lazy.filter { $0 == UInt8(ascii: ":") }.count == 2 && !namesLikeDirectCompletions.contains(event)
    }

    /// Open WebUI's catch-all handler: a direct completion's chunks, sent by the user who owns the request, go to
    /// `{prefix}:direct_completion` as `{"channel": event, "data": first argument}`, in arrival order.
    private func directCompletion(_ event: String, _ socket: Socket, _ session: ContractSession, _ args: [JSONValue])
        -> EventLoopFuture<[JSONValue]>
    {
        guard let user = session.user, let data = args.first, event.split(separator: ":", maxSplits: 1).first == Substring(user.id)
        else {
            return socket.eventLoop.makeSucceededFuture([])
        }
        guard let directCompletions else {
            logger.debug("direct completion dropped: no Redis to hand it to Open WebUI", metadata: ["sid": "\(socket.id)"])
            return socket.eventLoop.makeSucceededFuture([])
        }
        return directCompletions.publish(channel: event, data: data).hop(to: socket.eventLoop).map { [] }.recover {
            error in
            warnings.warning("direct completion not published", metadata: ["reason": "\(error)", "sid": "\(socket.id)"])
            return []
        }
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
            wantsAck: wantsAck,
            token: session.token,
            rooms: socket.rooms.sorted()
        )
        session.forwardedEvents = true
        return forwarder.forward(forwarded, on: socket.eventLoop, logger: logger)
    }

    /// `user-list {user_ids}` to `rooms` (everyone when empty).
    private func broadcastUserList(_ namespace: Namespace, to rooms: Set<String> = [], on eventLoop: EventLoop)
        -> EventLoopFuture<Void>
    {
        presence.usersOnline().hop(to: eventLoop).map { ids in
            namespace.emit("user-list", [["user_ids": .array(ids.map(JSONValue.string))]], to: rooms)
        }.flatMapErrorThrowing { error in
            warnings.warning("user-list not broadcast", metadata: ["reason": "\(error)"])
        }
    }

    private func broadcastUsage(_ namespace: Namespace, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        presence.modelsInUse().hop(to: eventLoop).map { models in
            namespace.emit("usage", [["models": .array(models.map(JSONValue.string))]])
        }.flatMapErrorThrowing { error in
            warnings.warning("usage not broadcast", metadata: ["reason": "\(error)"])
        }
    }

    static func token(in auth: JSONValue?) -> String? {
        guard let token = auth?["token"]?.stringValue, !token.isEmpty else { return nil }
        return token
    }
}

/// `{prefix}:direct_completion`: the pub/sub channel on which Open WebUI's `redis_event_listener` takes the chunks of
/// direct completions (streamed by the browser that runs the model) into the request waiting for them.
package struct DirectCompletionChannel: Sendable {
    let redis: RedisClient
    let name: String

    package init(redis: RedisClient, keyPrefix: String) {
        self.redis = redis
        self.name = "\(keyPrefix):direct_completion"
    }

    /// The message Python publishes: `{"channel": …, "data": …}`, with binary attachments as lists of byte
    /// values, as Open WebUI's JSON-only packets decode them.
    static func message(channel: String, data: JSONValue) -> String {
        JSONWriter.serialize(["channel": .string(channel), "data": data.replacingBinaryWithByteLists()])
    }

    func publish(channel: String, data: JSONValue) -> EventLoopFuture<Void> {
        redis.send("PUBLISH", name, Self.message(channel: channel, data: data)).flatMapThrowing { reply in
            _ = try reply.throwingServerError()
        }
    }
}

extension JSONValue {
    /// Each binary value as an array of its byte values.
    func replacingBinaryWithByteLists() -> JSONValue {
        switch self {
        case .binary(let bytes):
            return .array(bytes.readableBytesView.map { .number(String($0)) })
        case .array(let values):
            return .array(values.map { $0.replacingBinaryWithByteLists() })
        case .object(let members):
            return .object(members.map { (key: $0.key, value: $0.value.replacingBinaryWithByteLists()) })
        default:
            return self
        }
    }
}
