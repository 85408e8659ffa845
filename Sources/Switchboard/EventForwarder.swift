import EngineIO
import Logging
import NIOCore
import Redis
import SocketIO

/// A client event the node does not handle itself, on its way to the backend.
struct ForwardedEvent: Sendable {
    var event: String
    var args: [JSONValue]
    var sid: String
    var userID: String?
    var namespace: String
    var node: String
    var wantsAck: Bool

    /// `{"event", "args", "sid", "user_id", "namespace", "node"}`.
    var json: JSONValue {
        [
            "event": .string(event),
            "args": .array(args.map(Self.textOnly)),
            "sid": .string(sid),
            "user_id": userID.map(JSONValue.string) ?? .null,
            "namespace": .string(namespace),
            "node": .string(node),
        ]
    }

    /// JSON without binary: a binary argument becomes `{"base64": "…"}`.
    static func textOnly(_ value: JSONValue) -> JSONValue {
        switch value {
        case .binary(let bytes):
            var text = ByteBuffer()
            Base64.encode(bytes.readableBytesView, into: &text)
            return ["base64": .string(String(buffer: text))]
        case .array(let values):
            return .array(values.map(textOnly))
        case .object(let members):
            return .object(members.map { (key: $0.key, value: textOnly($0.value)) })
        default:
            return value
        }
    }
}

/// Hands unhandled client events to the backend: over HTTP (the answer can be the client's ack), to
/// a Redis stream, or nowhere (logged, and the client told). Nothing is dropped without a trace.
enum EventForwarder: Sendable {
    case http(BackendClient, path: String, apiKey: SecretBox)
    case redisStream(RedisClient, key: String, maxLength: Int)
    case none

    static let backendUnavailable: [JSONValue] = [["error": "backend unavailable"]]
    static let notHandled: [JSONValue] = [["error": "event not handled"]]

    /// Forwards `event`; the future is the ack arguments for the client (used only if it asked).
    /// It never fails: a failure is logged with its reason and answered with an error ack.
    func forward(_ event: ForwardedEvent, on eventLoop: EventLoop, logger: Logger) -> EventLoopFuture<[JSONValue]> {
        switch self {
        case .http(let backend, let path, let apiKey):
            var body = ByteBuffer()
            var writer = JSONWriter()
            writer.write(event.json, into: &body)
            return backend.postJSON(path, bearer: apiKey.value, body: body, on: eventLoop).map { answer -> [JSONValue] in
                guard let answer, answer.readableBytes > 0 else { return [] }
                guard let value = try? JSONParser.parse(answer) else { return [] }
                if case .array(let args) = value { return args }
                return [value]
            }.recover { error in
                logger.warning(
                    "event not forwarded",
                    metadata: ["reason": "\(error)", "event": "\(event.event)", "sid": "\(event.sid)"]
                )
                return Self.backendUnavailable
            }
        case .redisStream(let redis, let key, let maxLength):
            var fields: [any RESPArgument] = [key, "MAXLEN", "~", String(maxLength), "*"]
            fields += ["event", event.event, "args", JSONWriter.serialize(.array(event.args.map(ForwardedEvent.textOnly)))]
            fields += ["sid", event.sid, "user_id", event.userID ?? "", "namespace", event.namespace, "node", event.node]
            return redis.send(RESPCommand("XADD", arguments: fields)).flatMapThrowing { reply -> [JSONValue] in
                _ = try reply.throwingServerError()
                return []
            }.recover { error in
                logger.warning(
                    "event not forwarded",
                    metadata: ["reason": "redis: \(error)", "event": "\(event.event)", "sid": "\(event.sid)"]
                )
                return Self.backendUnavailable
            }.hop(to: eventLoop)
        case .none:
            logger.info(
                "event not handled",
                metadata: ["reason": "no forward target", "event": "\(event.event)", "sid": "\(event.sid)"]
            )
            return eventLoop.makeSucceededFuture(Self.notHandled)
        }
    }
}
