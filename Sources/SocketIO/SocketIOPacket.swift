import EngineIO
import NIOCore

/// Socket.IO v5 packet types.
public enum SocketIOPacketType: UInt8, Sendable {
    case connect = 0
    case disconnect = 1
    case event = 2
    case ack = 3
    case connectError = 4
    case binaryEvent = 5
    case binaryAck = 6
}

/// A Socket.IO packet as received: header fields decoded, the JSON payload left as bytes.
public struct SocketIOPacket: Sendable, Equatable {
    public var type: SocketIOPacketType
    public var namespace: String
    public var ackID: Int?
    public var attachmentCount: Int
    /// The JSON payload's bytes, if any.
    public var payload: ByteBuffer?

    public init(
        type: SocketIOPacketType,
        namespace: String = "/",
        ackID: Int? = nil,
        attachmentCount: Int = 0,
        payload: ByteBuffer? = nil
    ) {
        self.type = type
        self.namespace = namespace
        self.ackID = ackID
        self.attachmentCount = attachmentCount
        self.payload = payload
    }
}

public struct SocketIOPacketError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// A packet encoded once, ready to be written to any number of sessions: the Engine.IO text
/// packet (`4` + Socket.IO packet) and its binary attachments.
public struct EncodedPacket: Sendable, Equatable {
    public var text: ByteBuffer
    public var attachments: [ByteBuffer]

    public init(text: ByteBuffer, attachments: [ByteBuffer] = []) {
        self.text = text
        self.attachments = attachments
    }

    /// The packet as Engine.IO packets, framed once for every recipient of a broadcast.
    public var engineBroadcastPackets: EngineBroadcastPackets {
        var packets: [EngineOutboundPacket] = [.text(text)]
        packets.reserveCapacity(1 + attachments.count)
        for attachment in attachments { packets.append(.binary(attachment)) }
        return EngineBroadcastPackets(packets)
    }

    /// The Socket.IO packet without the Engine.IO type digit, as text (for tests and logs).
    public var socketIOText: String {
        String(decoding: text.readableBytesView.dropFirst(), as: UTF8.self)
    }
}

public enum SocketIOPacketCodec {
    /// Largest ack id accepted (JavaScript's safe integer range).
    static let maxAckID = (1 << 53) - 1

    /// Decodes the header of a Socket.IO packet (an Engine.IO message's text).
    public static func decode(_ text: ByteBuffer, maxAttachments: Int) throws(SocketIOPacketError) -> SocketIOPacket {
        let bytes = text.readableBytesView
        var index = bytes.startIndex
        guard index < bytes.endIndex, let type = SocketIOPacketType(rawValue: bytes[index] &- UInt8(ascii: "0")) else {
            throw SocketIOPacketError("unknown packet type")
        }
        index += 1

        var attachments = 0
        if type == .binaryEvent || type == .binaryAck {
            let start = index
            while index < bytes.endIndex, isDigit(bytes[index]) {
                attachments = attachments &* 10 &+ Int(bytes[index] - UInt8(ascii: "0"))
                index += 1
                guard index - start <= 9, attachments <= maxAttachments else {
                    throw SocketIOPacketError("too many attachments")
                }
            }
            guard index > start, index < bytes.endIndex, bytes[index] == UInt8(ascii: "-") else {
                throw SocketIOPacketError("invalid attachment count")
            }
            index += 1
        }

        var namespace = "/"
        if index < bytes.endIndex, bytes[index] == UInt8(ascii: "/") {
            let start = index
            while index < bytes.endIndex, bytes[index] != UInt8(ascii: ",") { index += 1 }
            let raw = bytes[start..<index]
            guard UTF8Validation.isValid(raw) else { throw SocketIOPacketError("invalid namespace") }
            namespace = String(decoding: raw, as: UTF8.self)
            if index < bytes.endIndex { index += 1 }
        }

        var ackID: Int?
        if index < bytes.endIndex, isDigit(bytes[index]) {
            var id = 0
            let start = index
            while index < bytes.endIndex, isDigit(bytes[index]) {
                id = id &* 10 &+ Int(bytes[index] - UInt8(ascii: "0"))
                index += 1
                guard index - start <= 16, id <= maxAckID else { throw SocketIOPacketError("invalid ack id") }
            }
            ackID = id
        }

        let payload: ByteBuffer? =
            index < bytes.endIndex ? text.getSlice(at: index, length: bytes.endIndex - index) : nil
        if payload == nil, type == .event || type == .binaryEvent || type == .ack || type == .binaryAck {
            throw SocketIOPacketError("missing payload")
        }
        if ackID != nil, type != .event, type != .binaryEvent, type != .ack, type != .binaryAck {
            throw SocketIOPacketError("unexpected ack id")
        }
        if (type == .ack || type == .binaryAck), ackID == nil {
            throw SocketIOPacketError("ack without id")
        }
        return SocketIOPacket(
            type: type,
            namespace: namespace,
            ackID: ackID,
            attachmentCount: attachments,
            payload: payload
        )
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// Encodes a packet once. A payload containing binary becomes BINARY_EVENT / BINARY_ACK with
    /// placeholders, its attachments returned alongside.
    public static func encode(
        _ type: SocketIOPacketType,
        namespace: String,
        ackID: Int? = nil,
        payload: JSONValue? = nil
    ) -> EncodedPacket {
        var body = ByteBuffer()
        var writer = JSONWriter()
        if let payload { writer.write(payload, into: &body) }
        let attachments = writer.attachments

        var type = type
        if !attachments.isEmpty {
            if type == .event { type = .binaryEvent }
            if type == .ack { type = .binaryAck }
        }
        var text = ByteBuffer()
        text.reserveCapacity(body.readableBytes + namespace.utf8.count + 24)
        text.writeInteger(EnginePacketType.message.rawValue)
        text.writeInteger(UInt8(ascii: "0") + type.rawValue)
        if type == .binaryEvent || type == .binaryAck {
            text.writeString(String(attachments.count))
            text.writeInteger(UInt8(ascii: "-"))
        }
        if namespace != "/" {
            text.writeString(namespace)
            text.writeInteger(UInt8(ascii: ","))
        }
        if let ackID { text.writeString(String(ackID)) }
        text.writeBuffer(&body)
        return EncodedPacket(text: text, attachments: attachments)
    }

    /// An EVENT packet: `["event", ...args]`.
    public static func event(_ event: String, _ args: [JSONValue], namespace: String, ackID: Int? = nil) -> EncodedPacket {
        encode(.event, namespace: namespace, ackID: ackID, payload: .array([.string(event)] + args))
    }

    /// Replaces `{"_placeholder":true,"num":N}` objects with the attachments they stand for.
    public static func reconstruct(_ value: JSONValue, attachments: [ByteBuffer]) throws(SocketIOPacketError) -> JSONValue {
        switch value {
        case .array(let values):
            var result: [JSONValue] = []
            result.reserveCapacity(values.count)
            for element in values { result.append(try reconstruct(element, attachments: attachments)) }
            return .array(result)
        case .object(let members):
            if members.count == 2, value["_placeholder"] == .bool(true), let num = value["num"] {
                guard let index = num.intValue, attachments.indices.contains(index) else {
                    throw SocketIOPacketError("invalid placeholder")
                }
                return .binary(attachments[index])
            }
            var result: [(key: String, value: JSONValue)] = []
            result.reserveCapacity(members.count)
            for member in members {
                result.append((key: member.key, value: try reconstruct(member.value, attachments: attachments)))
            }
            return .object(result)
        default:
            return value
        }
    }
}
