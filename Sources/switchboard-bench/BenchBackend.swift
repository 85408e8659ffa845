import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The backend both relays call with a user's token, served by the bench itself so that it is never
/// the bottleneck: the same answers as the baseline's `fake_backend.py` —
/// `GET /api/v1/auths/` → `{"id","name","role"}`, `GET /api/v1/channels/` → `[{"id":"c<n % channels>"}]`
/// for user `u<n>` — at NIO speed. Tokens are verified by the relay under test before it asks. Every answered
/// call is logged (path, user, when) for the scenarios that count what reaches the backend.
final class BenchBackend: Sendable {
    enum Path: UInt8, Sendable { case user, channels }

    struct Call: Sendable {
        var path: Path
        var user: Int
        /// `monotonicNanoseconds()` when answered.
        var at: UInt64
    }

    let channel: any Channel
    let log: NIOLockedValueBox<[Call]>
    var port: Int { self.channel.localAddress?.port ?? 0 }

    private init(channel: any Channel, log: NIOLockedValueBox<[Call]>) {
        self.channel = channel
        self.log = log
    }

    /// The calls answered since the last `takeLog()`.
    func takeLog() -> [Call] { self.log.withLockedValue { log in defer { log.removeAll() }; return log } }

    static func start(group: any EventLoopGroup, channels: Int, port: Int = 0) async throws -> BenchBackend {
        let log = NIOLockedValueBox<[Call]>([])
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(channels: channels, log: log))
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
        return BenchBackend(channel: channel, log: log)
    }

    func stop() async { try? await self.channel.close() }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let channels: Int
        let log: NIOLockedValueBox<[Call]>
        var head: HTTPRequestHead?

        init(channels: Int, log: NIOLockedValueBox<[Call]>) {
            self.channels = channels
            self.log = log
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head(let head): self.head = head
            case .body: break
            case .end:
                guard let head = self.head else { return }
                self.head = nil
                let (status, body) = self.answer(head)
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: String(body.utf8.count))
                context.write(
                    self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
                    promise: nil
                )
                context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            }
        }

        private func answer(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String) {
            let token = head.headers.first(name: "Authorization").map { $0.dropFirst("Bearer ".count) } ?? ""
            guard let user = TokenMinter.userID(of: token) else { return (.unauthorized, #"{"detail":"invalid token"}"#) }
            let path = head.uri.split(separator: "?").first.map { $0.hasSuffix("/") ? $0.dropLast() : $0 } ?? ""
            let number = Int(user.reversed().prefix(while: \.isNumber).reversed().map(String.init).joined()) ?? 0
            switch path {
            case "/api/v1/auths":
                self.record(.user, number)
                return (.ok, #"{"id":"\#(user)","name":"\#(user)","role":"user"}"#)
            case "/api/v1/channels":
                self.record(.channels, number)
                return (.ok, #"[{"id":"c\#(number % self.channels)"}]"#)
            default:
                return (.notFound, #"{"detail":"not found"}"#)
            }
        }

        private func record(_ path: Path, _ user: Int) {
            let call = Call(path: path, user: user, at: monotonicNanoseconds())
            self.log.withLockedValue { $0.append(call) }
        }
    }
}
