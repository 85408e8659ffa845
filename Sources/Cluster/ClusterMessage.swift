import NIOCore
import SocketIO

/// What nodes say to each other over pub/sub. Binary and length-prefixed: a relayed packet
/// travels as the bytes the origin encoded, and no receiver parses JSON to deliver it.
public enum ClusterMessage: Sendable, Equatable {
    /// Deliver `packet` to the local sockets matching `options` in `namespace`. With `ack`, each
    /// recipient is asked to ack and the node reports how many it reached and their answers to the origin.
    case broadcast(namespace: String, options: BroadcastOptions, packet: EncodedPacket, ack: AckRequest?)
    /// Make the matching local sockets join / leave rooms, or disconnect.
    case socketsJoin(namespace: String, options: BroadcastOptions, rooms: [String])
    case socketsLeave(namespace: String, options: BroadcastOptions, rooms: [String])
    case disconnectSockets(namespace: String, options: BroadcastOptions, closeClient: Bool)
    /// A node's answers to a broadcast-with-ack: how many local sockets it reached and each
    /// answer's arguments (a JSON array's text plus attachments).
    case ackResult(requestID: UInt64, recipients: Int, responses: [EncodedPacket], timedOut: Bool)
    /// A question for every node; answered with `reply`.
    case query(requestID: UInt64, query: ClusterQuery)
    case reply(requestID: UInt64, values: [String])
    /// Room registry changes of the sending node (keys are namespace + NUL + room).
    case registry(added: [String], removed: [String])
    /// A dead node was reaped: forget its rooms.
    case nodeGone(node: String)

    public struct AckRequest: Sendable, Equatable {
        /// The id the packet carries, shared by every recipient.
        public var ackID: Int
        public var requestID: UInt64
        public var timeoutMilliseconds: UInt32

        public init(ackID: Int, requestID: UInt64, timeoutMilliseconds: UInt32) {
            self.ackID = ackID
            self.requestID = requestID
            self.timeoutMilliseconds = timeoutMilliseconds
        }
    }
}

/// Cluster-wide questions.
public enum ClusterQuery: Sendable, Equatable {
    /// Socket ids matching the options.
    case socketIDs(namespace: String, options: BroadcastOptions)
    /// Rooms of this node's sockets in the namespace (with `user:` prefix filtering done by the asker).
    case rooms(namespace: String)
    /// Connected sockets on the node.
    case connectionCount
}

public struct ClusterMessageError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension ClusterMessage {
    static let version: UInt8 = 1

    enum Kind: UInt8, CaseIterable {
        case broadcast = 1, socketsJoin, socketsLeave, disconnectSockets, ackResult, query, reply, registry, nodeGone

        /// The `kind` label of the cluster's message counters.
        var name: String {
            switch self {
            case .broadcast: return "broadcast"
            case .socketsJoin: return "sockets_join"
            case .socketsLeave: return "sockets_leave"
            case .disconnectSockets: return "disconnect_sockets"
            case .ackResult: return "ack_result"
            case .query: return "query"
            case .reply: return "reply"
            case .registry: return "registry"
            case .nodeGone: return "node_gone"
            }
        }
    }

    var kind: Kind {
        switch self {
        case .broadcast: return .broadcast
        case .socketsJoin: return .socketsJoin
        case .socketsLeave: return .socketsLeave
        case .disconnectSockets: return .disconnectSockets
        case .ackResult: return .ackResult
        case .query: return .query
        case .reply: return .reply
        case .registry: return .registry
        case .nodeGone: return .nodeGone
        }
    }

