import EngineIO
import Logging
import NIOCore
import NIOEmbedded

/// One Engine.IO endpoint on an `EmbeddedChannel`, as a node's listener sets it up, fed with bytes.
enum EmbeddedEngine {
    static let upgradeRequest =
        "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n"
        + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

    private static let logger = Logger(label: "switchboard.fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Feeds `prefix` and then `input` (in pieces, as reads arrive), lets timers run out, and closes.
    /// Any answer is fine; a crash, a hang or a leak is not.
    static func run(prefix: [UInt8], input: UnsafeRawBufferPointer) {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let server = EngineServer(
            configuration: EngineConfiguration(maxPayload: 64 * 1024, maxOutboundBytes: 256 * 1024),
            application: EchoApplication(),
            logger: logger
        )
        let channel = EmbeddedChannel(loop: loop)
        do {
            try EnginePipeline.configure(channel: channel, router: EngineRouter(endpoints: [server]))
        } catch {
            preconditionFailure("the pipeline cannot be set up: \(error)")
        }
        _ = try? channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        if !prefix.isEmpty {
            feed(channel, ByteBuffer(bytes: prefix))
        }
        var rest = ByteBuffer(bytes: input)
        // The first byte chooses the read size, so frames and heads are split at every place.
        let pieceSize = rest.readInteger(as: UInt8.self).map { Int($0) * 4 + 1 } ?? 1
        while channel.isActive, rest.readableBytes > 0 {
            feed(channel, rest.readSlice(length: min(pieceSize, rest.readableBytes))!)
        }
        loop.advanceTime(by: .seconds(120))
        drain(channel)
        _ = try? channel.close().wait()
        loop.run()
    }

    private static func feed(_ channel: EmbeddedChannel, _ bytes: ByteBuffer) {
        do {
            try channel.writeInbound(bytes)
        } catch {
            // A refused input: the handlers answered and closed.
        }
        channel.embeddedEventLoop.run()
        drain(channel)
    }

    private static func drain(_ channel: EmbeddedChannel) {
        while (try? channel.readOutbound(as: IOData.self)) != nil {}
        while (try? channel.readOutbound(as: ByteBuffer.self)) != nil {}
    }
}

/// Echoes every message, as the conformance server does, so inputs reach the send paths too.
private final class EchoApplication: EngineApplication {
    func sessionOpened(_ session: EngineSession) {
        session.setDelegate(EchoDelegate())
    }
}

private final class EchoDelegate: EngineSessionDelegate {
    func engineSession(_ session: EngineSession, didReceive message: EngineMessage) {
        session.sendMessage(message)
    }

    func engineSessionDidClose(_ session: EngineSession, reason: DisconnectReason) {}
}
