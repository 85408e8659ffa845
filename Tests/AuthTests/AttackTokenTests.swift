import Testing

@testable import Auth

/// Tokens an attacker (or a broken client) sends. Every one is refused, with the error code that
/// names why.
@Suite("Attack tokens")
struct AttackTokenTests {
    static let now = PyJWTFixture.now
    static let secret = "attack-table-secret-0123456789abcdef"
    static let hs256 = #"{"alg":"HS256","typ":"JWT"}"#

    static func claims(_ extra: String = "", iat: Int = now, exp: Int = now + 600) -> String {
        #"{"id":"user-1","iss":"https://webui.test","aud":"switchboard","jti":"t-1","iat":\#(iat),"exp":\#(exp)\#(extra)}"#
    }

    static func signed(_ claims: String, header: String = hs256) -> String {
        Mint.hmac(header: header, claims: claims, secret: secret)
    }

    /// Which verifier a case runs against.
    enum Target: Sendable, CustomStringConvertible {
        /// HMAC secret (no kid) + RSA (kid rsa-1) + EC (kid ec-1); issuer and audience required.
        case strict
        /// Only the RSA public key: no HMAC secret at all.
        case rsaOnly
        var description: String { self == .strict ? "strict" : "rsa-only" }
    }

    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let token: @Sendable (PyJWTFixture) -> String
        let expected: AuthError.Code
        var target: Target = .strict
        var testDescription: String { name }
    }

    static let cases: [Case] = {
        let good = claims()
        let goodToken = signed(good)
        let parts = goodToken.split(separator: ".").map(String.init)
        let otherPayloadToken = signed(claims(#","admin":true"#))
        let otherParts = otherPayloadToken.split(separator: ".").map(String.init)
        let hugeClaims = claims(#","pad":"\#(String(repeating: "A", count: 8192))""#)
        return [
            // alg none, with and without a signature, in any spelling.
            Case(
                name: "alg none, empty signature",
                token: { _ in "\(Mint.segment(#"{"alg":"none"}"#)).\(parts[1])." },
                expected: .algorithmNone
            ),
            Case(
                name: "alg none with a signature",
                token: { _ in signed(good, header: #"{"alg":"none","typ":"JWT"}"#) },
                expected: .algorithmNone
            ),
            Case(name: "alg None", token: { _ in signed(good, header: #"{"alg":"None"}"#) }, expected: .algorithmNone),
            Case(
                name: "alg NONE against rsa-only",
                token: { _ in "\(Mint.segment(#"{"alg":"NONE"}"#)).\(parts[1])." },
                expected: .algorithmNone,
                target: .rsaOnly
            ),
            // Algorithm confusion: HS256 keyed with the RSA public key's PEM.
            Case(
                name: "HS256 with the RSA public key as secret, RSA-only",
                token: { f in Mint.hmac(header: hs256, claims: good, secret: f.rsaPublicKeyPEM) },
                expected: .algorithmNotAllowed,
                target: .rsaOnly
            ),
            Case(
                name: "HS256 with the RSA public key as secret",
                token: { f in Mint.hmac(header: hs256, claims: good, secret: f.rsaPublicKeyPEM) },
                expected: .badSignature
            ),
            Case(
                name: "HS256 with the RSA public key as secret, kid of the RSA key",
                token: { f in
                    Mint.hmac(header: #"{"alg":"HS256","kid":"rsa-1"}"#, claims: good, secret: f.rsaPublicKeyPEM)
                },
                expected: .algorithmNotAllowed
            ),
            Case(
                name: "RS256 header over an HMAC signature",
                token: { _ in "\(Mint.segment(#"{"alg":"RS256"}"#)).\(parts[1]).\(parts[2])" },
                expected: .badSignature
            ),
            Case(
                name: "HS256 signed with the secret, RSA-only",
                token: { _ in goodToken },
                expected: .algorithmNotAllowed,
                target: .rsaOnly
            ),
            // Algorithms that are not configured or not supported.
            Case(
                name: "alg HS1",
                token: { _ in signed(good, header: #"{"alg":"HS1"}"#) },
                expected: .algorithmNotAllowed
            ),
            Case(
                name: "alg RS512",
                token: { _ in signed(good, header: #"{"alg":"RS512"}"#) },
                expected: .algorithmNotAllowed
            ),
            Case(
                name: "alg PS256",
                token: { _ in signed(good, header: #"{"alg":"PS256"}"#) },
                expected: .algorithmNotAllowed
            ),
            Case(
                name: "alg hs256 (case)",
                token: { _ in signed(good, header: #"{"alg":"hs256"}"#) },
                expected: .algorithmNotAllowed
            ),
            // Time.
            Case(name: "expired", token: { _ in signed(claims(exp: now - 31)) }, expected: .expired),
            Case(
                name: "not yet valid",
                token: { _ in signed(claims(#","nbf":\#(now + 31)"#)) },
                expected: .notYetValid
            ),
            Case(
                name: "issued in the future",
                token: { _ in signed(claims(iat: now + 31)) },
                expected: .issuedInFuture
            ),
            Case(
                name: "exp is a string",
                token: { _ in signed(#"{"id":"u","iss":"https://webui.test","aud":"switchboard","exp":"9999999999"}"#)
                },
                expected: .invalidClaim
            ),
            Case(name: "nbf is null", token: { _ in signed(claims(#","nbf":null"#)) }, expected: .invalidClaim),
            Case(
                name: "iat is a bool",
                token: { _ in signed(#"{"id":"u","iss":"https://webui.test","aud":"switchboard","iat":true}"#) },
                expected: .invalidClaim
            ),
            // Issuer and audience.
            Case(
                name: "wrong aud",
                token: { _ in signed(#"{"id":"u","iss":"https://webui.test","aud":"other"}"#) },
                expected: .invalidAudience
            ),
            Case(
                name: "aud list without ours",
                token: { _ in signed(#"{"id":"u","iss":"https://webui.test","aud":["a","b"]}"#) },
                expected: .invalidAudience
            ),
            Case(
                name: "no aud",
                token: { _ in signed(#"{"id":"u","iss":"https://webui.test"}"#) },
                expected: .invalidAudience
            ),
            Case(
                name: "wrong iss",
                token: { _ in signed(#"{"id":"u","iss":"https://evil.test","aud":"switchboard"}"#) },
                expected: .invalidIssuer
            ),
            Case(name: "no iss", token: { _ in signed(#"{"id":"u","aud":"switchboard"}"#) }, expected: .invalidIssuer),
            // Structure.
            Case(name: "truncated: two segments", token: { _ in "\(parts[0]).\(parts[1])" }, expected: .malformed),
            Case(name: "truncated: one segment", token: { _ in parts[0] }, expected: .malformed),
            Case(name: "empty token", token: { _ in "" }, expected: .malformed),
            Case(name: "four segments", token: { _ in goodToken + ".\(parts[2])" }, expected: .malformed),
            Case(name: "empty signature", token: { _ in "\(parts[0]).\(parts[1])." }, expected: .malformed),
            Case(name: "empty header", token: { _ in ".\(parts[1]).\(parts[2])" }, expected: .malformed),
            Case(
                name: "empty payload",
                token: { _ in Mint.hmac(header: hs256, claims: "", secret: secret) },
                expected: .malformed
            ),
            Case(
                name: "signature cut by one byte",
                token: { _ in "\(parts[0]).\(parts[1]).\(dropLastByte(parts[2]))" },
                expected: .badSignature
            ),
            Case(
                name: "signature cut to an impossible length",
                token: { _ in String(goodToken.dropLast(2)) },
                expected: .malformed
            ),
            // Tampering.
            Case(
                name: "tampered payload",
                token: { _ in "\(parts[0]).\(otherParts[1]).\(parts[2])" },
                expected: .badSignature
            ),
            Case(
                name: "tampered header",
                token: { _ in "\(Mint.segment(#"{"alg":"HS256","typ":"JWT","x":1}"#)).\(parts[1]).\(parts[2])" },
                expected: .badSignature
            ),
            Case(
                name: "flipped signature bit",
                token: { _ in "\(parts[0]).\(parts[1]).\(flipLast(parts[2]))" },
                expected: .badSignature
            ),
            // Base64url.
            Case(
                name: "'+' in signature",
                token: { _ in "\(parts[0]).\(parts[1]).+\(parts[2].dropFirst())" },
                expected: .malformed
            ),
            Case(
                name: "'/' in payload",
                token: { _ in "\(parts[0]).\(parts[1].dropLast())/.\(parts[2])" },
                expected: .malformed
            ),
            Case(
                name: "space in payload",
                token: { _ in "\(parts[0]).\(parts[1].prefix(4)) \(parts[1].dropFirst(4)).\(parts[2])" },
                expected: .malformed
            ),
            Case(name: "newline at the end", token: { _ in goodToken + "\n" }, expected: .malformed),
            Case(
                name: "padding on the header",
                token: { _ in "\(parts[0])=.\(parts[1]).\(parts[2])" },
                expected: .malformed
            ),
            Case(name: "padding on the signature", token: { _ in goodToken + "=" }, expected: .malformed),
            Case(
                name: "non-ASCII character",
                token: { _ in "\(parts[0]).\(parts[1])é.\(parts[2])" },
                expected: .malformed
            ),
            Case(
                name: "impossible base64 length in the header",
                token: { _ in "\(parts[0])A.\(parts[1]).\(parts[2])" },
                expected: .malformed
            ),
            // JSON.
            Case(name: "claims []", token: { _ in signed("[]") }, expected: .malformed),
            Case(name: "claims \"x\"", token: { _ in signed(#""x""#) }, expected: .malformed),
            Case(name: "claims 1", token: { _ in signed("1") }, expected: .malformed),
            Case(name: "claims null", token: { _ in signed("null") }, expected: .malformed),
            Case(name: "claims invalid JSON", token: { _ in signed(#"{"id":"u",}"#) }, expected: .malformed),
            Case(
                name: "claims nested too deeply",
                token: { _ in
                    signed(
                        #"{"id":"u","x":\#(String(repeating: "[", count: 40))\#(String(repeating: "]", count: 40))}"#
                    )
                },
                expected: .malformed
            ),
            Case(
                name: "claims with duplicate id",
                token: { _ in signed(#"{"id":"u","id":"admin","iss":"https://webui.test","aud":"switchboard"}"#) },
                expected: .malformed
            ),
            Case(name: "header []", token: { _ in signed(good, header: "[]") }, expected: .malformed),
            Case(name: "header \"HS256\"", token: { _ in signed(good, header: #""HS256""#) }, expected: .malformed),
            Case(
                name: "header without alg",
                token: { _ in signed(good, header: #"{"typ":"JWT"}"#) },
                expected: .malformed
            ),
            Case(
                name: "alg not a string",
                token: { _ in signed(good, header: #"{"alg":["HS256"]}"#) },
                expected: .malformed
            ),
            Case(
                name: "duplicate alg",
                token: { _ in signed(good, header: #"{"alg":"HS256","alg":"none"}"#) },
                expected: .malformed
            ),
            Case(name: "header not JSON", token: { _ in signed(good, header: "HS256") }, expected: .malformed),
            // Size.
            Case(name: "huge token", token: { _ in signed(hugeClaims) }, expected: .tokenTooLarge),
            Case(
                name: "huge garbage",
                token: { _ in String(repeating: "A", count: 1 << 20) },
                expected: .tokenTooLarge
            ),
            // Keys.
            Case(
                name: "unknown kid (RS256)",
                token: { _ in
                    "\(Mint.segment(#"{"alg":"RS256","kid":"rsa-unknown"}"#)).\(parts[1]).\(parts[2])"
                },
                expected: .unknownKeyID
            ),
            Case(
                name: "unknown kid (ES256)",
                token: { _ in
                    "\(Mint.segment(#"{"alg":"ES256","kid":"nope"}"#)).\(parts[1]).\(parts[2])"
                },
                expected: .unknownKeyID
            ),
            Case(
                name: "kid not a string",
                token: { _ in signed(good, header: #"{"alg":"HS256","kid":7}"#) },
                expected: .malformed
            ),
            Case(
                name: "ES256 signature of the wrong length",
                token: { _ in
                    "\(Mint.segment(#"{"alg":"ES256","kid":"ec-1"}"#)).\(parts[1]).\(Base64URL.encode([UInt8](repeating: 1, count: 65)))"
                },
                expected: .badSignature
            ),
            Case(
                name: "ES256 all-zero signature",
                token: { _ in
                    "\(Mint.segment(#"{"alg":"ES256"}"#)).\(parts[1]).\(Base64URL.encode([UInt8](repeating: 0, count: 64)))"
                },
                expected: .badSignature
            ),
            // User id.
            Case(
                name: "no user id claim",
                token: { _ in signed(#"{"name":"u","iss":"https://webui.test","aud":"switchboard"}"#) },
                expected: .missingUserID
            ),
            Case(
                name: "empty user id",
                token: { _ in signed(#"{"id":"","iss":"https://webui.test","aud":"switchboard"}"#) },
                expected: .missingUserID
            ),
            Case(
                name: "user id null",
                token: { _ in signed(#"{"id":null,"iss":"https://webui.test","aud":"switchboard"}"#) },
                expected: .missingUserID
            ),
            Case(
                name: "user id object",
                token: { _ in signed(#"{"id":{"x":1},"iss":"https://webui.test","aud":"switchboard"}"#) },
                expected: .missingUserID
            ),
            Case(
                name: "user id fractional",
                token: { _ in signed(#"{"id":1.5,"iss":"https://webui.test","aud":"switchboard"}"#) },
                expected: .missingUserID
            ),
            Case(
                name: "jti not a string",
                token: { _ in signed(#"{"id":"u","iss":"https://webui.test","aud":"switchboard","jti":1}"#) },
                expected: .invalidClaim
            ),
            // Extensions.
            Case(
                name: "crit header",
                token: { _ in signed(good, header: #"{"alg":"HS256","crit":["exp"],"exp":1}"#) },
                expected: .unsupportedCriticalHeader
            ),
            Case(
                name: "crit b64",
                token: { _ in signed(good, header: #"{"alg":"HS256","b64":false,"crit":["b64"]}"#) },
                expected: .unsupportedCriticalHeader
            ),
        ]
    }()

    static func dropLastByte(_ segment: String) -> String {
        Base64URL.encode(Base64URL.decode(Array(segment.utf8))!.dropLast())
    }

    static func flipLast(_ segment: String) -> String {
        var bytes = Base64URL.decode(Array(segment.utf8))!
        bytes[bytes.count - 1] ^= 1
        return Base64URL.encode(bytes)
    }

    static func verifier(_ target: Target, _ fixture: PyJWTFixture) throws -> JWTVerifier {
        switch target {
        case .strict:
            return try JWTVerifier(
                configuration: .init(
                    keys: [
                        .hmac(secret: Array(secret.utf8)),
                        .rsa(publicKeyPEM: fixture.rsaPublicKeyPEM, kid: "rsa-1"),
                        .ecdsa(publicKeyPEM: fixture.ecPublicKeyPEM, kid: "ec-1"),
                    ],
                    issuer: "https://webui.test",
                    audience: "switchboard"
                )
            )
        case .rsaOnly:
            return try JWTVerifier(configuration: .init(keys: [.rsa(publicKeyPEM: fixture.rsaPublicKeyPEM)]))
        }
    }

    @Test func theControlTokenIsAccepted() throws {
        let fixture = try PyJWTFixture.get()
        let token = try Self.verifier(.strict, fixture).verify(token: Self.signed(Self.claims()), now: Self.now)
        #expect(token.userID == "user-1")
        #expect(token.tokenID == "t-1")
    }

    @Test(arguments: cases)
    func refused(_ attack: Case) throws {
        let fixture = try PyJWTFixture.get()
        let verifier = try Self.verifier(attack.target, fixture)
        let token = attack.token(fixture)
        let error = try #require(throws: AuthError.self) { try verifier.verify(token: token, now: Self.now) }
        #expect(error.code == attack.expected, "\(attack.name): \(error)")
        // Messages never carry the token or the secret.
        #expect(!error.message.contains(Self.secret))
        if token.count > 8 { #expect(!error.message.contains(token)) }
    }

    @Test func tableCoversEveryRefusalCode() {
        let codes = Set(Self.cases.map(\.expected))
        let expected: Set<AuthError.Code> = [
            .tokenTooLarge, .malformed, .algorithmNone, .algorithmNotAllowed, .unknownKeyID, .unsupportedCriticalHeader,
            .badSignature, .expired, .notYetValid, .issuedInFuture, .invalidClaim, .invalidIssuer, .invalidAudience,
            .missingUserID,
        ]
        #expect(codes == expected)
    }

    @Test func leewayBoundaries() throws {
        let verifier = try Self.verifier(.strict, PyJWTFixture.get())
        for token in [
            Self.signed(Self.claims(exp: Self.now - 30)),
            Self.signed(Self.claims(#","nbf":\#(Self.now + 30)"#)),
            Self.signed(Self.claims(iat: Self.now + 30)),
            Self.signed(#"{"id":"u","iss":"https://webui.test","aud":"switchboard","exp":\#(Self.now - 30).5}"#),
        ] {
            _ = try verifier.verify(token: token, now: Self.now)
        }
        let noLeeway = try JWTVerifier(configuration: .init(keys: [.hmac(secret: Array(Self.secret.utf8))], leeway: 0))
        let error = try #require(throws: AuthError.self) {
            try noLeeway.verify(token: Self.signed(Self.claims(exp: Self.now - 1)), now: Self.now)
        }
        #expect(error.code == .expired)
        _ = try noLeeway.verify(token: Self.signed(Self.claims(exp: Self.now)), now: Self.now)
    }

    @Test func sizeLimitIsConfigurable() throws {
        let token = Self.signed(Self.claims())
        let exact = try JWTVerifier(
            configuration: .init(keys: [.hmac(secret: Array(Self.secret.utf8))], maximumTokenLength: token.utf8.count)
        )
        _ = try exact.verify(token: token, now: Self.now)
        let smaller = try JWTVerifier(
            configuration: .init(
                keys: [.hmac(secret: Array(Self.secret.utf8))],
                maximumTokenLength: token.utf8.count - 1
            )
        )
        let error = try #require(throws: AuthError.self) { try smaller.verify(token: token, now: Self.now) }
        #expect(error.code == .tokenTooLarge)
    }
}
