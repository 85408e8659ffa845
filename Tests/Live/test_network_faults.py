"""Network faults between a node and Redis, through a fault-injecting TCP proxy (faultproxy.py).

One private redis-server, two `serve` nodes: A talks to Redis directly, B through the proxy.
PER_NODE authenticated python-socketio clients on each node, all in ROOM (so ROOM spans both
nodes); the first B_LOCAL_MEMBERS of B's clients are also in B_ROOM, which only B holds.

Three steady emitters run through the whole test, each a numbered tick through a node's backend
API (POST /api/v1/emit):
- "a":  A's API -> ROOM every 0.1 s (A's clients locally, B's clients through B's Redis path);
- "bx": B's API -> ROOM every 0.2 s (B's clients locally, A's clients through B's Redis path);
- "b":  B's API -> B_ROOM every 0.2 s (B-local traffic only).
Every client records when it received each tick; pollers record B's and A's /health, B's /ready,
B's resident memory and whether B is in `switchboard:nodes` (read on Redis directly).

Phases, each tick belonging to the phase it was emitted in:
  a. 200 ms one-way latency on B's Redis path;
  b. 5 % "loss" (retransmission stalls of 0.4 s, see faultproxy.py);
  c. a 30 s black-hole partition, then heal;
  d. every proxied connection reset.
A figures table (markdown) is printed and kept as an artifact (network-faults.md).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
import requests

from faultproxy import FaultProxy
from livehelpers import RespClient, report_artifact, wait_until
from owui import API_KEY, SECRET, WS_PATH, Client, api_base_of, mint, wait_ready

PER_NODE = 12
B_LOCAL_MEMBERS = 4
ROOM = "faults"
B_ROOM = "faults-b-only"
A_TICK_S = 0.1
B_TICK_S = 0.2
LATENCY_S = 0.2
LOSS_P, STALL_S = 0.05, 0.4
SHAPED_S = 8.0
PARTITION_S = 30.0
SETTLE_S = 1.5
# Bounds are generous (2 cores, maybe busy building Swift); the figures are recorded exactly.
HEALTH_BOUND_S = 2.0
READY_503_BOUND_S = 10.0
RECOVERY_BOUND_S = 10.0
READY_BACK_BOUND_S = 30.0
RSS_GROWTH_BOUND_KIB = 64 * 1024


# ---------------------------------------------------------------------------------------
# Clients, emitters, pollers
# ---------------------------------------------------------------------------------------


class TickClient(Client):
    """Records the arrival time of every tick ({"s": series, "n": n}) and of `message`s."""

    def __init__(self, node, name: str):
        super().__init__(node, name, token=mint(name))
        self.recv: dict[tuple[str, int], float] = {}
        self.dups = 0

    def _any(self, ev, *args):
        if ev == "tick" and args and isinstance(args[0], dict):
            now = time.monotonic()
            key = (args[0]["s"], args[0]["n"])
            with self.cond:
                if key in self.recv:
                    self.dups += 1
                else:
                    self.recv[key] = now
                self.cond.notify_all()
            return
        super()._any(ev, *args)

    def arrival(self, series: str, n: int) -> float | None:
        with self.cond:
            return self.recv.get((series, n))


class Emitter(threading.Thread):
    """POSTs tick n=1,2,... of `series` to `to` through `node`'s API every `every` seconds.
    `sent[n]` is the time the POST started, for the POSTs answered 200."""

    def __init__(self, node, series: str, to: dict, every: float):
        super().__init__(daemon=True, name=f"emit-{series}")
        self.node, self.series, self.to, self.every = node, series, to, every
        self.sent: dict[int, float] = {}
        self.answers: list[tuple[float, float, object]] = []  # (start, seconds, status or error)
        self.stop = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        url = api_base_of(self.node) + "/api/v1/emit"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        n, next_at = 0, time.monotonic()
        while not self.stop.is_set():
            n += 1
            body = {"event": "tick", "args": [{"s": self.series, "n": n}], "to": self.to}
            t = time.monotonic()
            try:
                status: object = session.post(url, json=body, headers=headers, timeout=5).status_code
            except requests.RequestException as e:
                status = type(e).__name__
            self.answers.append((t, time.monotonic() - t, status))
            if status == 200:
                self.sent[n] = t
            next_at = max(next_at + self.every, time.monotonic())
            self.stop.wait(next_at - time.monotonic())

    def emitted(self, t0: float, t1: float) -> list[int]:
        return [n for n, t in list(self.sent.items()) if t0 <= t < t1]

    def failed(self, t0: float, t1: float) -> list:
        return [(round(t - t0, 2), s) for t, _, s in list(self.answers) if t0 <= t < t1 and s != 200]

    def slowest(self, t0: float, t1: float) -> float:
        return max((d for t, d, _ in list(self.answers) if t0 <= t < t1), default=0.0)


class Poller(threading.Thread):
    """Calls `probe()` every `every` seconds; keeps (start time, seconds taken, result)."""

    def __init__(self, name: str, probe, every: float):
        super().__init__(daemon=True, name=f"poll-{name}")
        self.probe, self.every = probe, every
        self.samples: list[tuple[float, float, object]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                result = self.probe()
            except Exception as e:  # a hung or refused probe is a sample too
                result = type(e).__name__
            self.samples.append((t, time.monotonic() - t, result))
            self.stop.wait(max(0.0, self.every - (time.monotonic() - t)))

    def between(self, t0: float, t1: float) -> list[tuple[float, float, object]]:
        return [s for s in list(self.samples) if t0 <= s[0] < t1]

    def first(self, t0: float, pred, until: float = float("inf")) -> float | None:
        """Seconds from t0 to the answer of the first probe started in [t0, until) whose result
        satisfies pred."""
        return next((t + d - t0 for t, d, r in list(self.samples) if t0 <= t < until and pred(r)), None)


def http_status(url: str):
    return lambda: requests.get(url, timeout=5).status_code


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(x: float | None) -> str:
    return "—" if x is None or x != x else f"{x * 1000:.0f} ms"


def secs(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f} s"


def delivery(clients, em: Emitter, t0: float, t1: float) -> dict:
    """Ticks of `em` emitted in [t0, t1) and what `clients` made of them."""
    ns = em.emitted(t0, t1)
    delays, lost, late = [], 0, 0
    for c in clients:
        for n in ns:
            got = c.arrival(em.series, n)
            if got is None:
                lost += 1
            else:
                delays.append(got - em.sent[n])
                late += got >= t1
    return {"emitted": len(ns), "expected": len(ns) * len(clients), "lost": lost, "late": late,
            "p50": pct(delays, 0.5), "p95": pct(delays, 0.95), "max": max(delays, default=float("nan"))}


def first_after(clients, em: Emitter, t0: float) -> float | None:
    """Seconds from t0 until every client had received a tick of `em` emitted at or after t0."""
    worst = 0.0
    for c in clients:
        times = [got for n, t in list(em.sent.items()) if t >= t0 and (got := c.arrival(em.series, n)) is not None]
        if not times:
            return None
        worst = max(worst, min(times) - t0)
    return worst


def wait_first_after(clients, em: Emitter, t0: float, timeout: float) -> float | None:
    try:
        return wait_until(lambda: first_after(clients, em, t0), timeout=timeout, step=0.05)
    except AssertionError:
        return None


# ---------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------


def log_between(text: str, w0: float, w1: float, skip=("commands timed out",)) -> list[str]:
    """The node's log lines stamped within [w0, w1] (wall clock, whole seconds), less `skip`."""
    out = []
    for line in text.splitlines():
        try:
            stamp = datetime.strptime(line[:24], "%Y-%m-%dT%H:%M:%S%z").timestamp()
        except ValueError:
            continue
        if int(w0) <= stamp <= w1 and not any(k in line for k in skip):
            out.append(line)
    return out


