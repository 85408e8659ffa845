"""switchboard-bench end to end at a tiny size: both clusters (Switchboard and the python-socketio
baseline from scripts/bench-support/baseline) started by the bench, every scenario run on each, results.json and
the HTML report written. Figures are not judged here (benchmarks are not timed tests); what is
checked is that every scenario measured what it claims: every expected delivery arrived in the
unloaded steps, every handshake and call completed, and the report holds the charts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from livehelpers import artifact_path, binary_path, free_port, report_artifact

ROOT = Path(__file__).resolve().parents[2]
BASELINE = Path(os.environ.get("SWITCHBOARD_BASELINE", ROOT / "scripts" / "bench-support" / "baseline"))


def bench_binary() -> Path:
    return Path(os.environ.get("SWITCHBOARD_BENCH_BIN", ROOT / ".build" / "release" / "switchboard-bench"))


@pytest.mark.timeout(600)
def test_bench_runs_every_scenario_on_both_clusters(tmp_path):
    if not bench_binary().exists():
        pytest.fail(f"switchboard-bench missing: {bench_binary()} (build it or set SWITCHBOARD_BENCH_BIN)")
    if not (BASELINE / "owui_socket.py").exists():
        pytest.fail(f"the baseline is missing: {BASELINE} (set SWITCHBOARD_BASELINE)")
    out = artifact_path("bench")
    run = subprocess.run(
        [str(bench_binary()), "--switchboard-binary", str(binary_path()), "--baseline-directory", str(BASELINE),
         "--python", sys.executable, "--support-directory", str(ROOT / "scripts" / "bench-support"),
         "--out", str(out), "--clients", "40", "--rooms", "4", "--publishers", "4", "--step-seconds", "1",
         "--start-rate", "20", "--max-steps", "2", "--storm-connections", "200", "--baseline-storm-connections", "100",
         "--idle-connections", "300", "--baseline-idle-connections", "100", "--idle-hold", "2",
         "--ack-targets", "10", "--ack-calls", "100", "--redis-requests", "20000", "--redis-messages", "20000",
         "--reconnect-clients", "60", "--reconnect-gate-rate", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    results = json.loads((out / "results.json").read_text())

    fanout = {(r["system"], r["origin"]): r for r in results["fanout"]}
    assert set(fanout) == {(s, o) for s in ("switchboard", "baseline") for o in ("client", "backend")}
    for (system, origin), r in fanout.items():
        first = r["steps"][0]
        # 20 msg/s for 1 s to rooms of 10 members: 200 deliveries, each one counted.
        assert first["published"] == 20, (system, origin, first)
        assert first["expectedDeliveries"] == 200, (system, origin, first)
        assert first["delivered"] == 200 and first["lost"] == 0, (system, origin, first)
        assert first["latency"]["count"] == 200 and first["latency"]["p50"] > 0, (system, origin, first)

    storm = {r["system"]: r for r in results["storm"]}
    assert storm["switchboard"]["ready"] == 200 and storm["switchboard"]["failed"] == 0, storm["switchboard"]
    assert storm["baseline"]["ready"] == 100 and storm["baseline"]["failed"] == 0, storm["baseline"]
    assert storm["switchboard"]["handshakesPerSecond"] > 0
    # CPU comes from /proc/<pid>/stat of the nodes the bench started: 200 handshakes take measurable time.
    assert storm["switchboard"]["serverCPUSeconds"] > 0 and storm["baseline"]["serverCPUSeconds"] > 0, storm

    idle = {r["system"]: r for r in results["idle"]}
    for system, count in (("switchboard", 300), ("baseline", 100)):
        assert idle[system]["ready"] == count and idle[system]["droppedDuringHold"] == 0, idle[system]
        assert idle[system]["residentBytesAfter"] > 0, idle[system]

    ack = {(r["system"], r["via"].split()[0]): r for r in results["ack"]}
    assert set(ack) == {("switchboard", "python-socketio"), ("switchboard", "HTTP"), ("baseline", "python-socketio")}
    for key, r in ack.items():
        assert r["answered"] == 100 and r["failed"] == 0, (key, r)

    redis = {r["comparison"].split(",")[0]: r for r in results["redis"]}
    assert redis["SET"]["switchboardClient"] > 0 and redis["SET"]["reference"] > 0, redis
    assert redis["pub/sub drain"]["switchboardClient"] > 0, redis

    reconnect = {r["gate"]: r for r in results["reconnect"]}
    assert set(reconnect) == {"off", "20/s per node"}, reconnect
    for gate, r in reconnect.items():
        # 60 users back on the two survivors, each asking for its user and its channels once it is let through.
        assert r["reconnected"] == 60 and r["recovered"], (gate, r)
        assert r["userLookups"] >= 60 and r["backendCalls"] >= 120, (gate, r)

    goals = [g["goal"] for g in results["goals"]]
    assert any("CPU per delivered message" in g for g in goals) and any("idle" in g for g in goals), goals
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 6 and "python-socketio" in html and "Connect storm" in html
    report_artifact("bench/report.html")


@pytest.mark.timeout(300)
def test_bench_measures_nodes_it_did_not_start(serve_factory, redis_server, tmp_path):
    """--target: the clients spread over nodes started elsewhere, which ask the bench's backend
    (on --backend-port) for users and channels and accept its tokens."""
    backend_port = free_port()
    secret = "external-target-secret-0123456789abcdef0123456789"
    args = ("--redis-url", redis_server.url, "--jwt-secret", secret, "--api-key", "external-api-key-0123456789",
            "--backend-url", f"http://127.0.0.1:{backend_port}", "--broadcast-presence", "false")
    nodes = [serve_factory(*args), serve_factory(*args)]
    out = tmp_path / "bench"
    run = subprocess.run(
        [str(bench_binary()), "--target", ",".join(f"127.0.0.1:{n.port}" for n in nodes), "--systems", "switchboard",
         "--target-redis", redis_server.url, "--jwt-secret", secret, "--api-key", "external-api-key-0123456789",
         "--backend-port", str(backend_port), "--python", sys.executable,
         "--support-directory", str(ROOT / "scripts" / "bench-support"), "--out", str(out),
         "--scenarios", "fanout,backend,storm,ack", "--clients", "20", "--rooms", "2", "--publishers", "2",
         "--step-seconds", "1", "--start-rate", "10", "--max-steps", "1", "--storm-connections", "100",
         "--ack-targets", "4", "--ack-calls", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["nodes"] == "2"
    for r in results["fanout"]:
        step = r["steps"][0]
        assert step["published"] == 10 and step["delivered"] == step["expectedDeliveries"] == 100, (r["origin"], step)
        assert step["serverCPUSeconds"] == 0  # no pids of nodes it did not start
    assert results["storm"][0]["ready"] == 100
    assert all(r["answered"] == 20 for r in results["ack"]), results["ack"]
    # Refused: idle needs the node's process for its memory.
    refused = subprocess.run(
        [str(bench_binary()), "--target", f"127.0.0.1:{nodes[0].port}", "--systems", "switchboard",
         "--scenarios", "idle", "--out", str(tmp_path / "refused")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode != 0 and "idle" in refused.stderr, refused.stderr


@pytest.mark.timeout(300)
def test_faults_under_load_lose_nothing_for_the_clients_they_spare(tmp_path):
    """The faults scenario at a small size: a node SIGKILLed, Redis paused, Redis restarted empty, under a
    steady tick to every room. The clients a fault must not touch lose nothing; everyone else is back."""
    if not bench_binary().exists():
        pytest.fail(f"switchboard-bench missing: {bench_binary()} (build it or set SWITCHBOARD_BENCH_BIN)")
    out = artifact_path("bench-faults")
    run = subprocess.run(
        [str(bench_binary()), "--switchboard-binary", str(binary_path()), "--systems", "switchboard",
         "--scenarios", "faults", "--out", str(out), "--rooms", "10", "--clients", "10",
         "--fault-clients", "300", "--fault-pause", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    results = json.loads((out / "results.json").read_text())
    (faults,) = results["faults"]
    print("\n" + "\n".join(f"{p['fault']}: {p}" for p in faults["phases"]))
    kill, pause, restart = faults["phases"]
    for phase in (kill, pause, restart):
        assert phase["ticksEmitted"] > 0, phase
        assert phase["affectedRecovered"] == phase["affected"], phase
        assert phase["recoverySeconds"] >= 0, phase
    # Clients of the surviving nodes lose nothing to a node's death; the node and its sessions are gone in 15 s.
    assert kill["lostToSurvivors"] == 0 and kill["deliveriesExpectedBySurvivors"] > 0, kill
    assert kill["recoverySeconds"] < 15, kill
    assert any("node out of the node set after" in n and "never" not in n for n in kill["notes"]), kill
    # Local delivery carries on while Redis is paused; /ready says not ready meanwhile.
    assert pause["lostToSurvivors"] == 0, pause
    assert any("/ready during the pause: 503, 503" in n for n in pause["notes"]), pause
    # Cross-node delivery is back within 5 s of Redis coming back.
    assert pause["recoverySeconds"] < 5 and restart["recoverySeconds"] < 5, (pause, restart)
    assert any("ticks lost by anyone after the pause: 0" in n for n in pause["notes"]), pause
    assert any("ticks lost by anyone from 2 s after Redis came back: 0" in n for n in restart["notes"]), restart
    # Presence is back too: every connected session is in SESSION_POOL again within 5 s of Redis's return.
    assert restart["sessionPoolRestoredSeconds"] is not None, restart
    assert restart["sessionPoolRestoredSeconds"] < 5, restart
