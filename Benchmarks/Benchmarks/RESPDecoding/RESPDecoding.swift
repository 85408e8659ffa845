import Benchmark
import BenchmarkSupport
import NIOCore
import Redis

/// A RESP bulk string.
func bulk(_ bytes: some Collection<UInt8>) -> [UInt8] {
    Array("$\(bytes.count)\r\n".utf8) + bytes + Array("\r\n".utf8)
}

/// A RESP array of already-encoded elements.
func array(_ elements: [[UInt8]]) -> [UInt8] {
    Array("*\(elements.count)\r\n".utf8) + elements.joined()
}

/// Feeds one reply per inner iteration through the decoder the connection's channel handler embeds, as each read
/// from a Redis socket does.
func decodeBenchmark(_ name: String, reply: [UInt8], expecting check: @escaping (RESPValue) -> Bool) {
    let input = ByteBuffer(bytes: reply)
    Benchmark(name, configuration: .hotPath(scalingFactor: .kilo)) { benchmark in
        // One decoder per connection, reused for every read.
        let decoder = RESPDecoder()
        var replies = 0
        try decoder.decode(input) { value in
            precondition(check(value), "unexpected reply \(value)")
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try decoder.decode(input) { value in
                replies += 1
                blackHole(value)
            }
        }
        benchmark.stopMeasurement()
        precondition(replies == benchmark.scaledIterations.count, "one reply per read")
    }
}

let benchmarks: @Sendable () -> Void = {
    let payload = [UInt8](repeating: UInt8(ascii: "x"), count: 200)
    decodeBenchmark(
        "PubSubMessage200B",
        reply: array([bulk("message".utf8), bulk("socketio#/#room-42".utf8), bulk(payload)])
    ) { $0.array?.last?.bytes?.readableBytes == 200 }

    let members = (0..<100).map { bulk("session-\($0 + 1000)".utf8) }
    decodeBenchmark("ArrayOf100BulkStrings", reply: array(members)) { $0.array?.count == 100 }

    decodeBenchmark("Integer", reply: Array(":1048576\r\n".utf8)) { $0 == .integer(1_048_576) }
}
