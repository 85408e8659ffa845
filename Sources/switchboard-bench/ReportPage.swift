import Foundation

/// A self-contained HTML page (inline SVG, no scripts or external files) of a run.
enum ReportPage {
    static let colors: [SystemKind: String] = [.switchboard: "#1f6feb", .baseline: "#d1495b"]

    static func html(_ report: BenchReport) -> String {
        var body = "<h1>switchboard-bench</h1>"
        body += "<p>\(escape(report.started)) · \(escape(report.machine))</p>"
        body += "<p><code>\(escape(report.command))</code></p>"
        body += "<h2>Goals</h2>" + self.goalsTable(report.goals)

        for origin in ["client", "backend"] {
            let runs = report.fanout.filter { $0.origin == origin }
            guard let first = runs.first else { continue }
            body += "<h2>Fan-out, \(origin)-originated</h2>"
            body += "<p>\(first.clients) clients over \(first.nodes) nodes in \(first.rooms) rooms (\(first.clients / first.rooms) members each); rate steps of \(Int(first.stepSeconds)) s, doubling until a step fails (p99 over \(Int(first.latencyBoundMillis)) ms, a loss, or publishers short of the rate).</p>"
            body += runs.map { "<p><b>\($0.system.title)</b>: \(escape($0.via))</p>" }.joined()
            body += chart(
                title: "p99 latency against delivered messages per second",
                xLabel: "deliveries/s",
                yLabel: "p99 (ms)",
                series: runs.map { run in
                    (run.system, run.steps.map { ($0.deliveriesPerSecond, Double($0.latency.p99) / 1000) })
                },
                logX: true,
                logY: true,
                bound: first.latencyBoundMillis
            )
            body += chart(
                title: "latency distribution at each system's best passing rate",
                xLabel: "percentile",
                yLabel: "latency (ms)",
                series: runs.compactMap { run in
                    guard let best = run.best ?? run.steps.first else { return nil }
                    return (run.system, best.latency.distribution.map { (nines($0[0]), $0[1] / 1000) })
                },
                logX: false,
                logY: true,
                xTicks: [(0, "0"), (1, "90"), (2, "99"), (3, "99.9"), (4, "99.99")]
            )
            body += chart(
                title: "deliveries per second over time at each system's best passing rate",
                xLabel: "seconds from the first send",
                yLabel: "deliveries/s",
                series: runs.compactMap { run in
                    guard let best = run.best ?? run.steps.first else { return nil }
                    return (run.system, best.timeline.enumerated().map { (Double($0.offset) / 10, Double($0.element) * 10) })
                },
                logX: false,
                logY: false
            )
            body += self.stepsTable(runs)
        }
        if !report.storm.isEmpty {
            body += "<h2>Connect storm</h2>"
            body += table(
                ["system", "connections", "nodes", "in flight", "ready", "failed", "seconds", "handshakes/s per node", "latency", "server CPU µs/handshake"],
                report.storm.map {
                    [$0.system.title, "\($0.connections)", "\($0.nodes)", "\($0.concurrency)", "\($0.ready)", "\($0.failed)",
                     fmt($0.seconds, 2), fmt($0.handshakesPerSecondPerNode, 0), $0.latency.text, fmt($0.serverCPUMicrosPerHandshake, 1)]
                }
            )
        }
        if !report.idle.isEmpty {
            body += "<h2>Idle connections</h2>"
            body += table(
                ["system", "connections", "ready", "RSS before", "RSS after", "bytes per connection", "held s", "dropped", "CPU s while held"],
                report.idle.map {
                    [$0.system.title, "\($0.connections)", "\($0.ready)", mib($0.residentBytesBefore), mib($0.residentBytesAfter),
                     fmt($0.bytesPerConnection, 0), fmt($0.heldSeconds, 0), "\($0.droppedDuringHold)", fmt($0.serverCPUSecondsDuringHold, 2)]
                }
            )
        }
        if !report.ack.isEmpty {
            body += "<h2>Emit with ack</h2>"
            body += table(
                ["system", "via", "calls", "answered", "failed", "in flight", "calls/s", "latency", "server CPU s"],
                report.ack.map {
                    [$0.system.title, $0.via, "\($0.calls)", "\($0.answered)", "\($0.failed)", "\($0.concurrency)",
                     fmt($0.callsPerSecond, 0), $0.latency.text, fmt($0.serverCPUSeconds, 2)]
                }
            )
        }
        if !report.reconnect.isEmpty {
            body += "<h2>Reconnect storm (a node killed under its clients)</h2>"
            body += table(
                ["clients", "nodes", "backend gate", "reconnected", "user-joins answered empty", "backend calls", "peak calls/s",
                 "mean calls/s", "recovered after s"],
                report.reconnect.map {
                    ["\($0.clients)", "\($0.nodes)", $0.gate, "\($0.reconnected)", "\($0.joinsAnsweredEmpty)", "\($0.backendCalls)",
                     fmt($0.peakCallsPerSecond, 0), fmt($0.meanCallsPerSecond, 0), $0.recovered ? fmt($0.recoverySeconds, 1) : "not all"]
                }
            )
        }
        for run in report.faults {
            body += "<h2>Faults under load (\(run.clients) clients, \(run.nodes) nodes, \(run.rooms) rooms, a tick per room every \(run.tickMillis) ms)</h2>"
            body += table(
                ["fault", "spared clients", "lost by them / expected", "affected clients", "lost by them", "receiving again",
                 "back after s (median / last)", "notes"],
                run.phases.map {
                    [$0.fault, "\($0.survivors)", "\($0.lostToSurvivors) / \($0.deliveriesExpectedBySurvivors)", "\($0.affected)",
                     "\($0.lostToAffected)", "\($0.affectedRecovered)", "\(fmt($0.recoveryMedianSeconds, 2)) / \(fmt($0.recoverySeconds, 2))",
                     $0.notes.joined(separator: "; ")]
                }
            )
        }
        for run in report.slowConsumers {
            body += "<h2>Slow consumers (\(run.clients) clients, \(run.rooms) rooms, \(run.payloadBytes) B every \(run.tickMillis) ms)</h2>"
            body += table(
                ["phase", "delivered / expected", "p50 ms", "p99 ms", "max ms", "node RSS MiB"],
                [("alone", run.alone, run.residentBytesAlone), ("with \(run.slowClients) that stopped reading", run.withSlow, run.residentBytesWithSlow)]
                    .map { name, phase, rss in
                        [name, "\(phase.delivered) / \(phase.expected)", fmt(Double(phase.p50Micros) / 1000, 2),
                         fmt(Double(phase.p99Micros) / 1000, 2), fmt(Double(phase.maxMicros) / 1000, 2), "\(rss / 1_048_576)"]
                    }
            )
            body += "<p>Slow clients cut off: \(run.slowCutOff) of \(run.slowClients)"
                + (run.allCutOffSeconds.map { ", the last \(fmt($0, 1)) s after they stopped reading" } ?? ", not all") + ".</p>"
        }
        if !report.redis.isEmpty {
            body += "<h2>Redis client</h2>"
            body += table(
                ["comparison", "Switchboard client", "reference", "unit", "ratio", "note"],
                report.redis.map { [$0.comparison, fmt($0.switchboardClient, 0), fmt($0.reference, 0), $0.unit, fmt($0.ratio, 2), $0.note] }
            )
        }
        return """
            <!doctype html><html><head><meta charset="utf-8"><title>switchboard-bench</title><style>
            body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
            table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
            td:first-child,th:first-child{text-align:left}.no{color:#b00;font-weight:bold}.yes{color:#070;font-weight:bold}
            svg{display:block;margin:1em 0}code{font-size:12px}
            </style></head><body>\(body)</body></html>
            """
    }

