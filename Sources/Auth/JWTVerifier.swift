/// Verifies JWS compact-serialized JWTs (RFC 7519) against configured keys.
///
/// What it refuses, in the order it checks: tokens over the size limit (before any decoding);
/// anything but three non-empty base64url segments without padding; headers that are not JSON
/// objects; `alg: none` and any algorithm no configured key is bound to; a `kid` no key has;
/// `crit`; bad signatures; claims sets that are not JSON objects; `exp`, `nbf`, `iat` that are not
/// numbers or are out of range (with a leeway); a missing or wrong `iss`/`aud` when one is
/// required; a missing user id.
public struct JWTVerifier: Sendable {
    /// How tokens are verified.
    public struct Configuration: Sendable {
        /// The keys tokens may be signed with. No default: at least one is required.
        public var keys: [JWTKey]
        /// Seconds of clock skew tolerated for `exp`, `nbf` and `iat`. Default 30.
        public var leeway: Int
        /// The longest token accepted, in bytes, checked before decoding. Default 8192 (8 KiB).
        public var maximumTokenLength: Int
        /// If set, `iss` must equal it. Default nil (not checked).
        public var issuer: String?
        /// If set, `aud` (a string or an array of strings) must contain it. Default nil (not checked).
        public var audience: String?
        /// If true, a token without `exp` is refused. Default false: Open WebUI issues tokens
        /// without `exp` when its `JWT_EXPIRES_IN` is `-1`.
        public var requireExpiration: Bool
        /// The claims holding the user id, tried in order. Default `["id", "sub"]` (`id` is Open
        /// WebUI's claim).
        public var userIDClaims: [String]

        public init(
            keys: [JWTKey],
            leeway: Int = 30,
            maximumTokenLength: Int = 8192,
            issuer: String? = nil,
            audience: String? = nil,
            requireExpiration: Bool = false,
            userIDClaims: [String] = ["id", "sub"]
        ) {
            self.keys = keys
            self.leeway = leeway
            self.maximumTokenLength = maximumTokenLength
            self.issuer = issuer
            self.audience = audience
            self.requireExpiration = requireExpiration
            self.userIDClaims = userIDClaims
        }
    }

    public let configuration: Configuration

    public init(configuration: Configuration) throws(AuthError) {
        guard !configuration.keys.isEmpty else {
            throw AuthError(.invalidConfiguration, "no JWT verification key is configured")
        }
        guard configuration.leeway >= 0 else { throw AuthError(.invalidConfiguration, "the leeway is negative") }
        guard configuration.maximumTokenLength > 0 else {
            throw AuthError(.invalidConfiguration, "the maximum token length is not positive")
        }
        guard !configuration.userIDClaims.isEmpty else {
            throw AuthError(.invalidConfiguration, "no user id claim is configured")
        }
        self.configuration = configuration
    }

    /// Verifies `token` at time `now` (epoch seconds) and returns its header, claims and user id.
    public func verify(token: String, now: Int) throws(AuthError) -> VerifiedToken {
        let bytes = Array(token.utf8)
        guard bytes.count <= configuration.maximumTokenLength else {
            throw AuthError(.tokenTooLarge, "the token is longer than \(configuration.maximumTokenLength) bytes")
        }

        // Structure: exactly three segments of base64url alphabet.
        let segments = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard segments.count == 3 else {
            throw AuthError(.malformed, "a JWT has three segments, this token has \(segments.count)")
        }
        for segment in segments where !Base64URL.isAlphabet(segment) {
            throw AuthError(.malformed, "a segment has a character outside base64url (padding is not allowed)")
        }

        // Header.
        let header = try Self.decodeObject(segments[0], part: "header")
        guard let algValue = header["alg"] else { throw AuthError(.malformed, "the header has no \"alg\"") }
        guard let algName = algValue.stringValue else { throw AuthError(.malformed, "\"alg\" is not a string") }
        if algName.lowercased() == "none" {
            throw AuthError(.algorithmNone, "unsecured tokens (alg none) are not accepted")
        }
        guard let algorithm = JWTAlgorithm(rawValue: algName) else {
            throw AuthError(.algorithmNotAllowed, "the token's algorithm is not supported")
        }
        if header["crit"] != nil {
            throw AuthError(
                .unsupportedCriticalHeader,
                "the header lists critical extensions (crit), none is supported"
            )
        }
        let candidates = try candidateKeys(header: header, algorithm: algorithm)

        // Signature over the ASCII "header.payload".
        guard !segments[2].isEmpty else { throw AuthError(.malformed, "the signature is empty") }
        guard let signature = Base64URL.decode(segments[2]) else {
            throw AuthError(.malformed, "the signature is not valid base64url")
        }
        let signingInput = Array(bytes[..<segments[1].endIndex])
        guard
            candidates.contains(where: { $0.verify(algorithm: algorithm, message: signingInput, signature: signature) })
        else {
            throw AuthError(.badSignature, "the signature does not verify")
        }

        // Claims, now authenticated.
        let claims = try Self.decodeObject(segments[1], part: "claims set")
        let issuedAt = try checkTimes(claims, now: now)
        try checkIssuerAndAudience(claims)
        let userID = try userID(claims)
        let jti: String?
        switch claims["jti"] {
        case nil: jti = nil
        case .string(let value)?: jti = value
        case _?: throw AuthError(.invalidClaim, "\"jti\" is not a string")
        }
        return VerifiedToken(
            algorithm: algorithm,
            header: header,
            claims: claims,
            userID: userID,
            tokenID: jti,
            issuedAt: issuedAt
        )
    }

