import EngineIOTestSupport
import NIOCore
import Testing

@testable import SocketIO

private func serialize(_ value: JSONValue) -> String {
    JSONWriter.serialize(value)
}

private func nested(_ depth: Int, open: String = "[", close: String = "]") -> String {
    String(repeating: open, count: depth) + String(repeating: close, count: depth)
}

@Suite("JSON parser and writer")
struct JSONTests {
    // MARK: Round trips

    /// Canonical documents: parse then serialize gives the same bytes.
    static let canonical: [String] = [
        "1", "0", "-0", "-1", "-0.5e+10", "1E5", "2.5E-3", "123456789012345678901234567890",
        "-99999999999999999999.000000000000000000001", "3.14159265358979323846264338327950288",
        "true", "false", "null", #""""#, #""a""#, "[]", "{}", "[[]]", "[{}]", #"{"a":{}}"#,
        "[1,[2,[3]]]", #"{"b":1,"a":2}"#, #"{"z":null,"y":[true,false],"x":"s"}"#,
        #"{"a":[{"b":null}],"a":2}"#, #""é✓😀""#, #"["\"","\\","\n"]"#, #""\u0000\u001f""#,
    ]

    @Test("parse → serialize round trips", arguments: canonical)
    func roundTrip(text: String) throws {
        #expect(serialize(try JSONParser.parse(text)) == text)
    }

    @Test func numbersKeepTheirText() throws {
        #expect(try JSONParser.parse("1") == .number("1"))
        #expect(try JSONParser.parse("-0.5e+10") == .number("-0.5e+10"))
        guard case .number(let big) = try JSONParser.parse("[123456789012345678901234567890]").arrayValue?.first else {
            Issue.record("expected a number")
            return
        }
        #expect(big == "123456789012345678901234567890")
        guard case .number(let float) = try JSONParser.parse("1.0") else {
            Issue.record("expected a number")
            return
        }
        #expect(float == "1.0", "1.0 must not become 1")
    }

