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
        ping-interval=\(io.pingInterval.nanoseconds / 1_000_000)ms
        ping-timeout=\(io.pingTimeout.nanoseconds / 1_000_000)ms
        connect-timeout=\(io.connectTimeout.nanoseconds / 1_000_000)ms
        max-payload=\(io.maxPayload)
        max-outbound-bytes=\(io.maxOutboundBytes)
        cors-origins=\(io.corsOrigins.joined(separator: ";"))
        transports=\(transports.joined(separator: ","))
        log-level=\(configuration.logLevel)
        threads=\(configuration.eventLoopThreads)
        """
}
