import Auth
import Cluster
import EngineIO
import NIOCore
import Redis
import SocketIO

/// The properties every decoder that reads bytes from a client, a peer node or Redis must keep, one
/// function per decoder. Each takes arbitrary bytes; a broken property stops the process (which is
/// what a fuzzer reports), a rejected input is fine. `Fuzz/` drives them with libFuzzer, and the
/// unit tests replay the corpus in `Fuzz/Corpus` through them.
public enum WireChecks {
    /// Every check by name: the names of the fuzz targets and of the corpus folders.
    public static let all: [(name: String, check: @Sendable (UnsafeRawBufferPointer) -> Void)] = [
        ("engineio-payload", engineIOPayload),
        ("socketio-packet", socketIOPacket),
        ("json", json),
        ("jwt", jwt),
        ("resp", resp),
        ("python-bridge", pythonBridge),
        ("cluster-message", clusterMessage),
        ("request-target", requestTarget),
        ("http-connection", httpConnection),
        ("websocket-frames", webSocketFrames),
    ]

    /// An HTTP long-polling payload (or one WebSocket text frame): decoded, encoded again and decoded
    /// again to the same packets.
    public static func engineIOPayload(_ bytes: UnsafeRawBufferPointer) {
        let buffer = ByteBuffer(bytes: bytes)
        _ = try? EnginePacketCodec.decodeText(buffer)
        guard let packets = try? EnginePacketCodec.decodePayload(buffer) else { return }
        let outbound: [EngineOutboundPacket] = packets.map { packet in
            switch packet {
            case .text(let type, var data):
                var text = ByteBuffer()
                text.writeInteger(type.rawValue)
                text.writeBuffer(&data)
                return .text(text)
            case .binary(let data):
                return .binary(data)
            }
        }
        var encoded = ByteBuffer()
        EnginePacketCodec.encodePayload(outbound, into: &encoded)
        guard let again = try? EnginePacketCodec.decodePayload(encoded) else {
            preconditionFailure("an encoded payload does not decode: \(String(buffer: encoded).debugDescription)")
        }
        precondition(again == packets, "payload round trip changed the packets")
    }

    /// A Socket.IO packet: decoded; one without attachments is encoded again and decodes to the same
    /// type, namespace, ack id and JSON payload.
    public static func socketIOPacket(_ bytes: UnsafeRawBufferPointer) {
        guard let packet = try? SocketIOPacketCodec.decode(ByteBuffer(bytes: bytes), maxAttachments: 10) else { return }
        guard packet.attachmentCount == 0, packet.type != .binaryEvent, packet.type != .binaryAck else { return }
        var payload: JSONValue?
        if let body = packet.payload, body.readableBytes > 0 {
            guard let parsed = try? JSONParser.parse(body) else { return }
            payload = parsed
        }
        // Only packets the layers above accept (socket.io-parser's `isPayloadValid`) must survive
        // encoding: a bare number after an EVENT's type would read as an ack id.
        guard isValidPayload(payload, for: packet.type) else { return }
        let encoded = SocketIOPacketCodec.encode(
            packet.type,
            namespace: packet.namespace,
            ackID: packet.ackID,
            payload: payload
        )
        // The encoded text starts with the Engine.IO message digit.
        var text = encoded.text
        text.moveReaderIndex(forwardBy: 1)
        let again: SocketIOPacket
        do {
            again = try SocketIOPacketCodec.decode(text, maxAttachments: 10)
        } catch {
            preconditionFailure("an encoded packet does not decode (\(error)): \(encoded.socketIOText.debugDescription)")
        }
        precondition(
            again.type == packet.type && again.namespace == packet.namespace && again.ackID == packet.ackID,
            "packet round trip changed the header: \(encoded.socketIOText.debugDescription)"
        )
        let againPayload = again.payload.flatMap { $0.readableBytes > 0 ? try? JSONParser.parse($0) : nil }
        precondition(againPayload == payload, "packet round trip changed the payload")
    }

    private static func isValidPayload(_ payload: JSONValue?, for type: SocketIOPacketType) -> Bool {
        switch (type, payload) {
        case (.connect, nil), (.connect, .object?), (.disconnect, nil): return true
        case (.connectError, .object?), (.connectError, .string?): return true
        case (.event, .array(let values)?): if case .string? = values.first { return true } else { return false }
        case (.ack, .array?): return true
        default: return false
        }
    }