    /// The keys that may verify this token: bound to its `alg` and, when the header has a `kid`,
    /// having that kid (or no kid at all when no key has that kid).
    private func candidateKeys(header: JWTJSON, algorithm: JWTAlgorithm) throws(AuthError) -> [JWTKey] {
        let byAlgorithm = configuration.keys.filter { $0.algorithms.contains(algorithm) }
        guard !byAlgorithm.isEmpty else {
            throw AuthError(.algorithmNotAllowed, "no configured key accepts the token's algorithm")
        }
        guard let kidValue = header["kid"] else { return byAlgorithm }
        guard let kid = kidValue.stringValue else { throw AuthError(.malformed, "\"kid\" is not a string") }
        if configuration.keys.contains(where: { $0.kid == kid }) {
            let matching = byAlgorithm.filter { $0.kid == kid }
            guard !matching.isEmpty else {
                throw AuthError(.algorithmNotAllowed, "the key named by \"kid\" does not accept the token's algorithm")
            }
            return matching
        }
        let unnamed = byAlgorithm.filter { $0.kid == nil }
        guard !unnamed.isEmpty else { throw AuthError(.unknownKeyID, "no configured key has the token's \"kid\"") }
        return unnamed
    }

    private static func decodeObject(_ segment: ArraySlice<UInt8>, part: String) throws(AuthError) -> JWTJSON {
        guard !segment.isEmpty, let json = Base64URL.decode(segment) else {
            throw AuthError(.malformed, "the \(part) is not valid base64url")
        }
        let value: JWTJSON
        do {
            value = try JWTJSON.parse(json)
        } catch {
            throw AuthError(.malformed, "the \(part) is not valid JSON")
        }
        guard value.objectValue != nil else { throw AuthError(.malformed, "the \(part) is not a JSON object") }
        return value
    }

    /// Checks `exp`, `nbf` and `iat`; returns `iat` (rounded down) if present.
    private func checkTimes(_ claims: JWTJSON, now: Int) throws(AuthError) -> Int? {
        let now = Double(now)
        let leeway = Double(configuration.leeway)
        func numericDate(_ name: String) throws(AuthError) -> Double? {
            guard let value = claims[name] else { return nil }
            guard let number = value.doubleValue else {
                throw AuthError(.invalidClaim, "\"\(name)\" is not a number")
            }
            return number
        }
        if let exp = try numericDate("exp") {
            if now > exp + leeway { throw AuthError(.expired, "the token has expired") }
        } else if configuration.requireExpiration {
            throw AuthError(.invalidClaim, "the token has no \"exp\"")
        }
        if let nbf = try numericDate("nbf"), now + leeway < nbf {
            throw AuthError(.notYetValid, "the token is not valid yet (nbf)")
        }
        guard let iat = try numericDate("iat") else { return nil }
        if iat > now + leeway { throw AuthError(.issuedInFuture, "the token is issued in the future (iat)") }
        guard iat >= -9.0e18, iat <= 9.0e18 else { throw AuthError(.invalidClaim, "\"iat\" is out of range") }
        return Int(iat.rounded(.down))
    }

    private func checkIssuerAndAudience(_ claims: JWTJSON) throws(AuthError) {
        if let issuer = configuration.issuer, claims["iss"]?.stringValue != issuer {
            throw AuthError(.invalidIssuer, "the token's issuer is missing or not the expected one")
        }
        if let audience = configuration.audience {
            let matches: Bool
            switch claims["aud"] {
            case .string(let value)?: matches = value == audience
            case .array(let values)?: matches = values.contains(.string(audience))
            default: matches = false
            }
            guard matches else {
                throw AuthError(.invalidAudience, "the token's audience is missing or not the expected one")
            }
        }
    }

    private func userID(_ claims: JWTJSON) throws(AuthError) -> String {
        for name in configuration.userIDClaims {
            switch claims[name] {
            case .string(let value)? where !value.isEmpty:
                return value
            case .number(let text)?:
                if let integer = JWTJSON.number(text).intValue { return String(integer) }
            default:
                continue
            }
        }
        throw AuthError(.missingUserID, "no user id claim (\(configuration.userIDClaims.joined(separator: ", ")))")
    }
}

/// A token that passed verification.
public struct VerifiedToken: Sendable, Hashable {
    /// The algorithm its signature was verified with.
    public let algorithm: JWTAlgorithm
    /// The decoded JOSE header (a JSON object).
    public let header: JWTJSON
    /// The decoded claims set (a JSON object).
    public let claims: JWTJSON
    /// The user id, from the first configured user-id claim holding a non-empty string or an
    /// integer (as decimal text).
    public let userID: String
    /// `jti`, if present.
    public let tokenID: String?
    /// `iat` in epoch seconds (rounded down), if present.
    public let issuedAt: Int?
}
