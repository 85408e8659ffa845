import EngineIO
import NIOCore
import Switchboard
import XCTest

final class ConfigurationTests: XCTestCase {
    private func read(flags: [String: String] = [:], env: [String: String] = [:]) throws -> SwitchboardConfiguration {
        try ConfigurationReader(flags: flags, environment: env).read()
    }

    func testDefaultsAreTheDocumentedOnes() throws {
        let config = try read()
        XCTAssertEqual(config.listener.host, "127.0.0.1")
        XCTAssertEqual(config.listener.port, 8080)
        XCTAssertEqual(config.socketIO.path, "/ws/socket.io")
        XCTAssertEqual(config.socketIO.pingInterval, .seconds(25))
        XCTAssertEqual(config.socketIO.pingTimeout, .seconds(20))
        XCTAssertEqual(config.socketIO.maxPayload, 1_000_000)
        XCTAssertEqual(config.socketIO.connectTimeout, .seconds(45))
        XCTAssertEqual(config.socketIO.corsOrigins, ["*"])
        XCTAssertEqual(config.socketIO.transports, .all)
        XCTAssertEqual(config.logLevel, .info)
    }

    func testFlagsBeatEnvironmentBeatsDefaults() throws {
        let config = try read(
            flags: ["port": "9001"],
            env: ["SWITCHBOARD_PORT": "9002", "SWITCHBOARD_HOST": "0.0.0.0"]
        )
        XCTAssertEqual(config.listener.port, 9001)
        XCTAssertEqual(config.listener.host, "0.0.0.0")
    }

    func testSwitchboardNamesBeatOpenWebUINames() throws {
        let config = try read(env: ["SWITCHBOARD_PING_INTERVAL": "1500", "WEBSOCKET_SERVER_PING_INTERVAL": "9"])
        XCTAssertEqual(config.socketIO.pingInterval, .milliseconds(1500))
    }

    func testOpenWebUIDurationsAreSeconds() throws {
        let config = try read(env: ["WEBSOCKET_SERVER_PING_INTERVAL": "10", "WEBSOCKET_SERVER_PING_TIMEOUT": "5"])
        XCTAssertEqual(config.socketIO.pingInterval, .seconds(10))
        XCTAssertEqual(config.socketIO.pingTimeout, .seconds(5))
    }

    func testDurationUnits() throws {
        let config = try read(flags: ["ping-interval": "300ms", "ping-timeout": "2s", "connect-timeout": "1m"])
        XCTAssertEqual(config.socketIO.pingInterval, .milliseconds(300))
        XCTAssertEqual(config.socketIO.pingTimeout, .seconds(2))
        XCTAssertEqual(config.socketIO.connectTimeout, .seconds(60))
    }

    func testCORSOriginsAreSemicolonSeparated() throws {
        let config = try read(env: ["CORS_ALLOW_ORIGIN": "http://a.example; https://b.example"])
        XCTAssertEqual(config.socketIO.corsOrigins, ["http://a.example", "https://b.example"])
        XCTAssertEqual(config.socketIO.engine.cors, .origins(["http://a.example", "https://b.example"]))
    }

    func testWebSocketSupportCanBeSwitchedOff() throws {
        XCTAssertEqual(try read(env: ["ENABLE_WEBSOCKET_SUPPORT": "false"]).socketIO.transports, .polling)
        XCTAssertEqual(try read(env: ["ENABLE_WEBSOCKET_SUPPORT": "true"]).socketIO.transports, .all)
        // An explicit transport list wins over the Open WebUI switch.
        let explicit = try read(env: ["ENABLE_WEBSOCKET_SUPPORT": "false", "SWITCHBOARD_TRANSPORTS": "websocket"])
        XCTAssertEqual(explicit.socketIO.transports, .websocket)
    }

    func testInvalidValuesNameTheSetting() {
        let cases: [([String: String], [String: String], String)] = [
            (["port": "70000"], [:], "--port"),
            (["port": "http"], [:], "--port"),
            ([:], ["SWITCHBOARD_PORT": "-1"], "SWITCHBOARD_PORT"),
            (["ping-interval": "0"], [:], "--ping-interval"),
            (["ping-interval": "soon"], [:], "--ping-interval"),
            ([:], ["WEBSOCKET_SERVER_PING_TIMEOUT": "-3"], "WEBSOCKET_SERVER_PING_TIMEOUT"),
            (["path": "ws"], [:], "--path"),
            (["max-payload": "10"], [:], "--max-payload"),
            (["transports": "carrier-pigeon"], [:], "--transports"),
            (["transports": ""], [:], "--transports"),
            ([:], ["CORS_ALLOW_ORIGIN": "example.com"], "CORS_ALLOW_ORIGIN"),
            ([:], ["ENABLE_WEBSOCKET_SUPPORT": "maybe"], "ENABLE_WEBSOCKET_SUPPORT"),
            (["log-level": "loud"], [:], "--log-level"),
            (["max-payload": "5000000"], [:], "max-outbound-bytes"),
        ]
        for (flags, env, setting) in cases {
            XCTAssertThrowsError(try read(flags: flags, env: env), "\(flags) \(env)") { error in
                guard let error = error as? ConfigurationError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.setting, setting)
                XCTAssertTrue(error.description.contains(setting))
            }
        }
    }
}
