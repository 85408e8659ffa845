@testable import Auth

/// Tokens built byte by byte, for the cases PyJWT refuses to produce (alg none with a signature,
/// HS256 keyed with a public key, malformed JSON…).
enum Mint {
    static func segment(_ text: String) -> String { Base64URL.encode(Array(text.utf8)) }

    /// `header.claims.HMAC(header.claims)` with `algorithm`, over the exact JSON texts given.
    static func hmac(header: String, claims: String, secret: [UInt8], algorithm: JWTAlgorithm = .hs256) -> String {
        let input = "\(segment(header)).\(segment(claims))"
        let mac = HMACVerifier.mac(algorithm: algorithm, secret: secret, message: Array(input.utf8)) ?? []
        return "\(input).\(Base64URL.encode(mac))"
    }

    static func hmac(header: String, claims: String, secret: String, algorithm: JWTAlgorithm = .hs256) -> String {
        hmac(header: header, claims: claims, secret: Array(secret.utf8), algorithm: algorithm)
    }
}
