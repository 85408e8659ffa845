import NIOCore

/// Engine.IO v4 packet types, as the ASCII digit that starts every text packet.
public enum EnginePacketType: UInt8, Sendable {
    case open = 0x30
    case close = 0x31
    case ping = 0x32
    case pong = 0x33
    case message = 0x34
    case upgrade = 0x35
    case noop = 0x36
}

/// One decoded Engine.IO packet. Text data stays as bytes: the layers above parse what they need.
public enum EnginePacket: Equatable, Sendable {
    /// A text packet: its type and the bytes after the type digit.
    case text(EnginePacketType, ByteBuffer)
    /// A binary message (WebSocket binary frame, or `b<base64>` on polling).
    case binary(ByteBuffer)
}

/// A packet ready to write. Text packets carry their type digit, so one buffer serves every
/// recipient and both transports unchanged (encode once, write many).
public enum EngineOutboundPacket: Sendable {
    case text(ByteBuffer)
    case binary(ByteBuffer)

    public static func make(_ type: EnginePacketType, _ data: String = "") -> EngineOutboundPacket {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(1 + data.utf8.count)
        buffer.writeInteger(type.rawValue)
        buffer.writeString(data)
        return .text(buffer)
    }

    var byteCount: Int {
        switch self {
        case .text(let buffer), .binary(let buffer): return buffer.readableBytes
        }
    }
}

/// The record separator between packets in an HTTP long-polling payload.
let pollingRecordSeparator: UInt8 = 0x1E

public struct EngineDecodingError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

public enum EnginePacketCodec {
    /// Decodes one text packet (a WebSocket text frame, or one record of a polling payload).
    public static func decodeText(_ bytes: ByteBuffer) throws(EngineDecodingError) -> EnginePacket {
        var bytes = bytes
        guard let typeByte: UInt8 = bytes.readInteger() else {
            throw EngineDecodingError("empty packet")
        }
        guard let type = EnginePacketType(rawValue: typeByte) else {
            throw EngineDecodingError("unknown packet type \(typeByte)")
        }
        return .text(type, bytes)
    }

    /// Splits and decodes an HTTP long-polling payload: records joined by `\x1e`, binary as `b<base64>`.
    public static func decodePayload(_ payload: ByteBuffer) throws(EngineDecodingError) -> [EnginePacket] {
        var packets: [EnginePacket] = []
        let view = payload.readableBytesView
        var start = view.startIndex
        while true {
            let end = view[start...].firstIndex(of: pollingRecordSeparator) ?? view.endIndex
            let record = payload.getSlice(at: start, length: end - start)!
            if record.readableBytes == 0 {
                throw EngineDecodingError("empty record in payload")
            }
            if record.getInteger(at: record.readerIndex, as: UInt8.self) == UInt8(ascii: "b") {
                guard let decoded = Base64.decode(record.readableBytesView.dropFirst()) else {
                    throw EngineDecodingError("invalid base64 in binary record")
                }
                packets.append(.binary(ByteBuffer(bytes: decoded)))
            } else {
                // Text must be UTF-8, as over WebSocket.
                guard UTF8Validation.isValid(record.readableBytesView) else {
                    throw EngineDecodingError("invalid UTF-8 in text record")
                }
                packets.append(try decodeText(record))
            }
            if end == view.endIndex { break }
            start = end + 1
        }
        return packets
    }

    /// Joins packets into one HTTP long-polling payload.
    public static func encodePayload(_ packets: some Collection<EngineOutboundPacket>, into buffer: inout ByteBuffer) {
        var first = true
        for packet in packets {
            if !first { buffer.writeInteger(pollingRecordSeparator) }
            first = false
            switch packet {
            case .text(let bytes):
                buffer.writeImmutableBuffer(bytes)
            case .binary(let bytes):
                buffer.writeInteger(UInt8(ascii: "b"))
                Base64.encode(bytes.readableBytesView, into: &buffer)
            }
        }
    }
}

/// Standard base64 (RFC 4648 §4, with padding), as Engine.IO uses for binary over polling (also the
/// python-socketio bridge's attachments and binary arguments forwarded to a backend).
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, char) in alphabet.enumerated() { table[Int(char)] = UInt8(index) }
        return table
    }()

    public static func encode(_ bytes: some Collection<UInt8>, into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: (bytes.count + 2) / 3 * 4)
        var iterator = bytes.makeIterator()
        while let b0 = iterator.next() {
            let b1 = iterator.next()
            let b2 = iterator.next()
            buffer.writeInteger(alphabet[Int(b0 >> 2)])
            buffer.writeInteger(alphabet[Int((b0 & 0x03) << 4 | (b1 ?? 0) >> 4)])
            if let b1 {
                buffer.writeInteger(alphabet[Int((b1 & 0x0F) << 2 | (b2 ?? 0) >> 6)])
            } else {
                buffer.writeInteger(UInt8(ascii: "="))
            }
            if let b2 {
                buffer.writeInteger(alphabet[Int(b2 & 0x3F)])
            } else {
                buffer.writeInteger(UInt8(ascii: "="))
            }
        }
    }

    public static func decode(_ chars: some Collection<UInt8>) -> [UInt8]? {
        guard chars.count % 4 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(chars.count / 4 * 3)
        var quad: [UInt8] = [0, 0, 0, 0]
        var index = 0
        var padding = 0
        for char in chars {
            if char == UInt8(ascii: "=") {
                padding += 1
                quad[index] = 0
            } else {
                // Data after padding is malformed.
                guard padding == 0 else { return nil }
                let value = reverse[Int(char)]
                guard value != 0xFF else { return nil }
                quad[index] = value
            }
            index += 1
            if index == 4 {
                guard padding <= 2 else { return nil }
                output.append(quad[0] << 2 | quad[1] >> 4)
                if padding < 2 { output.append(quad[1] << 4 | quad[2] >> 2) }
                if padding < 1 { output.append(quad[2] << 6 | quad[3]) }
                index = 0
                if padding > 0 { break }
            }
        }
        // Padding may only terminate the input.
        if padding > 0 && output.count != (chars.count / 4 * 3 - padding) { return nil }
        return output
    }
}
