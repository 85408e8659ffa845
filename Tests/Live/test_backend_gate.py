"""The node's backend call gate (docs/BACKEND.md, "Reconnect storms"): when many clients connect at once —
a failed node's clients reconnecting elsewhere — the backend hears at most --backend-max-calls-per-second
from the node, calls that wait too long are refused without reaching it, and every user still ends up
in SESSION_POOL, because a connect whose token could not be checked is tried again.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from livehelpers import wait_until
from owui import owui  # noqa: F401  (a fixture)

RATE = 20
BURST = RATE // 4
CLIENTS = 80


def _max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            match = re.search(r"\s([0-9.e+-]+)$", line)
            if match:
                total += float(match.group(1))
    return total


def test_a_connect_storm_reaches_the_backend_at_the_gate_rate_and_every_user_registers(owui):
    (node,) = owui.start(
        1,
        "--backend-max-calls-per-second", str(RATE),
        "--backend-max-concurrent-calls", "4",
        # A call queued longer than this is refused (backend_busy) and its connect tried again later.
        "--backend-timeout", "2s",
        "--user-cache-ttl", "0",
    )
    # Warm the node's HTTP client: the first call opens its connection.
    owui.client(node, "warm", user="warm")
    wait_until(lambda: len(owui.session_pool()) == 1, timeout=20, what="the warm-up session")
    owui.backend.requests.clear()

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(lambda i: owui.client(node, f"c{i}", user=f"storm{i}"), range(CLIENTS)))
    connected = time.monotonic() - t0

    def registered() -> int:
        return sum(1 for entry in owui.session_pool().values() if entry.get("id", "").startswith("storm"))

    wait_until(lambda: registered() == CLIENTS, timeout=60, step=0.2, what=f"all {CLIENTS} users in SESSION_POOL")
    settled = time.monotonic() - t0

    arrivals = [r["t"] for r in owui.backend.requests if r["path"] == "/api/v1/auths"]
    peak = _max_in_window(arrivals)
    metrics = requests.get(f"http://127.0.0.1:{node.port}/metrics", timeout=10).text
    queued = _metric(metrics, "switchboard_backend_calls_queued_total", target="backend")
    refused = _metric(metrics, "switchboard_backend_calls_refused_total", target="backend", reason="waited_too_long")
    print(
        f"\n{CLIENTS} connects in {connected:.2f} s; all registered after {settled:.2f} s; "
        f"{len(arrivals)} user lookups reached the backend, at most {peak} in any second (gate {RATE}/s, burst "
        f"{BURST}); {queued:.0f} queued, {refused:.0f} refused after waiting 2 s and tried again"
    )
    # The gate's bound: the burst, then the rate (one more for a window that spans a refill).
    assert peak <= RATE + BURST + 1, peak
    assert len(arrivals) >= CLIENTS
    assert queued > 0
    # 80 lookups at 20/s take 3.75 s after the burst: some waited past 2 s and were retried.
    assert refused > 0
    assert settled >= (CLIENTS - BURST) / RATE * 0.9