    /// Writes the message with the id of the node that sends it.
    public func encode(origin: String, into buffer: inout ByteBuffer) {
        buffer.writeInteger(Self.version)
        buffer.writeShortString(origin)
        switch self {
        case .broadcast(let namespace, let options, let packet, let ack):
            buffer.writeInteger(Kind.broadcast.rawValue)
            buffer.writeShortString(namespace)
            buffer.writeOptions(options)
            if let ack {
                buffer.writeInteger(UInt8(1))
                buffer.writeInteger(Int64(ack.ackID))
                buffer.writeInteger(ack.requestID)
                buffer.writeInteger(ack.timeoutMilliseconds)
            } else {
                buffer.writeInteger(UInt8(0))
            }
            buffer.writePacket(packet)
        case .socketsJoin(let namespace, let options, let rooms):
            buffer.writeInteger(Kind.socketsJoin.rawValue)
            buffer.writeShortString(namespace)
            buffer.writeOptions(options)
            buffer.writeStrings(rooms)
        case .socketsLeave(let namespace, let options, let rooms):
            buffer.writeInteger(Kind.socketsLeave.rawValue)
            buffer.writeShortString(namespace)
            buffer.writeOptions(options)
            buffer.writeStrings(rooms)
        case .disconnectSockets(let namespace, let options, let closeClient):
            buffer.writeInteger(Kind.disconnectSockets.rawValue)
            buffer.writeShortString(namespace)
            buffer.writeOptions(options)
            buffer.writeInteger(UInt8(closeClient ? 1 : 0))
        case .ackResult(let requestID, let recipients, let responses, let timedOut):
            buffer.writeInteger(Kind.ackResult.rawValue)
            buffer.writeInteger(requestID)
            buffer.writeInteger(UInt32(clamping: recipients))
            buffer.writeInteger(UInt8(timedOut ? 1 : 0))
            buffer.writeInteger(UInt32(responses.count))
            for response in responses { buffer.writePacket(response) }
        case .query(let requestID, let query):
            buffer.writeInteger(Kind.query.rawValue)
            buffer.writeInteger(requestID)
            switch query {
            case .socketIDs(let namespace, let options):
                buffer.writeInteger(UInt8(1))
                buffer.writeShortString(namespace)
                buffer.writeOptions(options)
            case .rooms(let namespace):
                buffer.writeInteger(UInt8(2))
                buffer.writeShortString(namespace)
            case .connectionCount:
                buffer.writeInteger(UInt8(3))
            }
        case .reply(let requestID, let values):
            buffer.writeInteger(Kind.reply.rawValue)
            buffer.writeInteger(requestID)
            buffer.writeStrings(values)
        case .registry(let added, let removed):
            buffer.writeInteger(Kind.registry.rawValue)
            buffer.writeStrings(added)
            buffer.writeStrings(removed)
        case .nodeGone(let node):
            buffer.writeInteger(Kind.nodeGone.rawValue)
            buffer.writeShortString(node)
        }
    }

    public func encoded(origin: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        encode(origin: origin, into: &buffer)
        return buffer
    }

    /// Reads a message and the id of the node that sent it.
    public static func decode(_ bytes: ByteBuffer) throws(ClusterMessageError) -> (origin: String, message: ClusterMessage) {
        var buffer = bytes
        guard let version: UInt8 = buffer.readInteger(), version == Self.version else {
            throw ClusterMessageError("unsupported cluster message version")
        }
        let origin = try buffer.readShortStringOrThrow()
        guard let rawKind: UInt8 = buffer.readInteger(), let kind = Kind(rawValue: rawKind) else {
            throw ClusterMessageError("unknown cluster message kind")
        }
        let message: ClusterMessage
        switch kind {
        case .broadcast:
            let namespace = try buffer.readShortStringOrThrow()
            let options = try buffer.readOptionsOrThrow()
            let hasAck: UInt8 = try buffer.readIntegerOrThrow()
            var ack: AckRequest?
            if hasAck == 1 {
                let ackID: Int64 = try buffer.readIntegerOrThrow()
                let requestID: UInt64 = try buffer.readIntegerOrThrow()
                let timeout: UInt32 = try buffer.readIntegerOrThrow()
                ack = AckRequest(ackID: Int(ackID), requestID: requestID, timeoutMilliseconds: timeout)
            }
            let packet = try buffer.readPacketOrThrow()
            message = .broadcast(namespace: namespace, options: options, packet: packet, ack: ack)
        case .socketsJoin:
            message = .socketsJoin(
                namespace: try buffer.readShortStringOrThrow(),
                options: try buffer.readOptionsOrThrow(),
                rooms: try buffer.readStringsOrThrow()
            )
        case .socketsLeave:
            message = .socketsLeave(
                namespace: try buffer.readShortStringOrThrow(),
                options: try buffer.readOptionsOrThrow(),
                rooms: try buffer.readStringsOrThrow()
            )
        case .disconnectSockets:
            let namespace = try buffer.readShortStringOrThrow()
            let options = try buffer.readOptionsOrThrow()
            let close: UInt8 = try buffer.readIntegerOrThrow()
            message = .disconnectSockets(namespace: namespace, options: options, closeClient: close == 1)
        case .ackResult:
            let requestID: UInt64 = try buffer.readIntegerOrThrow()
            let recipients: UInt32 = try buffer.readIntegerOrThrow()
            let timedOut: UInt8 = try buffer.readIntegerOrThrow()
            let count: UInt32 = try buffer.readIntegerOrThrow()
            guard Int(count) * 6 <= buffer.readableBytes else { throw ClusterMessageError("truncated responses") }
            var responses: [EncodedPacket] = []
            for _ in 0..<count { responses.append(try buffer.readPacketOrThrow()) }
            message = .ackResult(
                requestID: requestID,
                recipients: Int(recipients),
                responses: responses,
                timedOut: timedOut == 1
            )
        case .query:
            let requestID: UInt64 = try buffer.readIntegerOrThrow()
            let queryKind: UInt8 = try buffer.readIntegerOrThrow()
            let query: ClusterQuery
            switch queryKind {
            case 1:
                query = .socketIDs(namespace: try buffer.readShortStringOrThrow(), options: try buffer.readOptionsOrThrow())
            case 2:
                query = .rooms(namespace: try buffer.readShortStringOrThrow())
            case 3:
                query = .connectionCount
            default:
                throw ClusterMessageError("unknown query kind")
            }
            message = .query(requestID: requestID, query: query)
        case .reply:
            let requestID: UInt64 = try buffer.readIntegerOrThrow()
            message = .reply(requestID: requestID, values: try buffer.readStringsOrThrow())
        case .registry:
            message = .registry(added: try buffer.readStringsOrThrow(), removed: try buffer.readStringsOrThrow())
        case .nodeGone:
            message = .nodeGone(node: try buffer.readShortStringOrThrow())
        }
        guard buffer.readableBytes == 0 else { throw ClusterMessageError("trailing bytes") }
        return (origin, message)
    }
}

