import Benchmark
import BenchmarkSupport
import NIOCore
import SocketIO

/// An Open WebUI channel event's argument: about 150 bytes of JSON.
let channelEventJSON =
    #"{"channel_id":"6f1c0b1e-3c1d-4a51","data":{"type":"message","#
    + #""data":{"content":"The deploy finished; all nodes ready."}},"user":{"id":"u1","name":"Ada"}}"#

let benchmarks: @Sendable () -> Void = {
    let channelEvent = try! JSONParser.parse(channelEventJSON)
    precondition((140...160).contains(JSONWriter.serialize(channelEvent).utf8.count), "about 150 bytes of JSON")

    Benchmark("EncodeEvent150BJSON", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(SocketIOPacketCodec.event("events:channel", [channelEvent], namespace: "/"))
        }
    }

    // The Engine.IO layer hands Socket.IO the message text without its type digit.
    let eventText = ByteBuffer(string: #"2["events:channel","# + channelEventJSON + "]")
    Benchmark("DecodeEventHeaderForRelay", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try SocketIOPacketCodec.decode(eventText, maxAttachments: 64))
        }
    }

    Benchmark("DecodeEventAndParseArguments", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            let packet = try SocketIOPacketCodec.decode(eventText, maxAttachments: 64)
            blackHole(try JSONParser.parse(packet.payload!))
        }
    }

    let ackArguments: JSONValue = [["status": "ok", "id": "a41c2f9e"]]
    Benchmark("EncodeAck", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(SocketIOPacketCodec.encode(.ack, namespace: "/", ackID: 17, payload: ackArguments))
        }
    }

    let ackText = ByteBuffer(string: #"317[{"status":"ok","id":"a41c2f9e"}]"#)
    Benchmark("DecodeAckAndParseArguments", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            let packet = try SocketIOPacketCodec.decode(ackText, maxAttachments: 64)
            blackHole(try JSONParser.parse(packet.payload!))
        }
    }

    // A binary argument becomes a placeholder in the JSON and a separate attachment frame.
    let attachment = ByteBuffer(repeating: 0xA5, count: 1024)
    Benchmark("EncodeBinaryEvent1KiBAttachment", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(
                SocketIOPacketCodec.event("upload", [["name": "a.bin", "bytes": .binary(attachment)]], namespace: "/")
            )
        }
    }

    let binaryEventText = ByteBuffer(string: #"51-["upload",{"name":"a.bin","bytes":{"_placeholder":true,"num":0}}]"#)
    Benchmark("DecodeBinaryEventAndReconstruct", configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            let packet = try SocketIOPacketCodec.decode(binaryEventText, maxAttachments: 64)
            let arguments = try JSONParser.parse(packet.payload!)
            blackHole(try SocketIOPacketCodec.reconstruct(arguments, attachments: [attachment]))
        }
    }
}
