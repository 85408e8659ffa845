import Testing

@testable import Auth

@Suite("Revocation keys")
struct RevocationTests {
    @Test func keyNamesFollowOpenWebUI() {
        let keys = RevocationKeys()
        #expect(keys.tokenRevokedKey(jti: "abc") == "open-webui:auth:token:abc:revoked")
        #expect(keys.userRevokedAtKey(userID: "u-1") == "open-webui:auth:user:u-1:revoked_at")
        let custom = RevocationKeys(prefix: "staging")
        #expect(custom.tokenRevokedKey(jti: "abc") == "staging:auth:token:abc:revoked")
        #expect(custom.userRevokedAtKey(userID: "u-1") == "staging:auth:user:u-1:revoked_at")
    }

    @Test func decision() {
        // A revoked token is refused whatever its iat.
        #expect(RevocationKeys.isRevoked(tokenRevoked: true, userRevokedAt: nil, issuedAt: 100))
        // Nothing revoked.
        #expect(!RevocationKeys.isRevoked(tokenRevoked: false, userRevokedAt: nil, issuedAt: 100))
        #expect(!RevocationKeys.isRevoked(tokenRevoked: false, userRevokedAt: nil, issuedAt: nil))
        // Tokens issued at or before the user's revoked_at are refused; later ones are not.
        #expect(RevocationKeys.isRevoked(tokenRevoked: false, userRevokedAt: 100, issuedAt: 99))
        #expect(RevocationKeys.isRevoked(tokenRevoked: false, userRevokedAt: 100, issuedAt: 100))
        #expect(!RevocationKeys.isRevoked(tokenRevoked: false, userRevokedAt: 100, issuedAt: 101))
        // Without iat a token cannot be shown to be newer.
        #expect(RevocationKeys.isRevoked(tokenRevoked: false, userRevokedAt: 100, issuedAt: nil))
    }

    @Test func verifiedTokensCarryWhatRevocationNeeds() throws {
        let secret = "revocation-secret-0123456789abcdef"
        let verifier = try JWTVerifier(configuration: .init(keys: [.hmac(secret: Array(secret.utf8))]))
        let token = try verifier.verify(
            token: Mint.hmac(
                header: #"{"alg":"HS256"}"#,
                claims: #"{"id":"u-1","jti":"j-9","iat":1000.75}"#,
                secret: secret
            ),
            now: 1000
        )
        #expect(token.tokenID == "j-9")
        #expect(token.issuedAt == 1000)
        let keys = RevocationKeys()
        #expect(keys.tokenRevokedKey(jti: token.tokenID!) == "open-webui:auth:token:j-9:revoked")
        #expect(keys.userRevokedAtKey(userID: token.userID) == "open-webui:auth:user:u-1:revoked_at")
        #expect(RevocationKeys.isRevoked(token, tokenRevoked: false, userRevokedAt: 1000))
        #expect(!RevocationKeys.isRevoked(token, tokenRevoked: false, userRevokedAt: 999))
    }
}
