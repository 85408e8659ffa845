import EngineIOTestSupport
import NIOCore
import Testing

@testable import EngineIO

private func text(_ type: EnginePacketType, _ data: String = "") -> EnginePacket {
    .text(type, ByteBuffer(string: data))
}

private func binary(_ bytes: [UInt8]) -> EnginePacket {
    .binary(ByteBuffer(bytes: bytes))
}

@Suite("Engine.IO packet codec")
struct EnginePacketCodecTests {
    // MARK: decodeText

    static let textCases: [(input: String, expected: EnginePacket)] = [
        (#"0{"sid":"abc"}"#, text(.open, #"{"sid":"abc"}"#)),
        ("1", text(.close)),
        ("2", text(.ping)),
        ("2probe", text(.ping, "probe")),
        ("3", text(.pong)),
        ("3probe", text(.pong, "probe")),
        ("4", text(.message)),
        ("4hello", text(.message, "hello")),
        ("4héllo ✓", text(.message, "héllo ✓")),
        ("4\u{1E}", text(.message, "\u{1E}")),
        ("5", text(.upgrade)),
        ("6", text(.noop)),
    ]

    @Test("decodeText decodes every packet type", arguments: textCases)
    func decodeText(input: String, expected: EnginePacket) throws {
        #expect(try EnginePacketCodec.decodeText(ByteBuffer(string: input)) == expected)
    }

    static let badTextCases: [(input: [UInt8], message: String)] = [
        ([], "empty packet"),
        (Array("7".utf8), "unknown packet type 55"),
        (Array("9hello".utf8), "unknown packet type 57"),
        (Array("b4".utf8), "unknown packet type 98"),
        (Array("/".utf8), "unknown packet type 47"),
        ([0x00], "unknown packet type 0"),
        ([0xFF, 0x34], "unknown packet type 255"),
    ]

    @Test("decodeText rejects empty and unknown types", arguments: badTextCases)
    func decodeTextRejects(input: [UInt8], message: String) {
        #expect(throws: EngineDecodingError(message)) {
            try EnginePacketCodec.decodeText(ByteBuffer(bytes: input))
        }
    }

    @Test func decodeTextHonoursReaderIndex() throws {
        var buffer = ByteBuffer(string: "xx4hi")
        buffer.moveReaderIndex(forwardBy: 2)
        #expect(try EnginePacketCodec.decodeText(buffer) == text(.message, "hi"))
    }

    // MARK: decodePayload

    static let payloadCases: [(input: String, expected: [EnginePacket])] = [
        ("4hello", [text(.message, "hello")]),
        ("1", [text(.close)]),
        ("4a\u{1E}4b", [text(.message, "a"), text(.message, "b")]),
        ("4\u{1E}4", [text(.message), text(.message)]),
        ("3\u{1E}4x\u{1E}1", [text(.pong), text(.message, "x"), text(.close)]),
        ("bAQID", [binary([1, 2, 3])]),
        ("b", [binary([])]),
        ("bAA==", [binary([0])]),
        ("bAAE=", [binary([0, 1])]),
        ("b/w==", [binary([255])]),
        ("4a\u{1E}bAQID\u{1E}2", [text(.message, "a"), binary([1, 2, 3]), text(.ping)]),
        ("bAQID\u{1E}bBAU=", [binary([1, 2, 3]), binary([4, 5])]),
        // A text message may itself start with `b`: only the record's first byte decides.
        ("4bAQID", [text(.message, "bAQID")]),
    ]

    @Test("decodePayload splits records and decodes binary", arguments: payloadCases)
    func decodePayload(input: String, expected: [EnginePacket]) throws {
        #expect(try EnginePacketCodec.decodePayload(ByteBuffer(string: input)) == expected)
    }

    static let badPayloadCases: [(input: String, message: String)] = [
        ("", "empty record in payload"),
        ("\u{1E}", "empty record in payload"),
        ("4a\u{1E}", "empty record in payload"),
        ("\u{1E}4a", "empty record in payload"),
        ("4a\u{1E}\u{1E}4b", "empty record in payload"),
        ("7", "unknown packet type 55"),
        ("4a\u{1E}9", "unknown packet type 57"),
        // Base64: bad characters.
        ("bAQ*D", "invalid base64 in binary record"),
        ("bAQ-D", "invalid base64 in binary record"),
        ("bAQ_D", "invalid base64 in binary record"),
        ("bAQ D", "invalid base64 in binary record"),
        ("bAQé", "invalid base64 in binary record"),
        // Base64: bad length.
        ("bA", "invalid base64 in binary record"),
        ("bAQ", "invalid base64 in binary record"),
        ("bAQIDB", "invalid base64 in binary record"),
        ("bAA", "invalid base64 in binary record"),
        ("bAQID=", "invalid base64 in binary record"),
        // Base64: padding in the wrong place, or data after it.
        ("bA===", "invalid base64 in binary record"),
        ("b====", "invalid base64 in binary record"),
        ("b=AAA", "invalid base64 in binary record"),
        ("bA=AA", "invalid base64 in binary record"),
        ("bAA=A", "invalid base64 in binary record"),
        ("bAA==AAAA", "invalid base64 in binary record"),
        ("bAA==AA==", "invalid base64 in binary record"),
        ("bAAE=AAAA", "invalid base64 in binary record"),
        ("4ok\u{1E}bAA=A", "invalid base64 in binary record"),
    ]

