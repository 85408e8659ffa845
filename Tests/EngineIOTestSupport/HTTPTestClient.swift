import Foundation
import Logging
import NIOCore
import NIOEmbedded
import Testing

import EngineIO

// Test support shared by EngineIOTests and SocketIOTests: raw HTTP/1.1 and WebSocket bytes written
// into an `EmbeddedChannel` running `EnginePipeline`, and the raw answers parsed back.

/// A logger that drops everything, so tests stay quiet.
package let silentLogger = Logger(label: "switchboard.tests", factory: { _ in SwiftLogNoOpLogHandler() })

/// One parsed HTTP/1.1 response.
package struct RawHTTPResponse: CustomStringConvertible {
    package var status: Int
    package var reason: String
    /// Header fields in the order received.
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]

    package var bodyString: String { String(decoding: body, as: UTF8.self) }

    package func header(_ name: String) -> String? {
        headers.first(where: { $0.name.lowercased() == name.lowercased() })?.value
    }

    package func headerValues(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }

    package var description: String { "HTTP \(status) \(headers) \(bodyString.debugDescription)" }
}

/// One server → client WebSocket frame (unmasked, as servers send them).
package struct RawWebSocketFrame: Equatable, CustomStringConvertible {
    package var fin: Bool
    package var opcode: UInt8
    package var payload: [UInt8]

    package var text: String { String(decoding: payload, as: UTF8.self) }
    /// The status code of a close frame.
    package var closeCode: UInt16? {
        guard opcode == 0x8, payload.count >= 2 else { return nil }
        return UInt16(payload[0]) << 8 | UInt16(payload[1])
    }

    package var description: String { "frame(op \(opcode), \(opcode == 2 ? "\(payload)" : text.debugDescription))" }

    package init(fin: Bool, opcode: UInt8, payload: [UInt8]) {
        self.fin = fin
        self.opcode = opcode
        self.payload = payload
    }
}

