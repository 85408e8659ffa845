import EngineIOTestSupport
import NIOCore
import Testing

@testable import SocketIO

private func packet(
    _ type: SocketIOPacketType,
    _ namespace: String = "/",
    ack: Int? = nil,
    attachments: Int = 0,
    _ payload: String? = nil
) -> SocketIOPacket {
    SocketIOPacket(
        type: type,
        namespace: namespace,
        ackID: ack,
        attachmentCount: attachments,
        payload: payload.map { ByteBuffer(string: $0) }
    )
}

private let placeholder0 = #"{"_placeholder":true,"num":0}"#
private let placeholder1 = #"{"_placeholder":true,"num":1}"#

@Suite("Socket.IO packet codec")
struct SocketIOPacketCodecTests {
    // MARK: Decode

    static let decodeCases: [(input: String, expected: SocketIOPacket)] = [
        ("0", packet(.connect)),
        (#"0{"token":"x"}"#, packet(.connect, "/", #"{"token":"x"}"#)),
        ("0/admin,", packet(.connect, "/admin")),
        ("0/admin", packet(.connect, "/admin")),
        (#"0/admin,{"token":"x"}"#, packet(.connect, "/admin", #"{"token":"x"}"#)),
        ("1", packet(.disconnect)),
        ("1/admin,", packet(.disconnect, "/admin")),
        (#"2["a",1]"#, packet(.event, "/", #"["a",1]"#)),
        (#"2/admin,["a"]"#, packet(.event, "/admin", #"["a"]"#)),
        (#"212["a"]"#, packet(.event, ack: 12, #"["a"]"#)),
        (#"20["a"]"#, packet(.event, ack: 0, #"["a"]"#)),
        (#"2/admin,12["a"]"#, packet(.event, "/admin", ack: 12, #"["a"]"#)),
        (#"29007199254740991["a"]"#, packet(.event, ack: 9_007_199_254_740_991, #"["a"]"#)),
        (#"2/ns✓,["a"]"#, packet(.event, "/ns✓", #"["a"]"#)),
        (#"31[]"#, packet(.ack, ack: 1, "[]")),
        (#"3/nsp,7[]"#, packet(.ack, "/nsp", ack: 7, "[]")),
        (#"4{"message":"x"}"#, packet(.connectError, "/", #"{"message":"x"}"#)),
        (#"4/nsp,{"message":"x"}"#, packet(.connectError, "/nsp", #"{"message":"x"}"#)),
        ("51-[\"a\",\(placeholder0)]", packet(.binaryEvent, attachments: 1, "[\"a\",\(placeholder0)]")),
        (
            "52-/nsp,5[\"a\",\(placeholder0),\(placeholder1)]",
            packet(.binaryEvent, "/nsp", ack: 5, attachments: 2, "[\"a\",\(placeholder0),\(placeholder1)]")
        ),
        ("564-[\"a\"]", packet(.binaryEvent, attachments: 64, "[\"a\"]")),
        ("61-3[\(placeholder0)]", packet(.binaryAck, ack: 3, attachments: 1, "[\(placeholder0)]")),
        ("61-/nsp,3[\(placeholder0)]", packet(.binaryAck, "/nsp", ack: 3, attachments: 1, "[\(placeholder0)]")),
    ]

    @Test("decode", arguments: decodeCases)
    func decode(input: String, expected: SocketIOPacket) throws {
        #expect(try SocketIOPacketCodec.decode(ByteBuffer(string: input), maxAttachments: 64) == expected)
    }

    static let malformedCases: [(input: [UInt8], message: String)] = [
        ([], "unknown packet type"),
        (Array("7".utf8), "unknown packet type"),
        (Array(#"7["a"]"#.utf8), "unknown packet type"),
        (Array("9".utf8), "unknown packet type"),
        (Array("a".utf8), "unknown packet type"),
        (Array(#"/["a"]"#.utf8), "unknown packet type"),
        (Array(#"5["a"]"#.utf8), "invalid attachment count"),
        (Array(#"51["a"]"#.utf8), "invalid attachment count"),
        (Array("51".utf8), "invalid attachment count"),
        (Array(#"5-["a"]"#.utf8), "invalid attachment count"),
        (Array(#"565-["a"]"#.utf8), "too many attachments"),
        (Array(#"5100000-["a"]"#.utf8), "too many attachments"),
        (Array(#"29007199254740992["a"]"#.utf8), "invalid ack id"),
        (Array(#"212345678901234567["a"]"#.utf8), "invalid ack id"),
        (Array(#"299999999999999999999999["a"]"#.utf8), "invalid ack id"),
        (Array(#"3["a"]"#.utf8), "ack without id"),
        (Array(#"3/nsp,["a"]"#.utf8), "ack without id"),
        (Array(#"6"#.utf8) + Array(#"1-["a"]"#.utf8), "ack without id"),
        (Array("3".utf8), "missing payload"),
        (Array("31".utf8), "missing payload"),
        (Array("2".utf8), "missing payload"),
        (Array("21".utf8), "missing payload"),
        (Array("2/nsp,".utf8), "missing payload"),
        (Array("51-".utf8), "missing payload"),
        (Array("01{}".utf8), "unexpected ack id"),
        (Array("1/nsp,5".utf8), "unexpected ack id"),
        ([0x32, 0x2F, 0xFF, 0x2C, 0x5B, 0x5D], "invalid namespace"),
    ]

    @Test("decode rejects malformed packets", arguments: malformedCases)
    func decodeRejects(input: [UInt8], message: String) {
        #expect(throws: SocketIOPacketError(message)) {
            try SocketIOPacketCodec.decode(ByteBuffer(bytes: input), maxAttachments: 64)
        }
    }

    @Test func attachmentLimitIsConfigurable() throws {
        #expect(throws: SocketIOPacketError("too many attachments")) {
            try SocketIOPacketCodec.decode(ByteBuffer(string: #"53-["a"]"#), maxAttachments: 2)
        }
        let decoded = try SocketIOPacketCodec.decode(ByteBuffer(string: #"52-["a"]"#), maxAttachments: 2)
        #expect(decoded.attachmentCount == 2)
    }

    @Test func decodeHonoursReaderIndex() throws {
        var buffer = ByteBuffer(string: #"xx2/nsp,4["a"]"#)
        buffer.moveReaderIndex(forwardBy: 2)
        #expect(try SocketIOPacketCodec.decode(buffer, maxAttachments: 0) == packet(.event, "/nsp", ack: 4, #"["a"]"#))
    }

    // MARK: Encode

    static let encodeCases: [(packet: EncodedPacket, text: String, attachments: [[UInt8]])] = [
        (SocketIOPacketCodec.encode(.event, namespace: "/", payload: ["a", 1]), #"42["a",1]"#, []),
        (SocketIOPacketCodec.event("x", [], namespace: "/custom", ackID: 3), #"42/custom,3["x"]"#, []),
        (SocketIOPacketCodec.event("q", [true, nil], namespace: "/", ackID: 0), #"420["q",true,null]"#, []),
        (SocketIOPacketCodec.encode(.ack, namespace: "/nsp", ackID: 7, payload: []), "43/nsp,7[]", []),
        (SocketIOPacketCodec.encode(.ack, namespace: "/", ackID: 12, payload: ["ok"]), #"4312["ok"]"#, []),
        (SocketIOPacketCodec.encode(.connect, namespace: "/", payload: ["sid": "x"]), #"40{"sid":"x"}"#, []),
        (
            SocketIOPacketCodec.encode(.connect, namespace: "/admin", payload: ["sid": "x"]),
            #"40/admin,{"sid":"x"}"#, []
        ),
        (SocketIOPacketCodec.encode(.disconnect, namespace: "/"), "41", []),
        (SocketIOPacketCodec.encode(.disconnect, namespace: "/admin"), "41/admin,", []),
        (
            SocketIOPacketCodec.encode(.connectError, namespace: "/random", payload: ["message": "Invalid namespace"]),
            #"44/random,{"message":"Invalid namespace"}"#, []
        ),
        (
            SocketIOPacketCodec.event("a", [.binary(ByteBuffer(bytes: [1, 2, 3]))], namespace: "/"),
            "451-[\"a\",\(placeholder0)]", [[1, 2, 3]]
        ),
        (
            SocketIOPacketCodec.encode(
                .ack,
                namespace: "/nsp",
                ackID: 4,
                payload: [.binary(ByteBuffer(bytes: [9])), ["k": .binary(ByteBuffer(bytes: [8, 7]))]]
            ),
            "462-/nsp,4[\(placeholder0),{\"k\":\(placeholder1)}]", [[9], [8, 7]]
        ),
        (
            SocketIOPacketCodec.event("e", [.binary(ByteBuffer())], namespace: "/n", ackID: 1),
            "451-/n,1[\"e\",\(placeholder0)]", [[]]
        ),
    ]

    @Test("encode", arguments: encodeCases)
    func encode(packet: EncodedPacket, text: String, attachments: [[UInt8]]) throws {
        #expect(String(buffer: packet.text) == text)
        #expect(packet.socketIOText == String(text.dropFirst()))
        #expect(packet.attachments.map { Array($0.readableBytesView) } == attachments)

        // What the server encodes, the server decodes back to the same header.
        var socketIOText = packet.text
        socketIOText.moveReaderIndex(forwardBy: 1)
        let decoded = try SocketIOPacketCodec.decode(socketIOText, maxAttachments: 64)
        #expect(decoded.attachmentCount == attachments.count)
    }

    @Test func encodeRoundTripsThroughDecodeAndReconstruct() throws {
        let payload: JSONValue = [
            "upload", ["name": "a.bin", "data": .binary(ByteBuffer(bytes: [0, 255]))], .binary(ByteBuffer(bytes: [7])),
        ]
        let encoded = SocketIOPacketCodec.encode(.event, namespace: "/files", ackID: 42, payload: payload)
        var text = encoded.text
        text.moveReaderIndex(forwardBy: 1)
        let decoded = try SocketIOPacketCodec.decode(text, maxAttachments: 8)
        #expect(decoded.type == .binaryEvent)
        #expect(decoded.namespace == "/files")
        #expect(decoded.ackID == 42)
        #expect(decoded.attachmentCount == 2)
        let json = try JSONParser.parse(try #require(decoded.payload))
        #expect(try SocketIOPacketCodec.reconstruct(json, attachments: encoded.attachments) == payload)
    }

    // MARK: Reconstruct

    @Test func reconstructReplacesPlaceholders() throws {
        let value = try JSONParser.parse(
            "[\"a\",\(placeholder1),{\"x\":[\(placeholder0)]},{\"_placeholder\":false,\"num\":0}]"
        )
        let a = ByteBuffer(bytes: [1])
        let b = ByteBuffer(bytes: [2, 3])
        let result = try SocketIOPacketCodec.reconstruct(value, attachments: [a, b])
        #expect(
            result == ["a", .binary(b), ["x": [.binary(a)]], ["_placeholder": false, "num": 0]]
        )
    }

    @Test func reconstructLeavesObjectsWithOtherMembersAlone() throws {
        let value = try JSONParser.parse(#"{"_placeholder":true,"num":0,"extra":1}"#)
        #expect(try SocketIOPacketCodec.reconstruct(value, attachments: [ByteBuffer()]) == value)
    }

    static let badPlaceholders: [String] = [
        #"[{"_placeholder":true,"num":1}]"#,
        #"[{"_placeholder":true,"num":-1}]"#,
        #"[{"_placeholder":true,"num":"0"}]"#,
        #"[{"_placeholder":true,"num":0.5}]"#,
        #"[{"_placeholder":true,"num":null}]"#,
        #"[{"_placeholder":true,"num":99999999999999999999}]"#,
        #"{"k":[{"_placeholder":true,"num":7}]}"#,
    ]

    @Test("reconstruct rejects placeholders without an attachment", arguments: badPlaceholders)
    func reconstructRejects(json: String) throws {
        let value = try JSONParser.parse(json)
        #expect(throws: SocketIOPacketError("invalid placeholder")) {
            try SocketIOPacketCodec.reconstruct(value, attachments: [ByteBuffer(bytes: [1])])
        }
    }
}
