import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// The application above Engine.IO (Socket.IO, or the conformance echo).
public protocol EngineApplication: Sendable {
    /// A session opened. Called on the session's event loop; install a delegate here.
    func sessionOpened(_ session: EngineSession)
}

/// One Engine.IO endpoint: its configuration, its sessions and the application they feed.
public final class EngineServer: Sendable {
    public let configuration: EngineConfiguration
    let application: EngineApplication
    let logger: Logger
    let metrics: EngineMetrics
    /// Sessions by id. Touched when a session opens or closes and by polling requests and
    /// upgrades — never per WebSocket message.
    private let sessions = NIOLockedValueBox<[String: EngineSession]>([:])
    /// Each loop's session timers, made on the first session there. Holding the loop keeps its
    /// identifier from being reused while the entry exists.
    private let loopTimers = NIOLockedValueBox<[ObjectIdentifier: LoopTimers]>([:])
    /// Handshake rates and open sessions per client address.
    let admission: AddressAdmission

    /// - Parameter metrics: the sessions' instruments; by default made from the bootstrapped factory.
    public init(
        configuration: EngineConfiguration,
        application: EngineApplication,
        logger: Logger,
        metrics: EngineMetrics = EngineMetrics()
    ) {
        self.configuration = configuration
        self.application = application
        self.logger = logger
        self.metrics = metrics
        self.admission = AddressAdmission(limits: configuration.limits)
    }

    /// The client's address for a new session's request, and the limit that refuses it, if one does
    /// (counted, and logged at debug: a flood must not flood the log too).
    func admitHandshake(head: HTTPRequestHead, peer: SocketAddress?) -> (
        address: String, refusal: (reason: HandshakeRefusal, retryAfter: TimeAmount)?
    ) {
        let limits = configuration.limits
        let address = ClientAddress.resolve(
            peer: peer,
            forwardedFor: limits.trustedProxies.isEmpty ? [] : head.headers["X-Forwarded-For"],
            trustedProxies: limits.trustedProxies
        )
        guard limits.limitsAddresses, let refusal = admission.admit(address, now: .now()) else { return (address, nil) }
        metrics.refusedHandshake(refusal.refusal)
        logger.debug(
            "handshake refused",
            metadata: ["reason": "\(refusal.refusal.rawValue)", "client": "\(address)"]
        )
        return (address, (refusal.refusal, refusal.retryAfter))
    }

    public var sessionCount: Int { sessions.withLockedValue { $0.count } }

    private let accepting = NIOLockedValueBox(true)

    /// Whether new sessions are opened; false once the node drains.
    public var acceptsSessions: Bool { accepting.withLockedValue { $0 } }

    /// Refuses new sessions from now on (503): existing ones carry on until closed.
    public func stopAcceptingSessions() {
        accepting.withLockedValue { $0 = false }
    }

    func session(id: String) -> EngineSession? {
        sessions.withLockedValue { $0[id] }
    }

    /// Opens a session on `eventLoop` (the caller is on it) and sends or returns its open packet.
    func openSession(
        on eventLoop: EventLoop,
        transport: EngineSession.Transport,
        handshake: EngineHandshakeInfo,
        frameWriter: WebSocketFrameWriter? = nil
    ) -> EngineSession {
        eventLoop.assertInEventLoop()
        let timers = loopTimers.withLockedValue { all in
            if let timers = all[ObjectIdentifier(eventLoop)] { return timers }
            let timers = LoopTimers(eventLoop: eventLoop)
            all[ObjectIdentifier(eventLoop)] = timers
            return timers
        }
        let session = EngineSession(
            id: SessionID.make(),
            eventLoop: eventLoop,
            configuration: configuration,
            transport: transport,
            handshake: handshake,
            timers: timers,
            frameWriter: frameWriter,
            logger: logger,
            metrics: metrics,
            onClose: { [weak self] session in
                self?.sessions.withLockedValue { _ = $0.removeValue(forKey: session.id) }
                self?.admission.closed(session.handshake.clientAddress)
            }
        )
        admission.opened(handshake.clientAddress)
        sessions.withLockedValue { $0[session.id] = session }
        return session
    }

    /// Every open session, for shutdown and introspection.
    public func allSessions() -> [EngineSession] {
        sessions.withLockedValue { Array($0.values) }
    }

    /// Closes every session on its own loop.
    public func closeAll(reason: DisconnectReason) {
        for session in allSessions() {
            session.eventLoop.execute { session.close(reason: reason) }
        }
    }

    /// Closes every session at a random moment within `window`, so that its clients reconnect
    /// spread over time (to other nodes, when this one drains) rather than all at once.
    /// Returns how many sessions were scheduled to close.
    @discardableResult
    public func closeAll(reason: DisconnectReason, spreadOver window: TimeAmount) -> Int {
        let sessions = allSessions()
        var generator = SystemRandomNumberGenerator()
        for session in sessions {
            let delay =
                window.nanoseconds > 0
                ? TimeAmount.nanoseconds(Int64.random(in: 0..<window.nanoseconds, using: &generator)) : .zero
            session.eventLoop.scheduleTask(in: delay) { session.close(reason: reason) }
        }
        return sessions.count
    }
}

/// Random identifiers in the base64url alphabet.
public enum SessionID {
    static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// 20 characters (120 random bits).
    public static func make(prefix: String = "", length: Int = 20) -> String {
        var generator = SystemRandomNumberGenerator()
        let randomCount = max(0, length - prefix.utf8.count)
        return prefix
            + String(
                unsafeUninitializedCapacity: randomCount,
                initializingUTF8With: { buffer in
                    var index = 0
                    while index < randomCount {
                        var word = generator.next()
                        for _ in 0..<10 where index < randomCount {
                            buffer[index] = alphabet[Int(word & 63)]
                            word >>= 6
                            index += 1
                        }
                    }
                    return randomCount
                }
            )
    }
}
