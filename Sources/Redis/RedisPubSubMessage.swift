import NIOCore

/// A message delivered to a subscriber connection.
///
/// Channel, pattern and payload stay as the bytes Redis sent (no `String` is built per message); use
/// ``channelName`` when a `String` is wanted.
public struct RedisPubSubMessage: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// From `SUBSCRIBE` (`message`).
        case message
        /// From `PSUBSCRIBE` (`pmessage`); ``RedisPubSubMessage/pattern`` is set.
        case patternMessage
        /// From `SSUBSCRIBE`, Redis 7 sharded pub/sub (`smessage`).
        case shardMessage
    }

    public var kind: Kind
    /// The channel the message was published to.
    public var channel: ByteBuffer
    /// The pattern that matched, for ``Kind/patternMessage``.
    public var pattern: ByteBuffer?
    /// The published payload.
    public var payload: ByteBuffer

    public init(kind: Kind, channel: ByteBuffer, pattern: ByteBuffer? = nil, payload: ByteBuffer) {
        self.kind = kind
        self.channel = channel
        self.pattern = pattern
        self.payload = payload
    }

    public var channelName: String { String(buffer: self.channel) }
}

/// The kinds of subscription a subscriber connection holds.
public enum RedisSubscriptionKind: Sendable, Hashable, CaseIterable {
    /// `SUBSCRIBE channel`
    case channel
    /// `PSUBSCRIBE pattern`
    case pattern
    /// `SSUBSCRIBE shardchannel` (Redis 7 sharded pub/sub)
    case shardChannel

    var subscribeCommand: String {
        switch self {
        case .channel: return "SUBSCRIBE"
        case .pattern: return "PSUBSCRIBE"
        case .shardChannel: return "SSUBSCRIBE"
        }
    }

    var unsubscribeCommand: String {
        switch self {
        case .channel: return "UNSUBSCRIBE"
        case .pattern: return "PUNSUBSCRIBE"
        case .shardChannel: return "SUNSUBSCRIBE"
        }
    }
}
