import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// A complete HTTP response for routes that are not Engine.IO.
public struct HTTPResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public init(status: HTTPResponseStatus, contentType: String, body: String) {
        self.init(status: status, headers: ["Content-Type": contentType], body: ByteBuffer(string: body))
    }
}

/// A request to a route that is not Engine.IO.
public struct HTTPRequest: Sendable {
    public var head: HTTPRequestHead
    public var path: Substring
    public var query: [String: String]
    public var body: ByteBuffer

    public init(head: HTTPRequestHead, path: Substring, query: [String: String], body: ByteBuffer) {
        self.head = head
        self.path = path
        self.query = query
        self.body = body
    }
}

/// Answers the requests that do not belong to an Engine.IO endpoint (health, metrics, APIs…).
public protocol HTTPResponder: Sendable {
    /// Largest request body accepted, in bytes.
    var maxBodySize: Int { get }
    func respond(to request: HTTPRequest, on eventLoop: EventLoop) -> EventLoopFuture<HTTPResponse>
}

/// Answers 404 for everything.
public struct NotFoundResponder: HTTPResponder {
    public init() {}
    public var maxBodySize: Int { 0 }
    public func respond(to request: HTTPRequest, on eventLoop: EventLoop) -> EventLoopFuture<HTTPResponse> {
        eventLoop.makeSucceededFuture(HTTPResponse(status: .notFound, contentType: "text/plain", body: "Not Found"))
    }
}

/// Routes requests to the Engine.IO endpoints by path, and everything else to `fallback`.
public struct EngineRouter: Sendable {
    public var endpoints: [EngineServer]
    public var fallback: HTTPResponder
    /// Close HTTP connections that send nothing for this long (half-open or stalled clients).
    public var idleTimeout: TimeAmount
    /// A request's head must be complete within this time of the connection opening or of the previous
    /// response: a client sending its headers a byte at a time (slow loris) never resets it, as it does the
    /// idle timeout. Default 20 s.
    public var requestHeadTimeout: TimeAmount

    public init(
        endpoints: [EngineServer],
        fallback: HTTPResponder = NotFoundResponder(),
        idleTimeout: TimeAmount? = nil,
        requestHeadTimeout: TimeAmount = .seconds(20)
    ) {
        self.endpoints = endpoints
        self.fallback = fallback
        self.requestHeadTimeout = requestHeadTimeout
        let longestPoll = endpoints.map { $0.configuration.pingInterval + $0.configuration.pingTimeout }.max() ?? .zero
        self.idleTimeout = idleTimeout ?? max(.seconds(60), longestPoll + .seconds(10))
    }

    func endpoint(for path: Substring) -> EngineServer? {
        for endpoint in endpoints {
            let endpointPath = endpoint.configuration.path
            if path == endpointPath || path + "/" == endpointPath { return endpoint }
        }
        return nil
    }
}

