import Testing

@testable import Auth

@Suite("base64url")
struct Base64URLTests {
    @Test(arguments: [
        ("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy"),
    ])
    func rfc4648Vectors(plain: String, encoded: String) {
        #expect(Base64URL.encode(Array(plain.utf8)) == encoded)
        #expect(Base64URL.decode(Array(encoded.utf8)) == Array(plain.utf8))
    }

    @Test func urlAlphabet() {
        #expect(Base64URL.encode([0xFA, 0xFB, 0xFF]) == "-vv_")
        #expect(Base64URL.decode(Array("-vv_".utf8)) == [0xFA, 0xFB, 0xFF])
    }

    @Test(arguments: ["Zg==", "Zm8=", "+vv/", "Zm 9v", "Zm9v\n", "Z", "Zm9vY", "Zh", "Zm9", "Zm8.", "\u{e9}A"])
    func refused(input: String) {
        #expect(Base64URL.decode(Array(input.utf8)) == nil)
    }
}

@Suite("JWT JSON reader")
struct JWTJSONTests {
    @Test func parsesObjects() throws {
        let value = try JWTJSON.parse(#" {"a":1,"b":[true,false,null],"c":"x\"\u00e9\ud83d\ude00","d":-1.5e3,"e":{}} "#)
        #expect(value["a"] == .number("1"))
        #expect(value["b"] == .array([.bool(true), .bool(false), .null]))
        #expect(value["c"] == .string("x\"é😀"))
        #expect(value["d"]?.doubleValue == -1500)
        #expect(value["e"] == .object([]))
        #expect(value.objectValue?.map(\.key) == ["a", "b", "c", "d", "e"])
    }

    @Test func keepsBigNumbersAsText() throws {
        #expect(try JWTJSON.parse("12345678901234567890123") == .number("12345678901234567890123"))
        #expect(try JWTJSON.parse("1e2").intValue == 100)
        #expect(try JWTJSON.parse("1.5").intValue == nil)
    }

    @Test(arguments: [
        "", " ", "{", "}", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "-", "1e", "+1", "tru", "nul",
        "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\u{01}\"", "{} {}",
        "{\"a\":1,\"a\":2}", "[1] x", "NaN", "Infinity", "'a'", "/* */{}",
    ])
    func refused(input: String) {
        #expect(throws: AuthError.self) { try JWTJSON.parse(input) }
    }

    @Test func refusesInvalidUTF8() {
        #expect(throws: AuthError.self) { try JWTJSON.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: AuthError.self) { try JWTJSON.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) }
    }

    @Test func nestingLimit() throws {
        let deep = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        _ = try JWTJSON.parse(deep)
        let tooDeep = String(repeating: "[", count: 33) + String(repeating: "]", count: 33)
        let error = try #require(throws: AuthError.self) { try JWTJSON.parse(tooDeep) }
        #expect(error.code == .malformed)
        // Very deep input fails fast, without exhausting the stack.
        let hostile = String(repeating: "{\"a\":", count: 100_000)
        #expect(throws: AuthError.self) { try JWTJSON.parse(hostile) }
    }
}
