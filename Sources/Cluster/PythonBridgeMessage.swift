import EngineIO
import NIOCore
import SocketIO

/// A message of python-socketio's pub/sub managers (`AsyncPubSubManager`, e.g. `AsyncRedisManager`), as a
/// python-socketio server or a write-only manager publishes it: a JSON object with `method` and `host_id`.
package struct PythonBridgeMessage: Sendable, Equatable {
    /// What the message asks every node to do to the sockets it holds.
    package enum Action: Sendable, Equatable {
        case emit(PythonBridgeEmit)
        case disconnect(sid: String, namespace: String)
        case enterRoom(sid: String, namespace: String, room: String)
        case leaveRoom(sid: String, namespace: String, room: String)
        case closeRoom(room: String, namespace: String)
        /// A client's answer to a python-side call; only the origin (its `host_id`) resolves it.
        case callback
    }

    /// The sender's `host_id`; python-socketio always sets it, and nil (absent or null) never equals ours.
    package var hostID: String?
    package var action: Action

    package init(hostID: String?, action: Action) {
        self.hostID = hostID
        self.action = action
    }
}

/// An `emit` message, its `data` already turned into the event's arguments.
package struct PythonBridgeEmit: Sendable, Equatable {
    /// Where a client's ack goes back to: python-socketio's `callback` triple.
    package struct Callback: Sendable, Equatable {
        /// The `room` the origin emitted to, which keys its pending call (the sid for `sio.call`).
        package var room: String
        package var namespace: String
        package var id: Int

        package init(room: String, namespace: String, id: Int) {
            self.room = room
            self.namespace = namespace
            self.id = id
        }
    }

    package var event: String
    package var args: [JSONValue]
    package var namespace: String
    /// Target rooms (a sid is a room too); nil is every socket of the namespace, empty is nobody.
    package var rooms: Set<String>?
    package var skipSIDs: Set<String>
    package var callback: Callback?

    package init(
        event: String,
        args: [JSONValue],
        namespace: String = "/",
        rooms: Set<String>? = nil,
        skipSIDs: Set<String> = [],
        callback: Callback? = nil
    ) {
        self.event = event
        self.args = args
        self.namespace = namespace
        self.rooms = rooms
        self.skipSIDs = skipSIDs
        self.callback = callback
    }
}

/// Why a payload is not a message the bridge carries out.
package struct PythonBridgeDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Kind: Sendable, Equatable {
        case malformed
        case unknownMethod
    }

    private let kind: Kind
    /// The reason, naming the field at fault; never the field's value (payloads may carry tokens).
    package let message: String

    static func malformed(_ message: String) -> PythonBridgeDecodingError {
        PythonBridgeDecodingError(kind: .malformed, message: message)
    }

    static let unknownMethod = PythonBridgeDecodingError(kind: .unknownMethod, message: "unknown method")

    /// A well-formed message of a method this bridge does not know (python-socketio ignores those too).
    package var isUnknownMethod: Bool { kind == .unknownMethod }

    package var description: String { message }
}

extension PythonBridgeMessage {
    /// Deepest JSON nesting accepted: the envelope, and with `binary` the argument list inside `data`, add two
    /// levels to what clients may send.
    package static let maxJSONDepth = JSONParser.defaultMaxDepth + 2

    /// Decodes a payload published on the bridge channels.
    package static func decode(_ payload: ByteBuffer) throws(PythonBridgeDecodingError) -> PythonBridgeMessage {
        let json: JSONValue
        do {
            json = try JSONParser.parse(payload, maxDepth: maxJSONDepth)
        } catch {
            throw .malformed("not JSON: \(error)")
        }
        let fields = try Fields(json)
        let hostID = try fields.optionalString("host_id")
        let action: Action
        switch try fields.string("method") {
        case "emit":
            action = .emit(try decodeEmit(fields))
        case "disconnect":
            action = .disconnect(sid: try fields.string("sid"), namespace: try fields.namespace())
        case "enter_room":
            action = .enterRoom(
                sid: try fields.string("sid"),
                namespace: try fields.namespace(),
                room: try fields.string("room")
            )
        case "leave_room":
            action = .leaveRoom(
                sid: try fields.string("sid"),
                namespace: try fields.namespace(),
                room: try fields.string("room")
            )
        case "close_room":
            action = .closeRoom(room: try fields.string("room"), namespace: try fields.namespace())
        case "callback":
            action = .callback
        default:
            throw .unknownMethod
        }
        return PythonBridgeMessage(hostID: hostID, action: action)
    }