    @Test func objectMemberOrderIsPreserved() throws {
        let value = try JSONParser.parse(#"{"c":1,"a":2,"b":3}"#)
        guard case .object(let members) = value else {
            Issue.record("expected an object")
            return
        }
        #expect(members.map(\.key) == ["c", "a", "b"])
        #expect(value["a"] == 2)
        #expect(value["missing"] == nil)
        #expect(value != (try JSONParser.parse(#"{"a":2,"b":3,"c":1}"#)))
    }

    @Test func whitespaceIsSkippedEverywhere() throws {
        let value = try JSONParser.parse(" \t\n\r[ 1 ,\n{ \"a\" :\ttrue } , [ ] , { } ]\r\n ")
        #expect(serialize(value) == #"[1,{"a":true},[],{}]"#)
    }

    @Test func emptyContainers() throws {
        #expect(try JSONParser.parse("[]") == .array([]))
        #expect(try JSONParser.parse("{}") == .object([]))
        #expect(try JSONParser.parse("[ ]") == .array([]))
        #expect(try JSONParser.parse("{ }") == .object([]))
    }

    // MARK: Escapes

    static let escapes: [(json: String, value: String)] = [
        (#""\"""#, "\""),
        (#""\\""#, "\\"),
        (#""\/""#, "/"),
        (#""\b\f\n\r\t""#, "\u{08}\u{0C}\n\r\t"),
        (#""\u0041""#, "A"),
        (#""\u00e9""#, "é"),
        (#""\u00E9""#, "é"),
        (#""\u2713""#, "✓"),
        (#""\u0000""#, "\u{0}"),
        (#""\ud83d\ude00""#, "😀"),
        (#""\uD83D\uDE00""#, "😀"),
        (#""a\ud834\udd1eb""#, "a𝄞b"),
        (#""mixed é \u00e9 \n end""#, "mixed é é \n end"),
    ]

    @Test("escapes decode", arguments: escapes)
    func escape(json: String, value: String) throws {
        #expect(try JSONParser.parse(json) == .string(value))
    }

    @Test func escapesRoundTripThroughTheWriter() throws {
        let text = "\"\\/\u{08}\u{0C}\n\r\t\u{0}\u{1}\u{1F}\u{7F}é😀\u{2028}"
        let json = serialize(.string(text))
        #expect(json == #""\"\\/\b\f\n\r\t\u0000\u0001\u001f"# + "\u{7F}é😀\u{2028}\"")
        #expect(try JSONParser.parse(json) == .string(text))
    }

    @Test("the writer escapes every control character", arguments: 0..<0x20)
    func writerEscapesControlCharacter(code: Int) {
        let short: [Int: String] = [0x08: #"\b"#, 0x09: #"\t"#, 0x0A: #"\n"#, 0x0C: #"\f"#, 0x0D: #"\r"#]
        let hex = String(code, radix: 16)
        let expected = short[code] ?? (#"\u00"# + (hex.count == 1 ? "0" + hex : hex))
        let scalar = Character(Unicode.Scalar(UInt8(code)))
        #expect(serialize(.string("a\(scalar)b")) == "\"a\(expected)b\"")
    }

    @Test func writerEscapesKeys() {
        #expect(serialize(["a\"b\u{1}": 1]) == #"{"a\"b\u0001":1}"#)
    }

    // MARK: Rejections

    static let invalidStrings: [(input: [UInt8], name: String)] = [
        (Array("\"a\u{01}b\"".utf8), "control character U+0001"),
        (Array("\"a\tb\"".utf8), "raw tab"),
        (Array("\"a\nb\"".utf8), "raw newline"),
        (Array("\"\u{1F}\"".utf8), "control character U+001F"),
        ([0x22, 0xC3, 0x28, 0x22], "truncated 2-byte sequence"),
        ([0x22, 0xC0, 0xAF, 0x22], "overlong encoding"),
        ([0x22, 0xED, 0xA0, 0x80, 0x22], "UTF-8 encoded surrogate"),
        ([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], "above U+10FFFF"),
        ([0x22, 0xFF, 0x22], "0xFF"),
        ([0x22, 0x80, 0x22], "lone continuation byte"),
        ([0x22, 0xE2, 0x9C, 0x22], "truncated 3-byte sequence"),
        ([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D], "invalid UTF-8 in a key"),
        (Array(#""\ud83d""#.utf8), "lone high surrogate"),
        (Array(#""\ude00""#.utf8), "lone low surrogate"),
        (Array(#""\ud83d\u0041""#.utf8), "high surrogate then non-surrogate"),
        (Array(#""\ud83dx""#.utf8), "high surrogate then text"),
        (Array(#""\ud83d\ud83d""#.utf8), "two high surrogates"),
        (Array(#""\x""#.utf8), "unknown escape"),
        (Array(#""\u12""#.utf8), "short unicode escape"),
        (Array(#""\u12g4""#.utf8), "non-hex unicode escape"),
        (Array(#""\"#.utf8), "escape at end of input"),
        (Array(#""abc"#.utf8), "unterminated string"),
        ([0x22, 0x5C, 0xC3, 0xA9, 0x22], "escaped non-ASCII"),
        ([0x22, 0x5C, 0x01, 0x22], "escaped control character"),
    ]

    @Test("invalid strings are rejected", arguments: invalidStrings)
    func rejectsString(input: [UInt8], name: String) {
        #expect(throws: JSONError.self, "\(name)") { try JSONParser.parse(ByteBuffer(bytes: input)) }
    }

    static let invalidDocuments: [String] = [
        "", " ", "\n",
        // Numbers.
        "01", "-01", "1.", ".5", "-", "1e", "1e+", "1E-", "+1", "0x10", "NaN", "Infinity", "-Infinity", "--1",
        "1.e5", "1.5.2", "1e5e5", "- 1",
        // Literals.
        "tru", "nul", "True", "NULL", "nulls", "falsey", "t",
        // Structure.
        "[", "]", "[1,]", "[,1]", "[1 2]", "[1,,2]", "{", "}", #"{"a"}"#, #"{"a":}"#, #"{"a":1,}"#, "{a:1}",
        #"{"a" 1}"#, #"{"a":1 "b":2}"#, "{,}", #"{1:2}"#, "['a']",
        // Trailing characters.
        "1 2", "{} x", "[]]", "{}}", #""a""b""#, "null,", "[] []",
        // Not JSON at all.
        "undefined", "<", "\u{0}",
    ]

    @Test("invalid documents are rejected", arguments: invalidDocuments)
    func rejectsDocument(text: String) {
        #expect(throws: JSONError.self) { try JSONParser.parse(text) }
    }

    @Test func errorsCarryTheirOffset() {
        #expect(throws: JSONError(description: "unexpected character at offset 3", offset: 3)) {
            try JSONParser.parse("[1,]")
        }
        #expect(throws: JSONError(description: "trailing characters at offset 3", offset: 3)) {
            try JSONParser.parse("{} x")
        }
        #expect(throws: JSONError(description: "unexpected end at offset 0", offset: 0)) {
            try JSONParser.parse("")
        }
    }

    // MARK: Depth

    @Test func depthUpToTheDefaultLimitIsAccepted() throws {
        #expect(JSONParser.defaultMaxDepth == 64)
        let text = nested(64)
        #expect(serialize(try JSONParser.parse(text)) == text)
        let objects = String(repeating: #"{"a":"#, count: 63) + "[1]" + String(repeating: "}", count: 63)
        #expect(serialize(try JSONParser.parse(objects)) == objects)
    }

    @Test func depthOverTheDefaultLimitIsRejected() {
        #expect(throws: JSONError(description: "nesting too deep at offset 64", offset: 64)) {
            try JSONParser.parse(nested(65))
        }
        #expect(throws: JSONError.self) { try JSONParser.parse(nested(100)) }
        #expect(throws: JSONError.self) {
            try JSONParser.parse(String(repeating: #"{"a":"#, count: 65) + "1" + String(repeating: "}", count: 65))
        }
        // Only the first levels are read: hostile depth fails fast without exhausting the stack.
        #expect(throws: JSONError.self) { try JSONParser.parse(String(repeating: "[", count: 1_000_000)) }
    }

    @Test func depthLimitIsConfigurable() throws {
        #expect(try JSONParser.parse(nested(100), maxDepth: 100).arrayValue != nil)
        #expect(throws: JSONError.self) { try JSONParser.parse(nested(3), maxDepth: 2) }
        #expect(try JSONParser.parse(nested(2), maxDepth: 2).arrayValue != nil)
        #expect(try JSONParser.parse("1", maxDepth: 0) == 1)
    }

    // MARK: Values and writer

    @Test func accessors() throws {
        #expect(JSONValue.number("42").intValue == 42)
        #expect(JSONValue.number("1e2").intValue == 100)
        #expect(JSONValue.number("1.5").intValue == nil)
        #expect(JSONValue.string("1").intValue == nil)
        #expect(JSONValue.string("s").stringValue == "s")
        #expect(JSONValue.number("1").stringValue == nil)
        #expect(JSONValue(7) == .number("7"))
        #expect(JSONValue.object([]).isObject)
        #expect(!JSONValue.array([]).isObject)
        #expect(JSONValue.array([["a": [.binary(ByteBuffer())]]]).containsBinary)
        #expect(!JSONValue.array([["a": [1, "b", nil]]]).containsBinary)
    }

    @Test func writerTurnsBinaryIntoPlaceholdersInOrder() {
        var writer = JSONWriter()
        var buffer = ByteBuffer()
        let a = ByteBuffer(bytes: [1])
        let b = ByteBuffer(bytes: [2])
        writer.write(["x", .binary(a), ["k": .binary(b)]], into: &buffer)
        #expect(
            String(buffer: buffer)
                == #"["x",{"_placeholder":true,"num":0},{"k":{"_placeholder":true,"num":1}}]"#
        )
        #expect(writer.attachments == [a, b])
    }

    @Test func writerWritesEveryKind() {
        let value: JSONValue = [nil, true, false, .number("-1.5e3"), "s", [], [:], ["k": ["n": 1]]]
        #expect(serialize(value) == #"[null,true,false,-1.5e3,"s",[],{},{"k":{"n":1}}]"#)
    }
}
