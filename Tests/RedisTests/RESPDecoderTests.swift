import RedisTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import Redis

private func bulk(_ string: String) -> RESPValue {
    .bulkString(ByteBuffer(string: string))
}

/// Valid RESP2 inputs and the values they decode to.
private let validCases: [(input: String, expected: [RESPValue])] = [
    ("+OK\r\n", [.simpleString("OK")]),
    ("+\r\n", [.simpleString("")]),
    ("-ERR unknown command 'FOO'\r\n", [.error("ERR unknown command 'FOO'")]),
    ("-NOPERM this user has no permissions\r\n", [.error("NOPERM this user has no permissions")]),
    (":0\r\n", [.integer(0)]),
    (":-42\r\n", [.integer(-42)]),
    (":9223372036854775807\r\n", [.integer(.max)]),
    ("$5\r\nhello\r\n", [bulk("hello")]),
    ("$0\r\n\r\n", [bulk("")]),
    ("$4\r\na\r\nb\r\n", [bulk("a\r\nb")]),
    ("$-1\r\n", [.null]),
    ("*-1\r\n", [.null]),
    ("*0\r\n", [.array([])]),
    ("*3\r\n:1\r\n$3\r\nfoo\r\n+bar\r\n", [.array([.integer(1), bulk("foo"), .simpleString("bar")])]),
    ("*2\r\n$-1\r\n*-1\r\n", [.array([.null, .null])]),
    (
        "*2\r\n*2\r\n:1\r\n*1\r\n$1\r\nx\r\n*0\r\n",
        [.array([.array([.integer(1), .array([bulk("x")])]), .array([])])]
    ),
    ("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:7\r\n", [.array([.array([.array([.array([.array([.integer(7)])])])])])]),
    (
        "*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$5\r\nhello\r\n",
        [.array([bulk("message"), bulk("room"), bulk("hello")])]
    ),
    ("*2\r\n-ERR inner\r\n:3\r\n", [.array([.error("ERR inner"), .integer(3)])]),
    // Several replies in one read.
    ("+OK\r\n:1\r\n$-1\r\n*1\r\n$1\r\na\r\n", [.simpleString("OK"), .integer(1), .null, .array([bulk("a")])]),
]

/// Inputs that are not RESP2: decoding must fail with a protocol error, never crash.
private let malformedCases: [String] = [
    "?what\r\n",
    "$abc\r\n",
    "$-5\r\n",
    "*-7\r\n",
    "*2147483648\r\n",
    ":12x\r\n",
    "$3\r\nabcd\r\n",
    "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
    "\r\n",
]

private func decodeAll(_ chunks: [ByteBuffer]) throws -> [RESPValue] {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
    defer { _ = try? channel.finish() }
    var values: [RESPValue] = []
    for chunk in chunks {
        try channel.writeInbound(chunk)
        while let value = try channel.readInbound(as: RESPValue.self) {
            values.append(value)
        }
    }
    return values
}

@Suite("RESP decoder (hiredis)")
struct RESPDecoderTests {
    @Test("every reply type, nested and nil", arguments: validCases.indices)
    func decodesValidInput(index: Int) throws {
        let (input, expected) = validCases[index]
        #expect(try decodeAll([ByteBuffer(string: input)]) == expected)
    }

    @Test("replies split at every byte boundary", arguments: validCases.indices)
    func decodesSplitInput(index: Int) throws {
        let (input, expected) = validCases[index]
        let bytes = Array(input.utf8)
        for split in 1..<bytes.count {
            let chunks = [ByteBuffer(bytes: bytes[..<split]), ByteBuffer(bytes: bytes[split...])]
            #expect(try decodeAll(chunks) == expected, "split at \(split)")
        }
        // And one byte at a time.
        #expect(try decodeAll(bytes.map { ByteBuffer(bytes: [$0]) }) == expected)
    }