    private static func decodeEmit(_ fields: Fields) throws(PythonBridgeDecodingError) -> PythonBridgeEmit {
        let event = try fields.string("event")
        guard let data = fields["data"]?.arrayValue else { throw .malformed("data is not a list") }
        let binary: Bool
        switch fields["binary"] {
        case nil, .null?: binary = false
        case .bool(let flag)?: binary = flag
        default: throw .malformed("binary is not a boolean")
        }
        return PythonBridgeEmit(
            event: event,
            args: binary ? try reconstructBinary(data) : data,
            namespace: try fields.namespace(),
            rooms: try fields.optionalStringSet("room"),
            skipSIDs: try fields.optionalStringSet("skip_sid") ?? [],
            callback: try decodeCallback(fields["callback"])
        )
    }

    /// With `binary`, `data` is `[arguments with placeholders, base64 attachment 0, attachment 1, …]`.
    private static func reconstructBinary(_ data: [JSONValue]) throws(PythonBridgeDecodingError) -> [JSONValue] {
        guard let deconstructed = data.first?.arrayValue else {
            throw .malformed("binary data does not start with the argument list")
        }
        var attachments: [ByteBuffer] = []
        attachments.reserveCapacity(data.count - 1)
        for (offset, encoded) in data.dropFirst().enumerated() {
            guard let text = encoded.stringValue, let bytes = Base64.decode(text.utf8) else {
                throw .malformed("attachment \(offset) is not base64")
            }
            attachments.append(ByteBuffer(bytes: bytes))
        }
        var args: [JSONValue] = []
        args.reserveCapacity(deconstructed.count)
        for value in deconstructed {
            do {
                args.append(try SocketIOPacketCodec.reconstruct(value, attachments: attachments))
            } catch {
                throw .malformed("binary data: \(error)")
            }
        }
        return args
    }

    /// `callback` is null, or python-socketio's `[room, namespace, id]`.
    private static func decodeCallback(
        _ value: JSONValue?
    ) throws(PythonBridgeDecodingError) -> PythonBridgeEmit.Callback? {
        switch value {
        case nil, .null?:
            return nil
        case .array(let parts)? where parts.count == 3:
            guard let room = parts[0].stringValue, let namespace = parts[1].stringValue, let id = parts[2].intValue
            else { break }
            return PythonBridgeEmit.Callback(room: room, namespace: namespace, id: id)
        default:
            break
        }
        throw .malformed("callback is not [room, namespace, id]")
    }

    /// The answer to a python-side call, as python-socketio's `_return_callback` publishes it: addressed to the
    /// origin's `host_id`, with the `callback` triple it sent and the client's ack arguments.
    package static func callbackReply(
        originHostID: String?,
        callback: PythonBridgeEmit.Callback,
        args: [JSONValue]
    ) -> ByteBuffer {
        let reply: JSONValue = .object([
            (key: "method", value: "callback"),
            (key: "host_id", value: originHostID.map(JSONValue.string) ?? .null),
            (key: "sid", value: .string(callback.room)),
            (key: "namespace", value: .string(callback.namespace)),
            (key: "id", value: JSONValue(callback.id)),
            (key: "args", value: .array(args)),
        ])
        var writer = JSONWriter()
        var buffer = ByteBuffer()
        writer.write(reply, into: &buffer)
        return buffer
    }
}

/// The members of a message object, read with python-socketio's typing.
private struct Fields {
    private let object: JSONValue

    init(_ value: JSONValue) throws(PythonBridgeDecodingError) {
        guard value.isObject else { throw .malformed("not a JSON object") }
        self.object = value
    }

    subscript(key: String) -> JSONValue? { object[key] }

    func string(_ key: String) throws(PythonBridgeDecodingError) -> String {
        guard let value = object[key]?.stringValue else { throw .malformed("\(key) is not a string") }
        return value
    }

    /// Absent or null is nil.
    func optionalString(_ key: String) throws(PythonBridgeDecodingError) -> String? {
        switch object[key] {
        case nil, .null?: return nil
        case .string(let value)?: return value
        default: throw .malformed("\(key) is not a string")
        }
    }

    /// python-socketio's managers default a missing namespace to "/".
    func namespace() throws(PythonBridgeDecodingError) -> String {
        try optionalString("namespace") ?? "/"
    }

    /// A string or a list of strings; absent or null is nil.
    func optionalStringSet(_ key: String) throws(PythonBridgeDecodingError) -> Set<String>? {
        switch object[key] {
        case nil, .null?:
            return nil
        case .string(let value)?:
            return [value]
        case .array(let values)?:
            var result: Set<String> = []
            for value in values {
                guard let string = value.stringValue else { throw .malformed("\(key) is not a list of strings") }
                result.insert(string)
            }
            return result
        default:
            throw .malformed("\(key) is not a string or a list of strings")
        }
    }
}