    @Test("decodePayload rejects empty records and invalid base64", arguments: badPayloadCases)
    func decodePayloadRejects(input: String, message: String) {
        #expect(throws: EngineDecodingError(message)) {
            try EnginePacketCodec.decodePayload(ByteBuffer(string: input))
        }
    }

    @Test func decodePayloadHonoursReaderIndex() throws {
        var buffer = ByteBuffer(string: "GARBAGE4a\u{1E}bAQID")
        buffer.moveReaderIndex(forwardBy: 7)
        #expect(try EnginePacketCodec.decodePayload(buffer) == [text(.message, "a"), binary([1, 2, 3])])
    }

    // MARK: encodePayload

    @Test func encodePayloadJoinsTextAndBinary() throws {
        let packets: [EngineOutboundPacket] = [
            .make(.message, "hello"),
            .binary(ByteBuffer(bytes: [0, 1, 2, 255])),
            .make(.ping),
            .binary(ByteBuffer()),
            .make(.message, "é"),
        ]
        var buffer = ByteBuffer()
        EnginePacketCodec.encodePayload(packets, into: &buffer)
        #expect(String(buffer: buffer) == "4hello\u{1E}bAAEC/w==\u{1E}2\u{1E}b\u{1E}4é")

        let decoded = try EnginePacketCodec.decodePayload(buffer)
        #expect(
            decoded == [
                text(.message, "hello"), binary([0, 1, 2, 255]), text(.ping), binary([]), text(.message, "é"),
            ]
        )
    }

    @Test func encodePayloadOfOnePacketHasNoSeparator() {
        var buffer = ByteBuffer()
        EnginePacketCodec.encodePayload(CollectionOfOne(EngineOutboundPacket.make(.noop)), into: &buffer)
        #expect(String(buffer: buffer) == "6")
    }

    @Test func encodePayloadOfNothingIsEmpty() {
        var buffer = ByteBuffer()
        EnginePacketCodec.encodePayload([EngineOutboundPacket](), into: &buffer)
        #expect(buffer.readableBytes == 0)
    }

    @Test func encodePayloadAppendsToExistingBytes() {
        var buffer = ByteBuffer(string: "prefix:")
        EnginePacketCodec.encodePayload(
            [EngineOutboundPacket.make(.message, "a"), .make(.message, "b")],
            into: &buffer
        )
        #expect(String(buffer: buffer) == "prefix:4a\u{1E}4b")
    }

    @Test("encodePayload → decodePayload round trips binary of every length", arguments: 0..<70)
    func roundTripBinary(length: Int) throws {
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        var buffer = ByteBuffer()
        EnginePacketCodec.encodePayload(
            [EngineOutboundPacket.binary(ByteBuffer(bytes: bytes)), .make(.message, "x")],
            into: &buffer
        )
        #expect(try EnginePacketCodec.decodePayload(buffer) == [binary(bytes), text(.message, "x")])
    }

    @Test func makeWritesTypeDigitThenData() {
        guard case .text(let buffer) = EngineOutboundPacket.make(.open, #"{"a":1}"#) else {
            Issue.record("expected a text packet")
            return
        }
        #expect(String(buffer: buffer) == #"0{"a":1}"#)
        #expect(EngineOutboundPacket.make(.noop).byteCount == 1)
        #expect(EngineOutboundPacket.binary(ByteBuffer(bytes: [1, 2])).byteCount == 2)
    }

    // MARK: Base64 (RFC 4648 §10)

    static let rfc4648Vectors: [(plain: String, encoded: String)] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ]

    @Test("Base64 encodes the RFC 4648 test vectors", arguments: rfc4648Vectors)
    func base64Encode(plain: String, encoded: String) {
        var buffer = ByteBuffer()
        Base64.encode(Array(plain.utf8), into: &buffer)
        #expect(String(buffer: buffer) == encoded)
    }

    @Test("Base64 decodes the RFC 4648 test vectors", arguments: rfc4648Vectors)
    func base64Decode(plain: String, encoded: String) {
        #expect(Base64.decode(Array(encoded.utf8)) == Array(plain.utf8))
    }

    @Test func base64UsesTheStandardAlphabet() {
        var buffer = ByteBuffer()
        Base64.encode([0xFB, 0xFF, 0xBF], into: &buffer)
        #expect(String(buffer: buffer) == "+/+/")
        #expect(Base64.decode(Array("+/+/".utf8)) == [0xFB, 0xFF, 0xBF])
    }

    @Test func base64RoundTripsEveryByteValue() {
        let bytes = (0...255).map { UInt8($0) }
        var buffer = ByteBuffer()
        Base64.encode(bytes, into: &buffer)
        #expect(Base64.decode(Array(buffer.readableBytesView)) == bytes)
    }

    static let invalidBase64: [String] = [
        "Zg=", "Zg", "Z", "Zm9vY", "Zm9=v", "Zg==Zg==", "Z===", "====", "Zm9v====", "Zm 9", "Zm9\n", "Zm9.",
    ]

    @Test("Base64 rejects malformed input", arguments: invalidBase64)
    func base64Rejects(input: String) {
        #expect(Base64.decode(Array(input.utf8)) == nil)
    }
}
