import NIOConcurrencyHelpers
import NIOCore

/// Limits against clients that open sessions or send packets faster than an honest client would.
/// Every limit is off at 0. Behind a proxy, set `trustedProxies` first: until then every client has the
/// proxy's address, and a per-address limit would be shared by all of them.
public struct ClientLimits: Sendable, Equatable {
    /// New sessions per second from one client address (a token bucket of `handshakeBurst`).
    public var handshakesPerSecond: Double
    /// Handshakes one address may make at once before `handshakesPerSecond` applies.
    public var handshakeBurst: Int
    /// Sessions open at once from one client address.
    public var connectionsPerAddress: Int
    /// Engine.IO packets per second one session may send (a token bucket of `packetBurst`).
    public var packetsPerSecond: Double
    /// Packets a session may send at once before `packetsPerSecond` applies.
    public var packetBurst: Int
    /// Peers whose `X-Forwarded-For` names the client. Any other peer is the client itself.
    public var trustedProxies: [IPNetwork]

    public init(
        handshakesPerSecond: Double = 0,
        handshakeBurst: Int = 0,
        connectionsPerAddress: Int = 0,
        packetsPerSecond: Double = 0,
        packetBurst: Int = 0,
        trustedProxies: [IPNetwork] = []
    ) {
        self.handshakesPerSecond = handshakesPerSecond
        self.handshakeBurst = handshakeBurst
        self.connectionsPerAddress = connectionsPerAddress
        self.packetsPerSecond = packetsPerSecond
        self.packetBurst = packetBurst
        self.trustedProxies = trustedProxies
    }

    /// No limit at all.
    public static let none = ClientLimits()

    var limitsAddresses: Bool { handshakesPerSecond > 0 || connectionsPerAddress > 0 }
}

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `::1`, `fd00::/8`); a bare address is a network of one.
public struct IPNetwork: Sendable, Equatable, CustomStringConvertible {
    /// 4 or 16 bytes; IPv4-mapped IPv6 addresses are kept as IPv4.
    let bytes: [UInt8]
    let prefixLength: Int

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPNetwork.parseAddress(parts[0]) else { return nil }
        let bits = address.count * 8
        var prefix = bits
        if parts.count == 2 {
            guard let length = Int(parts[1]), (0...bits).contains(length) else { return nil }
            prefix = length
        }
        self.bytes = address
        self.prefixLength = prefix
    }

    public var description: String {
        let address: String
        if bytes.count == 4 {
            address = bytes.map(String.init).joined(separator: ".")
        } else {
            address = stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
                .joined(separator: ":")
        }
        return prefixLength == bytes.count * 8 ? address : "\(address)/\(prefixLength)"
    }

    public func contains(_ address: [UInt8]) -> Bool {
        guard address.count == bytes.count else { return false }
        var remaining = prefixLength
        for index in 0..<bytes.count where remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
            if address[index] & mask != bytes[index] & mask { return false }
            remaining -= 8
        }
        return true
    }

    /// The bytes of a textual IPv4 or IPv6 address (brackets and zone allowed), IPv4-mapped IPv6 as IPv4.
    static func parseAddress(_ text: some StringProtocol) -> [UInt8]? {
        var text = Substring(text)
        if text.hasPrefix("["), text.hasSuffix("]") { text = text.dropFirst().dropLast() }
        if let zone = text.firstIndex(of: "%") { text = text[..<zone] }
        if !text.contains(":") { return parseIPv4(text) }
        guard let bytes = parseIPv6(text) else { return nil }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF { return Array(bytes[12...]) }
        return bytes
    }

    private static func parseIPv4(_ text: Substring) -> [UInt8]? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for octet in octets {
            guard !octet.isEmpty, octet.count <= 3, octet.allSatisfy(\.isASCIIDigit), let value = UInt8(octet) else {
                return nil
            }
            bytes.append(value)
        }
        return bytes
    }

    private static func parseIPv6(_ text: Substring) -> [UInt8]? {
        let halves = text.split(separator: "::", maxSplits: 2, omittingEmptySubsequences: false)
        guard halves.count <= 2 else { return nil }
        func groups(_ part: Substring, allowIPv4: Bool) -> [UInt8]? {
            guard !part.isEmpty else { return [] }
            var bytes: [UInt8] = []
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, field) in fields.enumerated() {
                if allowIPv4, index == fields.count - 1, field.contains(".") {
                    guard let v4 = parseIPv4(field) else { return nil }
                    bytes += v4
                } else {
                    guard (1...4).contains(field.count), field.allSatisfy(\.isHexDigit), let value = UInt16(field, radix: 16)
                    else { return nil }
                    bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
                }
            }
            return bytes
        }
        if halves.count == 1 {
            guard let bytes = groups(halves[0], allowIPv4: true), bytes.count == 16 else { return nil }
            return bytes
        }
        guard let head = groups(halves[0], allowIPv4: false), let tail = groups(halves[1], allowIPv4: true),
            head.count + tail.count <= 14
        else { return nil }
        return head + Array(repeating: 0, count: 16 - head.count - tail.count) + tail
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