    @Test("malformed input is a protocol error", arguments: malformedCases)
    func rejectsMalformedInput(input: String) throws {
        let error = #expect(throws: RedisError.self) {
            _ = try decodeAll([ByteBuffer(string: input)])
        }
        #expect(error?.code == .protocolError)
    }

    @Test("a protocol error after valid replies still delivers the valid ones first")
    func validThenMalformed() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
        #expect(throws: RedisError.self) {
            try channel.writeInbound(ByteBuffer(string: "+OK\r\n:1\r\n!bad\r\n"))
        }
        #expect(try channel.readInbound(as: RESPValue.self) == .simpleString("OK"))
        #expect(try channel.readInbound(as: RESPValue.self) == .integer(1))
        _ = try? channel.finish()
    }

    @Test("many bulk strings across read and feed boundaries keep their bytes")
    func manyBulkStringsAcrossBoundaries() throws {
        // Values are sliced from the input when they lie inside the piece fed last, copied otherwise; both must
        // give the same bytes whatever the read sizes.
        var input: [UInt8] = []
        var expected: [RESPValue] = []
        for index in 0..<5000 {
            let value =
                String(repeating: Character(UnicodeScalar(UInt8(97 + index % 26))), count: (index * 37) % 301)
                + "#\(index)"
            input += Array("$\(value.utf8.count)\r\n\(value)\r\n".utf8)
            expected.append(bulk(value))
        }
        for pieceSize in [input.count, 65_536, 8_191, 1_000, 97] {
            let decoder = RESPDecoder()
            var values: [RESPValue] = []
            for start in stride(from: 0, to: input.count, by: pieceSize) {
                try decoder.decode(ByteBuffer(bytes: input[start..<min(start + pieceSize, input.count)])) {
                    values.append($0)
                }
            }
            #expect(values == expected, "pieces of \(pieceSize) bytes")
        }
    }

    @Test("large bulk strings and long arrays")
    func largeValues() throws {
        let payload = String(repeating: "x", count: 1_000_000)
        var input = "$\(payload.utf8.count)\r\n\(payload)\r\n*1000\r\n"
        for index in 0..<1000 { input += ":\(index)\r\n" }
        let bytes = Array(input.utf8)
        // Fed in 4 KiB pieces, like socket reads.
        let chunks = stride(from: 0, to: bytes.count, by: 4096).map {
            ByteBuffer(bytes: bytes[$0..<min($0 + 4096, bytes.count)])
        }
        let values = try decodeAll(chunks)
        #expect(values.count == 2)
        #expect(values.first == bulk(payload))
        #expect(values.last == .array((0..<1000).map { .integer(Int64($0)) }))
    }
}

@Suite("RESP command encoding")
struct RESPCommandTests {
    @Test func encodesMixedArguments() {
        let command = RESPCommand("SET", "key", ByteBuffer(string: "välue"), 42, -7, [UInt8]([0, 13, 10]))
        let expected = "*6\r\n$3\r\nSET\r\n$3\r\nkey\r\n$6\r\nvälue\r\n$2\r\n42\r\n$2\r\n-7\r\n$3\r\n\0\r\n\r\n"
        #expect(String(buffer: command.buffer) == expected)
    }

    @Test func encodesLongArgumentsAndCounts() {
        let long = String(repeating: "a", count: 1234)
        let names = (0..<11).map { "k\($0)" }
        let command = RESPCommand("DEL", arguments: names)
        #expect(String(buffer: command.buffer).hasPrefix("*12\r\n$3\r\nDEL\r\n$2\r\nk0\r\n"))
        let set = RESPCommand("SET", long, Int64.min)
        #expect(String(buffer: set.buffer) == "*3\r\n$3\r\nSET\r\n$1234\r\n\(long)\r\n$20\r\n-9223372036854775808\r\n")
    }

    @Test func pipelineConcatenatesCommands() {
        var pipeline = RedisPipeline()
        pipeline.append("PING")
        pipeline.append(RESPCommand("GET", "a"))
        #expect(pipeline.count == 2)
        #expect(String(buffer: pipeline.buffer) == "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n")
    }

    @Test func encodedCommandDecodesAsArray() throws {
        // Round trip: a command is itself a valid RESP array of bulk strings.
        let command = RESPCommand("HSET", "h", "f", 1)
        #expect(try decodeAll([command.buffer]) == [.array([bulk("HSET"), bulk("h"), bulk("f"), bulk("1")])])
    }
}

@Suite("Redis errors")
struct RedisErrorTests {
    @Test func classifiesServerErrors() {
        #expect(RedisError(serverMessage: "ERR syntax error").code == .err)
        #expect(RedisError(serverMessage: "NOPERM no").code == .noperm)
        #expect(RedisError(serverMessage: "WRONGTYPE Operation").code == .wrongType)
        #expect(RedisError(serverMessage: "SOMETHING new").code == .otherServerError)
        let moved = RedisError(serverMessage: "MOVED 3999 127.0.0.1:6381")
        #expect(moved.code == .moved)
        #expect(moved.redirection?.slot == 3999)
        #expect(moved.redirection?.host == "127.0.0.1")
        #expect(moved.redirection?.port == 6381)
        #expect(moved.message == "MOVED 3999 127.0.0.1:6381")
        #expect(moved.code.isServerError)
        #expect(!RedisError.Code.timeout.isServerError)
    }
}
