import Testing

@testable import Auth

/// RFC 7515 Appendix A: the JWS examples, verified with the keys the RFC gives. Their claims set
/// is `{"iss":"joe", "exp":1300819380, "http://example.com/is_root":true}` (no `id`/`sub`, so the
/// user id is read from `iss`), and `exp` is in 2011: they are verified at a fixed time before it.
@Suite("RFC 7515 Appendix A vectors")
struct RFC7515VectorTests {
    static let payload =
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    static let exp = 1_300_819_380
    static let before = exp - 3600

    /// A.1: HS256 with the JWK `k` of the example.
    static let a1 =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\(payload).dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    static let a1Key = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"

    /// A.2: RS256.
    static let a2 =
        "eyJhbGciOiJSUzI1NiJ9.\(payload)."
        + "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t"
        + "1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jz"
        + "DwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
    static let a2N =
        "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgN"
        + "MsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665x"
        + "smtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"

    /// A.3: ES256 (P-256). ECDSA signatures are randomized; this is the RFC's one.
    static let a3 =
        "eyJhbGciOiJFUzI1NiJ9.\(payload).DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
    static let a3X = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
    static let a3Y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"

    static let jwks = """
        {"keys":[
          {"kty":"RSA","kid":"2010-12-29","n":"\(a2N)","e":"AQAB"},
          {"kty":"EC","crv":"P-256","kid":"e9bc097a-ce51-4036-9562-d2ade882db0d","x":"\(a3X)","y":"\(a3Y)"}
        ]}
        """

    static func verifier(_ keys: [JWTKey]) throws -> JWTVerifier {
        try JWTVerifier(configuration: .init(keys: keys, userIDClaims: ["iss"]))
    }

    func expectRFCClaims(_ token: VerifiedToken) {
        #expect(token.userID == "joe")
        #expect(token.claims["exp"]?.intValue == Self.exp)
        #expect(token.claims["http://example.com/is_root"] == .bool(true))
    }

    @Test func a1HS256() throws {
        let secret = try #require(Base64URL.decode(Array(Self.a1Key.utf8)))
        #expect(secret.count == 64)
        let verifier = try Self.verifier([JWTKey.hmac(secret: secret)])
        let token = try verifier.verify(token: Self.a1, now: Self.before)
        #expect(token.algorithm == .hs256)
        #expect(token.header["typ"] == .string("JWT"))
        expectRFCClaims(token)
        // The example has expired since 2011.
        #expect(throws: AuthError.self) { try verifier.verify(token: Self.a1, now: Self.exp + 31) }
    }

    @Test func a2RS256FromJWK() throws {
        let verifier = try Self.verifier(JWTKey.jwks(Self.jwks))
        let token = try verifier.verify(token: Self.a2, now: Self.before)
        #expect(token.algorithm == .rs256)
        expectRFCClaims(token)
    }

    @Test func a3ES256FromJWK() throws {
        let verifier = try Self.verifier(JWTKey.jwks(Self.jwks))
        let token = try verifier.verify(token: Self.a3, now: Self.before)
        #expect(token.algorithm == .es256)
        expectRFCClaims(token)
    }

    @Test func expiryAppliesWithLeeway() throws {
        let verifier = try Self.verifier(JWTKey.jwks(Self.jwks))
        // Leeway 30 s: still accepted 30 s after exp, refused at 31 s.
        _ = try verifier.verify(token: Self.a3, now: Self.exp + 30)
        let error = try #require(throws: AuthError.self) { try verifier.verify(token: Self.a3, now: Self.exp + 31) }
        #expect(error.code == .expired)
    }

    @Test func signaturesAreBoundToTheirPayload() throws {
        let verifier = try Self.verifier(
            JWTKey.jwks(Self.jwks) + [JWTKey.hmac(secret: Base64URL.decode(Array(Self.a1Key.utf8))!)]
        )
        // Each example's signature, moved onto another header, fails.
        let a2Signature = Self.a2.split(separator: ".")[2]
        let a3Signature = Self.a3.split(separator: ".")[2]
        for token in [
            "eyJhbGciOiJFUzI1NiJ9.\(Self.payload).\(a2Signature)",
            "eyJhbGciOiJSUzI1NiJ9.\(Self.payload).\(a3Signature)",
            "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\(Self.payload).\(a3Signature)",
        ] {
            let error = try #require(throws: AuthError.self) { try verifier.verify(token: token, now: Self.before) }
            #expect(error.code == .badSignature)
        }
    }
}