    private static func goalsTable(_ goals: [GoalResult]) -> String {
        table(
            ["goal", "Switchboard", "python-socketio", "ratio", "target", "met", "note"],
            goals.map { [$0.goal, $0.switchboard, $0.baseline, $0.ratio, $0.target, $0.met ? "yes" : "no", $0.note] },
            marks: 5
        )
    }

    private static func stepsTable(_ runs: [FanoutRun]) -> String {
        table(
            ["system", "msg/s offered", "published", "expected", "delivered", "lost", "deliveries/s", "p50", "p99", "p99.9", "max",
             "server CPU µs/delivery", "above idle", "Redis CPU s", "bench CPU s", "verdict"],
            runs.flatMap { run in
                run.steps.map { step in
                    [run.system.title, fmt(step.offeredPublishesPerSecond, 0), "\(step.published)", "\(step.expectedDeliveries)",
                     "\(step.delivered)", "\(step.lost)", fmt(step.deliveriesPerSecond, 0), LatencySummary.format(step.latency.p50),
                     LatencySummary.format(step.latency.p99), LatencySummary.format(step.latency.p999), LatencySummary.format(step.latency.max),
                     fmt(step.serverCPUMicrosPerDelivery, 2), fmt(step.serverCPUMicrosPerDeliveryAboveIdle, 2), fmt(step.redisCPUSeconds, 2), fmt(step.benchCPUSeconds, 2), step.verdict]
                }
            }
        )
    }

    private static func table(_ header: [String], _ rows: [[String]], marks column: Int? = nil) -> String {
        var html = "<table><tr>" + header.map { "<th>\(escape($0))</th>" }.joined() + "</tr>"
        for row in rows {
            html += "<tr>"
            for (index, cell) in row.enumerated() {
                let mark = index == column ? " class=\"\(cell)\"" : ""
                html += "<td\(mark)>\(escape(cell))</td>"
            }
            html += "</tr>"
        }
        return html + "</table>"
    }

