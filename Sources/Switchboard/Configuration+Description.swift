import EngineIO

/// A human-readable summary of a configuration (no secrets).
public func describe(_ configuration: SwitchboardConfiguration) -> String {
    let io = configuration.socketIO
    var transports: [String] = []
    if io.transports.contains(.polling) { transports.append("polling") }
    if io.transports.contains(.websocket) { transports.append("websocket") }
    return """
        host=\(configuration.listener.host)
        port=\(configuration.listener.port)
        path=\(io.path)
        request-head-timeout=\(configuration.listener.requestHeadTimeout.nanoseconds / 1_000_000)ms
        ping-interval=\(io.pingInterval.nanoseconds / 1_000_000)ms
        ping-timeout=\(io.pingTimeout.nanoseconds / 1_000_000)ms
        connect-timeout=\(io.connectTimeout.nanoseconds / 1_000_000)ms
        max-payload=\(io.maxPayload)
        max-outbound-bytes=\(io.maxOutboundBytes)
        cors-origins=\(io.corsOrigins.joined(separator: ";"))
        transports=\(transports.joined(separator: ","))
        address-handshake-rate=\(rate(io.limits.handshakesPerSecond, burst: io.limits.handshakeBurst))
        max-connections-per-address=\(io.limits.connectionsPerAddress == 0 ? "0 (no limit)" : String(io.limits.connectionsPerAddress))
        packet-rate=\(rate(io.limits.packetsPerSecond, burst: io.limits.packetBurst))
        trusted-proxies=\(io.limits.trustedProxies.isEmpty ? "(none)" : io.limits.trustedProxies.map(\.description).joined(separator: ","))
        redis-url=\(configuration.cluster.redisURL.map(redactingPassword) ?? "(none: in memory)")
        auth-redis-url=\(configuration.cluster.authRedisURL.map(redactingPassword) ?? "(redis-url)")
        cluster-prefix=\(configuration.cluster.prefix)
        node-id=\(configuration.cluster.nodeID ?? "(random)")
        heartbeat-interval=\(configuration.cluster.heartbeatInterval.nanoseconds / 1_000_000)ms
        node-ttl=\(configuration.cluster.nodeTTL.nanoseconds / 1_000_000)ms
        jwt-secret=\(configuration.auth.jwtSecret == nil ? "(none)" : "(set)")
        jwt-secret-file=\(configuration.auth.jwtSecretFile ?? "(none)")
        jwt-algorithms=\(configuration.auth.hmacAlgorithms.map(\.rawValue).sorted().joined(separator: ","))
        jwt-public-key=\(configuration.auth.publicKeyFile ?? "(none)")
        jwt-jwks=\(configuration.auth.jwksFile ?? "(none)")
        jwt-leeway=\(configuration.auth.leeway)s
        jwt-issuer=\(configuration.auth.issuer ?? "(not checked)")
        jwt-audience=\(configuration.auth.audience ?? "(not checked)")
        jwt-user-claim=\(configuration.auth.userIDClaims.joined(separator: ","))
        auth-mode=\(configuration.auth.mode.rawValue)
        redis-key-prefix=\(configuration.auth.keyPrefix)
        backend-url=\(configuration.backend.url ?? "(none: users from token claims)")
        backend-user-path=\(configuration.backend.userPath)
        backend-channels-path=\(configuration.backend.channelsPath)
        backend-timeout=\(configuration.backend.timeout.nanoseconds / 1_000_000)ms
        backend-max-calls-per-second=\(configuration.backend.maxCallsPerSecond == 0 ? "0 (no gate)" : String(configuration.backend.maxCallsPerSecond))
        backend-max-concurrent-calls=\(configuration.backend.maxConcurrentCalls)
        backend-max-queued-calls=\(configuration.backend.maxQueuedCalls)
        backend-revalidate-path=\(configuration.backend.revalidatePath)
        revalidate-interval=\(configuration.backend.revalidateInterval.nanoseconds / 1_000_000)ms
        user-cache-ttl=\(configuration.backend.userCacheTTL.nanoseconds / 1_000_000)ms
        forward-events=\(configuration.effectiveForwardTarget.rawValue)
        forward-path=\(configuration.backend.forwardPath)
        forward-url=\(configuration.backend.forwardURL ?? "none (the backend)")
        forward-stream=\(configuration.backend.forwardStream)
        broadcast-presence=\(configuration.contract.broadcastPresence)
        max-connections-per-user=\(configuration.contract.connectionsPerUser == 0 ? "0 (no limit)" : String(configuration.contract.connectionsPerUser))
        user-pool=\(configuration.contract.writeUserPool || configuration.contract.broadcastPresence)
        relay-events=\(configuration.contract.relayEvents)
        api-key=\(configuration.api.key == nil ? "(none: API refuses requests)" : "(set)")
        api-key-file=\(configuration.api.keyFile ?? "(none)")
        api-port=\(configuration.api.port.map(String.init) ?? "(main listener, /api/v1/)")
        python-bridge=\(configuration.bridge.enabled && configuration.cluster.redisURL != nil)
        bridge-channel=\(configuration.bridge.channel)
        bridge-room-channels=\(configuration.bridge.roomChannels.rawValue)
        drain-window=\(configuration.operations.drainWindow.nanoseconds / 1_000_000)ms
        shutdown-timeout=\(configuration.operations.shutdownTimeout.nanoseconds / 1_000_000)ms
        ready-deadline=\(configuration.operations.readyDeadline.nanoseconds / 1_000_000)ms
        log-level=\(configuration.logLevel)
        threads=\(configuration.eventLoopThreads)
        """
}

/// A Redis URL fit for logs: the password replaced.
public func redactingPassword(_ url: String) -> String {
    let parts = url.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
    guard parts.count == 2 else { return url }
    let userinfo = parts[0]
    // `scheme://user:password`: keep the scheme and user.
    let afterScheme = userinfo.split(separator: "/", omittingEmptySubsequences: true).last ?? userinfo
    guard let colon = afterScheme.firstIndex(of: ":") else { return url }
    return String(userinfo[..<colon]) + ":***@" + parts[1]
}

// Settings that hold secrets (the JWT secret, the API key, Redis passwords) print without them,
// wherever a value that holds them is logged or dumped.
extension SwitchboardConfiguration: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String { describe(self) }
    public var debugDescription: String { description }
}

extension SwitchboardConfiguration.AuthSettings: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        "AuthSettings(jwt-secret: \(jwtSecret == nil ? "none" : "set"), jwt-secret-file: \(jwtSecretFile ?? "none"), "
            + "public-key-file: \(publicKeyFile ?? "none"), mode: \(mode.rawValue))"
    }
    public var debugDescription: String { description }
}

extension SwitchboardConfiguration.APISettings: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        "APISettings(key: \(key == nil ? "none" : "set"), key-file: \(keyFile ?? "none"), port: \(port.map(String.init) ?? "main"))"
    }
    public var debugDescription: String { description }
}

extension SwitchboardConfiguration.ClusterSettings: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        "ClusterSettings(redis-url: \(redisURL.map(redactingPassword) ?? "none"), "
            + "auth-redis-url: \(authRedisURL.map(redactingPassword) ?? "redis-url"))"
    }
    public var debugDescription: String { description }
}

private func rate(_ perSecond: Double, burst: Int) -> String {
    guard perSecond > 0 else { return "0 (no limit)" }
    let number = perSecond == perSecond.rounded() ? String(Int(perSecond)) : String(perSecond)
    return "\(number)/s (burst \(burst))"
}
