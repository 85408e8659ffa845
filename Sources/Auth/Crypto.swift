import CCrypto

/// An OpenSSL public key (RSA or P-256), immutable once built.
///
/// `@unchecked Sendable`: the `EVP_PKEY` is fully built in `init` and never mutated afterwards;
/// OpenSSL 3 allows concurrent use of one key by several verifications, each with its own
/// `EVP_MD_CTX`. The key is freed in `deinit`, after the last reference is gone.
final class PublicKey: @unchecked Sendable {
    enum Kind: Sendable { case rsa, p256 }

    let pointer: OpaquePointer
    let kind: Kind

    /// Takes ownership of `pointer`; frees it and throws if it is neither a ≥ 2048-bit RSA key
    /// nor a valid P-256 key.
    private init(taking pointer: OpaquePointer) throws(AuthError) {
        var kind: Kind? = nil
        let type = EVP_PKEY_get_base_id(pointer)
        if type == switchboard_evp_pkey_rsa() {
            // RFC 7518 §3.3: keys of 2048 bits or larger MUST be used.
            if EVP_PKEY_get_bits(pointer) >= 2048 { kind = .rsa }
        } else if type == switchboard_evp_pkey_ec() {
            var name = [CChar](repeating: 0, count: 64)
            var length = 0
            if EVP_PKEY_get_group_name(pointer, &name, name.count, &length) == 1,
                String(decoding: name.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self) == "prime256v1",
                PublicKey.isValidPublicKey(pointer)
            {
                kind = .p256
            }
        }
        guard let kind else {
            EVP_PKEY_free(pointer)
            throw AuthError(.invalidKey, "unsupported public key: RSA of 2048 bits or more, or EC P-256, expected")
        }
        self.pointer = pointer
        self.kind = kind
    }

    deinit { EVP_PKEY_free(pointer) }

    private static func isValidPublicKey(_ pointer: OpaquePointer) -> Bool {
        guard let context = EVP_PKEY_CTX_new_from_pkey(nil, pointer, nil) else { return false }
        defer { EVP_PKEY_CTX_free(context) }
        return EVP_PKEY_public_check(context) == 1
    }

    /// A public key from PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo).
    convenience init(pem: String) throws(AuthError) {
        let bytes = Array(pem.utf8)
        let key: OpaquePointer? = bytes.withUnsafeBytes { buffer in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        ERR_clear_error()
        guard let key else { throw AuthError(.invalidKey, "not a PEM public key (-----BEGIN PUBLIC KEY-----)") }
        try self.init(taking: key)
    }

    /// An RSA public key from its JWK modulus and exponent (big-endian bytes).
    convenience init(rsaModulus modulus: [UInt8], exponent: [UInt8]) throws(AuthError) {
        guard !modulus.isEmpty, !exponent.isEmpty else { throw AuthError(.invalidKey, "empty RSA parameter") }
        guard let n = BN_bin2bn(modulus, Int32(modulus.count), nil) else {
            throw AuthError(.invalidKey, "invalid RSA JWK")
        }
        defer { BN_free(n) }
        guard let e = BN_bin2bn(exponent, Int32(exponent.count), nil) else {
            throw AuthError(.invalidKey, "invalid RSA JWK")
        }
        defer { BN_free(e) }
        // The builder copies the numbers when it builds the parameters.
        let key = PublicKey.fromData(type: "RSA") { builder, arena in
            OSSL_PARAM_BLD_push_BN(builder, arena.cString(OSSL_PKEY_PARAM_RSA_N), n) == 1
                && OSSL_PARAM_BLD_push_BN(builder, arena.cString(OSSL_PKEY_PARAM_RSA_E), e) == 1
        }
        guard let key else { throw AuthError(.invalidKey, "invalid RSA JWK") }
        try self.init(taking: key)
    }

    /// A P-256 public key from its JWK coordinates (32 bytes each).
    convenience init(p256X x: [UInt8], y: [UInt8]) throws(AuthError) {
        guard x.count == 32, y.count == 32 else { throw AuthError(.invalidKey, "P-256 coordinates must be 32 bytes") }
        let point: [UInt8] = [0x04] + x + y
        let key = PublicKey.fromData(type: "EC") { builder, arena in
            OSSL_PARAM_BLD_push_utf8_string(
                builder,
                arena.cString(OSSL_PKEY_PARAM_GROUP_NAME),
                arena.cString("prime256v1"),
                0
            ) == 1
                && OSSL_PARAM_BLD_push_octet_string(
                    builder,
                    arena.cString(OSSL_PKEY_PARAM_PUB_KEY),
                    arena.bytes(point),
                    point.count
                ) == 1
        }
        guard let key else { throw AuthError(.invalidKey, "invalid EC JWK") }
        try self.init(taking: key)
    }

    /// Keeps the names and values pushed into an `OSSL_PARAM_BLD` alive until the parameters are
    /// built: the builder stores the pointers it is given, not copies, so Swift's temporary
    /// C-string bridging would leave it with dangling pointers.
    private final class ParamArena {
        private var allocations: [UnsafeMutableRawPointer] = []

        func cString(_ string: String) -> UnsafePointer<CChar> {
            let bytes = Array(string.utf8CString)
            let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
            pointer.initialize(from: bytes, count: bytes.count)
            allocations.append(UnsafeMutableRawPointer(pointer))
            return UnsafePointer(pointer)
        }

        func bytes(_ bytes: [UInt8]) -> UnsafeRawPointer {
            let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
            bytes.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            allocations.append(pointer)
            return UnsafeRawPointer(pointer)
        }

        deinit {
            for allocation in allocations { allocation.deallocate() }
        }
    }

    /// Builds a public key with `EVP_PKEY_fromdata`; `push` adds the parameters, with every
    /// pointer it passes to the builder taken from the arena.
    private static func fromData(type: String, push: (OpaquePointer, ParamArena) -> Bool) -> OpaquePointer? {
        defer { ERR_clear_error() }
        let arena = ParamArena()
        defer { withExtendedLifetime(arena) {} }
        guard let builder = OSSL_PARAM_BLD_new() else { return nil }
        defer { OSSL_PARAM_BLD_free(builder) }
        guard push(builder, arena), let params = OSSL_PARAM_BLD_to_param(builder) else { return nil }
        defer { OSSL_PARAM_free(params) }
        guard let context = EVP_PKEY_CTX_new_from_name(nil, type, nil) else { return nil }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_fromdata_init(context) == 1 else { return nil }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_fromdata(context, &key, switchboard_evp_pkey_public_key_selection(), params) == 1 else {
            return nil
        }
        return key
    }

    /// Verifies a JWS signature over `message` with SHA-256: RSASSA-PKCS1-v1_5 for RSA, ECDSA
    /// with the JWS `r || s` form (64 bytes) for P-256.
    func verifySHA256(signature: [UInt8], message: [UInt8]) -> Bool {
        defer { ERR_clear_error() }
        let der: [UInt8]
        switch kind {
        case .rsa:
            der = signature
        case .p256:
            guard signature.count == 64, let converted = PublicKey.ecdsaDER(rawSignature: signature) else {
                return false
            }
            der = converted
        }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, pointer) == 1 else { return false }
        return EVP_DigestVerify(context, der, der.count, message, message.count) == 1
    }

