/// The little JSON the pools need, without depending on higher layers: a validating parser (user objects are
/// checked before they are stored, so Python's `json.loads` can always read them), string encoding, and the
/// in-place update of one top-level member that keeps every other byte of the object as it was.
package enum PresenceJSON: Sendable, Hashable {
    case null
    case bool(Bool)
    /// Numbers written without fraction or exponent that fit 64 bits.
    case integer(Int64)
    case double(Double)
    case string(String)
    case array([PresenceJSON])
    /// Duplicate names: the last one wins, as in Python's `json.loads`.
    case object([String: PresenceJSON])

    package subscript(key: String) -> PresenceJSON? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    package var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    package var integerValue: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    package var arrayValue: [PresenceJSON]? {
        if case .array(let values) = self { return values }
        return nil
    }

    /// Parses one JSON text (RFC 8259; surrounding whitespace allowed), or nil if it is not valid JSON.
    package static func parse(_ text: String) -> PresenceJSON? {
        var parser = Parser(bytes: Array(text.utf8))
        guard let value = parser.value(depth: 0) else { return nil }
        parser.skipWhitespace()
        return parser.index == parser.bytes.count ? value : nil
    }

    /// A JSON string literal for `value`: escapes `"`, `\` and control characters, nothing else.
    package static func quoted(_ value: String) -> String {
        var out = "\""
        out.reserveCapacity(value.utf8.count + 2)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// `["a","b"]`: the USER_POOL value.
    package static func encodeStringList(_ values: [String]) -> String {
        "[" + values.map(Self.quoted).joined(separator: ",") + "]"
    }

    /// `{"sid":{"updated_at":1700000000}}` (sids sorted): the USAGE_POOL value.
    package static func encodeUsage(_ entries: [String: Int]) -> String {
        "{"
            + entries.sorted { $0.key < $1.key }.map { "\(Self.quoted($0.key)):{\"updated_at\":\($0.value)}" }
            .joined(separator: ",") + "}"
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        static let maximumDepth = 512

        mutating func skipWhitespace() {
            while self.index < self.bytes.count, Self.isWhitespace(self.bytes[self.index]) { self.index += 1 }
        }

        static func isWhitespace(_ byte: UInt8) -> Bool {
            byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
        }

        mutating func value(depth: Int) -> PresenceJSON? {
            guard depth < Self.maximumDepth else { return nil }
            self.skipWhitespace()
            guard self.index < self.bytes.count else { return nil }
            switch self.bytes[self.index] {
            case UInt8(ascii: "{"): return self.object(depth: depth)
            case UInt8(ascii: "["): return self.array(depth: depth)
            case UInt8(ascii: "\""): return self.string().map(PresenceJSON.string)
            case UInt8(ascii: "t"): return self.literal("true", .bool(true))
            case UInt8(ascii: "f"): return self.literal("false", .bool(false))
            case UInt8(ascii: "n"): return self.literal("null", .null)
            default: return self.number()
            }
        }

        mutating func literal(_ word: String, _ value: PresenceJSON) -> PresenceJSON? {
            let word = Array(word.utf8)
            guard self.index + word.count <= self.bytes.count,
                Array(self.bytes[self.index..<self.index + word.count]) == word
            else { return nil }
            self.index += word.count
            return value
        }

        mutating func object(depth: Int) -> PresenceJSON? {
            self.index += 1
            var members: [String: PresenceJSON] = [:]
            self.skipWhitespace()
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "}") {
                self.index += 1
                return .object(members)
            }
            while true {
                self.skipWhitespace()
                guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\""),
                    let key = self.string()
                else { return nil }
                self.skipWhitespace()
                guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ":") else { return nil }
                self.index += 1
                guard let value = self.value(depth: depth + 1) else { return nil }
                members[key] = value
                self.skipWhitespace()
                guard self.index < self.bytes.count else { return nil }
                switch self.bytes[self.index] {
                case UInt8(ascii: ","): self.index += 1
                case UInt8(ascii: "}"):
                    self.index += 1
                    return .object(members)
                default: return nil
                }
            }
        }

        mutating func array(depth: Int) -> PresenceJSON? {
            self.index += 1
            var values: [PresenceJSON] = []
            self.skipWhitespace()
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "]") {
                self.index += 1
                return .array(values)
            }
            while true {
                guard let value = self.value(depth: depth + 1) else { return nil }
                values.append(value)
                self.skipWhitespace()
                guard self.index < self.bytes.count else { return nil }
                switch self.bytes[self.index] {
                case UInt8(ascii: ","): self.index += 1
                case UInt8(ascii: "]"):
                    self.index += 1
                    return .array(values)
                default: return nil
                }
            }
        }

        mutating func hex4() -> UInt32? {
            guard self.index + 4 <= self.bytes.count else { return nil }
            var value: UInt32 = 0
            for byte in self.bytes[self.index..<self.index + 4] {
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: return nil
                }
                value = value << 4 | UInt32(digit)
            }
            self.index += 4
            return value
        }

        /// At an opening quote; decodes the string and moves past its closing quote.
        mutating func string() -> String? {
            self.index += 1
            var scalars = String.UnicodeScalarView()
            var runStart = self.index
            func flushRun(_ parser: Parser, to end: Int) -> Bool {
                guard runStart < end else { return true }
                // Validates the raw UTF-8 of an unescaped run.
                guard let run = String(validating: parser.bytes[runStart..<end], as: UTF8.self) else { return false }
                scalars.append(contentsOf: run.unicodeScalars)
                return true
            }
            while self.index < self.bytes.count {
                let byte = self.bytes[self.index]
                if byte == UInt8(ascii: "\"") {
                    guard flushRun(self, to: self.index) else { return nil }
                    self.index += 1
                    return String(scalars)
                }
                if byte < 0x20 { return nil }
                if byte != UInt8(ascii: "\\") {
                    self.index += 1
                    continue
                }
                guard flushRun(self, to: self.index), self.index + 1 < self.bytes.count else { return nil }
                let escape = self.bytes[self.index + 1]
                self.index += 2
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    guard let unit = self.hex4() else { return nil }
                    if (0xD800..<0xDC00).contains(unit) {
                        guard self.index + 1 < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\\"),
                            self.bytes[self.index + 1] == UInt8(ascii: "u")
                        else { return nil }
                        self.index += 2
                        guard let low = self.hex4(), (0xDC00..<0xE000).contains(low),
                            let scalar = Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                        else { return nil }
                        scalars.append(scalar)
                    } else {
                        guard let scalar = Unicode.Scalar(unit) else { return nil }
                        scalars.append(scalar)
                    }
                default: return nil
                }
                runStart = self.index
            }
            return nil
        }

        mutating func number() -> PresenceJSON? {
            let start = self.index
            func digits(_ parser: inout Parser) -> Int {
                let from = parser.index
                while parser.index < parser.bytes.count,
                    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(parser.bytes[parser.index])
                {
                    parser.index += 1
                }
                return parser.index - from
            }
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "-") { self.index += 1 }
            let integerStart = self.index
            let integerDigits = digits(&self)
            guard integerDigits > 0 else { return nil }
            if integerDigits > 1, self.bytes[integerStart] == UInt8(ascii: "0") { return nil }
            var isInteger = true
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ".") {
                self.index += 1
                isInteger = false
                guard digits(&self) > 0 else { return nil }
            }
            if self.index < self.bytes.count, self.bytes[self.index] | 0x20 == UInt8(ascii: "e") {
                self.index += 1
                isInteger = false
                if self.index < self.bytes.count,
                    self.bytes[self.index] == UInt8(ascii: "+") || self.bytes[self.index] == UInt8(ascii: "-")
                {
                    self.index += 1
                }
                guard digits(&self) > 0 else { return nil }
            }
            let text = String(decoding: self.bytes[start..<self.index], as: UTF8.self)
            if isInteger, let value = Int64(text) { return .integer(value) }
            return Double(text).map(PresenceJSON.double)
        }
    }
}

