import Foundation
import Histogram

/// Latency percentiles in microseconds, and points of the distribution for the report's chart.
struct LatencySummary: Codable, Sendable {
    var count: UInt64
    var p50: UInt64
    var p90: UInt64
    var p99: UInt64
    var p999: UInt64
    var max: UInt64
    /// (percentile, microseconds)
    var distribution: [[Double]]

    static let chartPercentiles: [Double] = [0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100]

    init(_ histogram: Histogram<UInt64>) {
        self.count = histogram.totalCount
        guard histogram.totalCount > 0 else {
            (self.p50, self.p90, self.p99, self.p999, self.max) = (0, 0, 0, 0, 0)
            self.distribution = []
            return
        }
        self.p50 = histogram.valueAtPercentile(50)
        self.p90 = histogram.valueAtPercentile(90)
        self.p99 = histogram.valueAtPercentile(99)
        self.p999 = histogram.valueAtPercentile(99.9)
        self.max = histogram.max
        self.distribution = Self.chartPercentiles.map { [$0, Double(histogram.valueAtPercentile($0))] }
    }

    var text: String { "p50 \(Self.format(p50)) p99 \(Self.format(p99)) p99.9 \(Self.format(p999)) max \(Self.format(max))" }

    static func format(_ micros: UInt64) -> String {
        micros >= 10_000 ? String(format: "%.1f ms", Double(micros) / 1000) : "\(micros) µs"
    }
}

/// One rate of a fan-out sweep.
struct FanoutStep: Codable, Sendable {
    var offeredPublishesPerSecond: Double
    var published: Int
    var expectedDeliveries: Int
    var delivered: Int
    var lost: Int
    var duplicates: Int
    var seconds: Double
    var deliveriesPerSecond: Double
    var latency: LatencySummary
    var serverCPUSeconds: Double
    var serverCPUMicrosPerDelivery: Double
    /// The same less the nodes' CPU while the clients sat idle (heartbeats, cluster upkeep).
    var serverCPUMicrosPerDeliveryAboveIdle: Double
    var redisCPUSeconds: Double
    var benchCPUSeconds: Double
    /// p99 within the bound, nothing lost, and the publishers kept the offered rate.
    var passed: Bool
    var verdict: String
    /// Deliveries in each 100 ms from the start of sending.
    var timeline: [Int]
}

struct FanoutRun: Codable, Sendable {
    var system: SystemKind
    /// "client" (`events:channel` typing through the contract) or "backend" (HTTP API / python emitter).
    var origin: String
    var via: String
    var clients: Int
    var nodes: Int
    var rooms: Int
    var publishers: Int
    var stepSeconds: Double
    var latencyBoundMillis: Double
    /// Node CPU seconds per second with every client connected and nothing sent.
    var idleServerCPUPerSecond: Double
    var steps: [FanoutStep]

    /// The highest delivery rate that passed.
    var best: FanoutStep? { self.steps.filter(\.passed).max { $0.deliveriesPerSecond < $1.deliveriesPerSecond } }
}

struct StormRun: Codable, Sendable {
    var system: SystemKind
    var connections: Int
    var nodes: Int
    var concurrency: Int
    var ready: Int
    var failed: Int
    var failures: [String: Int]
    var seconds: Double
    var handshakesPerSecond: Double
    var handshakesPerSecondPerNode: Double
    var latency: LatencySummary
    var serverCPUSeconds: Double
    var serverCPUMicrosPerHandshake: Double
}

struct IdleRun: Codable, Sendable {
    var system: SystemKind
    var connections: Int
    var ready: Int
    var failed: Int
    var residentBytesBefore: Int
    var residentBytesAfter: Int
    var bytesPerConnection: Double
    var heldSeconds: Double
    var droppedDuringHold: Int
    var dropReasons: [String: Int]
    var serverCPUSecondsDuringHold: Double
}

struct AckRun: Codable, Sendable {
    var system: SystemKind
    var via: String
    var targets: Int
    var calls: Int
    var answered: Int
    var failed: Int
    var concurrency: Int
    var seconds: Double
    var callsPerSecond: Double
    var latency: LatencySummary
    var serverCPUSeconds: Double
}

struct RedisRun: Codable, Sendable {
    var comparison: String
    var switchboardClient: Double
    var reference: Double
    var unit: String
    var ratio: Double
    var note: String
}

/// One reconnect storm: a node's clients back on the others, and what reached the backend.
struct ReconnectRun: Codable, Sendable {
    var system: SystemKind
    /// The nodes' backend gate: "off", or its calls per second per node.
    var gate: String
    var clients: Int
    var nodes: Int
    var reconnected: Int
    var failed: Int
    var failures: [String: Int]
    var joinsAnsweredEmpty: Int
    var backendCalls: Int
    var userLookups: Int
    var peakCallsPerSecond: Double
    var meanCallsPerSecond: Double
    var recovered: Bool
    var recoverySeconds: Double
    /// Backend calls per 100 ms from the kill.
    var timeline: [Int]
}

