import Testing

@testable import Auth

/// Tokens minted at test time by PyJWT (HS256/384/512 with a secret, RS256 and ES256 with keys
/// the `openssl` CLI generated), verified by `JWTVerifier`.
@Suite("PyJWT-minted tokens")
struct PyJWTInteropTests {
    let fixture: PyJWTFixture
    let now = PyJWTFixture.now

    init() throws {
        fixture = try PyJWTFixture.get()
    }

    func hmacVerifier(algorithms: Set<JWTAlgorithm> = JWTAlgorithm.hmacAlgorithms) throws -> JWTVerifier {
        try JWTVerifier(
            configuration: .init(keys: [.hmac(secret: Array(PyJWTFixture.secret.utf8), algorithms: algorithms)])
        )
    }

    func pemVerifier() throws -> JWTVerifier {
        try JWTVerifier(
            configuration: .init(keys: [
                .rsa(publicKeyPEM: fixture.rsaPublicKeyPEM), .ecdsa(publicKeyPEM: fixture.ecPublicKeyPEM),
            ])
        )
    }

    @Test(arguments: [("hs256", JWTAlgorithm.hs256), ("hs384", .hs384), ("hs512", .hs512)])
    func hmac(name: String, algorithm: JWTAlgorithm) throws {
        let token = try hmacVerifier().verify(token: fixture.token(name), now: now)
        #expect(token.algorithm == algorithm)
        #expect(token.userID == "user-1")
        #expect(token.tokenID == "jti-1")
        #expect(token.issuedAt == now)
        #expect(token.header["typ"] == .string("JWT"))
        #expect(token.claims["exp"]?.intValue == now + 3600)
    }

    @Test func hmacAlgorithmsAreConfigurable() throws {
        let verifier = try hmacVerifier(algorithms: [.hs256])
        _ = try verifier.verify(token: fixture.token("hs256"), now: now)
        for name in ["hs384", "hs512"] {
            let error = try #require(throws: AuthError.self) {
                try verifier.verify(token: fixture.token(name), now: now)
            }
            #expect(error.code == .algorithmNotAllowed)
        }
    }

    @Test func userIDClaims() throws {
        let verifier = try hmacVerifier()
        #expect(try verifier.verify(token: fixture.token("hs256-int-id"), now: now).userID == "42")
        #expect(try verifier.verify(token: fixture.token("hs256-sub"), now: now).userID == "user-sub")
        let subFirst = try JWTVerifier(
            configuration: .init(keys: [.hmac(secret: Array(PyJWTFixture.secret.utf8))], userIDClaims: ["sub"])
        )
        let error = try #require(throws: AuthError.self) {
            try subFirst.verify(token: fixture.token("hs256"), now: now)
        }
        #expect(error.code == .missingUserID)
    }

    @Test func expirationIsOptionalUnlessRequired() throws {
        let token = try hmacVerifier().verify(token: fixture.token("hs256-no-exp"), now: now + 100_000_000)
        #expect(token.userID == "user-1")
        let strict = try JWTVerifier(
            configuration: .init(keys: [.hmac(secret: Array(PyJWTFixture.secret.utf8))], requireExpiration: true)
        )
        let error = try #require(throws: AuthError.self) {
            try strict.verify(token: fixture.token("hs256-no-exp"), now: now)
        }
        #expect(error.code == .invalidClaim)
    }

    @Test func expiredAndWrongSecret() throws {
        let verifier = try hmacVerifier()
        let expired = try #require(throws: AuthError.self) {
            try verifier.verify(token: fixture.token("hs256-expired"), now: now)
        }
        #expect(expired.code == .expired)
        let wrong = try #require(throws: AuthError.self) {
            try verifier.verify(token: fixture.token("hs256-wrong-secret"), now: now)
        }
        #expect(wrong.code == .badSignature)
    }

    @Test func audienceList() throws {
        let verifier = try JWTVerifier(
            configuration: .init(
                keys: [.hmac(secret: Array(PyJWTFixture.secret.utf8))],
                issuer: "https://webui.test",
                audience: "switchboard"
            )
        )
        #expect(try verifier.verify(token: fixture.token("hs256-aud-list"), now: now).userID == "user-1")
    }

    @Test func rs256AndES256FromPEM() throws {
        let verifier = try pemVerifier()
        #expect(try verifier.verify(token: fixture.token("rs256"), now: now).algorithm == .rs256)
        #expect(try verifier.verify(token: fixture.token("es256"), now: now).algorithm == .es256)
        // A kid in the token, keys without kids: the keys still apply.
        #expect(try verifier.verify(token: fixture.token("rs256-kid"), now: now).userID == "user-1")
        #expect(try verifier.verify(token: fixture.token("es256-kid"), now: now).userID == "user-1")
        let other = try #require(throws: AuthError.self) {
            try verifier.verify(token: fixture.token("rs256-other-key"), now: now)
        }
        #expect(other.code == .badSignature)
        // No HMAC key configured: HS256 is not an algorithm this verifier accepts.
        let hs = try #require(throws: AuthError.self) { try verifier.verify(token: fixture.token("hs256"), now: now) }
        #expect(hs.code == .algorithmNotAllowed)
    }

    @Test func rs256AndES256FromJWKS() throws {
        let keys = try JWTKey.jwks(fixture.jwks)
        // The oct key is skipped: a JWKS never configures an HMAC secret.
        #expect(keys.map(\.kid) == ["rsa-1", "ec-1"])
        #expect(keys.map(\.algorithms) == [[.rs256], [.es256]])
        let verifier = try JWTVerifier(configuration: .init(keys: keys))
        #expect(try verifier.verify(token: fixture.token("rs256-kid"), now: now).algorithm == .rs256)
        #expect(try verifier.verify(token: fixture.token("es256-kid"), now: now).algorithm == .es256)
        // No kid in the token: every key bound to the algorithm is tried.
        #expect(try verifier.verify(token: fixture.token("rs256"), now: now).algorithm == .rs256)
        let unknown = try #require(throws: AuthError.self) {
            try verifier.verify(token: fixture.token("es256-unknown-kid"), now: now)
        }
        #expect(unknown.code == .unknownKeyID)
    }

    @Test func keysOfTheWrongKindAreRefused() throws {
        func expectInvalidKey(_ make: () throws -> JWTKey, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try make()
                Issue.record("the key was accepted", sourceLocation: sourceLocation)
            } catch let error as AuthError {
                #expect(error.code == .invalidKey, sourceLocation: sourceLocation)
            } catch {
                Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
            }
        }
        expectInvalidKey { try .rsa(publicKeyPEM: fixture.ecPublicKeyPEM) }
        expectInvalidKey { try .ecdsa(publicKeyPEM: fixture.rsaPublicKeyPEM) }
        expectInvalidKey { try .rsa(publicKeyPEM: fixture.weakRSAPublicKeyPEM) }
        expectInvalidKey { try .rsa(publicKeyPEM: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n") }
        expectInvalidKey { try .rsa(publicKeyPEM: "") }
        expectInvalidKey { try .hmac(secret: []) }
        expectInvalidKey { try .hmac(secret: [1, 2, 3], algorithms: [.rs256]) }
    }
}
