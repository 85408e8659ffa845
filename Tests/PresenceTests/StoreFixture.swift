import RedisTestSupport
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Redis
import Testing

@testable import Presence

/// A connected client to `server`, with fast reconnects; `watcher` sees its state changes.
func connectedClient(
    _ server: TestRedisServer,
    watcher: StateWatcher = StateWatcher(),
    eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()
) async throws -> RedisClient {
    var configuration = server.configuration
    configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(200))
    configuration.connectTimeout = .seconds(2)
    let client = try RedisClient(
        configuration: configuration,
        eventLoop: eventLoop,
        logger: testLogger,
        onStateChange: watcher.handler
    )
    client.start()
    try await watcher.next(.connected)
    return client
}

/// The two implementations every store scenario runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case redis
    case memory

    var testDescription: String { self.rawValue }
}

/// A store plus raw access to the hashes it keeps, so scenarios assert the exact Redis layout on both stores.
struct StoreFixture {
    let store: any PresenceStore
    let configuration: PresenceConfiguration
    /// HGETALL of a pool key (field → JSON text); empty when the key does not exist.
    let raw: @Sendable (String) async throws -> [String: String]
    /// The Redis client for the Redis store.
    let client: RedisClient?

    func sessionPool() async throws -> [String: String] { try await self.raw(self.configuration.sessionPoolKey) }
    func userPool() async throws -> [String: String] { try await self.raw(self.configuration.userPoolKey) }
    func usagePool() async throws -> [String: String] { try await self.raw(self.configuration.usagePoolKey) }
}

func hgetall(_ client: RedisClient, _ key: String) async throws -> [String: String] {
    let reply = try await client.execute("HGETALL", key)
    let values = try #require(reply.array)
    var result: [String: String] = [:]
    for index in stride(from: 0, to: values.count, by: 2) {
        let field: String = try #require(values[index].string)
        let value: String = try #require(values[index + 1].string)
        result[field] = value
    }
    return result
}

func withStore<T>(
    _ kind: StoreKind,
    configuration: PresenceConfiguration = PresenceConfiguration(writesUserPool: true),
    _ body: (StoreFixture) async throws -> T
) async throws -> T {
    switch kind {
    case .memory:
        let store = InMemoryPresenceStore(eventLoop: MultiThreadedEventLoopGroup.singleton.next())
        let fixture = StoreFixture(
            store: store,
            configuration: configuration,
            raw: { key in store.snapshot(configuration: configuration)[key] ?? [:] },
            client: nil
        )
        return try await body(fixture)
    case .redis:
        return try await withRedisServer { server in
            let client = try await connectedClient(server)
            let fixture = StoreFixture(
                store: RedisPresenceStore(redis: client, configuration: configuration),
                configuration: configuration,
                raw: { key in try await hgetall(client, key) },
                client: client
            )
            do {
                let result = try await body(fixture)
                await client.shutdown()
                return result
            } catch {
                await client.shutdown()
                throw error
            }
        }
    }
}

/// Asserts that `actual` is JSON equal (as Python's `json.loads` would compare) to the JSON text `expected`.
func expectJSON(
    _ actual: String?,
    _ expected: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let actual else {
        Issue.record("missing value, expected \(expected)", sourceLocation: sourceLocation)
        return
    }
    guard let parsedActual = PresenceJSON.parse(actual) else {
        Issue.record("not JSON: \(actual)", sourceLocation: sourceLocation)
        return
    }
    let parsedExpected = PresenceJSON.parse(expected)
    #expect(parsedExpected != nil, "bad expectation \(expected)", sourceLocation: sourceLocation)
    #expect(parsedActual == parsedExpected, "\(actual) is not \(expected)", sourceLocation: sourceLocation)
}

/// A log handler that keeps every message, to check what is logged once per transition.
final class RecordingLogHandler: LogHandler, Sendable {
    struct Entry: Sendable, Hashable {
        var level: Logger.Level
        var message: String
    }

    private let storage: NIOLockedValueBox<[Entry]>

    init(storage: NIOLockedValueBox<[Entry]>) {
        self.storage = storage
    }

    var entries: [Entry] { self.storage.withLockedValue { $0 } }

    func log(event: LogEvent) {
        self.storage.withLockedValue { $0.append(Entry(level: event.level, message: "\(event.message)")) }
    }

    subscript(metadataKey _: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }

    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
}

/// A logger whose messages can be read back.
func recordingLogger() -> (Logger, @Sendable () -> [RecordingLogHandler.Entry]) {
    let storage = NIOLockedValueBox<[RecordingLogHandler.Entry]>([])
    let logger = Logger(label: "presence-recording") { _ in RecordingLogHandler(storage: storage) }
    return (logger, { storage.withLockedValue { $0 } })
}
