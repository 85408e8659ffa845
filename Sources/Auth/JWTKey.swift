import Logging

/// One key a `JWTVerifier` accepts, bound to the algorithms it may verify.
///
/// The binding is what prevents algorithm confusion: an RSA or EC public key never verifies
/// `HS*` (its PEM is public, so it must never be used as an HMAC secret), and an HMAC secret
/// never verifies `RS*`/`ES*`.
public struct JWTKey: Sendable, CustomStringConvertible {
    enum Material: Sendable {
        case hmac([UInt8])
        case publicKey(PublicKey)
    }

    let material: Material
    /// The algorithms this key verifies.
    public let algorithms: Set<JWTAlgorithm>
    /// The key id; a token whose header names a `kid` is verified only by keys with that id
    /// (or, when no configured key has that id, by keys without one).
    public let kid: String?

    private init(material: Material, algorithms: Set<JWTAlgorithm>, kid: String?) {
        self.material = material
        self.algorithms = algorithms
        self.kid = kid
    }

    /// Never shows key material.
    public var description: String {
        let kind: String
        switch material {
        case .hmac: kind = "hmac"
        case .publicKey(let key): kind = key.kind == .rsa ? "rsa" : "ec-p256"
        }
        let names = algorithms.map(\.rawValue).sorted().joined(separator: ",")
        return "JWTKey(\(kind), algorithms: \(names)\(kid.map { ", kid: \($0)" } ?? ""))"
    }

    /// A shared secret (e.g. `WEBUI_SECRET_KEY`) for HS256/384/512.
    ///
    /// - Parameters:
    ///   - secret: the secret's bytes (for a text secret, its UTF-8); must not be empty.
    ///   - algorithms: the HMAC algorithms accepted; default all three.
    ///   - kid: an optional key id; default none.
    public static func hmac(
        secret: [UInt8],
        algorithms: Set<JWTAlgorithm> = JWTAlgorithm.hmacAlgorithms,
        kid: String? = nil
    ) throws(AuthError) -> JWTKey {
        guard !secret.isEmpty else { throw AuthError(.invalidKey, "the HMAC secret is empty") }
        guard !algorithms.isEmpty, algorithms.isSubset(of: JWTAlgorithm.hmacAlgorithms) else {
            throw AuthError(.invalidKey, "an HMAC secret verifies only HS256, HS384 and HS512")
        }
        return JWTKey(material: .hmac(secret), algorithms: algorithms, kid: kid)
    }

    /// An RSA public key (PEM SubjectPublicKeyInfo, at least 2048 bits) for RS256.
    public static func rsa(publicKeyPEM: String, kid: String? = nil) throws(AuthError) -> JWTKey {
        let key = try PublicKey(pem: publicKeyPEM)
        guard key.kind == .rsa else { throw AuthError(.invalidKey, "the PEM key is not an RSA key") }
        return JWTKey(material: .publicKey(key), algorithms: [.rs256], kid: kid)
    }

    /// An EC P-256 public key (PEM SubjectPublicKeyInfo) for ES256.
    public static func ecdsa(publicKeyPEM: String, kid: String? = nil) throws(AuthError) -> JWTKey {
        let key = try PublicKey(pem: publicKeyPEM)
        guard key.kind == .p256 else { throw AuthError(.invalidKey, "the PEM key is not an EC P-256 key") }
        return JWTKey(material: .publicKey(key), algorithms: [.es256], kid: kid)
    }

    /// The signature keys of a JWKS document (RFC 7517 §5): `{"keys":[…]}`.
    ///
    /// RSA keys (`n`, `e`) become RS256 keys and EC P-256 keys (`x`, `y`) ES256 keys. Keys this
    /// verifier cannot use — another `kty` or curve, `use` other than `sig`, an `alg` other than
    /// RS256/ES256 — are skipped (logged at debug); a usable key with bad parameters is an error,
    /// and so is a document with no usable key.
    public static func jwks(
        _ document: String,
        logger: Logger = Logger(label: "switchboard.auth")
    ) throws(AuthError)
        -> [JWTKey]
    {
        let json: JWTJSON
        do {
            json = try JWTJSON.parse(document)
        } catch {
            throw AuthError(.invalidKey, "the JWKS document is not valid JSON")
        }
        guard let entries = json["keys"]?.arrayValue else {
            throw AuthError(.invalidKey, "the JWKS document has no \"keys\" array")
        }
        var keys: [JWTKey] = []
        for (position, entry) in entries.enumerated() {
            guard entry.objectValue != nil else { throw AuthError(.invalidKey, "a JWKS entry is not an object") }
            let kid = entry["kid"]?.stringValue
            func skip(_ reason: String) {
                logger.debug(
                    "skipping a JWKS key",
                    metadata: ["jwks.position": "\(position)", "jwks.kid": "\(kid ?? "")", "reason": "\(reason)"]
                )
            }
            if let use = entry["use"], use.stringValue != "sig" {
                skip("use is not sig")
                continue
            }
            let alg = entry["alg"]
            switch entry["kty"]?.stringValue {
            case "RSA":
                if let alg, alg.stringValue != JWTAlgorithm.rs256.rawValue {
                    skip("unsupported alg")
                    continue
                }
                let n = try parameter(entry, "n")
                let e = try parameter(entry, "e")
                keys.append(
                    JWTKey(
                        material: .publicKey(try PublicKey(rsaModulus: n, exponent: e)),
                        algorithms: [.rs256],
                        kid: kid
                    )
                )
            case "EC":
                guard entry["crv"]?.stringValue == "P-256" else {
                    skip("unsupported curve")
                    continue
                }
                if let alg, alg.stringValue != JWTAlgorithm.es256.rawValue {
                    skip("unsupported alg")
                    continue
                }
                let x = try parameter(entry, "x")
                let y = try parameter(entry, "y")
                keys.append(JWTKey(material: .publicKey(try PublicKey(p256X: x, y: y)), algorithms: [.es256], kid: kid))
            default:
                skip("unsupported kty")
            }
        }
        guard !keys.isEmpty else { throw AuthError(.invalidKey, "the JWKS document has no usable signature key") }
        return keys
    }

    private static func parameter(_ entry: JWTJSON, _ name: String) throws(AuthError) -> [UInt8] {
        guard let text = entry[name]?.stringValue, let bytes = Base64URL.decode(Array(text.utf8)), !bytes.isEmpty else {
            throw AuthError(.invalidKey, "a JWKS key has a missing or invalid \"\(name)\"")
        }
        return bytes
    }

    /// Verifies `signature` over `message` with this key under `algorithm`; false for any
    /// algorithm this key is not bound to.
    func verify(algorithm: JWTAlgorithm, message: [UInt8], signature: [UInt8]) -> Bool {
        guard algorithms.contains(algorithm) else { return false }
        switch (material, algorithm) {
        case (.hmac(let secret), .hs256), (.hmac(let secret), .hs384), (.hmac(let secret), .hs512):
            return HMACVerifier.verify(algorithm: algorithm, secret: secret, message: message, signature: signature)
        case (.publicKey(let key), .rs256):
            return key.kind == .rsa && key.verifySHA256(signature: signature, message: message)
        case (.publicKey(let key), .es256):
            return key.kind == .p256 && key.verifySHA256(signature: signature, message: message)
        default:
            return false
        }
    }
}