    /// An SVG line chart of both systems' series.
    private static func chart(
        title: String,
        xLabel: String,
        yLabel: String,
        series: [(SystemKind, [(Double, Double)])],
        logX: Bool,
        logY: Bool,
        bound: Double? = nil,
        xTicks: [(Double, String)]? = nil
    ) -> String {
        let width = 760.0
        let height = 300.0
        let (left, right, top, bottom) = (70.0, 20.0, 30.0, 45.0)
        let transformX = { (x: Double) in logX ? log10(max(x, 1e-3)) : x }
        let transformY = { (y: Double) in logY ? log10(max(y, 1e-3)) : y }
        let points = series.flatMap(\.1).filter { $0.0.isFinite && $0.1.isFinite }
        guard !points.isEmpty else { return "" }
        var ys = points.map { transformY($0.1) }
        if let bound { ys.append(transformY(bound)) }
        let xs = points.map { transformX($0.0) }
        var (minX, maxX) = (xs.min()!, xs.max()!)
        var (minY, maxY) = (ys.min()!, ys.max()!)
        if logY { (minY, maxY) = (floor(minY), ceil(maxY)) } else { minY = 0 }
        if logX { (minX, maxX) = (floor(minX), ceil(maxX)) }
        if maxX <= minX { maxX = minX + 1 }
        if maxY <= minY { maxY = minY + 1 }
        let px = { (x: Double) in left + (transformX(x) - minX) / (maxX - minX) * (width - left - right) }
        let py = { (y: Double) in height - bottom - (transformY(y) - minY) / (maxY - minY) * (height - top - bottom) }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-size=\"11\">"
        svg += "<text x=\"\(left)\" y=\"16\" font-size=\"13\" font-weight=\"bold\">\(escape(title))</text>"
        svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(width - left - right)\" height=\"\(height - top - bottom)\" fill=\"none\" stroke=\"#999\"/>"
        // Ticks: decades on log axes, five steps on linear ones.
        let yTicks: [Double] =
            logY ? stride(from: minY, through: maxY, by: 1).map { pow(10, $0) } : (0...4).map { minY + (maxY - minY) * Double($0) / 4 }
        for tick in yTicks {
            let y = py(tick)
            svg += "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(y)\" y2=\"\(y)\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(short(tick))</text>"
        }
        let ticksX: [(Double, String)] =
            xTicks
            ?? (logX
                ? stride(from: minX, through: maxX, by: 1).map { (pow(10, $0), short(pow(10, $0))) }
                : (0...4).map { let v = minX + (maxX - minX) * Double($0) / 4; return (v, short(v)) })
        for (value, label) in ticksX {
            let x = px(value)
            svg += "<line x1=\"\(x)\" x2=\"\(x)\" y1=\"\(top)\" y2=\"\(height - bottom)\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(x)\" y=\"\(height - bottom + 14)\" text-anchor=\"middle\">\(escape(label))</text>"
        }
        svg += "<text x=\"\((left + width - right) / 2)\" y=\"\(height - 8)\" text-anchor=\"middle\">\(escape(xLabel))</text>"
        svg += "<text x=\"14\" y=\"\((top + height - bottom) / 2)\" transform=\"rotate(-90 14 \((top + height - bottom) / 2))\" text-anchor=\"middle\">\(escape(yLabel))</text>"
        if let bound {
            let y = py(bound)
            svg += "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(y)\" y2=\"\(y)\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>"
            svg += "<text x=\"\(width - right - 4)\" y=\"\(y - 4)\" text-anchor=\"end\">\(short(bound)) ms</text>"
        }
        for (index, (kind, values)) in series.enumerated() {
            let color = colors[kind] ?? "#333"
            let path = values.filter { $0.0.isFinite && $0.1.isFinite }
                .map { "\(String(format: "%.1f", px($0.0))),\(String(format: "%.1f", py($0.1)))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path)\"/>"
            for point in values.count <= 40 ? values : [] {
                svg += "<circle cx=\"\(px(point.0))\" cy=\"\(py(point.1))\" r=\"3\" fill=\"\(color)\"/>"
            }
            svg += "<text x=\"\(left + 10)\" y=\"\(top + 16 + Double(index) * 14)\" fill=\"\(color)\">\(kind.title)</text>"
        }
        return svg + "</svg>"
    }

    /// Percentile on a "nines" scale: 90 → 1, 99 → 2, 99.9 → 3.
    private static func nines(_ percentile: Double) -> Double {
        percentile >= 100 ? 4.5 : min(4.5, -log10(1 - percentile / 100))
    }

    private static func short(_ value: Double) -> String {
        switch abs(value) {
        case 1_000_000...: return String(format: "%gM", (value / 1e5).rounded() / 10)
        case 1_000...: return String(format: "%gk", (value / 1e2).rounded() / 10)
        case 1...: return String(format: "%g", (value * 10).rounded() / 10)
        default: return String(format: "%g", (value * 1000).rounded() / 1000)
        }
    }

    static func fmt(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }

    static func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
