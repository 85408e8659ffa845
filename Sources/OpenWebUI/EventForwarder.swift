import CoreMetrics
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
    /// The token the socket authenticated with, so that the receiver makes Open WebUI's own checks with it
    /// (sent only over HTTP, never logged). Nil for an anonymous socket.
    var token: String? = nil
    /// The sender's rooms when the event left the node: the receiver's answer to "is this socket in room X".
    var rooms: [String] = []

    /// `{"event", "args", "sid", "user_id", "namespace", "node", "rooms"[, "token"]}`.
    var json: JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            (key: "event", value: .string(event)),
            (key: "args", value: .array(args.map(Self.textOnly))),
            (key: "sid", value: .string(sid)),
            (key: "user_id", value: userID.map(JSONValue.string) ?? .null),
            (key: "namespace", value: .string(namespace)),
            (key: "node", value: .string(node)),
            (key: "rooms", value: .array(rooms.map(JSONValue.string))),
        ]
        if let token { members.append((key: "token", value: .string(token))) }
        return .object(members)
    }

    /// What the event belongs to, for the metrics: Open WebUI's event families that need its database, else `other`.
    var family: String {
        if event.hasPrefix("ydoc:") { return "ydoc" }
        if event.hasPrefix("encryption:") { return "encryption" }
        if event == "events:chat" || event == "events:channel" {
            return args.first?["data"]?["type"]?.stringValue == "last_read_at" ? "last_read_at" : "other"
        }
        return event == "disconnect" ? "disconnect" : "other"
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
package enum EventForwarder: Sendable {
    /// `forwardsDisconnects`: the receiver also hears when a socket that sent it events disconnects (the Open WebUI
    /// companion cleans up its document and encryption state then, as Open WebUI's own disconnect handler does).
    case http(BackendClient, path: String, apiKey: SecretBox, forwardsDisconnects: Bool)
    case redisStream(RedisClient, key: String, maxLength: Int)
    case none

    static let backendUnavailable: [JSONValue] = [["error": "backend unavailable"]]
    static let notHandled: [JSONValue] = [["error": "event not handled"]]
    /// A forwarded answer is an ack for the client; Open WebUI's can hold a whole document state (a 2 MiB note is
    /// about 8 MB of JSON), so the bound is the client's own payload limit rather than the backend's usual 1 MiB.
    static let maxAnswerBytes = 32 << 20
    static let families = ["ydoc", "encryption", "last_read_at", "disconnect", "other"]
    /// `reason`: `no_target` (nothing configured to receive it) or `target_unavailable` (the receiver failed).
    private static let notHandledCounters: [String: [String: Counter]] = Dictionary(
        uniqueKeysWithValues: families.map { family in
            let byReason = ["no_target", "target_unavailable"].map { reason in
                let dimensions = [("family", family), ("reason", reason)]
                return (reason, Counter(label: "switchboard_client_events_not_handled_total", dimensions: dimensions))
            }
            return (family, Dictionary(uniqueKeysWithValues: byReason))
        }
    )

    /// Counts an event that got an error ack instead of a handler.
    static func countNotHandled(_ event: ForwardedEvent, reason: String) {
        notHandledCounters[event.family]?[reason]?.increment()
    }

    var forwardsDisconnects: Bool {
        if case .http(_, _, _, let forwardsDisconnects) = self { return forwardsDisconnects }
        return false
    }

    /// Forwards `event`; the future is the ack arguments for the client (used only if it asked).
    /// It never fails: a failure is logged with its reason and answered with an error ack.
    func forward(_ event: ForwardedEvent, on eventLoop: EventLoop, logger: Logger) -> EventLoopFuture<[JSONValue]> {
        switch self {
        case .http(let backend, let path, let apiKey, _):
            var body = ByteBuffer()
            var writer = JSONWriter()
            writer.write(event.json, into: &body)
            return backend.postJSON(path, bearer: apiKey.value, body: body, maxBytes: Self.maxAnswerBytes, on: eventLoop).map {
                answer -> [JSONValue] in
                guard let answer, answer.readableBytes > 0 else { return [] }
                guard let value = try? JSONParser.parse(answer) else { return [] }
                if case .array(let args) = value { return args }
                return [value]
            }.recover { error in
                logger.warning(
                    "event not forwarded",
                    metadata: ["reason": "\(error)", "event": "\(event.event)", "sid": "\(event.sid)"]
                )
                Self.countNotHandled(event, reason: "target_unavailable")
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
                Self.countNotHandled(event, reason: "target_unavailable")
                return Self.backendUnavailable
            }.hop(to: eventLoop)
        case .none:
            logger.info(
                "event not handled",
                metadata: ["reason": "no forward target", "event": "\(event.event)", "sid": "\(event.sid)"]
            )
            Self.countNotHandled(event, reason: "no_target")
            return eventLoop.makeSucceededFuture(Self.notHandled)
        }
    }
}
