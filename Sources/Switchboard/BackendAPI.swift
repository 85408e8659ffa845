import EngineIO
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import OpenWebUI
import Presence
import SocketIO

/// The backend's HTTP API (docs/BACKEND.md): emit, call, membership and queries across the cluster,
/// behind a bearer API key that is distinct from user tokens. Every answer is JSON.
struct BackendAPI: HTTPResponder {
    static let pathPrefix = "/api/v1/"
    static let longestCall: Double = 300
    static let defaultCallTimeout: Double = 60
    /// Event names Socket.IO clients reserve for themselves.
    static let reservedEvents: Set<String> = [
        "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
    ]

    let keys: SecretBox
    let socketIO: SocketIOServer
    let presence: any PresenceStore
    let logger: Logger

    var maxBodySize: Int { 1 << 20 }

    struct Failure: Error {
        var status: HTTPResponseStatus
        var message: String

        init(_ status: HTTPResponseStatus, _ message: String) {
            self.status = status
            self.message = message
        }
    }

    func respond(to request: HTTPRequest, on eventLoop: EventLoop) -> EventLoopFuture<HTTPResponse> {
        do {
            try authorize(request.head.headers)
            return try route(request, on: eventLoop).flatMapError { error in
                eventLoop.makeSucceededFuture(Self.answer(error))
            }
        } catch {
            return eventLoop.makeSucceededFuture(Self.answer(error))
        }
    }

    private func authorize(_ headers: HTTPHeaders) throws(Failure) {
        guard let header = headers.first(name: "Authorization") else {
            throw Failure(.unauthorized, "missing API key (Authorization: Bearer <key>)")
        }
        guard let key = keys.value else { throw Failure(.forbidden, "the API is disabled: no API key is configured") }
        guard Self.constantTimeEqual(Self.bearerToken(header), key) else { throw Failure(.forbidden, "wrong API key") }
    }

    private func route(_ request: HTTPRequest, on eventLoop: EventLoop) throws(Failure) -> EventLoopFuture<HTTPResponse> {
        guard request.path.hasPrefix(Self.pathPrefix) else { throw Failure(.notFound, "no such route") }
        let parts = request.path.dropFirst(Self.pathPrefix.count).split(separator: "/", omittingEmptySubsequences: false)
        let method = request.head.method
        func expect(_ allowed: HTTPMethod) throws(Failure) {
            guard method == allowed else { throw Failure(.methodNotAllowed, "use \(allowed) for this route") }
        }
        switch parts.count {
        case 1 where parts[0] == "emit":
            try expect(.POST)
            return try emit(Self.body(request), on: eventLoop)
        case 1 where parts[0] == "call":
            try expect(.POST)
            return try call(Self.body(request), on: eventLoop)
        case 1 where parts[0] == "disconnect":
            try expect(.POST)
            return try disconnect(Self.body(request), on: eventLoop)
        case 1 where parts[0] == "usage":
            try expect(.GET)
            return presence.modelsInUse().map { Self.ok(["models": .array($0.map(JSONValue.string))]) }
                .flatMapErrorThrowing { error in throw Failure(.serviceUnavailable, "pools unavailable: \(error)") }
        case 2 where parts[0] == "rooms" && (parts[1] == "join" || parts[1] == "leave"):
            try expect(.POST)
            return try membership(Self.body(request), join: parts[1] == "join", on: eventLoop)
        case 2 where parts[0] == "rooms" && !parts[1].isEmpty:
            try expect(.GET)
            guard let room = Self.percentDecoded(parts[1]) else {
                throw Failure(.badRequest, "the room in the path is not valid percent-encoding")
            }
            let namespace = try self.namespace(named: request.query["namespace"] ?? "/")
            return namespace.adapter.socketIDs(matching: BroadcastOptions(rooms: [room])).map { sids in
                Self.ok(["room": .string(room), "sids": .array(sids.sorted().map(JSONValue.string))])
            }
        case 2 where parts[0] == "users" && parts[1] == "online":
            try expect(.GET)
            return presence.usersOnline().map { Self.ok(["user_ids": .array($0.map(JSONValue.string))]) }
                .flatMapErrorThrowing { error in throw Failure(.serviceUnavailable, "pools unavailable: \(error)") }
        case 3 where parts[0] == "users" && !parts[1].isEmpty && parts[2] == "sessions":
            try expect(.GET)
            guard let user = Self.percentDecoded(parts[1]) else {
                throw Failure(.badRequest, "the user id in the path is not valid percent-encoding")
            }
            return presence.sessions(ofUser: user).map { sids in
                Self.ok(["user_id": .string(user), "sids": .array(sids.map(JSONValue.string))])
            }.flatMapErrorThrowing { error in throw Failure(.serviceUnavailable, "pools unavailable: \(error)") }
        default:
            throw Failure(.notFound, "no such route")
        }
    }

