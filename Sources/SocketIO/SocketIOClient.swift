import EngineIO
import Logging
import NIOCore

/// The Socket.IO side of one Engine.IO session: namespaces multiplexed on it, binary
/// attachment reassembly, and the connect timeout.
final class SocketIOClient: EngineSessionDelegate {
    let server: SocketIOServer
    let session: EngineSession
    /// Sockets by namespace name.
    private var sockets: [String: Socket] = [:]
    /// A binary packet waiting for its attachments.
    private var partial: (packet: SocketIOPacket, attachments: [ByteBuffer])?
    private var connectTimer: LoopTimers.Timer?

    init(server: SocketIOServer, session: EngineSession) {
        self.server = server
        self.session = session
    }

    func start() {
        // Held strongly until a namespace connects or the session closes (no weak reference: see
        // `EngineSession.armHeartbeat`).
        connectTimer = session.timers.schedule(in: server.configuration.connectTimeout) { [self] in
            guard self.sockets.isEmpty else { return }
            self.session.close(reason: .connectTimeout, detail: "no namespace connected")
        }
    }

    // MARK: EngineSessionDelegate

    func engineSession(_ session: EngineSession, didReceive message: EngineMessage) {
        switch message {
        case .text(let text):
            guard partial == nil else {
                return protocolViolation("text packet while awaiting binary attachments")
            }
            let packet: SocketIOPacket
            do {
                packet = try SocketIOPacketCodec.decode(text, maxAttachments: server.configuration.maxAttachments)
            } catch {
                return protocolViolation(error.description)
            }
            if packet.attachmentCount > 0 {
                partial = (packet, [])
            } else {
                handle(packet, attachments: [])
            }
        case .binary(let bytes):
            guard var pending = partial else {
                return protocolViolation("unexpected binary message")
            }
            pending.attachments.append(bytes)
            if pending.attachments.count == pending.packet.attachmentCount {
                partial = nil
                handle(pending.packet, attachments: pending.attachments)
            } else {
                partial = pending
            }
        }
    }

    func engineSessionDidClose(_ session: EngineSession, reason: DisconnectReason) {
        connectTimer?.cancel()
        connectTimer = nil
        partial = nil
        let sockets = self.sockets
        self.sockets.removeAll()
        for socket in sockets.values {
            socket.teardown(reason: reason)
        }
    }

    // MARK: Packets

    private func protocolViolation(_ detail: String) {
        session.close(reason: .invalidPacket, detail: detail)
    }

    private func handle(_ packet: SocketIOPacket, attachments: [ByteBuffer]) {
        switch packet.type {
        case .connect:
            connect(packet)
        case .disconnect:
            guard let socket = sockets[packet.namespace] else {
                return protocolViolation("disconnect from a namespace not joined")
            }
            removeSocket(socket, reason: .clientClose)
        case .event, .binaryEvent, .ack, .binaryAck:
            guard let socket = sockets[packet.namespace] else {
                return protocolViolation("packet for a namespace not joined")
            }
            let inbound = InboundPacket(packet: packet, attachments: attachments)
            switch socket.state {
            case .connecting(var buffered):
                // Held until the connect handler decides.
                guard buffered.count < server.configuration.maxPendingPackets else {
                    return protocolViolation("too many packets before the namespace connected")
                }
                buffered.append(inbound)
                socket.state = .connecting(buffered: buffered)
            case .connected:
                dispatch(inbound, to: socket)
            case .disconnected:
                break
            }
        case .connectError:
            protocolViolation("CONNECT_ERROR from a client")
        }
    }

