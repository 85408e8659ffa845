/// Open WebUI's token revocation keys in Redis (docs/OPENWEBUI.md), and the
/// rule that applies them. Reading Redis is the caller's job.
public struct RevocationKeys: Sendable, Hashable {
    /// The key prefix (Open WebUI's `REDIS_KEY_PREFIX`). Default `open-webui`.
    public var prefix: String

    public init(prefix: String = "open-webui") {
        self.prefix = prefix
    }

    /// `{prefix}:auth:token:{jti}:revoked` — exists when that token was revoked.
    public func tokenRevokedKey(jti: String) -> String {
        "\(prefix):auth:token:\(jti):revoked"
    }

    /// `{prefix}:auth:user:{id}:revoked_at` — epoch seconds; tokens issued at or before it are revoked.
    public func userRevokedAtKey(userID: String) -> String {
        "\(prefix):auth:user:\(userID):revoked_at"
    }

    /// True if a token must be refused.
    ///
    /// - Parameters:
    ///   - tokenRevoked: whether `tokenRevokedKey(jti:)` exists (false for a token without `jti`).
    ///   - userRevokedAt: the value of `userRevokedAtKey(userID:)`, nil if absent.
    ///   - issuedAt: the token's `iat`. A token without `iat` is refused once its user has a
    ///     `revoked_at`: it cannot be shown to be newer.
    public static func isRevoked(tokenRevoked: Bool, userRevokedAt: Int?, issuedAt: Int?) -> Bool {
        if tokenRevoked { return true }
        guard let userRevokedAt else { return false }
        guard let issuedAt else { return true }
        return issuedAt <= userRevokedAt
    }

    /// `isRevoked` for a verified token.
    public static func isRevoked(_ token: VerifiedToken, tokenRevoked: Bool, userRevokedAt: Int?) -> Bool {
        isRevoked(tokenRevoked: tokenRevoked, userRevokedAt: userRevokedAt, issuedAt: token.issuedAt)
    }
}