def start_serve(servers, node_id: str, redis_url: str):
    node = servers.start(
        "serve", "--host", "127.0.0.1", "--port", "0", "--path", WS_PATH, "--node-id", node_id,
        "--redis-url", redis_url, "--jwt-secret", SECRET, "--api-key", API_KEY, "--relay-events", "true",
        "--log-level", "debug", name=f"serve-{node_id}",
    )
    node.node_id = node_id
    node.api_base = api_base_of(node)
    return node


@pytest.fixture
def proxy(redis_server):
    p = FaultProxy("127.0.0.1", redis_server.port).start()
    yield p
    p.stop()


def test_network_faults_between_node_and_redis(servers, redis_server, proxy):
    t_begin = time.monotonic()
    A = start_serve(servers, "faultA", redis_server.url)
    B = start_serve(servers, "faultB", f"redis://127.0.0.1:{proxy.port}/0")
    wait_ready([A, B])
    r = RespClient(redis_server.port, timeout=3)
    wait_until(lambda: r.smembers("switchboard:nodes") >= {"faultA", "faultB"}, timeout=20, what="both nodes listed")

    clients: list[TickClient] = []
    stoppable: list = []
    try:
        for node in (A, B):
            for i in range(PER_NODE):
                clients.append(TickClient(node, f"{node.node_id}-u{i}").connect())
        on_a = [c for c in clients if c.node is A]
        on_b = [c for c in clients if c.node is B]
        b_members = on_b[:B_LOCAL_MEMBERS]
        for c in clients:
            assert c.call("join", {"room": ROOM}) is True, c.name
        for c in b_members:
            assert c.call("join", {"room": B_ROOM}) is True, c.name

        em_a = Emitter(A, "a", {"room": ROOM}, A_TICK_S)
        em_bx = Emitter(B, "bx", {"room": ROOM}, B_TICK_S)
        em_b = Emitter(B, "b", {"room": B_ROOM}, B_TICK_S)
        health_b = Poller("health-b", http_status(B.base + "/health"), 0.2)
        health_a = Poller("health-a", http_status(A.base + "/health"), 0.5)
        ready_b = Poller("ready-b", http_status(B.base + "/ready"), 0.2)
        rss_b = Poller("rss-b", B.rss_kib, 0.25)
        r_poll = RespClient(redis_server.port, timeout=2)

        def b_in_redis() -> tuple[bool, bool, int]:
            """B in the node set, B's registry entry for ROOM, B's sessions in SESSION_POOL."""
            return ("faultB" in r_poll.smembers("switchboard:nodes"),
                    r_poll.command("SISMEMBER", "switchboard:rooms:faultB", "/\x00" + ROOM) == 1,
                    sum(1 for sid in r_poll.command("HKEYS", "open-webui:session_pool") if sid.startswith("faultB")))

        redis_b = Poller("redis-b", b_in_redis, 0.25)
        stoppable = [em_a, em_bx, em_b, health_b, health_a, ready_b, rss_b, redis_b]
        for t in stoppable:
            t.start()

        # Warm: a join reaches the other node one registry round trip later. Count only ticks
        # emitted after every client has seen one of each of its series.
        def warm() -> bool:
            return (all(any(k[0] == "a" for k in c.recv) and any(k[0] == "bx" for k in c.recv) for c in clients)
                    and all(any(k[0] == "b" for k in c.recv) for c in b_members))

        wait_until(warm, timeout=20, step=0.05, what="every client received every series")
        phases: dict[str, tuple[float, float]] = {}

        def phase(name: str, seconds: float) -> None:
            t0 = time.monotonic()
            time.sleep(seconds)
            phases[name] = (t0, time.monotonic())

        phase("baseline", 2.0)

        proxy.latency(LATENCY_S)
        phase("latency", SHAPED_S)
        proxy.heal()
        phase("after latency", SETTLE_S)

        proxy.loss(LOSS_P, STALL_S)
        phase("loss", SHAPED_S)
        proxy.heal()
        phase("after loss", SETTLE_S)

        # c. partition
        rss_before = rss_b.samples[-1][2]
        stats_before = proxy.stats()
        t_part = time.monotonic()
        proxy.partition()
        publish_acks = []  # a B client's relay `publish` to B_ROOM: ack time, delivered to the others
        while time.monotonic() < t_part + PARTITION_S:
            if len(publish_acks) < 3 and time.monotonic() >= t_part + 5 + 10 * len(publish_acks):
                tag = f"during-{len(publish_acks)}"
                t0 = time.monotonic()
                try:
                    ok = b_members[0].call("publish", {"room": B_ROOM, "data": {"tag": tag}}, timeout=5)
                except Exception as e:
                    ok = type(e).__name__
                acked = time.monotonic() - t0
                try:
                    for c in b_members[1:]:
                        c.wait_for("message", lambda a, tag=tag: a == ({"tag": tag},), timeout=5)
                    delivered = time.monotonic() - t0
                except AssertionError:
                    delivered = None
                publish_acks.append((ok, acked, delivered))
            time.sleep(0.1)
        stats_partition = proxy.stats()
        t_heal, wall_heal = time.monotonic(), time.time()
        proxy.heal()
        phases["partition"] = (t_part, t_heal)
        recovery = wait_first_after(on_b, em_a, t_heal, timeout=30)
        recovery_bx = wait_first_after(on_a, em_bx, t_heal, timeout=max(1.0, 30 - (time.monotonic() - t_heal)))
        try:
            wait_until(lambda: ready_b.first(t_heal, lambda s: s == 200) is not None, timeout=max(1.0, 30 - (time.monotonic() - t_heal)))
        except AssertionError:
            pass
        time.sleep(SETTLE_S)
        phases["after heal"] = (t_heal, time.monotonic())

        # d. reset
        t_reset, wall_reset = time.monotonic(), time.time()
        resets = proxy.reset_all()
        reset_recovery = wait_first_after(on_b, em_a, t_reset, timeout=30)
        reset_recovery_bx = wait_first_after(on_a, em_bx, t_reset, timeout=max(1.0, 30 - (time.monotonic() - t_reset)))
        time.sleep(SETTLE_S)
        phases["after reset"] = (t_reset, time.monotonic())
        stats_end = proxy.stats()

        # Everything emitted has had time to arrive: stop, then a last look.
        for t in stoppable:
            t.stop.set()
        for t in stoppable:
            t.join(timeout=6)
        t_stop = time.monotonic()
        time.sleep(1.0)

        # -- figures ---------------------------------------------------------------------
        rows = []
        per_phase = {}
        for name, (t0, t1) in phases.items():
            d = {
                "a→A": delivery(on_a, em_a, t0, t1),
                "a→B": delivery(on_b, em_a, t0, t1),
                "bx→A": delivery(on_a, em_bx, t0, t1),
                "b→B": delivery(b_members, em_b, t0, t1),
            }
            per_phase[name] = d
            hb = health_b.between(t0, t1)
            rb = ready_b.between(t0, t1)
            rows.append(
                f"| {name} | {t1 - t0:.1f} s | "
                + " | ".join(f"{v['lost']}/{v['expected']}" + (f" ({v['late']} late)" if v["late"] else "")
                             for v in d.values())
                + f" | {ms(d['a→B']['p50'])} / {ms(d['a→B']['p95'])} / {ms(d['a→B']['max'])}"
                + f" | {ms(d['bx→A']['p50'])} / {ms(d['bx→A']['p95'])} / {ms(d['bx→A']['max'])}"
                + f" | {ms(max((s[1] for s in hb), default=None))}"
                + f" | {sum(1 for s in rb if s[2] == 200)}/{len(rb)}"
                + f" | {ms(max(em_a.slowest(t0, t1), em_b.slowest(t0, t1), em_bx.slowest(t0, t1)))} |"
            )
        part = (t_part, t_heal)
        ready_503 = ready_b.first(t_part, lambda s: s != 200)
        ready_200 = ready_b.first(t_heal, lambda s: s == 200)
        ready_after = ready_b.between(t_heal, t_reset)
        ready_200_after = sum(1 for s in ready_after if s[2] == 200)
        rss_part = [s[2] for s in rss_b.between(*part) if isinstance(s[2], int)]
        rss_max = max(rss_part, default=rss_before)
        rss_after = [s[2] for s in rss_b.between(t_heal, t_stop) if isinstance(s[2], int)]
        health_part = health_b.between(*part)
        health_bad = [(round(t - t_part, 2), round(d, 3), s) for t, d, s in health_part if s != 200 or d >= HEALTH_BOUND_S]
        def redis_view(i, want, since, until=float("inf")):
            return redis_b.first(since, lambda v: isinstance(v, tuple) and v[i] == want, until)

        # What B's Redis records looked like; "after heal" means before the reset (which resyncs).
        unlisted = redis_view(0, False, t_part)
        relisted = redis_view(0, True, t_heal, t_reset) if unlisted is not None else None
        unregistered = redis_view(1, False, t_part)
        reregistered = redis_view(1, True, t_heal, t_reset)
        sessions_before = next((v[2] for t, _, v in reversed(redis_b.samples) if t < t_part and isinstance(v, tuple)), None)
        sessions_gone = redis_b.first(t_part, lambda v: isinstance(v, tuple) and v[2] < PER_NODE)
        sessions_back = redis_b.first(t_heal, lambda v: isinstance(v, tuple) and v[2] == PER_NODE, t_reset)
        sessions_at_reset = next((v[2] for t, _, v in reversed(redis_b.samples) if t < t_reset and isinstance(v, tuple)), None)
        reset_ready_503 = ready_b.first(t_reset, lambda s: s != 200)
        reset_ready_200 = ready_b.first(t_reset + (reset_ready_503 or 0), lambda s: s == 200)
        pa = per_phase["partition"]
        dups = sum(c.dups for c in clients)
        figures = [
            f"# Network faults between node B and Redis (faultproxy)",
            "",
            f"{PER_NODE} clients on A (Redis direct), {PER_NODE} on B (Redis through the proxy), all in one room; "
            f"{B_LOCAL_MEMBERS} of B's also in a room only B holds. Ticks: a = A's API → room every {A_TICK_S} s; "
            f"bx = B's API → room every {B_TICK_S} s; b = B's API → B-only room every {B_TICK_S} s. "
            f"Lost = emitted in the phase, never received by the end (late = received after the phase ended).",
            "",
            "| phase | length | a lost to A's clients | a lost to B's | bx lost to A's | b lost to B's | a→B delay p50 / p95 / max "
            "| bx→A delay p50 / p95 / max | B /health slowest | B /ready 200 | slowest API emit |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "| partition figure | value |",
            "|---|---|",
            f"| B /health answers during the partition | {len(health_part)}, slowest {ms(max((s[1] for s in health_part), default=None))}, "
            f"bad (≥ {HEALTH_BOUND_S} s or not 200): {health_bad[:5]} |",
            f"| B /ready first not-200 after the partition began | {secs(ready_503)} |",
            f"| B /ready 200 again after heal / 200 answers from the heal to the reset | {secs(ready_200)} / {ready_200_after} of {len(ready_after)} |",
            f"| B dropped from switchboard:nodes (A reaped it), from the partition start | {secs(unlisted)} |",
            f"| B's registry entry for the room gone, from the partition start / back, from the heal (until the reset, {t_reset - t_heal:.1f} s later) | "
            f"{secs(unregistered)} / {secs(reregistered)} |",
            f"| B listed in switchboard:nodes again, from the heal | {secs(relisted)} |",
            f"| B's sessions in SESSION_POOL: before / first fewer, from the partition start / all back, from the heal (until the reset) / just before the reset | "
            f"{sessions_before} / {secs(sessions_gone)} / {secs(sessions_back)} / {sessions_at_reset} of {PER_NODE} |",
            f"| every B client got an A tick emitted after heal | {secs(recovery)} |",
            f"| every A client got a B (bx) tick emitted after heal | {secs(recovery_bx)} |",
            f"| A ticks emitted during the partition: lost to B's clients / delivered late (after heal) | "
            f"{pa['a→B']['lost']} / {pa['a→B']['late']} of {pa['a→B']['expected']} |",
            f"| bx ticks emitted during the partition: lost to A's clients / late | {pa['bx→A']['lost']} / {pa['bx→A']['late']} of {pa['bx→A']['expected']} |",
            f"| B-local ticks (B API → B-only room) during the partition: lost, delay p95 | {pa['b→B']['lost']} of {pa['b→B']['expected']}, {ms(pa['b→B']['p95'])} |",
            f"| B client relay publish to the B-only room: (ack, ack time, delivered to the other members after) | "
            + "; ".join(f"({ok}, {ms(a)}, {ms(d)})" for ok, a, d in publish_acks) + " |",
            f"| B API emits failed during the partition (b, bx) | {em_b.failed(*part)[:5]}, {em_bx.failed(*part)[:5]} |",
            f"| B RSS before / max during / growth | {rss_before / 1024:.1f} MB / {rss_max / 1024:.1f} MB / {(rss_max - rss_before) / 1024:.1f} MB |",
            f"| B RSS after heal (max) | {max(rss_after, default=0) / 1024:.1f} MB |",
            f"| proxy held at heal / max held / connections during the partition | {stats_partition['held']} B / {stats_partition['held_max']} B / {stats_partition['connections']} "
            f"(accepted {stats_partition['accepted'] - stats_before['accepted']} new during it) |",
            "",
            "| reset figure | value |",
            "|---|---|",
            f"| connections reset | {resets} |",
            f"| B /ready first not-200 after the reset / 200 again | {secs(reset_ready_503)} / {secs(reset_ready_200)} |",
            f"| every B client got an A tick emitted after the reset | {secs(reset_recovery)} |",
            f"| every A client got a bx tick emitted after the reset | {secs(reset_recovery_bx)} |",
            f"| upstream connections made by the proxy, in all | {stats_end['upstream_connects']} |",
            "",
            f"duplicates received: {dups}; proxy bytes forwarded up/down: {stats_end['forwarded_up']}/{stats_end['forwarded_down']}, "
            f"stalls injected: {stats_end['stalls']}; test run {time.monotonic() - t_begin:.1f} s",
        ]
        a_log = [l for l in A.stderr_text().splitlines() if "faultB" in l and "dead" in l][:4]
        b_log = B.stderr_text().splitlines()
        b_warn = [l for l in b_log if " warning " in l or " error " in l][:6]
        figures += ["", "Node log evidence (A, lines about B's death; B, first warnings/errors; "
                    f"B logged `redis commands timed out` {sum('commands timed out' in l for l in b_log)} times, "
                    f"`redis connected` {sum('redis connected' in l for l in b_log)} times):", "", "```",
                    *a_log, *b_warn, "```", "", "B's log from the heal to the reset (less `redis commands timed out`):", "", "```",
                    *log_between(B.stderr_text(), wall_heal, wall_reset)[:20], "```"]
        table = "\n".join(figures)
        print("\n" + table)
        report_artifact("network-faults.md", table)

        # -- assertions ------------------------------------------------------------------
        problems = []
        for name, d in per_phase.items():
            if d["a→A"]["lost"]:
                problems.append(f"{name}: {d['a→A']['lost']} A ticks lost to A's own clients")
        for name in ("baseline", "latency", "after latency", "loss", "after loss"):
            for k in ("a→B", "bx→A", "b→B"):
                if per_phase[name][k]["lost"]:
                    problems.append(f"{name}: {per_phase[name][k]['lost']} {k} ticks lost (latency and loss must lose nothing)")
        if pa["b→B"]["lost"]:
            problems.append(f"partition: {pa['b→B']['lost']} B-local ticks lost (B must keep delivering locally)")
        for ok, acked, delivered in publish_acks:
            if ok is not True or delivered is None:
                problems.append(f"partition: B client publish to the B-only room: ack {ok!r} after {acked:.2f}s, delivered {delivered}")
        if em_b.failed(*part):
            problems.append(f"partition: B's API failed emits to the B-only room: {em_b.failed(*part)[:5]}")
        if health_bad:
            problems.append(f"partition: B /health slow or failing: {health_bad[:5]}")
        slow_health = [(round(t - t_begin, 1), round(d, 3), s) for t, d, s in health_b.samples + health_a.samples
                       if s != 200 or d >= HEALTH_BOUND_S]
        if slow_health:
            problems.append(f"/health slow or failing on A or B: {slow_health[:5]}")
        if ready_503 is None or ready_503 > READY_503_BOUND_S:
            problems.append(f"partition: B /ready did not turn 503 within {READY_503_BOUND_S} s (first not-200: {secs(ready_503)})")
        if rss_max - rss_before > RSS_GROWTH_BOUND_KIB:
            problems.append(f"partition: B RSS grew {(rss_max - rss_before) / 1024:.1f} MB")
        if recovery is None or recovery > RECOVERY_BOUND_S:
            problems.append(f"heal: B's clients got A's ticks again after {secs(recovery)} (bound {RECOVERY_BOUND_S} s, watched 30 s); "
                            f"B's /ready answered 200 {ready_200_after} of {len(ready_after)} times meanwhile")
        if recovery_bx is None or recovery_bx > RECOVERY_BOUND_S:
            problems.append(f"heal: A's clients got B's ticks again after {secs(recovery_bx)} (bound {RECOVERY_BOUND_S} s)")
        if reregistered is None or reregistered > RECOVERY_BOUND_S:
            problems.append(f"heal: B's room {ROOM!r} back in switchboard:rooms:faultB after {secs(reregistered)} "
                            f"(gone {secs(unregistered)} into the partition, when A reaped B: {secs(unlisted)})")
        if sessions_back is None or sessions_back > RECOVERY_BOUND_S:
            problems.append(f"heal: B's {PER_NODE} sessions all back in SESSION_POOL after {secs(sessions_back)} "
                            f"(just before the reset: {sessions_at_reset})")
        if ready_200 is None or ready_200 > READY_BACK_BOUND_S:
            problems.append(f"heal: B /ready 200 again after {secs(ready_200)} (bound {READY_BACK_BOUND_S} s)")
        if reset_recovery is None or reset_recovery > RECOVERY_BOUND_S:
            problems.append(f"reset: B's clients got A's ticks again after {secs(reset_recovery)}")
        if reset_recovery_bx is None or reset_recovery_bx > RECOVERY_BOUND_S:
            problems.append(f"reset: A's clients got B's ticks again after {secs(reset_recovery_bx)}")
        if ready_b.samples[-1][2] != 200:
            problems.append(f"end: B /ready answers {ready_b.samples[-1][2]}")
        if dups:
            problems.append(f"{dups} duplicate ticks")
        for c in clients:
            if c.disconnects:
                problems.append(f"{c.name} was disconnected: {c.disconnects}")
        assert not problems, "\n".join(problems)
        assert A.alive() and B.alive()
    finally:
        for t in stoppable:
            t.stop.set()
        for c in clients:
            c.close()
        r.close()
