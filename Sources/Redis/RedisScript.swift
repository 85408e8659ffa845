import NIOCore

/// A Lua script run with `EVALSHA`, falling back to `EVAL` (which also loads it) when Redis answers `NOSCRIPT`
/// (first use, or after a restart or `SCRIPT FLUSH`). Used for locks and atomic pool updates.
public struct RedisScript: Sendable, Hashable {
    public let source: String
    /// Lower-case hex SHA-1 of the source, as Redis names scripts.
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        self.sha1 = SHA1.hex(Array(source.utf8))
    }
}

/// Anything that can send an encoded command: ``RedisConnection`` and ``RedisClient``.
public protocol RedisCommandSending: Sendable {
    var eventLoop: any EventLoop { get }
    func send(_ command: RESPCommand, timeout: TimeAmount?) -> EventLoopFuture<RESPValue>
}

extension RedisConnection: RedisCommandSending {}
extension RedisClient: RedisCommandSending {}

extension RedisCommandSending {
    /// Runs `script` with `EVALSHA`, retrying with `EVAL` on `NOSCRIPT`. Other errors (including the script's own
    /// `error_reply`s) fail the future as typed ``RedisError``s.
    public func evaluate(
        _ script: RedisScript,
        keys: [String] = [],
        arguments: [any RESPArgument] = []
    ) -> EventLoopFuture<RESPValue> {
        let byHash = Self.scriptCommand("EVALSHA", script.sha1, keys: keys, arguments: arguments)
        return self.send(byHash, timeout: nil).flatMapError { error in
            guard let redisError = error as? RedisError, redisError.code == .noscript else {
                return self.eventLoop.makeFailedFuture(error)
            }
            let bySource = Self.scriptCommand("EVAL", script.source, keys: keys, arguments: arguments)
            return self.send(bySource, timeout: nil)
        }
    }

    /// Async form of ``evaluate(_:keys:arguments:)-(RedisScript,_,_)``.
    public func evaluate(
        _ script: RedisScript,
        keys: [String] = [],
        arguments: [any RESPArgument] = []
    ) async throws -> RESPValue {
        try await self.evaluate(script, keys: keys, arguments: arguments).get()
    }

    private static func scriptCommand(
        _ name: String,
        _ script: String,
        keys: [String],
        arguments: [any RESPArgument]
    ) -> RESPCommand {
        var all: [any RESPArgument] = [script, keys.count]
        all.reserveCapacity(2 + keys.count + arguments.count)
        all.append(contentsOf: keys as [any RESPArgument])
        all.append(contentsOf: arguments)
        return RESPCommand(name, arguments: all)
    }
}

/// SHA-1, only to name scripts the way Redis does (not for security).
enum SHA1 {
    static func hex(_ message: [UInt8]) -> String {
        var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (
            0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0
        )
        var data = message
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        let bitLength = UInt64(message.count) &* 8
        for shift in stride(from: 56, through: 0, by: -8) {
            data.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift)))
        }
        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: data.count, by: 64) {
            for i in 0..<16 {
                let b = chunk + i * 4
                w[i] =
                    UInt32(data[b]) << 24 | UInt32(data[b + 1]) << 16 | UInt32(data[b + 2]) << 8 | UInt32(data[b + 3])
            }
            for i in 16..<80 {
                let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                w[i] = x << 1 | x >> 31
            }
            var (a, b, c, d, e) = h
            for i in 0..<80 {
                let f: UInt32
                let k: UInt32
                switch i {
                case 0..<20: (f, k) = ((b & c) | (~b & d), 0x5A82_7999)
                case 20..<40: (f, k) = (b ^ c ^ d, 0x6ED9_EBA1)
                case 40..<60: (f, k) = ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
                default: (f, k) = (b ^ c ^ d, 0xCA62_C1D6)
                }
                let temp = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w[i]
                e = d
                d = c
                c = b << 30 | b >> 2
                b = a
                a = temp
            }
            h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
        }
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(40)
        for word in [h.0, h.1, h.2, h.3, h.4] {
            for shift in stride(from: 28, through: 0, by: -4) {
                out.append(digits[Int((word >> UInt32(shift)) & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