/// Splits a request target into its path and decoded query parameters.
package enum RequestTarget {
    package static func parse(_ uri: String) -> (path: Substring, query: [String: String]) {
        guard let questionMark = uri.firstIndex(of: "?") else { return (uri[...], [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: questionMark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = percentDecode(parts[0])
            // The first occurrence wins, as in most servers.
            if query[key] == nil {
                query[key] = parts.count > 1 ? percentDecode(parts[1]) : ""
            }
        }
        return (uri[..<questionMark], query)
    }

    static func percentDecode(_ text: Substring) -> String {
        guard text.contains(where: { $0 == "%" || $0 == "+" }) else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The HTTP side of an Engine.IO server: handshakes and long-polling for the endpoints, CORS, the
/// protocol's error answers, and a hand-off of other paths to the router's fallback.
final class EngineHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        /// Collecting a POST body for a session.
        case collectingPayload(HTTPRequestHead, EngineServer, EngineSession, ByteBuffer)
        /// Collecting a request for the fallback responder.
        case collectingOther(HTTPRequestHead, ByteBuffer)
        /// Answered early (error); the rest of the request is ignored.
        case discarding
        /// The response comes asynchronously.
        case waiting
    }

    private let router: EngineRouter
    private var state = State.idle
    /// A poll parked at a session, so it can be withdrawn if this connection closes.
    private var parkedPoll: (EngineSession, EventLoopFuture<ByteBuffer>)?
    private var keepAlive = true
    /// A WebSocket handshake the upgrader refused under a per-address limit, answered here.
    private var refusedUpgrade: (reason: HandshakeRefusal, retryAfter: TimeAmount)?
    /// Closes the connection if the next request's head is not complete in time.
    private var headDeadline: Scheduled<Void>?

    init(router: EngineRouter) {
        self.router = router
    }

    /// Called by the upgrader on this channel's loop, before the request's head reaches this handler.
    func refuseUpgrade(_ reason: HandshakeRefusal, retryAfter: TimeAmount) {
        refusedUpgrade = (reason, retryAfter)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { armHeadDeadline(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        armHeadDeadline(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        headDeadline?.cancel()
        headDeadline = nil
    }

    private func armHeadDeadline(context: ChannelHandlerContext) {
        headDeadline?.cancel()
        let timeout = router.requestHeadTimeout
        headDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            headDeadline = nil
            guard parkedPoll == nil else { return }
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            headDeadline?.cancel()
            headDeadline = nil
            keepAlive = head.isKeepAlive
            receiveHead(head, context: context)
        case .body(var chunk):
            switch state {
            case .collectingPayload(let head, let endpoint, let session, var body):
                state = .waiting
                if body.readableBytes + chunk.readableBytes > endpoint.configuration.maxPayload {
                    tooLarge(session: session, endpoint: endpoint, head: head, context: context)
                    return
                }
                body.writeBuffer(&chunk)
                state = .collectingPayload(head, endpoint, session, body)
            case .collectingOther(let head, var body):
                state = .waiting
                if body.readableBytes + chunk.readableBytes > router.fallback.maxBodySize {
                    return bodyTooLarge(context: context)
                }
                body.writeBuffer(&chunk)
                state = .collectingOther(head, body)
            case .idle, .discarding, .waiting:
                break
            }
        case .end:
            switch state {
            case .collectingPayload(let head, let endpoint, let session, let body):
                state = .waiting
                deliverPayload(body, to: session, endpoint: endpoint, head: head, context: context)
            case .collectingOther(let head, let body):
                state = .waiting
                respondWithFallback(head: head, body: body, context: context)
            case .discarding:
                state = .idle
            case .idle, .waiting:
                break
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        headDeadline?.cancel()
        headDeadline = nil
        if let (session, future) = parkedPoll {
            parkedPoll = nil
            session.eventLoop.execute { session.pollAborted(future) }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A refused WebSocket upgrade is answered as a plain request with the protocol's error.
        if error is NIOWebSocketUpgradeError { return }
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            // A poll parked at a session is answered within pingInterval; anything quieter is stalled.
            if parkedPoll == nil {
                context.close(promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: Routing

    private func receiveHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let (path, query) = RequestTarget.parse(head.uri)
        guard let endpoint = router.endpoint(for: path) else {
            // A declared length over the limit is refused at once, not after reading up to the limit.
            if Self.declaredLength(head) > router.fallback.maxBodySize {
                return bodyTooLarge(context: context)
            }
            state = .collectingOther(head, ByteBuffer())
            return
        }
        let cors = corsHeaders(for: head, endpoint: endpoint)
        if head.method == .OPTIONS {
            state = .discarding
            var headers = cors
            headers.add(name: "Access-Control-Allow-Methods", value: "GET, POST, OPTIONS")
            if let requested = head.headers.first(name: "Access-Control-Request-Headers") {
                headers.add(name: "Access-Control-Allow-Headers", value: requested)
            }
            headers.add(name: "Access-Control-Max-Age", value: "86400")
            respond(status: .noContent, headers: headers, body: ByteBuffer(), context: context)
            return
        }
        state = .discarding
        guard endpoint.configuration.cors.admits(origins: head.headers["Origin"]) else {
            return fail(.originNotAllowed, cors: cors, context: context)
        }
        guard query["EIO"] == "4" else {
            return fail(.unsupportedProtocolVersion, cors: cors, context: context)
        }
        let configuration = endpoint.configuration
        let transport: EngineTransports
        switch query["transport"] {
        case "polling" where configuration.transports.contains(.polling): transport = .polling
        case "websocket" where configuration.transports.contains(.websocket): transport = .websocket
        default: return fail(.unknownTransport, cors: cors, context: context)
        }
        guard let sid = query["sid"] else {
            guard head.method == .GET else { return fail(.badHandshakeMethod, cors: cors, context: context) }
            guard endpoint.acceptsSessions else { return fail(.shuttingDown, cors: cors, context: context) }
            if let refused = refusedUpgrade {
                refusedUpgrade = nil
                return refuse(refused.reason, retryAfter: refused.retryAfter, cors: cors, context: context)
            }
            // A WebSocket handshake that reached this handler was not a valid upgrade request.
            guard transport == .polling else { return fail(.badRequest, cors: cors, context: context) }
            let admission = endpoint.admitHandshake(head: head, peer: context.channel.remoteAddress)
            if let refused = admission.refusal {
                return refuse(refused.reason, retryAfter: refused.retryAfter, cors: cors, context: context)
            }
            return openPollingSession(
                endpoint: endpoint,
                head: head,
                query: query,
                clientAddress: admission.address,
                cors: cors,
                context: context
            )
        }
        guard let session = endpoint.session(id: sid) else {
            return fail(.unknownSession, cors: cors, context: context)
        }
        guard transport == .polling else { return fail(.badRequest, cors: cors, context: context) }
        switch head.method {
        case .GET:
            state = .waiting
            poll(session, cors: cors, context: context)
        case .POST:
            guard Self.declaredLength(head) <= endpoint.configuration.maxPayload else {
                return tooLarge(session: session, endpoint: endpoint, head: head, context: context)
            }
            state = .collectingPayload(head, endpoint, session, ByteBuffer())
        default:
            fail(.badRequest, cors: cors, context: context)
        }
    }

    private func openPollingSession(
        endpoint: EngineServer,
        head: HTTPRequestHead,
        query: [String: String],
        clientAddress: String,
        cors: HTTPHeaders,
        context: ChannelHandlerContext
    ) {
        let handshake = EngineHandshakeInfo(
            query: query,
            headers: HTTPHeadersSnapshot(head.headers),
            remoteAddress: context.channel.remoteAddress,
            clientAddress: clientAddress
        )
        let session = endpoint.openSession(on: context.eventLoop, transport: .polling, handshake: handshake)
        var body = ByteBuffer()
        EnginePacketCodec.encodePayload(CollectionOfOne(session.openPacket()), into: &body)
        endpoint.application.sessionOpened(session)
        session.start()
        respondPolling(body: body, metrics: endpoint.metrics, cors: cors, context: context)
    }

    private func poll(_ session: EngineSession, cors: HTTPHeaders, context: ChannelHandlerContext) {
        let promise = context.eventLoop.makePromise(of: ByteBuffer.self)
        parkedPoll = (session, promise.futureResult)
        promise.futureResult.assumeIsolated().whenComplete { result in
            self.parkedPoll = nil
            switch result {
            case .success(let body):
                self.respondPolling(body: body, metrics: session.metrics, cors: cors, context: context)
            case .failure(let error):
                self.fail(error as? EngineHTTPError ?? .badRequest, cors: cors, context: context)
            }
        }
        if session.eventLoop.inEventLoop {
            session.poll(promise)
        } else {
            session.eventLoop.execute { session.poll(promise) }
        }
    }

    private func deliverPayload(
        _ body: ByteBuffer,
        to session: EngineSession,
        endpoint: EngineServer,
        head: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        let cors = corsHeaders(for: head, endpoint: endpoint)
        let result = session.eventLoop.submit { () -> EngineHTTPError? in
            do throws(EngineHTTPError) {
                try session.receivePollPayload(body)
                return nil
            } catch {
                return error
            }
        }
        result.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(.none):
                var headers = cors
                headers.add(name: "Content-Type", value: "text/html")
                self.respond(status: .ok, headers: headers, body: ByteBuffer(string: "ok"), context: context)
            case .success(.some(let error)):
                self.fail(error, cors: cors, context: context)
            case .failure:
                self.fail(.badRequest, cors: cors, context: context)
            }
        }
    }

    /// The body length a request's `Content-Length` announces (0 without one: chunked bodies are counted as
    /// they come).
    private static func declaredLength(_ head: HTTPRequestHead) -> Int {
        // The HTTP parser has checked it is digits: one that does not fit in an Int is too large.
        guard let value = head.headers.first(name: "Content-Length") else { return 0 }
        return Int(value) ?? .max
    }

    private func bodyTooLarge(context: ChannelHandlerContext) {
        keepAlive = false
        state = .discarding
        // The fallback serves JSON APIs: say why in their format.
        respond(
            status: .payloadTooLarge,
            headers: ["Content-Type": "application/json"],
            body: ByteBuffer(string: #"{"error":"request body too large"}"#),
            context: context
        )
    }

    private func tooLarge(
        session: EngineSession,
        endpoint: EngineServer,
        head: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        state = .discarding
        keepAlive = false
        session.eventLoop.execute { session.close(reason: .payloadTooLarge) }
        fail(.payloadTooLarge, cors: corsHeaders(for: head, endpoint: endpoint), context: context)
    }

    private func respondWithFallback(head: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {
        let (path, query) = RequestTarget.parse(head.uri)
        let request = HTTPRequest(head: head, path: path, query: query, body: body)
        router.fallback.respond(to: request, on: context.eventLoop)
            .hop(to: context.eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let response):
                    self.respond(
                        status: response.status,
                        headers: response.headers,
                        body: response.body,
                        context: context
                    )
                case .failure:
                    self.respond(
                        status: .internalServerError,
                        headers: ["Content-Type": "text/plain"],
                        body: ByteBuffer(string: "Internal Server Error"),
                        context: context
                    )
                }
            }
    }

    // MARK: Responses

    private func corsHeaders(for head: HTTPRequestHead, endpoint: EngineServer) -> HTTPHeaders {
        let origins = head.headers["Origin"]
        let origin = origins.first(where: { endpoint.configuration.cors.admits(origins: [$0]) }) ?? origins.first
        guard let allowed = endpoint.configuration.cors.allowedOrigin(for: origin) else { return [:] }
        var headers: HTTPHeaders = ["Access-Control-Allow-Origin": allowed]
        if origin != nil {
            headers.add(name: "Access-Control-Allow-Credentials", value: "true")
            headers.add(name: "Vary", value: "Origin")
        }
        return headers
    }

    private func respondPolling(
        body: ByteBuffer,
        metrics: EngineMetrics,
        cors: HTTPHeaders,
        context: ChannelHandlerContext
    ) {
        metrics.polling.sentBytes.increment(by: body.readableBytes)
        var headers = cors
        headers.add(name: "Content-Type", value: "text/plain; charset=UTF-8")
        headers.add(name: "Cache-Control", value: "no-store")
        respond(status: .ok, headers: headers, body: body, context: context)
    }

    /// 429 with `Retry-After`: the stock clients treat it as a failed attempt and retry after their backoff.
    private func refuse(
        _ reason: HandshakeRefusal,
        retryAfter: TimeAmount,
        cors: HTTPHeaders,
        context: ChannelHandlerContext
    ) {
        var headers = cors
        headers.add(name: "Retry-After", value: String(max(1, (retryAfter.nanoseconds + 999_999_999) / 1_000_000_000)))
        fail(reason.error, cors: headers, context: context)
    }

    private func fail(_ error: EngineHTTPError, cors: HTTPHeaders, context: ChannelHandlerContext) {
        var headers = cors
        headers.add(name: "Content-Type", value: "application/json")
        respond(status: error.status, headers: headers, body: ByteBuffer(string: error.body), context: context)
    }

    private func respond(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer, context: ChannelHandlerContext) {
        if case .waiting = state { state = .idle }
        var headers = headers
        headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            // Output first, as for a WebSocket (EngineSession.closeWebSocket): a client still sending a body
            // the node refused would otherwise get a reset in place of the answer that says why.
            done.assumeIsolated().whenComplete { _ in
                context.close(mode: .output).assumeIsolated().whenComplete { result in
                    guard case .success = result else { return context.close(promise: nil) }
                    context.eventLoop.assumeIsolated().scheduleTask(in: EngineSession.closeLinger) {
                        context.close(promise: nil)
                    }
                }
            }
        } else {
            armHeadDeadline(context: context)
        }
    }
}

@available(*, unavailable)
extension EngineHTTPHandler: Sendable {}

extension HTTPHeadersSnapshot {
    init(_ headers: HTTPHeaders) {
        self.init(
            origin: headers.first(name: "Origin"),
            authorization: headers.first(name: "Authorization"),
            cookie: headers.first(name: "Cookie"),
            userAgent: headers.first(name: "User-Agent")
        )
    }
}
