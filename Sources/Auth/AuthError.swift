/// Why a token or a key was refused.
///
/// Messages name the rule that failed, never the token, a claim's value, a key or a secret, so
/// they are safe to log.
public struct AuthError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable code callers can switch on; new codes may be added without breaking them.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case tokenTooLarge
            case malformed
            case algorithmNone
            case algorithmNotAllowed
            case unknownKeyID
            case unsupportedCriticalHeader
            case badSignature
            case expired
            case notYetValid
            case issuedInFuture
            case invalidClaim
            case invalidIssuer
            case invalidAudience
            case missingUserID
            case invalidKey
            case invalidConfiguration
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The token is longer than the configured maximum (checked before any decoding).
        public static let tokenTooLarge = Code(.tokenTooLarge)
        /// Not three segments, bad base64url, padding, invalid JSON, a header or claims set that is
        /// not a JSON object, or an empty signature.
        public static let malformed = Code(.malformed)
        /// `alg: none` (unsecured JWS): always refused.
        public static let algorithmNone = Code(.algorithmNone)
        /// An `alg` no configured key accepts (including HS/RS confusion).
        public static let algorithmNotAllowed = Code(.algorithmNotAllowed)
        /// The header's `kid` names no configured key.
        public static let unknownKeyID = Code(.unknownKeyID)
        /// The header has `crit`: no JWS extension is understood.
        public static let unsupportedCriticalHeader = Code(.unsupportedCriticalHeader)
        /// The signature does not verify with any candidate key.
        public static let badSignature = Code(.badSignature)
        /// `exp` has passed (beyond the leeway).
        public static let expired = Code(.expired)
        /// `nbf` is still in the future (beyond the leeway).
        public static let notYetValid = Code(.notYetValid)
        /// `iat` is in the future (beyond the leeway).
        public static let issuedInFuture = Code(.issuedInFuture)
        /// A registered claim has the wrong type (e.g. `exp` not a number).
        public static let invalidClaim = Code(.invalidClaim)
        /// `iss` is missing or not the configured issuer.
        public static let invalidIssuer = Code(.invalidIssuer)
        /// `aud` is missing or does not contain the configured audience.
        public static let invalidAudience = Code(.invalidAudience)
        /// None of the user-id claims holds a non-empty string or a number.
        public static let missingUserID = Code(.missingUserID)
        /// A configured key (PEM, JWK, JWKS, secret) cannot be used.
        public static let invalidKey = Code(.invalidKey)
        /// The verifier's configuration is unusable (e.g. no keys).
        public static let invalidConfiguration = Code(.invalidConfiguration)

        public var description: String { base.rawValue }
    }

    /// What failed.
    public let code: Code
    /// A human-readable explanation that never contains the token, claim values or key material.
    public let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "AuthError(\(code)): \(message)" }
}
