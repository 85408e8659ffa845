import Benchmark
import BenchmarkSupport
import EngineIO
import NIOCore

/// A 200-byte Socket.IO event, as the text of an Engine.IO message packet carries it.
let messageText =
    #"2["events:channel",{"channel_id":"6f1c0b1e-3c1d-4a51-9d0b-8f2a7e9c4d11","data":{"type":"message","#
    + #""data":{"id":"a41c2f9e","content":"The deploy finished; all nodes report ready."}},"user":{"id":"u1"}}]"#

let benchmarks: @Sendable () -> Void = {
    precondition(messageText.utf8.count == 200, "the payload is meant to be 200 bytes")

    Benchmark("EncodeMessage200B", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(EngineOutboundPacket.make(.message, messageText))
        }
    }

    Benchmark("EncodePingAndPong", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(EngineOutboundPacket.make(.ping))
            blackHole(EngineOutboundPacket.make(.pong))
        }
    }

    // What a WebSocket text frame holds: the type digit, then the message text.
    let messageFrame = ByteBuffer(string: "4" + messageText)
    Benchmark("DecodeMessage200B", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try EnginePacketCodec.decodeText(messageFrame))
        }
    }

    let pingFrame = ByteBuffer(string: "2")
    let pongFrame = ByteBuffer(string: "3")
    Benchmark("DecodePingAndPong", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try EnginePacketCodec.decodeText(pingFrame))
            blackHole(try EnginePacketCodec.decodeText(pongFrame))
        }
    }

    // Long-polling joins packets with a record separator; a poll often answers with a message and a ping.
    let pollingPackets = [EngineOutboundPacket.make(.message, messageText), EngineOutboundPacket.make(.ping)]
    Benchmark("EncodePollingPayloadMessageAndPing", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            var body = ByteBuffer()
            EnginePacketCodec.encodePayload(pollingPackets, into: &body)
            blackHole(body)
        }
    }

    let pollingBody = ByteBuffer(string: "4" + messageText + "\u{1E}3")
    Benchmark("DecodePollingPayloadMessageAndPong", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try EnginePacketCodec.decodePayload(pollingBody))
        }
    }
}