    /// `r || s` (32 bytes each) → the DER `ECDSA-Sig-Value` OpenSSL verifies.
    private static func ecdsaDER(rawSignature: [UInt8]) -> [UInt8]? {
        guard let signature = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(signature) }
        guard let r = BN_bin2bn(rawSignature, 32, nil) else { return nil }
        guard let s = rawSignature.withUnsafeBufferPointer({ BN_bin2bn($0.baseAddress! + 32, 32, nil) }) else {
            BN_free(r)
            return nil
        }
        // On success the signature owns r and s.
        guard ECDSA_SIG_set0(signature, r, s) == 1 else {
            BN_free(r)
            BN_free(s)
            return nil
        }
        var output: UnsafeMutablePointer<UInt8>? = nil
        let length = i2d_ECDSA_SIG(signature, &output)
        guard length > 0, let output else { return nil }
        defer { CRYPTO_free(output, #fileID, #line) }
        return Array(UnsafeBufferPointer(start: output, count: Int(length)))
    }
}

/// HMAC with SHA-256/384/512 and constant-time comparison.
enum HMACVerifier {
    /// The MAC of `message`; nil for a non-HMAC algorithm or an OpenSSL failure.
    static func mac(algorithm: JWTAlgorithm, secret: [UInt8], message: [UInt8]) -> [UInt8]? {
        let digest: OpaquePointer?
        switch algorithm {
        case .hs256: digest = EVP_sha256()
        case .hs384: digest = EVP_sha384()
        case .hs512: digest = EVP_sha512()
        case .rs256, .es256: return nil
        }
        guard !secret.isEmpty else { return nil }
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = secret.withUnsafeBytes { key in
            message.withUnsafeBytes { data in
                HMAC(digest, key.baseAddress, Int32(key.count), data.baseAddress, data.count, &output, &length) != nil
            }
        }
        ERR_clear_error()
        guard ok else { return nil }
        return Array(output.prefix(Int(length)))
    }

    static func verify(algorithm: JWTAlgorithm, secret: [UInt8], message: [UInt8], signature: [UInt8]) -> Bool {
        guard let expected = mac(algorithm: algorithm, secret: secret, message: message),
            expected.count == signature.count
        else { return false }
        // The length is public (fixed per algorithm); the bytes are compared in constant time.
        return expected.withUnsafeBytes { expected in
            signature.withUnsafeBytes { actual in
                CRYPTO_memcmp(expected.baseAddress, actual.baseAddress, actual.count) == 0
            }
        }
    }
}

/// SHA-256 of a secret, for naming it in shared state without storing it.
public enum TokenDigest {
    /// Lower-case hex SHA-256 of `text`'s UTF-8 bytes.
    public static func sha256Hex(_ text: String) -> String {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let bytes = Array(text.utf8)
        let ok = bytes.withUnsafeBytes { data in
            EVP_Digest(data.baseAddress, data.count, &output, &length, EVP_sha256(), nil) == 1
        }
        // EVP_Digest with SHA-256 fails only when OpenSSL cannot allocate a context.
        precondition(ok, "SHA-256 failed")
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(Int(length) * 2)
        for byte in output.prefix(Int(length)) {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
