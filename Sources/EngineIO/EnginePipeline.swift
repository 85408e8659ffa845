import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Sets up an accepted connection: HTTP/1.1 with Engine.IO routing, and the WebSocket upgrade.
public enum EnginePipeline {
    /// Call on the channel's event loop (e.g. from a `childChannelInitializer`).
    public static func configure(channel: Channel, router: EngineRouter) throws {
        let httpHandler = EngineHTTPHandler(router: router)
        let idleHandler = IdleStateHandler(readTimeout: router.idleTimeout)
        let maxFrame = router.endpoints.map(\.configuration.maxPayload).max() ?? 1_000_000
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: max(maxFrame, 1 << 14),
            // Frame errors reach the session's handler, which logs the reason and sends the close code.
            automaticErrorHandling: false,
            shouldUpgrade: { channel, head in
                shouldUpgrade(channel: channel, head: head, router: router)
            },
            upgradePipelineHandler: { channel, head in
                upgradePipeline(channel: channel, head: head, router: router)
            }
        )
        let handlers = NIOLoopBound((httpHandler, idleHandler), eventLoop: channel.eventLoop)
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(idleHandler)
        try sync.configureHTTPServerPipeline(
            withPipeliningAssistance: true,
            withServerUpgrade: (
                upgraders: [upgrader],
                completionHandler: { context in
                    let (http, idle) = handlers.value
                    context.pipeline.syncOperations.removeHandler(http, promise: nil)
                    context.pipeline.syncOperations.removeHandler(idle, promise: nil)
                }
            ),
            withErrorHandling: true
        )
        try sync.addHandler(httpHandler)
    }

    static func shouldUpgrade(channel: Channel, head: HTTPRequestHead, router: EngineRouter) -> EventLoopFuture<
        HTTPHeaders?
    > {
        let (path, query) = RequestTarget.parse(head.uri)
        guard let endpoint = router.endpoint(for: path),
            endpoint.configuration.transports.contains(.websocket),
            query["EIO"] == "4", query["transport"] == "websocket",
            endpoint.configuration.cors.admits(origins: head.headers["Origin"])
        else {
            // Not ours to upgrade: the HTTP handler answers with the protocol's error.
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        guard let sid = query["sid"] else {
            // While draining, the HTTP handler answers 503 instead of upgrading.
            guard endpoint.acceptsSessions else { return channel.eventLoop.makeSucceededFuture(nil) }
            if let refused = endpoint.admitHandshake(head: head, peer: channel.remoteAddress).refusal {
                // Answered by the HTTP handler, which gets the request next, with a 429 rather than an upgrade.
                let http = try? channel.pipeline.syncOperations.handler(type: EngineHTTPHandler.self)
                http?.refuseUpgrade(refused.reason, retryAfter: refused.retryAfter)
                return channel.eventLoop.makeSucceededFuture(nil)
            }
            return channel.eventLoop.makeSucceededFuture(HTTPHeaders())
        }
        guard let session = endpoint.session(id: sid) else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        return session.eventLoop.submit { session.admitsWebSocketRequest() ? HTTPHeaders() : nil }
            .hop(to: channel.eventLoop)
    }

    static func upgradePipeline(
        channel: Channel,
        head: HTTPRequestHead,
        router: EngineRouter
    ) -> EventLoopFuture<Void> {
        let (path, query) = RequestTarget.parse(head.uri)
        guard let endpoint = router.endpoint(for: path) else {
            return channel.eventLoop.makeFailedFuture(EngineHTTPError.badRequest)
        }
        let configuration = endpoint.configuration
        channel.setOption(
            ChannelOptions.writeBufferWaterMark,
            value: .init(low: configuration.maxOutboundBytes / 2, high: configuration.maxOutboundBytes)
        ).whenFailure { _ in }
        let frameWriter = WebSocketFrameWriter(eventLoop: channel.eventLoop)
        do {
            // At the head end, below the frame encoder: broadcasts write frames framed once.
            try channel.pipeline.syncOperations.addHandler(frameWriter, position: .first)
            try channel.pipeline.syncOperations.addHandler(WebSocketMaskCheck())
            try channel.pipeline.syncOperations.addHandler(
                NIOWebSocketFrameAggregator(
                    minNonFinalFragmentSize: 0,
                    maxAccumulatedFrameCount: 1024,
                    maxAccumulatedFrameSize: configuration.maxPayload
                )
            )
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }

        if let sid = query["sid"] {
            guard let session = endpoint.session(id: sid) else {
                return channel.close()
            }
            return session.eventLoop.submit { session.attachProbe(channel, frameWriter: frameWriter) }
                .hop(to: channel.eventLoop)
                .flatMapThrowing { accepted in
                    guard accepted else {
                        // Upgraded already, or another probe is running: closed as the reference
                        // server closes it, with a close frame that carries no status.
                        EngineSession.closeWebSocket(channel, code: nil)
                        return
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        EngineWebSocketHandler(session: session, role: .probe)
                    )
                }
        }

        let trustedProxies = configuration.limits.trustedProxies
        let handshake = EngineHandshakeInfo(
            query: query,
            headers: HTTPHeadersSnapshot(head.headers),
            remoteAddress: channel.remoteAddress,
            clientAddress: ClientAddress.resolve(
                peer: channel.remoteAddress,
                forwardedFor: trustedProxies.isEmpty ? [] : head.headers["X-Forwarded-For"],
                trustedProxies: trustedProxies
            )
        )
        let session = endpoint.openSession(
            on: channel.eventLoop,
            transport: .websocket(channel),
            handshake: handshake,
            frameWriter: frameWriter
        )
        do {
            try channel.pipeline.syncOperations.addHandler(EngineWebSocketHandler(session: session, role: .transport))
        } catch {
            session.close(reason: .transportError)
            return channel.eventLoop.makeFailedFuture(error)
        }
        session.send(session.openPacket())
        endpoint.application.sessionOpened(session)
        session.start()
        return channel.eventLoop.makeSucceededVoidFuture()
    }
}