    /// JSON as the Socket.IO layer reads it: parsed, written and parsed again to the same value.
    public static func json(_ bytes: UnsafeRawBufferPointer) {
        guard let value = try? JSONParser.parse(ByteBuffer(bytes: bytes)) else { return }
        var written = ByteBuffer()
        var writer = JSONWriter()
        writer.write(value, into: &written)
        guard let again = try? JSONParser.parse(written) else {
            preconditionFailure("written JSON does not parse: \(String(buffer: written).debugDescription)")
        }
        precondition(again == value, "JSON round trip changed the value")
    }

    private static let verifier: JWTVerifier = {
        do {
            return try JWTVerifier(configuration: .init(keys: [.hmac(secret: Array("fuzz-secret".utf8))]))
        } catch {
            preconditionFailure("the fuzz verifier cannot be built: \(error)")
        }
    }()

    /// A bearer token, a JWT's JSON and a JWKS document: verified or refused, never more.
    public static func jwt(_ bytes: UnsafeRawBufferPointer) {
        let text = String(decoding: bytes, as: UTF8.self)
        _ = try? verifier.verify(token: text, now: 1_700_000_000)
        _ = try? JWTJSON.parse(Array(bytes))
        _ = try? JWTKey.jwks(text)
    }

    /// Redis replies as hiredis reads them: the same replies (or the same error) whether the bytes
    /// arrive at once or in pieces (the first byte chooses the piece size).
    public static func resp(_ bytes: UnsafeRawBufferPointer) {
        guard let first = bytes.first else { return }
        let input = ByteBuffer(bytes: bytes.dropFirst())
        let whole = replies(of: input, pieceSize: max(input.readableBytes, 1))
        let pieces = replies(of: input, pieceSize: Int(first % 16) + 1)
        precondition(whole.values == pieces.values && whole.failed == pieces.failed, "RESP replies depend on how the bytes arrive")
    }

    private static func replies(of input: ByteBuffer, pieceSize: Int) -> (values: [RESPValue], failed: Bool) {
        let decoder = RESPDecoder()
        var values: [RESPValue] = []
        var input = input
        while input.readableBytes > 0 {
            let piece = input.readSlice(length: min(pieceSize, input.readableBytes))!
            do {
                try decoder.decode(piece) { values.append($0) }
            } catch {
                return (values, true)
            }
        }
        return (values, false)
    }

    /// A message on python-socketio's pub/sub channel, as Open WebUI's workers publish them.
    public static func pythonBridge(_ bytes: UnsafeRawBufferPointer) {
        _ = try? PythonBridgeMessage.decode(ByteBuffer(bytes: bytes))
    }

    /// A message between Switchboard nodes: decoded, encoded and decoded again to the same message.
    public static func clusterMessage(_ bytes: UnsafeRawBufferPointer) {
        guard let (origin, message) = try? ClusterMessage.decode(ByteBuffer(bytes: bytes)) else { return }
        let encoded = message.encoded(origin: origin)
        guard let (againOrigin, again) = try? ClusterMessage.decode(encoded) else {
            preconditionFailure("an encoded cluster message does not decode")
        }
        precondition(againOrigin == origin && again == message, "cluster message round trip changed it")
    }

    /// A request target (path and query) as the HTTP handler splits and percent-decodes it.
    public static func requestTarget(_ bytes: UnsafeRawBufferPointer) {
        let (path, _) = RequestTarget.parse(String(decoding: bytes, as: UTF8.self))
        precondition(!path.contains("?"), "the path kept a query")
    }

    /// Whatever a client sends on a fresh connection: HTTP requests (polling, handshakes, upgrades)
    /// into an Engine.IO endpoint that echoes messages.
    public static func httpConnection(_ bytes: UnsafeRawBufferPointer) {
        EmbeddedEngine.run(prefix: [], input: bytes)
    }

    /// WebSocket frames after a valid upgrade: fragments, masks, control frames, UTF-8, sizes.
    public static func webSocketFrames(_ bytes: UnsafeRawBufferPointer) {
        EmbeddedEngine.run(prefix: Array(EmbeddedEngine.upgradeRequest.utf8), input: bytes)
    }
}
