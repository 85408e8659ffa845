import Histogram
import NIOCore
import NIOPosix

/// Opens many Socket.IO clients over a cluster's nodes and authenticates each the way the Open
/// WebUI front end does: connect, then `user-join {auth: {token}}`, acknowledged with the user once
/// the relay has verified the token, asked the backend for the user and its channels, written the
/// pools and joined `user:<id>` and `channel:<id>`.
///
/// Client `i` is user `u<i + firstUser>`; the bench's backend puts it in channel `c<number % rooms>`.
/// Confined to the client event loop.
final class ClientPool: SocketClientDelegate, @unchecked Sendable {
    let loop: any EventLoop
    let cluster: Cluster
    let minter: TokenMinter
    private(set) var clients: [SocketClient] = []
    private(set) var ready = 0
    private(set) var failed = 0
    private(set) var failures: [String: Int] = [:]
    /// Clients that closed after they were ready (a relay dropped them, or timed them out).
    private(set) var droppedAfterReady = 0
    private(set) var dropReasons: [String: Int] = [:]
    /// Connect to `user-join` ack, in microseconds.
    private(set) var handshakes = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
    private(set) var firstStart: UInt64 = 0
    private(set) var lastReady: UInt64 = 0

    /// SO_RCVBUF of the clients opened from now on; nil for the kernel's default.
    var receiveBufferBytes: Int?

    /// Server events of ready clients go here.
    var onEvent: ((SocketClient, UnsafeRawBufferPointer, Int?) -> Void)?

    private var startedAt: [UInt64] = []
    /// Per client: not started, handshaking, ready, or ended.
    private enum ClientState { case idle, handshaking, ready, ended }
    private var states: [ClientState] = []
    private var pending = 0
    private var toStart: [Int] = []
    private var completion: EventLoopPromise<Void>?
    private var total = 0
    private var sources: Bool = false
    private var tokenOf: [String] = []
    /// The user number of each client.
    private(set) var users: [Int] = []
    private var firstUser = 0
    /// Whether a `user-join` answered empty leaves the client connected (counted here) instead of failing it.
    private var keepRefusedJoins = false
    private(set) var joinsRefused = 0

    init(loop: any EventLoop, cluster: Cluster, minter: TokenMinter) {
        self.loop = loop
        self.cluster = cluster
        self.minter = minter
    }

    /// Opens `count` clients spread round-robin over the nodes (or all on `node` when given), at
    /// most `concurrency` handshakes at a time; succeeds when every client is ready or failed.
    func open(count: Int, concurrency: Int, firstUser: Int = 0, node: Int? = nil) -> EventLoopFuture<Void> {
        self.loop.preconditionInEventLoop()
        let promise = self.loop.makePromise(of: Void.self)
        self.completion = promise
        self.total = count
        self.firstUser = firstUser
        // One address pair holds ~28k ephemeral ports: beyond ~20k per node, spread source addresses.
        self.sources = count / (node == nil ? self.cluster.nodes.count : 1) > 20_000
        for index in 0..<count {
            let target = self.cluster.nodes[node ?? index % self.cluster.nodes.count]
            let client = SocketClient(
                index: index,
                host: target.host,
                port: target.port,
                path: self.cluster.path,
                connectAuth: nil,
                delegate: self
            )
            client.receiveBufferBytes = self.receiveBufferBytes
            self.clients.append(client)
        }
        self.users = (0..<count).map { $0 + firstUser }
        self.tokenOf = self.users.map { self.minter.token(user: "u\($0)") }
        self.startedAt = Array(repeating: 0, count: count)
        self.states = Array(repeating: .idle, count: count)
        self.toStart = Array((0..<count).reversed())
        self.firstStart = monotonicNanoseconds()
        for _ in 0..<min(concurrency, count) { self.startNext() }
        if count == 0 { promise.succeed() }
        return promise.futureResult
    }

