/// The JWS algorithms (RFC 7518 §3.1) Switchboard verifies. `none` is deliberately absent.
public enum JWTAlgorithm: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case hs256 = "HS256"
    case hs384 = "HS384"
    case hs512 = "HS512"
    case rs256 = "RS256"
    case es256 = "ES256"

    /// The HMAC algorithms.
    public static let hmacAlgorithms: Set<JWTAlgorithm> = [.hs256, .hs384, .hs512]

    public var description: String { rawValue }
}
