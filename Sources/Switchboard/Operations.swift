import Cluster
import EngineIO
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OpenWebUI

/// Whether the node can take new clients: listening, not draining, and in a cluster a pub/sub round
/// trip through Redis within the deadline. Concurrent checks share one probe.
final class ReadinessCheck: Sendable {
    let cluster: ClusterNode?
    let state: NodeState
    let deadline: TimeAmount
    let eventLoop: EventLoop
    private let inFlight = NIOLockedValueBox<EventLoopFuture<Bool>?>(nil)

    init(cluster: ClusterNode?, state: NodeState, deadline: TimeAmount, eventLoop: EventLoop) {
        self.cluster = cluster
        self.state = state
        self.deadline = deadline
        self.eventLoop = eventLoop
    }

    func check() -> EventLoopFuture<(ready: Bool, reason: String)> {
        let loop = eventLoop
        if state.isDraining { return loop.makeSucceededFuture((false, "draining")) }
        if !state.isListening { return loop.makeSucceededFuture((false, "starting")) }
        guard let cluster else { return loop.makeSucceededFuture((true, "ready")) }
        var started: EventLoopFuture<Bool>?
        let probe = inFlight.withLockedValue { current -> EventLoopFuture<Bool> in
            if let current { return current }
            let probe = cluster.probe(within: deadline)
            current = probe
            started = probe
            return probe
        }
        started?.whenComplete { _ in self.inFlight.withLockedValue { $0 = nil } }
        let milliseconds = deadline.nanoseconds / 1_000_000
        return probe.map { ok in
            ok ? (true, "ready") : (false, "redis: no pub/sub round trip within \(milliseconds) ms")
        }
    }
}

/// `/health` (the process is alive), `/ready` (see `ReadinessCheck`; 503 with the reason) and
/// `/metrics`.
struct OperationsResponder: HTTPResponder {
    let readiness: ReadinessCheck
    /// `/metrics`, when metrics are on.
    let metrics: MetricsResponder?
    var maxBodySize: Int { 0 }

    func respond(to request: HTTPRequest, on eventLoop: EventLoop) -> EventLoopFuture<HTTPResponse> {
        if let metrics, request.path == MetricsResponder.path { return metrics.respond(to: request, on: eventLoop) }
        switch (request.head.method, request.path) {
        case (.GET, "/health"):
            return eventLoop.makeSucceededFuture(HTTPResponse(status: .ok, contentType: "text/plain", body: "ok"))
        case (.GET, "/ready"):
            return readiness.check().hop(to: eventLoop).map { ready, reason in
                HTTPResponse(
                    status: ready ? .ok : .serviceUnavailable,
                    contentType: "text/plain",
                    body: ready ? "ready" : "not ready: \(reason)"
                )
            }
        default:
            return eventLoop.makeSucceededFuture(HTTPResponse(status: .notFound, contentType: "text/plain", body: "Not Found"))
        }
    }
}

/// What SIGHUP re-reads: the JWT keys and the API key, from their files. Connections stay up; a
/// file that no longer reads or parses leaves the keys in use unchanged.
struct Reloader: Sendable {
    let auth: SwitchboardConfiguration.AuthSettings
    let apiKeyFile: String?
    let users: UserDirectory
    let apiKey: SecretBox

    func reload(logger: Logger) {
        do {
            users.verifier = try Switchboard.makeVerifier(auth, logger: logger)
            if let apiKeyFile { apiKey.value = try readSecretFile(apiKeyFile, setting: "api-key-file") }
            logger.info("reloaded keys", metadata: ["jwt_keys": "\(users.verifier?.configuration.keys.count ?? 0)"])
        } catch {
            logger.error("keys not reloaded; the previous ones stay in use", metadata: ["reason": "\(error)"])
        }
    }
}

/// A secret from a file: its first line, without trailing whitespace.
func readSecretFile(_ path: String, setting: String) throws -> String {
    let text = try readConfigurationFile(path, setting: setting, limit: 64 * 1024)
    let line = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
    let secret = String(line.reversed().drop(while: { $0 == " " || $0 == "\r" || $0 == "\t" }).reversed())
    guard !secret.isEmpty else { throw ConfigurationError(setting: setting, value: path, reason: "the file is empty") }
    return secret
}
