import NIOConcurrencyHelpers

/// How many sockets each user has on this node, against a limit: one user's tabs, scripts or a
/// leaked token cannot take a node's connections from everyone else. Per node, as Centrifugo's
/// `user_connection_limit`: counting across the cluster would put a Redis round trip and a race in
/// every connect, and the load balancer spreads a user's sockets anyway.
package final class UserConnectionLimit: Sendable {
    package let limit: Int
    private let counts = NIOLockedValueBox<[String: Int]>([:])

    /// - Parameter limit: sockets per user, at least 1.
    package init(limit: Int) {
        precondition(limit >= 1, "a per-user limit of \(limit) would refuse everyone")
        self.limit = limit
    }

    /// Counts one more socket for `userID`; false, counting nothing, when the user has `limit` already.
    package func admit(_ userID: String) -> Bool {
        counts.withLockedValue { counts in
            let count = counts[userID, default: 0]
            guard count < limit else { return false }
            counts[userID] = count + 1
            return true
        }
    }

    /// One of `userID`'s admitted sockets is gone.
    package func release(_ userID: String) {
        counts.withLockedValue { counts in
            guard let count = counts[userID] else { return }
            counts[userID] = count > 1 ? count - 1 : nil
        }
    }
}
