import NIOCore
import NIOHTTP1
import NIOPosix

/// A keep-alive HTTP/1.1 connection sending one request at a time from a queue, for the backend
/// API (`POST /api/v1/emit`, `POST /api/v1/call`). Confined to the bench's client event loop.
final class HTTPConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    typealias Completion = (_ status: Int, _ body: ByteBuffer?) -> Void

    let host: String
    let port: Int
    private var context: ChannelHandlerContext?
    private var queue: [(head: HTTPRequestHead, body: ByteBuffer?, completion: Completion)] = []
    private var inFlight: Completion?
    private var status = 0
    private var body: ByteBuffer?
    private(set) var closed = false

    var queued: Int { self.queue.count + (self.inFlight == nil ? 0 : 1) }

    private init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    static func connect(host: String, port: Int, on loop: any EventLoop) -> EventLoopFuture<HTTPConnection> {
        let connection = HTTPConnection(host: host, port: port)
        return ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .connect(host: host, port: port)
            .map { _ in connection }
    }

    /// One GET on a fresh connection; the status, or nil when nothing answered.
    static func get(host: String, port: Int, path: String) async throws -> Int? {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        guard let connection = try? await connect(host: host, port: port, on: loop).get() else { return nil }
        let promise = loop.makePromise(of: Int.self)
        loop.execute {
            connection.send(method: .GET, path: path, body: nil) { status, _ in promise.succeed(status) }
        }
        let status = try await promise.futureResult.get()
        loop.execute { connection.close() }
        return status
    }

    func send(method: HTTPMethod, path: String, authorization: String? = nil, body: ByteBuffer?, completion: @escaping Completion) {
        guard !self.closed else {
            completion(0, nil)
            return
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(self.host):\(self.port)")
        if let authorization { headers.add(name: "Authorization", value: authorization) }
        if let body {
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(body.readableBytes))
        }
        self.queue.append((HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers), body, completion))
        self.sendNext()
    }

    func close() { self.context?.close(promise: nil) }

    private func sendNext() {
        guard self.inFlight == nil, !self.queue.isEmpty, let context else { return }
        let request = self.queue.removeFirst()
        self.inFlight = request.completion
        context.write(self.wrapOutboundOut(.head(request.head)), promise: nil)
        if let body = request.body { context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.status = Int(head.status.code)
            self.body = nil
        case .body(var part):
            if self.body == nil { self.body = part } else { self.body!.writeBuffer(&part) }
        case .end:
            let completion = self.inFlight
            self.inFlight = nil
            completion?(self.status, self.body)
            self.sendNext()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.closed = true
        let pending = (self.inFlight.map { [$0] } ?? []) + self.queue.map(\.completion)
        self.inFlight = nil
        self.queue.removeAll()
        for completion in pending { completion(0, nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