    // MARK: Routes

    private func emit(_ body: JSONValue, on eventLoop: EventLoop) throws(Failure) -> EventLoopFuture<HTTPResponse> {
        let namespace = try self.namespace(field: body["namespace"])
        let event = try Self.eventName(body)
        let args = try Self.arguments(body)
        let except = try Self.strings(body["except"], field: "except") ?? []
        let rooms: Set<String>
        switch body["to"] {
        case .string("all")?:
            rooms = []
        case .object(let members)? where members.count == 1:
            let target = members[0]
            switch (target.key, target.value) {
            case ("room", .string(let room)), ("sid", .string(let room)):
                guard !room.isEmpty else { throw Failure(.badRequest, "\"to.\(target.key)\" must not be empty") }
                rooms = [room]
            case ("user", let user):
                guard let id = UserDirectory.identifier(user) else {
                    throw Failure(.badRequest, "\"to.user\" must be a user id")
                }
                rooms = ["user:\(id)"]
            case ("rooms", let list):
                guard let names = try Self.strings(list, field: "to.rooms"), !names.isEmpty else {
                    throw Failure(.badRequest, "\"to.rooms\" must be a non-empty list of rooms")
                }
                rooms = Set(names)
            default:
                throw Failure(.badRequest, "\"to\" must be \"all\" or one of {room}, {rooms}, {sid}, {user}")
            }
        default:
            throw Failure(.badRequest, "\"to\" must be \"all\" or one of {room}, {rooms}, {sid}, {user}")
        }
        namespace.emit(event, args, to: rooms, except: Set(except))
        return eventLoop.makeSucceededFuture(Self.ok(["ok": true]))
    }

    private func call(_ body: JSONValue, on eventLoop: EventLoop) throws(Failure) -> EventLoopFuture<HTTPResponse> {
        let namespace = try self.namespace(field: body["namespace"])
        guard let sid = body["sid"]?.stringValue, !sid.isEmpty else {
            throw Failure(.badRequest, "\"sid\" must be a socket id")
        }
        let event = try Self.eventName(body)
        let args = try Self.arguments(body)
        var seconds = Self.defaultCallTimeout
        if let value = body["timeout"] {
            guard case .number(let text) = value, let number = Double(text), number > 0, number <= Self.longestCall else {
                throw Failure(.badRequest, "\"timeout\" must be a number of seconds in (0, \(Int(Self.longestCall))]")
            }
            seconds = number
        }
        let promise = eventLoop.makePromise(of: HTTPResponse.self)
        let timeout = seconds
        namespace.emit(event, args, to: [sid], ackTimeout: .nanoseconds(Int64(timeout * 1e9))) { result in
            if let answer = result.responses.first {
                promise.succeed(Self.ok(["args": .array(answer)]))
            } else if result.recipients == 0 && !result.timedOut {
                promise.succeed(Self.answer(Failure(.notFound, "no socket \(sid) in namespace \(namespace.name)")))
            } else {
                promise.succeed(
                    Self.answer(Failure(.gatewayTimeout, "the client did not answer within \(Self.format(timeout)) s"))
                )
            }
        }
        return promise.futureResult
    }

    private func membership(_ body: JSONValue, join: Bool, on eventLoop: EventLoop) throws(Failure) -> EventLoopFuture<
        HTTPResponse
    > {
        let namespace = try self.namespace(field: body["namespace"])
        guard let room = body["room"]?.stringValue, !room.isEmpty else {
            throw Failure(.badRequest, "\"room\" must be a room name")
        }
        let selection = try Self.selection(body, roomField: "from_room")
        if join {
            namespace.adapter.addSockets(matching: selection, to: [room])
        } else {
            namespace.adapter.removeSockets(matching: selection, from: [room])
        }
        return eventLoop.makeSucceededFuture(Self.ok(["ok": true]))
    }

    private func disconnect(_ body: JSONValue, on eventLoop: EventLoop) throws(Failure) -> EventLoopFuture<HTTPResponse> {
        let namespace = try self.namespace(field: body["namespace"])
        let selection = try Self.selection(body, roomField: "room")
        namespace.adapter.disconnectSockets(matching: selection, closeClient: false)
        return eventLoop.makeSucceededFuture(Self.ok(["ok": true]))
    }

