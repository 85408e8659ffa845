import CoreMetrics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SocketIO

/// Re-checks every token this node's authenticated sockets hold, as Open WebUI re-checks its own sockets every
/// 30 s: a token that no longer authenticates its user (signed out, session stamp changed, role changed, user
/// deleted, expired, revoked) gets every socket of that user disconnected on every node.
///
/// Each distinct token is checked once per round however many sockets hold it; with Redis the answer is shared
/// with the other nodes for a few seconds and one node at a time asks the backend. At most
/// `maxConcurrentChecks` checks run at once, so a round never floods the backend.
package final class SessionRevalidator: Sendable {
    private struct Holder {
        var userID: String
        var sockets: [ObjectIdentifier: Socket] = [:]
    }

    private struct Round {
        var pending: [(token: String, userID: String)]
        var running = 0
    }

    let users: UserDirectory
    let interval: TimeAmount
    let maxConcurrentChecks: Int
    let eventLoop: EventLoop
    let logger: Logger
    /// Disconnects every socket of a user, cluster-wide.
    let disconnectUser: @Sendable (String) -> Void
    private let holders = NIOLockedValueBox<[String: Holder]>([:])
    private let task = NIOLockedValueBox<RepeatedTask?>(nil)
    private let outcomes: [String: Counter]

    package init(
        users: UserDirectory,
        interval: TimeAmount,
        maxConcurrentChecks: Int = 16,
        eventLoop: EventLoop,
        logger: Logger,
        disconnectUser: @escaping @Sendable (String) -> Void
    ) {
        self.users = users
        self.interval = interval
        self.maxConcurrentChecks = max(1, maxConcurrentChecks)
        self.eventLoop = eventLoop
        self.logger = logger
        self.disconnectUser = disconnectUser
        self.outcomes = Dictionary(
            uniqueKeysWithValues: ["valid", "refused", "unknown"].map {
                ($0, Counter(label: "switchboard_session_revalidations_total", dimensions: [("outcome", $0)]))
            }
        )
    }

    /// Number of distinct tokens held.
    var trackedTokens: Int { holders.withLockedValue { $0.count } }

    /// `socket` holds `token` of `userID` (replacing any token it held before).
    func track(_ socket: Socket, token: String, userID: String, previousToken: String?) {
        holders.withLockedValue { holders in
            if let previousToken, previousToken != token { Self.remove(socket, token: previousToken, from: &holders) }
            holders[token, default: Holder(userID: userID)].sockets[ObjectIdentifier(socket)] = socket
        }
    }

    func untrack(_ socket: Socket, token: String) {
        holders.withLockedValue { Self.remove(socket, token: token, from: &$0) }
    }

    private static func remove(_ socket: Socket, token: String, from holders: inout [String: Holder]) {
        holders[token]?.sockets[ObjectIdentifier(socket)] = nil
        if holders[token]?.sockets.isEmpty == true { holders[token] = nil }
    }

    package func start() {
        let task = eventLoop.scheduleRepeatedAsyncTask(initialDelay: interval, delay: interval) { _ in
            self.runRound()
        }
        self.task.withLockedValue { $0 = task }
    }

    package func stop() {
        task.withLockedValue { task in
            task?.cancel()
            task = nil
        }
    }

    /// Checks every held token once; completes when all checks are done.
    func runRound() -> EventLoopFuture<Void> {
        let tokens = holders.withLockedValue { holders in holders.map { (token: $0.key, userID: $0.value.userID) } }
        guard !tokens.isEmpty else { return eventLoop.makeSucceededVoidFuture() }
        let done = eventLoop.makePromise(of: Void.self)
        let round = NIOLoopBoundBox(Round(pending: tokens), eventLoop: eventLoop)
        eventLoop.execute { self.pump(round, done) }
        return done.futureResult
    }

    private func pump(_ round: NIOLoopBoundBox<Round>, _ done: EventLoopPromise<Void>) {
        while round.value.running < maxConcurrentChecks, let next = round.value.pending.popLast() {
            round.value.running += 1
            users.revalidate(token: next.token, on: eventLoop).hop(to: eventLoop).whenComplete { result in
                round.value.running -= 1
                let outcome = (try? result.get()) ?? .unknown("check failed")
                self.apply(outcome, userID: next.userID)
                self.pump(round, done)
            }
        }
        if round.value.running == 0, round.value.pending.isEmpty { done.succeed() }
    }

    private func apply(_ outcome: RevalidationOutcome, userID: String) {
        switch outcome {
        case .valid:
            outcomes["valid"]?.increment()
        case .unknown(let reason):
            outcomes["unknown"]?.increment()
            logger.debug("session not re-validated this round", metadata: ["reason": "\(reason)", "user": "\(userID)"])
        case .refused(let reason):
            outcomes["refused"]?.increment()
            logger.info(
                "disconnecting a user whose session is no longer valid",
                metadata: ["reason": "\(reason)", "user": "\(userID)"]
            )
            // Marked before the sockets go, so their immediate reconnect is checked afresh on any node.
            users.markForRecheck(userID: userID, on: eventLoop).whenComplete { _ in self.disconnectUser(userID) }
        }
    }
}
