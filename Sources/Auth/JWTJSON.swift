/// A JSON value from a JWT header, claims set or JWKS document.
///
/// Numbers keep their original text (no rounding of large ids); object members keep their order.
/// Parsing is strict RFC 8259: one value, no trailing commas or comments, valid UTF-8, no lone
/// surrogates, no duplicate member names (two `exp`s must not mean different things to
/// different readers) and a nesting limit.
public enum JWTJSON: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JWTJSON])
    case object([Member])

    /// One member of an object.
    public struct Member: Sendable, Hashable {
        public var key: String
        public var value: JWTJSON
        public init(key: String, value: JWTJSON) {
            self.key = key
            self.value = value
        }
    }

    /// The member named `key` of an object; nil for a missing member or a non-object.
    public subscript(key: String) -> JWTJSON? {
        guard case .object(let members) = self else { return nil }
        return members.first(where: { $0.key == key })?.value
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The number as a finite `Double`; nil for a non-number.
    public var doubleValue: Double? {
        if case .number(let text) = self, let value = Double(text), value.isFinite { return value }
        return nil
    }

    /// The number as an `Int` when it is integral and in range; nil otherwise.
    public var intValue: Int? {
        guard case .number(let text) = self else { return nil }
        if let value = Int(text) { return value }
        guard let value = doubleValue, value.rounded(.towardZero) == value,
            value >= -9.0e18, value <= 9.0e18
        else { return nil }
        return Int(value)
    }

    public var arrayValue: [JWTJSON]? {
        if case .array(let values) = self { return values }
        return nil
    }

    public var objectValue: [Member]? {
        if case .object(let members) = self { return members }
        return nil
    }
}

extension JWTJSON {
    /// The default maximum depth of nested arrays and objects.
    public static let defaultMaximumDepth = 32

    /// Parses one JSON value that spans all of `bytes` (surrounding whitespace allowed).
    public static func parse(_ bytes: [UInt8], maximumDepth: Int = defaultMaximumDepth) throws(AuthError) -> JWTJSON {
        var parser = JWTJSONParser(bytes: bytes, maximumDepth: maximumDepth)
        return try parser.parseDocument()
    }

    /// Parses one JSON value from UTF-8 text.
    public static func parse(_ text: String, maximumDepth: Int = defaultMaximumDepth) throws(AuthError) -> JWTJSON {
        try parse(Array(text.utf8), maximumDepth: maximumDepth)
    }
}

/// A recursive-descent parser over UTF-8 bytes.
struct JWTJSONParser {
    private let bytes: [UInt8]
    private let maximumDepth: Int
    private var index = 0
    private var depth = 0

    init(bytes: [UInt8], maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    private static func fail(_ message: String) -> AuthError { AuthError(.malformed, "invalid JSON: \(message)") }

    mutating func parseDocument() throws(AuthError) -> JWTJSON {
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        guard index == bytes.count else { throw Self.fail("trailing data") }
        return value
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func expectLiteral(_ literal: StaticString) throws(AuthError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw Self.fail("unexpected end") }
        let matches = literal.withUTF8Buffer { buffer in
            buffer.elementsEqual(bytes[index..<(index + count)])
        }
        guard matches else { throw Self.fail("unexpected literal") }
        index += count
    }

    private mutating func parseValue() throws(AuthError) -> JWTJSON {
        guard let byte = peek() else { throw Self.fail("unexpected end") }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw Self.fail("unexpected character")
        }
    }

    private mutating func enter() throws(AuthError) {
        depth += 1
        guard depth <= maximumDepth else { throw Self.fail("nested too deeply") }
    }

    private mutating func parseObject() throws(AuthError) -> JWTJSON {
        try enter()
        defer { depth -= 1 }
        index += 1  // {
        var members: [JWTJSON.Member] = []
        var keys = Set<String>()
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw Self.fail("expected a member name") }
            let key = try parseString()
            guard keys.insert(key).inserted else { throw Self.fail("duplicate member name") }
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw Self.fail("expected ':'") }
            index += 1
            skipWhitespace()
            members.append(JWTJSON.Member(key: key, value: try parseValue()))
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return .object(members)
            default: throw Self.fail("expected ',' or '}'")
            }
        }
    }

    private mutating func parseArray() throws(AuthError) -> JWTJSON {
        try enter()
        defer { depth -= 1 }
        index += 1  // [
        var values: [JWTJSON] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            index += 1
            return .array(values)
        }
        while true {
            skipWhitespace()
            values.append(try parseValue())
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return .array(values)
            default: throw Self.fail("expected ',' or ']'")
            }
        }
    }

    private mutating func parseNumber() throws(AuthError) -> JWTJSON {
        let start = index
        if peek() == UInt8(ascii: "-") { index += 1 }
        guard let first = peek(), first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else {
            throw Self.fail("invalid number")
        }
        if first == UInt8(ascii: "0") {
            index += 1
        } else {
            skipDigits()
        }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard skipDigits() > 0 else { throw Self.fail("invalid number") }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard skipDigits() > 0 else { throw Self.fail("invalid number") }
        }
        return .number(String(decoding: bytes[start..<index], as: UTF8.self))
    }

    @discardableResult
    private mutating func skipDigits() -> Int {
        let start = index
        while let byte = peek(), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { index += 1 }
        return index - start
    }

    private mutating func parseHex4() throws(AuthError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw Self.fail("unexpected end") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw Self.fail("invalid \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    private mutating func parseString() throws(AuthError) -> String {
        index += 1  // opening quote
        var utf8: [UInt8] = []
        while true {
            guard let byte = peek() else { throw Self.fail("unterminated string") }
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                // Raw bytes were copied as they came: validate the UTF-8 once per string.
                guard let string = String(validating: utf8, as: UTF8.self) else {
                    throw Self.fail("invalid UTF-8")
                }
                return string
            case UInt8(ascii: "\\"):
                guard let escape = peek() else { throw Self.fail("unterminated string") }
                index += 1
                switch escape {
                case UInt8(ascii: "\""): utf8.append(0x22)
                case UInt8(ascii: "\\"): utf8.append(0x5C)
                case UInt8(ascii: "/"): utf8.append(0x2F)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try parseHex4()
                    if (0xD800...0xDBFF).contains(code) {
                        guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"),
                            bytes[index + 1] == UInt8(ascii: "u")
                        else { throw Self.fail("lone surrogate") }
                        index += 2
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw Self.fail("lone surrogate") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(code) {
                        throw Self.fail("lone surrogate")
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw Self.fail("invalid \\u escape") }
                    UTF8.encode(scalar) { utf8.append($0) }
                default: throw Self.fail("invalid escape")
                }
            case 0x00..<0x20: throw Self.fail("control character in string")
            default: utf8.append(byte)
            }
        }
    }
}