    /// Opens `count` clients of users u0… over the nodes `nodes` (client i on `nodes[i % nodes.count]`), client i
    /// after `delays[i]`, as a failed node's clients come back: each sends its token in the connect's auth, as
    /// the Open WebUI front end does, and then `user-join`. A `user-join` answered empty (the relay could not
    /// ask the backend yet) leaves the client connected, as the front end stays; it is counted in
    /// `joinsRefused`. Succeeds when every client is connected or failed. `users` names the user of each client
    /// (default u0…).
    func reconnect(count: Int, over nodes: [Int], delays: [TimeAmount], users: [Int]? = nil) -> EventLoopFuture<Void> {
        self.loop.preconditionInEventLoop()
        precondition(delays.count == count && !nodes.isEmpty && (users?.count ?? count) == count)
        let promise = self.loop.makePromise(of: Void.self)
        self.completion = promise
        self.total = count
        self.keepRefusedJoins = true
        self.users = users ?? Array(0..<count)
        self.tokenOf = self.users.map { self.minter.token(user: "u\($0)") }
        self.sources = count / nodes.count > 20_000
        for index in 0..<count {
            let target = self.cluster.nodes[nodes[index % nodes.count]]
            self.clients.append(
                SocketClient(
                    index: index,
                    host: target.host,
                    port: target.port,
                    path: self.cluster.path,
                    connectAuth: #"{"token":"\#(self.tokenOf[index])"}"#,
                    delegate: self
                )
            )
        }
        self.startedAt = Array(repeating: 0, count: count)
        self.states = Array(repeating: .idle, count: count)
        self.firstStart = monotonicNanoseconds()
        for index in 0..<count {
            self.loop.scheduleTask(in: delays[index]) { self.start(index) }
        }
        if count == 0 { promise.succeed() }
        return promise.futureResult
    }

    private func startNext() {
        guard let index = self.toStart.popLast() else { return }
        self.start(index)
    }

    private func start(_ index: Int) {
        self.pending += 1
        self.states[index] = .handshaking
        self.startedAt[index] = monotonicNanoseconds()
        let source: SocketAddress? =
            self.sources ? try? SocketAddress(ipAddress: "127.0.0.\(2 + index / 20_000)", port: 0) : nil
        self.clients[index].connect(on: self.loop, source: source)
    }

    private func finished(_ client: SocketClient, ready: Bool, reason: String? = nil) {
        guard self.states[client.index] == .handshaking else { return }
        self.pending -= 1
        if ready {
            self.ready += 1
            self.states[client.index] = .ready
            let now = monotonicNanoseconds()
            self.lastReady = now
            _ = self.handshakes.record((now - self.startedAt[client.index]) / 1000)
        } else {
            self.failed += 1
            self.states[client.index] = .ended
            self.failures[reason ?? "unknown", default: 0] += 1
        }
        self.startNext()
        if self.ready + self.failed == self.total, let completion = self.completion {
            self.completion = nil
            completion.succeed()
        }
        if self.ready + self.failed > 0, (self.ready + self.failed) % 500 == 0 {
            Progress.update("  \(self.cluster.kind.title): \(self.ready) ready, \(self.failed) failed of \(self.total)")
        }
    }

    /// Handshakes per second from the first connect to the last ready client.
    var handshakeRate: Double {
        guard self.ready > 0, self.lastReady > self.firstStart else { return 0 }
        return Double(self.ready) / (Double(self.lastReady - self.firstStart) / 1e9)
    }

    /// Connected clients, ready or not.
    var readyClients: [SocketClient] { self.clients.filter { self.states[$0.index] == .ready } }

    func closeAll() -> EventLoopFuture<Void> {
        self.loop.preconditionInEventLoop()
        for index in self.clients.indices where self.states[index] == .ready { self.states[index] = .ended }
        for client in self.clients { client.disconnect() }
        return self.loop.scheduleTask(in: .milliseconds(500)) {}.futureResult
    }

    // MARK: SocketClientDelegate

    func clientConnected(_ client: SocketClient) {
        let token = self.tokenOf[client.index]
        client.emit(#""user-join",{"auth":{"token":"\#(token)"}}"#) { [unowned self, unowned client] answer in
            // The relay answers `[{"id","name"}]`; an empty answer is a refused token.
            if answer.count > 4 {
                self.finished(client, ready: true)
            } else if self.keepRefusedJoins {
                self.joinsRefused += 1
                self.finished(client, ready: true)
            } else {
                self.finished(client, ready: false, reason: "user-join refused")
                client.disconnect()
            }
        }
    }

    func client(_ client: SocketClient, receivedEvent payload: UnsafeRawBufferPointer, ackID: Int?) {
        self.onEvent?(client, payload, ackID)
    }

    func clientClosed(_ client: SocketClient, reason: String) {
        switch self.states[client.index] {
        case .ready:
            self.droppedAfterReady += 1
            self.dropReasons[reason, default: 0] += 1
            self.states[client.index] = .ended
        case .handshaking:
            self.finished(client, ready: false, reason: reason)
        case .idle, .ended:
            break
        }
    }
}
