import Foundation

/// The performance goals, checked against a run's figures.
enum Goals {
    static let cpuRatioTarget = 50.0
    static let cpuMicrosTarget = 2.0
    static let throughputRatioTarget = 20.0
    static let idleBytesTarget = 8192.0
    static let idleConnectionsTarget = 50_000
    static let handshakesTarget = 5_000.0

    static func evaluate(_ report: BenchReport) -> [GoalResult] {
        var goals: [GoalResult] = []
        func run(_ kind: SystemKind, _ origin: String) -> FanoutRun? {
            report.fanout.first { $0.system == kind && $0.origin == origin }
        }

        // CPU per delivery under load: each system at its highest passing rate; the same offered rate is shown too.
        if let ours = run(.switchboard, "client"), let theirs = run(.baseline, "client"), let a = ours.best, let b = theirs.best {
            let ratio = b.serverCPUMicrosPerDelivery / max(a.serverCPUMicrosPerDelivery, 1e-9)
            let met = ratio >= cpuRatioTarget && a.serverCPUMicrosPerDelivery <= cpuMicrosTarget
            var note = String(
                format: "at %.0f and %.0f deliveries/s, each system's best; above idle upkeep %.2f µs and %.1f µs",
                a.deliveriesPerSecond, b.deliveriesPerSecond, a.serverCPUMicrosPerDeliveryAboveIdle, b.serverCPUMicrosPerDeliveryAboveIdle
            )
            if let same = ours.steps.first(where: { $0.offeredPublishesPerSecond == b.offeredPublishesPerSecond }) {
                note += String(
                    format: "; at the baseline's best rate Switchboard used %.2f µs (%.2f µs above idle)",
                    same.serverCPUMicrosPerDelivery, same.serverCPUMicrosPerDeliveryAboveIdle
                )
            }
            if !met { note += "; " + shortfall(ratio: ratio, target: cpuRatioTarget, micros: a.serverCPUMicrosPerDelivery) }
            goals.append(
                GoalResult(
                    goal: "server CPU per delivered message (fan-out through \(ours.nodes) nodes)",
                    switchboard: String(format: "%.2f µs", a.serverCPUMicrosPerDelivery),
                    baseline: String(format: "%.1f µs", b.serverCPUMicrosPerDelivery),
                    ratio: String(format: "%.1f× lower", ratio),
                    target: "≥ 50× lower and ≤ 2 µs",
                    met: met,
                    note: note
                )
            )
        }
        for origin in ["client", "backend"] {
            guard let ours = run(.switchboard, origin), let theirs = run(.baseline, origin) else { continue }
            let a = ours.best?.deliveriesPerSecond ?? 0
            let b = theirs.best?.deliveriesPerSecond ?? 0
            let ratio = b > 0 ? a / b : 0
            let capped = ours.steps.last?.passed == true
            goals.append(
                GoalResult(
                    goal: "delivered messages/s with p99 ≤ \(Int(ours.latencyBoundMillis)) ms (\(origin)-originated)",
                    switchboard: String(format: "%.0f/s", a) + (capped ? " (sweep ended before a failing step)" : ""),
                    baseline: String(format: "%.0f/s", b),
                    ratio: String(format: "%.1f×", ratio),
                    target: origin == "client" ? "≥ 20×" : "≥ 20× (the backend path, for reference)",
                    met: origin == "backend" || ratio >= throughputRatioTarget,
                    note: origin == "client"
                        ? (ratio >= throughputRatioTarget ? "" : String(format: "%.0f%% of the target", ratio / throughputRatioTarget * 100))
                        : "Switchboard through its HTTP API, the baseline through its Redis emitter"
                )
            )
        }
        if let ours = report.idle.first(where: { $0.system == .switchboard }) {
            let theirs = report.idle.first { $0.system == .baseline }
            let met = ours.bytesPerConnection <= idleBytesTarget && ours.ready >= idleConnectionsTarget && ours.droppedDuringHold == 0
            goals.append(
                GoalResult(
                    goal: "resident memory per idle connection",
                    switchboard: String(format: "%.0f bytes at %d connections", ours.bytesPerConnection, ours.ready),
                    baseline: theirs.map { String(format: "%.0f bytes at %d connections", $0.bytesPerConnection, $0.ready) } ?? "not run",
                    ratio: theirs.map { String(format: "%.1f× less", $0.bytesPerConnection / max(ours.bytesPerConnection, 1)) } ?? "",
                    target: "≤ 8 KB at 50,000 connections on one node",
                    met: met,
                    note: met ? "" : String(format: "%.0f%% of the budget", ours.bytesPerConnection / idleBytesTarget * 100)
                )
            )
        }
        if let ours = report.storm.first(where: { $0.system == .switchboard }) {
            let theirs = report.storm.first { $0.system == .baseline }
            goals.append(
                GoalResult(
                    goal: "connect storm: authenticated handshakes per second per node",
                    switchboard: String(format: "%.0f/s (%d connections, %d failed)", ours.handshakesPerSecondPerNode, ours.connections, ours.failed),
                    baseline: theirs.map { String(format: "%.0f/s (%d connections, %d failed)", $0.handshakesPerSecondPerNode, $0.connections, $0.failed) } ?? "not run",
                    ratio: theirs.map { String(format: "%.1f×", ours.handshakesPerSecondPerNode / max($0.handshakesPerSecondPerNode, 1e-9)) } ?? "",
                    target: "≥ 5,000/s per node",
                    met: ours.handshakesPerSecondPerNode >= handshakesTarget && ours.failed == 0,
                    note: ours.handshakesPerSecondPerNode >= handshakesTarget
                        ? "" : String(format: "%.0f%% of the target", ours.handshakesPerSecondPerNode / handshakesTarget * 100)
                )
            )
        }
        // Loss: a step that is not overloaded (latency within the bound, publishers at their rate) delivers everything.
        var losses: [String] = []
        for run in report.fanout where run.system == .switchboard {
            let overloaded = { (step: FanoutStep) in step.verdict.contains("p99 over") || step.verdict.contains("sent ") }
            for step in run.steps where step.lost > 0 && !overloaded(step) {
                losses.append("\(run.origin) \(Int(step.offeredPublishesPerSecond)) msg/s: \(step.lost) lost")
            }
        }
        let dropped = report.idle.filter { $0.system == .switchboard }.map(\.droppedDuringHold).reduce(0, +)
            + report.ack.filter { $0.system == .switchboard }.map(\.failed).reduce(0, +)
        let overload = report.fanout.filter { $0.system == .switchboard }.compactMap { run in
            run.steps.last.map { "\(run.origin): \($0.verdict)" }
        }
        // A reconnect storm: the gate bounds what reaches the backend, and every user still comes back.
        for gated in report.reconnect where gated.gate != "off" {
            guard let open = report.reconnect.first(where: { $0.gate == "off" && $0.clients == gated.clients }) else { continue }
            let rate = Double(gated.gate.prefix { $0.isNumber }) ?? 0
            let survivors = Double(gated.nodes - 1)
            // Each surviving node admits its burst (a quarter of the rate) and then the rate. The backend counts
            // calls as they arrive, after the node's HTTP client: its latency jitter can bunch calls admitted at the
            // edges of a second, so the goal allows 5 % over the admission bound.
            let bound = survivors * rate * 1.25
            let met = gated.recovered && gated.peakCallsPerSecond <= bound * 1.05
            goals.append(
                GoalResult(
                    goal: "backend calls/s when a node's \(gated.clients) clients reconnect (gate on; python-socketio column: gate off)",
                    switchboard: String(format: "peak %.0f/s, recovered in %.1f s", gated.peakCallsPerSecond, gated.recoverySeconds),
                    baseline: String(format: "peak %.0f/s, recovered in %.1f s", open.peakCallsPerSecond, open.recoverySeconds),
                    ratio: String(format: "%.1f× lower peak", open.peakCallsPerSecond / max(gated.peakCallsPerSecond, 1)),
                    target: String(format: "≤ %.0f/s (%d nodes × %@ + burst; +5 %% arrival jitter), every user back", bound, gated.nodes - 1, gated.gate),
                    met: met,
                    note: (gated.recovered ? "" : "not every user recovered; ")
                        + "\(gated.joinsAnsweredEmpty) user-joins answered empty and retried by the nodes"
                )
            )
        }
        guard !report.fanout.isEmpty || !report.idle.isEmpty || !report.ack.isEmpty else { return goals }
        goals.append(
            GoalResult(
                goal: "no lost messages short of deliberate overload",
                switchboard: losses.isEmpty && dropped == 0 ? "0 lost" : (losses + (dropped > 0 ? ["\(dropped) dropped or unanswered"] : [])).joined(separator: "; "),
                baseline: "",
                ratio: "",
                target: "0 lost",
                met: losses.isEmpty && dropped == 0,
                note: "the overload step ending each sweep: " + overload.joined(separator: "; ")
            )
        )
        return goals
    }

    private static func shortfall(ratio: Double, target: Double, micros: Double) -> String {
        var parts: [String] = []
        if ratio < target { parts.append(String(format: "ratio %.0f%% of the target", ratio / target * 100)) }
        if micros > cpuMicrosTarget { parts.append(String(format: "%.2f µs is %.1f× the 2 µs bound", micros, micros / cpuMicrosTarget)) }
        return parts.joined(separator: ", ")
    }

    static func table(_ goals: [GoalResult]) -> String {
        var lines = ["| goal | Switchboard | python-socketio | ratio | target | met |", "|---|---|---|---|---|---|"]
        for goal in goals {
            lines.append(
                "| \(goal.goal) | \(goal.switchboard) | \(goal.baseline) | \(goal.ratio) | \(goal.target) | "
                    + (goal.met ? "yes" : "no") + (goal.note.isEmpty ? "" : " — \(goal.note)") + " |"
            )
        }
        return lines.joined(separator: "\n")
    }
}