    // MARK: Reading requests

    private func namespace(field value: JSONValue?) throws(Failure) -> Namespace {
        guard let value else { return try namespace(named: "/") }
        guard let name = value.stringValue else { throw Failure(.badRequest, "\"namespace\" must be a string") }
        return try namespace(named: name)
    }

    private func namespace(named name: String) throws(Failure) -> Namespace {
        guard let namespace = socketIO.namespace(name) else { throw Failure(.notFound, "no namespace \(name)") }
        return namespace
    }

    static func body(_ request: HTTPRequest) throws(Failure) -> JSONValue {
        let value: JSONValue
        do {
            value = try JSONParser.parse(request.body)
        } catch {
            throw Failure(.badRequest, "the body is not valid JSON: \(error)")
        }
        guard value.isObject else { throw Failure(.badRequest, "the body must be a JSON object") }
        return value
    }

    static func eventName(_ body: JSONValue) throws(Failure) -> String {
        guard let event = body["event"]?.stringValue, !event.isEmpty else {
            throw Failure(.badRequest, "\"event\" must be a non-empty string")
        }
        guard !reservedEvents.contains(event) else { throw Failure(.badRequest, "\"\(event)\" is a reserved event name") }
        return event
    }

    static func arguments(_ body: JSONValue) throws(Failure) -> [JSONValue] {
        guard let value = body["args"] else { return [] }
        guard let args = value.arrayValue else { throw Failure(.badRequest, "\"args\" must be a list") }
        return args
    }

    static func strings(_ value: JSONValue?, field: String) throws(Failure) -> [String]? {
        guard let value else { return nil }
        guard let list = value.arrayValue else { throw Failure(.badRequest, "\"\(field)\" must be a list of strings") }
        var strings: [String] = []
        for item in list {
            guard let text = item.stringValue, !text.isEmpty else {
                throw Failure(.badRequest, "\"\(field)\" must be a list of non-empty strings")
            }
            strings.append(text)
        }
        return strings
    }

    /// Which sockets a request means: `sids`, `user`, or the members of a room.
    static func selection(_ body: JSONValue, roomField: String) throws(Failure) -> BroadcastOptions {
        if let sids = try strings(body["sids"], field: "sids") {
            guard !sids.isEmpty else { throw Failure(.badRequest, "\"sids\" must not be empty") }
            return BroadcastOptions(rooms: Set(sids))
        }
        if let user = body["user"] {
            guard let id = UserDirectory.identifier(user) else { throw Failure(.badRequest, "\"user\" must be a user id") }
            return BroadcastOptions(rooms: ["user:\(id)"])
        }
        if let room = body[roomField] {
            guard let name = room.stringValue, !name.isEmpty else {
                throw Failure(.badRequest, "\"\(roomField)\" must be a room name")
            }
            return BroadcastOptions(rooms: [name])
        }
        throw Failure(.badRequest, "say which sockets: \"sids\", \"user\" or \"\(roomField)\"")
    }

    // MARK: Answers

    static func ok(_ value: JSONValue) -> HTTPResponse {
        json(.ok, value)
    }

    static func answer(_ error: Error) -> HTTPResponse {
        if let failure = error as? Failure { return json(failure.status, ["error": .string(failure.message)]) }
        return json(.internalServerError, ["error": .string("\(error)")])
    }

    static func json(_ status: HTTPResponseStatus, _ value: JSONValue) -> HTTPResponse {
        var body = ByteBuffer()
        var writer = JSONWriter()
        writer.write(value, into: &body)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Cache-Control", value: "no-store")
        return HTTPResponse(status: status, headers: headers, body: body)
    }

    static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
    }

    /// The credentials of an `Authorization` header; the scheme is case-insensitive (RFC 9110 §11.1).
    static func bearerToken(_ header: String) -> String {
        header.lowercased().hasPrefix("bearer ") ? String(header.dropFirst(7)) : header
    }

    /// Compares without an early exit, so the time taken does not reveal how much of a key matched.
    static func constantTimeEqual(_ lhs: String, _ rhs: String) -> Bool {
        let a = Array(lhs.utf8)
        let b = Array(rhs.utf8)
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for index in 0..<max(a.count, b.count) {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= x ^ y
        }
        return difference == 0 && a.count == b.count
    }

    /// `%XX` decoding of one path segment; nil for a bad escape or invalid UTF-8.
    static func percentDecoded(_ segment: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = segment.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                return nil
            }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