/// A goal of the performance issue and how the run measured up to it.
struct GoalResult: Codable, Sendable {
    var goal: String
    var switchboard: String
    var baseline: String
    var ratio: String
    var target: String
    var met: Bool
    var note: String
}

/// One fault injected under load and what it cost, as measured.
struct FaultPhase: Codable, Sendable {
    var fault: String
    var clients: Int
    /// Clients the fault must not touch (on surviving nodes, or served without Redis).
    var survivors: Int
    var ticksEmitted: Int
    var deliveriesExpectedBySurvivors: Int
    var lostToSurvivors: Int
    /// Clients the fault cut off (on the killed node, or reached only through Redis).
    var affected: Int
    var affectedRecovered: Int
    var lostToAffected: Int
    /// Seconds from the fault's end (or the kill) until the last affected client received again; median too.
    var recoverySeconds: Double
    var recoveryMedianSeconds: Double
    var notes: [String]
    /// Redis restarted empty: seconds from its return until SESSION_POOL held every connected session; nil if it
    /// never did within the scenario's wait, or for the other faults.
    var sessionPoolRestoredSeconds: Double? = nil
}

struct FaultsRun: Codable, Sendable {
    var clients: Int
    var nodes: Int
    var rooms: Int
    var tickMillis: Int
    var emitErrors: Int
    var phases: [FaultPhase]

    /// The fault table of docs/RELIABILITY.md.
    var table: String {
        var lines = [
            "| fault | load | survivors: lost / expected | affected: lost, recovered | back after (median / last) | notes |",
            "|---|---|---|---|---|---|",
        ]
        for phase in self.phases {
            lines.append(
                "| \(phase.fault) | \(self.clients) clients, \(self.nodes) nodes, \(self.rooms) rooms, a tick per room every \(self.tickMillis) ms "
                    + "| \(phase.lostToSurvivors) / \(phase.deliveriesExpectedBySurvivors) (\(phase.survivors) clients) "
                    + "| \(phase.lostToAffected) lost, \(phase.affectedRecovered) of \(phase.affected) receiving again "
                    + "| \(String(format: "%.2f", phase.recoveryMedianSeconds)) / \(String(format: "%.2f", phase.recoverySeconds)) s "
                    + "| \(phase.notes.joined(separator: "; ")) |"
            )
        }
        return lines.joined(separator: "\n")
    }
}

struct BenchReport: Codable, Sendable {
    var started: String
    var command: String
    var machine: String
    var settings: [String: String]
    var goals: [GoalResult] = []
    var fanout: [FanoutRun] = []
    var storm: [StormRun] = []
    var idle: [IdleRun] = []
    var ack: [AckRun] = []
    var redis: [RedisRun] = []
    var reconnect: [ReconnectRun] = []
    var faults: [FaultsRun] = []
    var slowConsumers: [SlowConsumersRun] = []
}

/// What the well-behaved clients got of the ticks emitted in one phase of the slow scenario.
struct SlowConsumersPhase: Codable, Sendable {
    var ticks: Int
    var expected: Int
    var delivered: Int
    var p50Micros: Int
    var p99Micros: Int
    var maxMicros: Int
}

struct SlowConsumersRun: Codable, Sendable {
    var clients: Int
    var slowClients: Int
    var rooms: Int
    var tickMillis: Int
    var payloadBytes: Int
    var outboundBoundBytes: Int
    var alone: SlowConsumersPhase
    var withSlow: SlowConsumersPhase
    /// Slow clients the node closed as slow consumers, and how long after they stopped reading the last went.
    var slowCutOff: Int
    var allCutOffSeconds: Double?
    var residentBytesAlone: Int
    var residentBytesWithSlow: Int
    var emitErrors: Int

    var p99Ratio: Double { alone.p99Micros > 0 ? Double(withSlow.p99Micros) / Double(alone.p99Micros) : 0 }

    var table: String {
        func row(_ name: String, _ phase: SlowConsumersPhase, _ rss: Int) -> String {
            "| \(name) | \(phase.delivered) / \(phase.expected) | \(String(format: "%.2f", Double(phase.p50Micros) / 1000)) "
                + "| \(String(format: "%.2f", Double(phase.p99Micros) / 1000)) | \(String(format: "%.2f", Double(phase.maxMicros) / 1000)) "
                + "| \(rss / 1_048_576) |"
        }
        return [
            "| \(clients) clients, \(rooms) rooms, \(payloadBytes) B every \(tickMillis) ms | delivered / expected | p50 ms | p99 ms | max ms | node RSS MiB |",
            "|---|---|---|---|---|---|",
            row("alone", alone, residentBytesAlone),
            row("with \(slowClients) clients that stopped reading", withSlow, residentBytesWithSlow),
            "",
            "slow clients cut off: \(slowCutOff) of \(slowClients)"
                + (allCutOffSeconds.map { ", the last \(String(format: "%.1f", $0)) s after they stopped reading" } ?? ", not all")
                + " (outbound bound \(outboundBoundBytes / 1024) KiB); p99 with them / alone: \(String(format: "%.2f", p99Ratio)); emit errors: \(emitErrors)",
        ].joined(separator: "\n")
    }
}