extension ByteBuffer {
    fileprivate mutating func writeShortString(_ string: String) {
        // Lengths up to 64 KiB: room names, namespaces, node ids (longer room names are refused at join).
        let bytes = string.utf8.prefix(Int(UInt16.max))
        writeInteger(UInt16(bytes.count))
        writeBytes(bytes)
    }

    fileprivate mutating func writeStrings(_ strings: some Collection<String>) {
        writeInteger(UInt32(strings.count))
        for string in strings { writeShortString(string) }
    }

    fileprivate mutating func writeOptions(_ options: BroadcastOptions) {
        writeStrings(options.rooms.sorted())
        writeStrings(options.except.sorted())
    }

    fileprivate mutating func writePacket(_ packet: EncodedPacket) {
        writeInteger(UInt32(packet.text.readableBytes))
        writeImmutableBuffer(packet.text)
        writeInteger(UInt16(packet.attachments.count))
        for attachment in packet.attachments {
            writeInteger(UInt32(attachment.readableBytes))
            writeImmutableBuffer(attachment)
        }
    }

    fileprivate mutating func readIntegerOrThrow<T: FixedWidthInteger>(as: T.Type = T.self) throws(ClusterMessageError) -> T {
        guard let value: T = readInteger() else { throw ClusterMessageError("truncated message") }
        return value
    }

    fileprivate mutating func readShortStringOrThrow() throws(ClusterMessageError) -> String {
        let length: UInt16 = try readIntegerOrThrow()
        guard let string = readString(length: Int(length)) else { throw ClusterMessageError("truncated string") }
        return string
    }

    fileprivate mutating func readStringsOrThrow() throws(ClusterMessageError) -> [String] {
        let count: UInt32 = try readIntegerOrThrow()
        // Each string needs at least its 2-byte length: refuse counts the bytes cannot hold.
        guard Int(count) * 2 <= readableBytes else { throw ClusterMessageError("truncated list") }
        var strings: [String] = []
        strings.reserveCapacity(Int(count))
        for _ in 0..<count { strings.append(try readShortStringOrThrow()) }
        return strings
    }

    fileprivate mutating func readOptionsOrThrow() throws(ClusterMessageError) -> BroadcastOptions {
        BroadcastOptions(rooms: Set(try readStringsOrThrow()), except: Set(try readStringsOrThrow()))
    }

    fileprivate mutating func readPacketOrThrow() throws(ClusterMessageError) -> EncodedPacket {
        let length: UInt32 = try readIntegerOrThrow()
        guard let text = readSlice(length: Int(length)) else { throw ClusterMessageError("truncated packet") }
        let count: UInt16 = try readIntegerOrThrow()
        var attachments: [ByteBuffer] = []
        for _ in 0..<count {
            let size: UInt32 = try readIntegerOrThrow()
            guard let attachment = readSlice(length: Int(size)) else {
                throw ClusterMessageError("truncated attachment")
            }
            attachments.append(attachment)
        }
        return EncodedPacket(text: text, attachments: attachments)
    }
}