/// Who a client is, as the limits and the logs see it.
public enum ClientAddress {
    /// The peer's address, or — when the peer is a trusted proxy — the rightmost `X-Forwarded-For`
    /// entry that is not itself a trusted proxy (so a client cannot choose its address by sending the
    /// header itself: only what the trusted proxies appended counts).
    public static func resolve(peer: SocketAddress?, forwardedFor: [String], trustedProxies: [IPNetwork]) -> String {
        guard let peerText = peer?.ipAddress else { return peer.map { "\($0)" } ?? "unknown" }
        guard let peerBytes = IPNetwork.parseAddress(peerText) else { return peerText }
        var client = canonical(peerBytes)
        guard trusted(peerBytes, trustedProxies) else { return client }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters() }
        for hop in hops.reversed() {
            // An entry that is not an address ends the walk: the hop before it is the last one known.
            guard let bytes = IPNetwork.parseAddress(hop) else { break }
            client = canonical(bytes)
            guard trusted(bytes, trustedProxies) else { break }
        }
        return client
    }

    private static func trusted(_ bytes: [UInt8], _ proxies: [IPNetwork]) -> Bool {
        proxies.contains { $0.contains(bytes) }
    }

    private static func canonical(_ bytes: [UInt8]) -> String {
        IPNetwork(bytes: bytes).description
    }
}

extension IPNetwork {
    fileprivate init(bytes: [UInt8]) {
        self.bytes = bytes
        self.prefixLength = bytes.count * 8
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return text
    }
}

/// A token bucket on an injected clock: `rate` tokens a second, at most `burst` held.
struct TokenBucket: Sendable {
    let rate: Double
    let burst: Double
    private(set) var tokens: Double
    private var updated: NIODeadline

    init(rate: Double, burst: Int, now: NIODeadline) {
        self.rate = rate
        self.burst = Double(max(1, burst))
        self.tokens = self.burst
        self.updated = now
    }

    private mutating func refill(now: NIODeadline) {
        guard now > updated else { return }
        let elapsed = Double((now - updated).nanoseconds) / 1e9
        tokens = min(burst, tokens + elapsed * rate)
        updated = now
    }

    /// Takes a token if there is one.
    mutating func take(now: NIODeadline) -> Bool {
        refill(now: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Whether the bucket has refilled: it then says nothing a fresh bucket would not.
    mutating func isFull(now: NIODeadline) -> Bool {
        refill(now: now)
        return tokens >= burst
    }

    /// Time until the next token.
    var wait: TimeAmount {
        tokens >= 1 ? .zero : .nanoseconds(Int64(((1 - tokens) / rate * 1e9).rounded(.up)))
    }
}

/// Why a handshake was refused before a session opened.
public enum HandshakeRefusal: String, Sendable, CaseIterable, Equatable {
    /// The client's address opened sessions faster than `handshakesPerSecond`.
    case handshakeRate = "handshake_rate"
    /// The client's address has `connectionsPerAddress` sessions open.
    case connectionsPerAddress = "connections_per_address"

    var error: EngineHTTPError {
        switch self {
        case .handshakeRate: return .tooManyHandshakes
        case .connectionsPerAddress: return .tooManyConnections
        }
    }
}

/// The per-address bookkeeping of one endpoint: handshake buckets and open sessions, shared by every
/// event loop (touched per handshake and per close, never per message).
final class AddressAdmission: Sendable {
    /// Addresses with a bucket, at most: past it, buckets that have refilled are forgotten, and if that
    /// is not enough (a flood from many addresses) all are, so the table stays bounded.
    let maxTrackedAddresses: Int

    private struct State {
        var buckets: [String: TokenBucket] = [:]
        var open: [String: Int] = [:]
    }

    let limits: ClientLimits
    private let state = NIOLockedValueBox(State())

    init(limits: ClientLimits, maxTrackedAddresses: Int = 100_000) {
        self.limits = limits
        self.maxTrackedAddresses = maxTrackedAddresses
    }

    /// Nil when a new session from `address` may open; takes a handshake token if so.
    func admit(_ address: String, now: NIODeadline) -> (refusal: HandshakeRefusal, retryAfter: TimeAmount)? {
        state.withLockedValue { state in
            if limits.connectionsPerAddress > 0, state.open[address, default: 0] >= limits.connectionsPerAddress {
                return (.connectionsPerAddress, .seconds(1))
            }
            guard limits.handshakesPerSecond > 0 else { return nil }
            if state.buckets[address] == nil, state.buckets.count >= maxTrackedAddresses {
                state.buckets = state.buckets.filter { _, bucket in
                    var bucket = bucket
                    return !bucket.isFull(now: now)
                }
                if state.buckets.count >= maxTrackedAddresses { state.buckets.removeAll() }
            }
            var bucket =
                state.buckets[address]
                ?? TokenBucket(rate: limits.handshakesPerSecond, burst: limits.handshakeBurst, now: now)
            defer { state.buckets[address] = bucket }
            return bucket.take(now: now) ? nil : (.handshakeRate, bucket.wait)
        }
    }

    func opened(_ address: String) {
        guard limits.connectionsPerAddress > 0 else { return }
        state.withLockedValue { $0.open[address, default: 0] += 1 }
    }

    func closed(_ address: String) {
        guard limits.connectionsPerAddress > 0 else { return }
        state.withLockedValue { state in
            guard let count = state.open[address] else { return }
            state.open[address] = count > 1 ? count - 1 : nil
        }
    }

    func openSessions(from address: String) -> Int {
        state.withLockedValue { $0.open[address, default: 0] }
    }

    var trackedAddresses: Int { state.withLockedValue { $0.buckets.count } }
}