/// Sets one top-level member of a JSON object given as text, keeping every other byte as it was: the value of the
/// last member named `name` is replaced, or the member is appended before the closing brace.
///
/// This is the very algorithm of the `set_member` Lua function in ``PresenceScripts`` (the heartbeat script), so
/// the in-memory store produces byte for byte what Redis stores. It scans, it does not validate: keys are compared
/// as raw JSON text (an escaped spelling of the name is another name), and scalars are whatever lies before the
/// next `,`, `}`, `]` or whitespace.
package enum JSONMemberSetter {
    /// - Parameters:
    ///   - name: the member name, unquoted; it must need no escaping.
    ///   - value: the new value, as JSON text.
    /// - Returns: the new text, or nil if `json` is not an object (as far as the scan can tell).
    package static func setting(_ name: String, to value: String, in json: String) -> String? {
        let s = Array(json.utf8)
        let rawName = Array("\"\(name)\"".utf8)

        func skipWhitespace(_ i: Int) -> Int? {
            var i = i
            while i < s.count {
                switch s[i] {
                case 0x20, 0x09, 0x0D, 0x0A: i += 1
                default: return i
                }
            }
            return nil
        }
        /// At a quote; the index after the closing quote.
        func skipString(_ i: Int) -> Int? {
            var j = i + 1
            while j < s.count {
                switch s[j] {
                case UInt8(ascii: "\""): return j + 1
                case UInt8(ascii: "\\"): j += 2
                default: j += 1
                }
            }
            return nil
        }
        /// The index after the value starting at `i`.
        func skipValue(_ i: Int) -> Int? {
            switch s[i] {
            case UInt8(ascii: "\""):
                return skipString(i)
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                var j = i
                while j < s.count {
                    switch s[j] {
                    case UInt8(ascii: "\""):
                        guard let after = skipString(j) else { return nil }
                        j = after
                    case UInt8(ascii: "{"), UInt8(ascii: "["):
                        depth += 1
                        j += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"):
                        depth -= 1
                        j += 1
                        if depth == 0 { return j }
                    default:
                        j += 1
                    }
                }
                return nil
            default:
                var j = i
                while j < s.count {
                    switch s[j] {
                    case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0D, 0x0A:
                        return j == i ? nil : j
                    default: j += 1
                    }
                }
                return nil
            }
        }

        guard var i = skipWhitespace(0), s[i] == UInt8(ascii: "{") else { return nil }
        guard let first = skipWhitespace(i + 1) else { return nil }
        i = first
        var found: Range<Int>?
        let close: Int
        let empty: Bool
        if s[i] == UInt8(ascii: "}") {
            close = i
            empty = true
        } else {
            empty = false
            while true {
                guard s[i] == UInt8(ascii: "\""), let keyEnd = skipString(i) else { return nil }
                let isName = s[i..<keyEnd].elementsEqual(rawName)
                guard let colon = skipWhitespace(keyEnd), s[colon] == UInt8(ascii: ":"),
                    let valueStart = skipWhitespace(colon + 1), let valueEnd = skipValue(valueStart),
                    let next = skipWhitespace(valueEnd)
                else { return nil }
                if isName { found = valueStart..<valueEnd }
                if s[next] == UInt8(ascii: ",") {
                    guard let following = skipWhitespace(next + 1) else { return nil }
                    i = following
                } else if s[next] == UInt8(ascii: "}") {
                    close = next
                    break
                } else {
                    return nil
                }
            }
        }
        var out: [UInt8]
        if let found {
            out = Array(s[..<found.lowerBound])
            out += Array(value.utf8)
            out += s[found.upperBound...]
        } else {
            out = Array(s[..<close])
            if !empty { out.append(UInt8(ascii: ",")) }
            out += rawName
            out.append(UInt8(ascii: ":"))
            out += Array(value.utf8)
            out += s[close...]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