/// A client connection: an `EmbeddedChannel` configured by `EnginePipeline`, on a shared loop.
package final class TestConnection {
    package let channel: EmbeddedChannel
    package let loop: EmbeddedEventLoop
    private var received = ByteBuffer()

    /// - Parameter peer: the client's address as the server sees it (default 127.0.0.1).
    package init(loop: EmbeddedEventLoop, router: EngineRouter, peer: String = "127.0.0.1") throws {
        self.loop = loop
        self.channel = EmbeddedChannel(loop: loop)
        try EnginePipeline.configure(channel: channel, router: router)
        try channel.connect(to: SocketAddress(ipAddress: peer, port: 40_000)).wait()
        loop.run()
    }

    package var isActive: Bool { channel.isActive }

    /// Writes raw bytes inbound and runs the loop.
    /// An error reaching the end of the pipeline is rethrown after the loop ran.
    package func write(_ bytes: [UInt8]) throws {
        let result = Result { try channel.writeInbound(ByteBuffer(bytes: bytes)) }
        loop.run()
        _ = try result.get()
    }

    package func write(_ text: String) throws {
        try write(Array(text.utf8))
    }

    /// Sends a GET to `target`.
    package func get(_ target: String, headers: [String] = []) throws {
        try write("GET \(target) HTTP/1.1\r\nHost: x\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n")
    }

    /// Sends a POST with `body` to `target`.
    package func post(_ target: String, body: [UInt8], headers: [String] = []) throws {
        let head =
            "POST \(target) HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: \(body.count)\r\n"
            + headers.map { $0 + "\r\n" }.joined() + "\r\n"
        try write(Array(head.utf8) + body)
    }

    package func post(_ target: String, body: String, headers: [String] = []) throws {
        try post(target, body: Array(body.utf8), headers: headers)
    }

    /// Moves everything the server wrote so far into the receive buffer.
    private func drainOutbound() throws {
        loop.run()
        while let chunk = try channel.readOutbound(as: ByteBuffer.self) {
            var chunk = chunk
            received.writeBuffer(&chunk)
        }
    }

    /// The next complete HTTP response, or nil if none has been written (yet).
    package func readResponse() throws -> RawHTTPResponse? {
        try drainOutbound()
        let bytes = Array(received.readableBytesView)
        guard let headEnd = bytes.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
        let headText = String(decoding: bytes[..<headEnd.lowerBound], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        let statusParts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            Issue.record("malformed status line \(statusLine.debugDescription)")
            return nil
        }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append(
                (
                    name: String(line[..<colon]),
                    value: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                )
            )
        }
        let length = headers.first(where: { $0.name.lowercased() == "content-length" }).flatMap { Int($0.value) } ?? 0
        let bodyStart = headEnd.upperBound
        guard bytes.count - bodyStart >= length else { return nil }
        received.moveReaderIndex(forwardBy: bodyStart + length)
        received.discardReadBytes()
        return RawHTTPResponse(
            status: status,
            reason: statusParts.count > 2 ? String(statusParts[2]) : "",
            headers: headers,
            body: Array(bytes[bodyStart..<(bodyStart + length)])
        )
    }

    /// The next response, failing the test if there is none.
    package func expectResponse(sourceLocation: SourceLocation = #_sourceLocation) throws -> RawHTTPResponse {
        try #require(try readResponse(), "expected an HTTP response", sourceLocation: sourceLocation)
    }

    /// True if the server wrote nothing (more).
    package func hasNoPendingOutput() throws -> Bool {
        try drainOutbound()
        return received.readableBytes == 0
    }

    // MARK: WebSocket

    package static let webSocketKey = "dGhlIHNhbXBsZSBub25jZQ=="
    package static let webSocketAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    /// Sends a WebSocket upgrade request.
    package func upgrade(_ target: String) throws {
        try write(
            "GET \(target) HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: \(Self.webSocketKey)\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    }

    /// Sends one client frame, masked unless `masked` is false.
    package func sendFrame(opcode: UInt8, payload: [UInt8], masked: Bool = true, fin: Bool = true) throws {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 {
            bytes.append(maskBit | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            bytes.append(maskBit | 126)
            bytes.append(UInt8(payload.count >> 8))
            bytes.append(UInt8(payload.count & 0xFF))
        } else {
            bytes.append(maskBit | 127)
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        if masked {
            let key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
            bytes.append(contentsOf: key)
            for (index, byte) in payload.enumerated() { bytes.append(byte ^ key[index % 4]) }
        } else {
            bytes.append(contentsOf: payload)
        }
        try write(bytes)
    }

    package func sendText(_ text: String, masked: Bool = true) throws {
        try sendFrame(opcode: 0x1, payload: Array(text.utf8), masked: masked)
    }

    package func sendBinary(_ bytes: [UInt8]) throws {
        try sendFrame(opcode: 0x2, payload: bytes)
    }

    /// Every complete frame the server wrote so far.
    package func readFrames() throws -> [RawWebSocketFrame] {
        try drainOutbound()
        var frames: [RawWebSocketFrame] = []
        while true {
            let bytes = Array(received.readableBytesView)
            guard bytes.count >= 2 else { break }
            var length = Int(bytes[1] & 0x7F)
            var offset = 2
            if length == 126 {
                guard bytes.count >= 4 else { break }
                length = Int(bytes[2]) << 8 | Int(bytes[3])
                offset = 4
            } else if length == 127 {
                guard bytes.count >= 10 else { break }
                length = bytes[2..<10].reduce(0) { $0 << 8 | Int($1) }
                offset = 10
            }
            #expect(bytes[1] & 0x80 == 0, "server frames must not be masked")
            guard bytes.count >= offset + length else { break }
            frames.append(
                RawWebSocketFrame(
                    fin: bytes[0] & 0x80 != 0,
                    opcode: bytes[0] & 0x0F,
                    payload: Array(bytes[offset..<(offset + length)])
                )
            )
            received.moveReaderIndex(forwardBy: offset + length)
        }
        received.discardReadBytes()
        // `EmbeddedChannel` keeps accepting writes after it closed, where a socket would fail them: once the
        // channel is closed, what followed the first close frame never reached the peer.
        if !channel.isActive, let close = frames.firstIndex(where: { $0.opcode == 0x8 }) {
            frames.removeSubrange((close + 1)...)
        }
        return frames
    }

    package func close() {
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }
}

extension EngineRouter {
    /// The tests keep a connection across simulated minutes between requests, which a real node closes
    /// after `requestHeadTimeout`; only the tests of that deadline ask for it.
    package init(_ server: EngineServer, requestHeadTimeout: TimeAmount = .hours(1)) {
        self.init(endpoints: [server], requestHeadTimeout: requestHeadTimeout)
    }
}

/// Targets of the default `/engine.io/` endpoint.
package enum Target {
    package static let handshake = "/engine.io/?EIO=4&transport=polling"
    package static func polling(_ sid: String) -> String { "/engine.io/?EIO=4&transport=polling&sid=\(sid)" }
    package static let websocket = "/engine.io/?EIO=4&transport=websocket"
    package static func websocket(_ sid: String) -> String { "/engine.io/?EIO=4&transport=websocket&sid=\(sid)" }
}

/// Extracts the sid from an open packet `0{"sid":"…",…}`.
package func sid(fromOpenPacket text: String) -> String? {
    guard text.hasPrefix("0{\"sid\":\""), let end = text.dropFirst(9).firstIndex(of: "\"") else { return nil }
    return String(text[text.index(text.startIndex, offsetBy: 9)..<end])
}

/// The Engine.IO record separator.
package let RS = "\u{1E}"

/// One Engine.IO polling session seen from the client: POSTs on one connection, GETs on another.
package final class PollingClient {
    package let sid: String
    package let loop: EmbeddedEventLoop
    private let poster: TestConnection
    private let poller: TestConnection
    private var pollPending = false

    package init(router: EngineRouter, loop: EmbeddedEventLoop) throws {
        self.loop = loop
        self.poster = try TestConnection(loop: loop, router: router)
        self.poller = try TestConnection(loop: loop, router: router)
        try poster.get(Target.handshake)
        let open = try poster.expectResponse()
        self.sid = try requireSIDHelper(open.bodyString)
    }

    /// POSTs Engine.IO message packets (`4` is prepended to each text), joined into one payload.
    package func send(_ packets: String...) throws {
        try sendRaw(packets.map { "4" + $0 }.joined(separator: RS))
    }

    /// POSTs a raw Engine.IO payload and expects `ok`.
    package func sendRaw(_ payload: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try poster.post(Target.polling(sid), body: payload)
        let response = try poster.expectResponse(sourceLocation: sourceLocation)
        #expect(response.bodyString == "ok", sourceLocation: sourceLocation)
    }

    /// The next raw polling payload (Engine.IO packets joined by `\x1e`: `42["m",1]` is a Socket.IO
    /// EVENT in an Engine.IO message, `1` an Engine.IO close, `b…` binary); nil if the server has nothing
    /// to send yet (the GET then stays parked until the next call).
    package func receive(sourceLocation: SourceLocation = #_sourceLocation) throws -> String? {
        if !pollPending {
            try poller.get(Target.polling(sid))
            pollPending = true
        }
        guard let response = try poller.readResponse() else { return nil }
        pollPending = false
        #expect(response.status == 200, "poll answered \(response)", sourceLocation: sourceLocation)
        return response.bodyString
    }

    package func close() {
        poster.close()
        poller.close()
    }
}

package func requireSIDHelper(_ text: String) throws -> String {
    guard let value = sid(fromOpenPacket: text) else {
        throw HarnessError(description: "no sid in \(text.debugDescription)")
    }
    return value
}

package struct HarnessError: Error, CustomStringConvertible {
    package var description: String

    package init(description: String) {
        self.description = description
    }
}