    private func dispatch(_ inbound: InboundPacket, to socket: Socket) {
        let packet = inbound.packet
        guard let payload = packet.payload else {
            return protocolViolation("missing payload")
        }
        var value: JSONValue
        do {
            value = try JSONParser.parse(payload, maxDepth: server.configuration.maxJSONDepth)
            if !inbound.attachments.isEmpty {
                value = try SocketIOPacketCodec.reconstruct(value, attachments: inbound.attachments)
            }
        } catch let error as JSONError {
            return protocolViolation("invalid JSON: \(error)")
        } catch {
            return protocolViolation("\(error)")
        }
        guard case .array(var args) = value else {
            return protocolViolation("payload is not an array")
        }
        switch packet.type {
        case .event, .binaryEvent:
            guard case .string(let event) = args.first, !Self.reservedEvents.contains(event) else {
                return protocolViolation("invalid event name")
            }
            args.removeFirst()
            socket.namespace.metrics.eventsReceived.increment()
            let ack = packet.ackID.map { AckResponder(socket: socket, id: $0) }
            let handlers = socket.namespace.handlers
            if let handler = handlers.events[event] {
                handler(socket, args, ack)
            } else if let unhandled = handlers.unhandled {
                unhandled(socket, event, args, ack)
            } else {
                session.logger.debug("no handler for event", metadata: ["event": "\(event)"])
            }
        case .ack, .binaryAck:
            socket.receiveAck(id: packet.ackID!, args: args)
        case .connect, .disconnect, .connectError:
            break
        }
    }

    static let reservedEvents: Set<String> = [
        "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
    ]

    private func connect(_ packet: SocketIOPacket) {
        guard let namespace = server.namespace(packet.namespace) else {
            let refusal = SocketIOPacketCodec.encode(
                .connectError,
                namespace: packet.namespace,
                payload: ["message": "Invalid namespace"]
            )
            session.send(.text(refusal.text))
            return
        }
        guard sockets[packet.namespace] == nil else {
            return protocolViolation("namespace already connected")
        }
        let auth: JSONValue?
        if let payload = packet.payload {
            guard let parsed = try? JSONParser.parse(payload, maxDepth: server.configuration.maxJSONDepth),
                parsed.isObject
            else {
                return protocolViolation("CONNECT payload is not an object")
            }
            auth = parsed
        } else {
            auth = nil
        }
        let socket = Socket(
            id: SessionID.make(prefix: server.configuration.sidPrefix),
            namespace: namespace,
            client: self
        )
        sockets[packet.namespace] = socket
        guard let authorize = namespace.handlers.authorize else {
            return accept(socket, auth: auth)
        }
        authorize(socket, auth).hop(to: session.eventLoop).assumeIsolated().whenComplete { result in
            guard case .connecting = socket.state, self.sockets[namespace.name] === socket else { return }
            switch result {
            case .success:
                self.accept(socket, auth: auth)
            case .failure(let error as ConnectionDeferred):
                self.sockets[namespace.name] = nil
                socket.state = .disconnected
                self.session.close(reason: error.reason, detail: error.detail)
            case .failure(let error):
                self.sockets[namespace.name] = nil
                socket.state = .disconnected
                let refusal = (error as? ConnectionRefused) ?? ConnectionRefused(message: "Not authorized")
                let packet = SocketIOPacketCodec.encode(
                    .connectError,
                    namespace: namespace.name,
                    payload: refusal.payload
                )
                self.session.send(.text(packet.text))
            }
        }
    }

    private func accept(_ socket: Socket, auth: JSONValue?) {
        guard case .connecting(let buffered) = socket.state else { return }
        socket.state = .connected
        connectTimer?.cancel()
        connectTimer = nil
        socket.namespace.sockets.increment()
        socket.namespace.adapter.socketConnected(socket)
        socket.write(
            SocketIOPacketCodec.encode(.connect, namespace: socket.namespace.name, payload: ["sid": .string(socket.id)])
        )
        socket.namespace.handlers.connected?(socket, auth)
        for packet in buffered where socket.isConnected {
            dispatch(packet, to: socket)
        }
    }

    func removeSocket(_ socket: Socket, reason: DisconnectReason) {
        guard sockets[socket.namespace.name] === socket else { return }
        sockets[socket.namespace.name] = nil
        socket.teardown(reason: reason)
    }
}
