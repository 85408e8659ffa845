import NIOCore

/// A decoded RESP2 reply.
///
/// Bulk strings stay as `ByteBuffer`s so a payload that is only relayed (a pub/sub message, a stored
/// Socket.IO packet) can be written to a socket without being copied or parsed again.
public enum RESPValue: Sendable, Hashable {
    /// `+OK\r\n`
    case simpleString(String)
    /// `-ERR message\r\n`. The text is Redis's message, error code included (`"NOPERM …"`).
    case error(String)
    /// `:42\r\n`
    case integer(Int64)
    /// `$3\r\nfoo\r\n`
    case bulkString(ByteBuffer)
    /// `$-1\r\n` (nil bulk string) and `*-1\r\n` (nil array); RESP2 does not distinguish them usefully.
    case null
    /// `*2\r\n…`
    case array([RESPValue])
}

extension RESPValue {
    /// The value as a `String`: bulk strings (decoded as UTF-8), simple strings and integers.
    public var string: String? {
        switch self {
        case .bulkString(let buffer): return String(buffer: buffer)
        case .simpleString(let string): return string
        case .integer(let value): return String(value)
        case .error, .null, .array: return nil
        }
    }

    /// The value as an integer: integers, and bulk or simple strings holding a decimal number.
    public var int: Int? {
        switch self {
        case .integer(let value): return Int(value)
        case .bulkString(let buffer): return Int(String(buffer: buffer))
        case .simpleString(let string): return Int(string)
        case .error, .null, .array: return nil
        }
    }

    /// The payload of a bulk string.
    public var bytes: ByteBuffer? {
        if case .bulkString(let buffer) = self { return buffer }
        return nil
    }

    /// The elements of an array.
    public var array: [RESPValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// Returns `self`, or throws the typed ``RedisError`` if this is an error reply. Useful for the results of a
    /// pipeline, where error replies are kept in place.
    @discardableResult
    public func throwingServerError() throws(RedisError) -> RESPValue {
        if case .error(let message) = self { throw RedisError(serverMessage: message) }
        return self
    }
}

extension RESPValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .simpleString(let string): return "+\(string)"
        case .error(let message): return "-\(message)"
        case .integer(let value): return ":\(value)"
        case .bulkString(let buffer): return "$\"\(String(buffer: buffer))\""
        case .null: return "(nil)"
        case .array(let values): return "[" + values.map(\.description).joined(separator: ", ") + "]"
        }
    }
}
