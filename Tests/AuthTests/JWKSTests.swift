import Testing

@testable import Auth

@Suite("JWKS documents")
struct JWKSTests {
    static let x = RFC7515VectorTests.a3X
    static let y = RFC7515VectorTests.a3Y
    static let n = RFC7515VectorTests.a2N

    @Test func unusableKeysAreSkipped() throws {
        let keys = try JWTKey.jwks(
            """
            {"keys":[
              {"kty":"RSA","kid":"enc","use":"enc","n":"\(Self.n)","e":"AQAB"},
              {"kty":"RSA","kid":"rs512","alg":"RS512","n":"\(Self.n)","e":"AQAB"},
              {"kty":"EC","kid":"p384","crv":"P-384","x":"AA","y":"AA"},
              {"kty":"EC","kid":"es-as-rs","crv":"P-256","alg":"RS256","x":"\(Self.x)","y":"\(Self.y)"},
              {"kty":"OKP","kid":"ed","crv":"Ed25519","x":"AA"},
              {"kty":"oct","kid":"oct","k":"c2VjcmV0"},
              {"kty":"EC","kid":"ok","crv":"P-256","alg":"ES256","use":"sig","x":"\(Self.x)","y":"\(Self.y)"}
            ]}
            """
        )
        #expect(keys.map(\.kid) == ["ok"])
    }

    @Test(arguments: [
        "", "[]", "{}", #"{"keys":{}}"#, #"{"keys":[]}"#, #"{"keys":[1]}"#,
        #"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
        #"{"keys":[{"kty":"RSA","e":"AQAB"}]}"#,
        #"{"keys":[{"kty":"RSA","n":"a+b/","e":"AQAB"}]}"#,
        #"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#,
        #"{"keys":[{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}]}"#,
        // A point that is not on the curve.
        #"{"keys":[{"kty":"EC","crv":"P-256","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}"#,
    ])
    func refused(document: String) {
        let error = #expect(throws: AuthError.self) { try JWTKey.jwks(document) }
        #expect(error?.code == .invalidKey)
    }

    @Test func descriptionsShowNoKeyMaterial() throws {
        let secret = "do-not-print-this-secret"
        let key = try JWTKey.hmac(secret: Array(secret.utf8), kid: "k1")
        #expect(!key.description.contains(secret))
        #expect(key.description.contains("hmac"))
        #expect(try JWTKey.jwks(RFC7515VectorTests.jwks).map(\.description).allSatisfy { !$0.contains(Self.n) })
    }

    @Test func verifierConfigurationIsChecked() throws {
        let key = try JWTKey.hmac(secret: [1])
        for configuration in [
            JWTVerifier.Configuration(keys: []),
            JWTVerifier.Configuration(keys: [key], leeway: -1),
            JWTVerifier.Configuration(keys: [key], maximumTokenLength: 0),
            JWTVerifier.Configuration(keys: [key], userIDClaims: []),
        ] {
            let error = #expect(throws: AuthError.self) { try JWTVerifier(configuration: configuration) }
            #expect(error?.code == .invalidConfiguration)
        }
    }

    /// One verifier (and its OpenSSL keys) shared by concurrent verifications.
    @Test func concurrentVerification() async throws {
        let fixture = try PyJWTFixture.get()
        let verifier = try JWTVerifier(
            configuration: .init(
                keys: [
                    .hmac(secret: Array(PyJWTFixture.secret.utf8)),
                    .rsa(publicKeyPEM: fixture.rsaPublicKeyPEM),
                    .ecdsa(publicKeyPEM: fixture.ecPublicKeyPEM),
                ]
            )
        )
        let tokens = try ["hs256", "rs256", "es256"].map { try fixture.token($0) }
        let accepted = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<8 {
                group.addTask {
                    var count = 0
                    for round in 0..<60 {
                        let token = tokens[(task + round) % tokens.count]
                        if (try? verifier.verify(token: token, now: PyJWTFixture.now))?.userID == "user-1" {
                            count += 1
                        }
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(accepted == 8 * 60)
    }
}
