"""Live cluster tests: three real switchboard nodes joined through a private redis-server,
python-socketio clients spread over them.

Every test starts its own `redis-server` (free loopback port, `--save '' --appendonly no`,
temp dir) and its own nodes (`--port 0`, fixed 6-character node ids, heartbeat 500 ms,
node TTL 3 s); everything is killed at teardown.

Synchronisation: acks where the server gives one (`join`, `members`, `remote-*`,
`call-sid`). A join is acknowledged before the other nodes have learnt from the room
registry that this node now holds the room, so before a cross-node emit is asserted the
route is *warmed*: the sender emits probe messages to the room until every member has seen
one (probes are filtered out of what the assertions look at). "Exactly once" is checked
with a fence: after the test messages every sender emits a fence to every peer's sid;
what a peer received from that sender before the fence is all it will ever get from it
(Redis delivers one publisher's messages to one subscriber in order).
"""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid

import jwt
import pytest
import requests
import socketio

from livehelpers import (
    TIMEOUT,
    RespClient,
    eio_ws_session,
    ws_recv,
    wait_until,
)

NODE_IDS = ("alpha1", "bravo2", "chrli3")
HEARTBEAT_S = 0.5
NODE_TTL_S = 3.0
CLUSTER_ARGS = [
    "--ping-interval", "25s", "--ping-timeout", "20s", "--connect-timeout", "10s",
    "--heartbeat-interval", "500ms", "--node-ttl", "3s",
]
PREFIX = "switchboard"
# Generous deadlines: 2 cores, possibly busy building Swift.
PROPAGATION_TIMEOUT = 20.0
READY_TIMEOUT = 45.0
PROBE = "__probe__"
FENCE = "__fence__"
SECRET = "live-test-secret-0123456789abcdef-0123456789"


# ---------------------------------------------------------------------------------------
# Cluster of nodes
# ---------------------------------------------------------------------------------------


def ready_status(node) -> int | None:
    try:
        return requests.get(node.base + "/ready", timeout=3).status_code
    except requests.RequestException:
        return None


def wait_ready(nodes, status: int = 200, timeout: float = READY_TIMEOUT) -> float:
    """Polls GET /ready on every node until all answer `status`; returns the time it took."""
    t0 = time.monotonic()
    last: dict = {}

    def all_there() -> bool:
        for n in nodes:
            last[n.node_id] = ready_status(n)
        return all(v == status for v in last.values())

    try:
        wait_until(all_there, timeout=timeout, step=0.05, what=f"/ready == {status} on every node")
    except AssertionError:
        raise AssertionError(f"/ready did not become {status} on every node within {timeout}s; last: {last}") from None
    return time.monotonic() - t0


class Cluster:
    def __init__(self, servers, redis):
        self.servers = servers
        self.redis = redis
        self.nodes: list = []
        self.r = RespClient(redis.port)

    def start_node(self, node_id: str, mode: str = "conformance", env: dict | None = None, extra: tuple = ()):
        args = [mode, "--host", "127.0.0.1", "--port", "0", "--redis-url", self.redis.url, "--node-id", node_id]
        args += CLUSTER_ARGS + list(extra)
        if mode == "serve":
            args += ["--path", "/ws/socket.io"]
        node = self.servers.start(*args, name=f"{mode}-{node_id}", env=env)
        node.node_id = node_id
        node.mode = mode
        self.nodes.append(node)
        return node

    def start(self, n: int = 3, mode: str = "conformance", env: dict | None = None, extra: tuple = ()):
        nodes = [self.start_node(NODE_IDS[i], mode, env, extra) for i in range(n)]
        wait_ready(nodes)
        ids = {node.node_id for node in nodes}
        wait_until(
            lambda: self.r.smembers(f"{PREFIX}:nodes") >= ids,
            timeout=PROPAGATION_TIMEOUT,
            what=f"{PREFIX}:nodes lists {sorted(ids)}",
        )
        return nodes

    # Redis inspection
    def rooms_of(self, node_id: str) -> set[str]:
        return self.r.smembers(f"{PREFIX}:rooms:{node_id}")

    def publishes_during(self, action, settle) -> int:
        """PUBLISH calls counted by Redis while `action()` runs and `settle()` waits for its
        effect (CONFIG RESETSTAT before, INFO commandstats after)."""
        self.r.command("CONFIG", "RESETSTAT")
        action()
        settle()
        return self.r.command_calls("publish")


@pytest.fixture
def cluster(servers, redis_server):
    c = Cluster(servers, redis_server)
    yield c
    c.r.close()


# ---------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------


def _dispatch_in_wire_order(sio: socketio.Client) -> None:
    """python-engineio's sync client hands every incoming message to a thread of its own, so what
    handlers record is not the order of arrival (two messages a microsecond apart were seen swapped).
    Run them on the read loop instead: in wire order. The handlers here only record or return an ack
    value, so they never block the read loop."""
    eio = sio.eio
    trigger = getattr(eio, "_trigger_event", None)
    assert callable(trigger), "python-engineio changed: Peer cannot record events in wire order"

    def in_wire_order(event, *args, run_async=False, **kwargs):
        return trigger(event, *args, run_async=run_async and event != "message", **kwargs)

    eio._trigger_event = in_wire_order


class Peer:
    """A python-socketio client (WebSocket only) that records every event it receives."""

    EVENTS = ("auth", "room-message", "direct", "message-back", "message", "ack-me")

    def __init__(self, node, name: str, namespaces=("/",), answer=None, auth=None):
        self.node = node
        self.name = name
        self.namespaces = tuple(namespaces)
        self.auth = auth
        self.sio = socketio.Client(reconnection=False, request_timeout=TIMEOUT)
        _dispatch_in_wire_order(self.sio)
        self.cond = threading.Condition()
        self.got: dict[tuple[str, str], list[tuple]] = collections.defaultdict(list)
        self.disconnect_reasons: list[tuple[str, tuple]] = []
        for ns in self.namespaces:
            for ev in self.EVENTS:
                if ev == "ack-me" and answer is not None:
                    continue
                self.sio.on(ev, self._recorder(ns, ev), namespace=ns)
            if answer is not None:
                self.sio.on("ack-me", self._answering(ns, answer), namespace=ns)
            self.sio.on("disconnect", self._on_disconnect(ns), namespace=ns)

    def _recorder(self, ns, ev):
        def handler(*args):
            with self.cond:
                self.got[(ns, ev)].append(args)
                self.cond.notify_all()

        return handler

    def _answering(self, ns, answer):
        def handler(*args):
            with self.cond:
                self.got[(ns, "ack-me")].append(args)
                self.cond.notify_all()
            return answer(*args)

        return handler

    def _on_disconnect(self, ns):
        def handler(*args):
            with self.cond:
                self.disconnect_reasons.append((ns, args))
                self.cond.notify_all()

        return handler

    def connect(self) -> "Peer":
        path = "/ws/socket.io" if getattr(self.node, "mode", "conformance") == "serve" else "socket.io"
        self.sio.connect(
            self.node.base,
            transports=["websocket"],
            namespaces=list(self.namespaces),
            socketio_path=path,
            auth=self.auth,
            wait_timeout=TIMEOUT,
        )
        if getattr(self.node, "mode", "conformance") == "conformance":
            for ns in self.namespaces:
                self.wait_for("auth", ns=ns)
        return self

    def sid(self, ns: str = "/") -> str:
        return self.sio.get_sid(ns)

    def emit(self, ev: str, *args, ns: str = "/") -> None:
        self.sio.emit(ev, tuple(args), namespace=ns)

    def call(self, ev: str, *args, ns: str = "/", timeout: float = TIMEOUT):
        return self.sio.call(ev, tuple(args), namespace=ns, timeout=timeout)

    def join(self, room: str, ns: str = "/") -> None:
        assert self.call("join", room, ns=ns) is True, f"{self.name}: join {room!r} not acked true"

    def members(self, room: str, ns: str = "/") -> list[str]:
        return self.call("members", room, ns=ns)

    # -- what arrived ---------------------------------------------------------------------
    def events(self, ev: str, ns: str = "/", raw: bool = False) -> list[tuple]:
        """Events received so far; probes and fences left out unless raw."""
        with self.cond:
            items = list(self.got[(ns, ev)])
        if raw:
            return items
        return [a for a in items if not _is_control(a)]

    def wait_for(self, ev: str, pred=lambda args: True, ns: str = "/", timeout: float = TIMEOUT, what: str = ""):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for args in self.got[(ns, ev)]:
                    if pred(args):
                        return args
                left = end - time.monotonic()
                if left <= 0:
                    seen = self.got[(ns, ev)][-10:]
                    raise AssertionError(
                        f"{self.name} (sid {self.sio.get_sid(ns)} on {self.node.node_id}): no {ev!r} "
                        f"{what} on {ns} within {timeout}s; last seen {seen!r}"
                    )
                self.cond.wait(min(left, 0.25))

    def wait_count(self, ev: str, n: int, ns: str = "/", timeout: float = TIMEOUT) -> list[tuple]:
        end = time.monotonic() + timeout
        while True:
            items = self.events(ev, ns)
            if len(items) >= n:
                return items
            if time.monotonic() > end:
                raise AssertionError(
                    f"{self.name} on {self.node.node_id}: {len(items)} of {n} {ev!r} within {timeout}s; "
                    f"last {items[-5:]!r}"
                )
            with self.cond:
                self.cond.wait(0.25)

    def wait_disconnected(self, timeout: float = TIMEOUT):
        end = time.monotonic() + timeout
        with self.cond:
            while not self.disconnect_reasons:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: no disconnect within {timeout}s")
                self.cond.wait(min(left, 0.25))
            return self.disconnect_reasons[0]

    def close(self) -> None:
        try:
            if self.sio.connected:
                self.sio.disconnect()
        except Exception:
            pass


def _is_control(args: tuple) -> bool:
    if not args:
        return False
    first = args[0]
    if first in (PROBE, FENCE):
        return True
    return isinstance(first, dict) and (PROBE in first or FENCE in first)


class RawPeer:
    """A raw Socket.IO client on `/` that never answers an ack request (the server's `ack-me`
    with an id stays unanswered); it records the packets it receives."""

    def __init__(self, node, name: str):
        self.node = node
        self.name = name
        self.ws, _ = eio_ws_session(node, "/socket.io/")
        self.ws.send("40")
        first = ws_recv(self.ws)
        assert isinstance(first, str) and first.startswith("40{"), first
        self._sid = json.loads(first[2:])["sid"]
        self.packets: list[str] = []
        self._stop = False
        threading.Thread(target=self._run, daemon=True, name=f"raw-{name}").start()

    def _run(self) -> None:
        while not self._stop:
            try:
                m = ws_recv(self.ws, timeout=3600)
            except Exception:  # Closed, or socket errors after close()
                return
            if m == "2":
                try:
                    self.ws.send("3")
                except Exception:
                    pass
                continue
            self.packets.append(m)

    def sid(self, ns: str = "/") -> str:
        return self._sid

    def close(self) -> None:
        self._stop = True
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


@pytest.fixture
def peers():
    """Factory for connected Peers, all closed at teardown."""
    made: list = []

    def make(node, name, **kw) -> Peer:
        p = Peer(node, name, **kw)
        made.append(p)
        return p.connect()

    def raw(node, name) -> RawPeer:
        p = RawPeer(node, name)
        made.append(p)
        return p

    make.raw = raw
    yield make
    for p in made:
        p.close()


# ---------------------------------------------------------------------------------------
# Route warm-up and fences
# ---------------------------------------------------------------------------------------


def warm_room(sender: Peer, room: str, members, ns: str = "/", timeout: float = PROPAGATION_TIMEOUT) -> float:
    """Emits probes from `sender` to `room` until every member has received one, so that the
    sender's node has learnt from the registry which nodes hold the room. Returns the time.

    Needed because a `join` is acked before the room registry reaches the other nodes: an
    emit from another node right after the ack is often not routed to the joiner's node
    (measured: 14 of 20 such emits lost on a 2-core machine)."""
    token = uuid.uuid4().hex
    t0 = time.monotonic()
    end = t0 + timeout
    pending = list(members)
    while pending:
        assert time.monotonic() < end, (
            f"route of {room!r} from {sender.name} on {sender.node.node_id} not warm within {timeout}s: "
            f"{[(m.name, m.node.node_id) for m in pending]} received no probe"
        )
        sender.emit("to-room", room, PROBE, token, ns=ns)
        deadline = time.monotonic() + 0.5
        while pending and time.monotonic() < deadline:
            pending = [
                m for m in pending
                if not any(a[:2] == (PROBE, token) for a in m.events("room-message", ns, raw=True))
            ]
            if pending:
                time.sleep(0.02)
    return time.monotonic() - t0


def fence(senders, everyone, ns: str = "/", timeout: float = PROPAGATION_TIMEOUT) -> None:
    """Each sender emits one fence to the sids of `everyone`; returns once every peer has all
    fences: nothing a sender emitted before its fence can still be on the way."""
    sids = [p.sid(ns) for p in everyone]
    tokens = []
    for s in senders:
        token = uuid.uuid4().hex
        tokens.append((s, token))
        s.emit("to-rooms", sids, [], FENCE, token, ns=ns)
    for s, token in tokens:
        for p in everyone:
            p.wait_for(
                "room-message", lambda a, t=token: a[:2] == (FENCE, t), ns=ns, timeout=timeout,
                what=f"(fence from {s.name} on {s.node.node_id})",
            )


def counter(items) -> collections.Counter:
    return collections.Counter(json.dumps(list(a), sort_keys=True) for a in items)


def assert_exactly(peer: Peer, expected: list[tuple], ev: str = "room-message", ns: str = "/") -> None:
    got = peer.events(ev, ns)
    assert counter(got) == counter(expected), (
        f"{peer.name} (sid {peer.sid(ns)} on node {peer.node.node_id}) received {ev!r} {got!r}, "
        f"expected exactly once each of {expected!r}"
    )


# ---------------------------------------------------------------------------------------
# 1. room broadcast: exactly the members, exactly once, from nodes with and without members
# ---------------------------------------------------------------------------------------


def test_room_broadcast_reaches_exactly_its_members_once(cluster, peers):
    A, B, C = cluster.start(3)
    a1, a2 = peers(A, "a1"), peers(A, "a2")
    b1, b2 = peers(B, "b1"), peers(B, "b2")
    c1, c2 = peers(C, "c1"), peers(C, "c2")
    everyone = [a1, a2, b1, b2, c1, c2]
    # room-all: members on all three nodes; room-ab: members on A and B only.
    for p in (a1, b1, c1):
        p.join("room-all")
    for p in (a1, b1):
        p.join("room-ab")
    # Emitters: a2 (node A holds members, a2 is not one), c2 (node C holds no member of
    # room-ab), b1 (a member emitting to its own room).
    t_warm = warm_room(a2, "room-all", [a1, b1, c1])
    print(f"\nroute of room-all from node A warm {t_warm:.3f}s after the last join ack")
    warm_room(c2, "room-ab", [a1, b1])
    warm_room(b1, "room-all", [a1, b1, c1])
    warm_room(a2, "room-ab", [a1, b1])

    a2.emit("to-room", "room-all", "m1", {"from": "a2"})
    c2.emit("to-room", "room-ab", "m2", {"from": "c2", "note": "emitter node holds no member"})
    b1.emit("to-room", "room-all", "m3", [1, 2, 3])
    a2.emit("to-room", "room-ab", "m4")
    c2.emit("to-room", "room-nobody", "m5")  # no member anywhere: nobody gets it
    fence([a2, c2, b1], everyone)

    m1 = ("m1", {"from": "a2"})
    m2 = ("m2", {"from": "c2", "note": "emitter node holds no member"})
    m3 = ("m3", [1, 2, 3])
    m4 = ("m4",)
    assert_exactly(a1, [m1, m2, m3, m4])
    assert_exactly(b1, [m1, m2, m3, m4])
    assert_exactly(c1, [m1, m3])
    for p in (a2, b2, c2):
        assert_exactly(p, [])


# ---------------------------------------------------------------------------------------
# 2. sid targeting, user rooms, exceptions
# ---------------------------------------------------------------------------------------


def test_sid_user_room_and_exception_targeting(cluster, peers):
    A, B, C = cluster.start(3)
    a1, a2 = peers(A, "a1"), peers(A, "a2")
    b1, b2 = peers(B, "b1"), peers(B, "b2")
    c1 = peers(C, "c1")
    everyone = [a1, a2, b1, b2, c1]
    for p in everyone:
        sid = p.sid()
        assert sid.startswith(p.node.node_id), f"sid {sid!r} of a socket on {p.node.node_id} must start with its node id"

    # sid targeting: to a sid on another node, on the same node, on the third node
    a1.emit("to-sid", b2.sid(), "for-b2", 1)
    a1.emit("to-sid", a2.sid(), "for-a2", 2)
    b1.emit("to-sid", c1.sid(), "for-c1", {"x": True})
    c1.emit("to-sid", a1.sid(), "for-a1")
    b2.wait_for("direct", lambda a: a == ("for-b2", 1))
    a2.wait_for("direct", lambda a: a == ("for-a2", 2))
    c1.wait_for("direct", lambda a: a == ("for-c1", {"x": True}))
    a1.wait_for("direct", lambda a: a == ("for-a1",))

    # user room: user:7 has one socket on A and one on B; the emit comes from C
    a2.join("user:7")
    b1.join("user:7")
    warm_room(c1, "user:7", [a2, b1])
    c1.emit("to-room", "user:7", "hello user 7")
    # room "team": a1, a2, b1, b2, c1
    for p in everyone:
        p.join("team")
    warm_room(a1, "team", everyone)
    # except by sid: everyone in team but b2
    a1.emit("to-rooms", ["team"], [b2.sid()], "team-except-b2")
    # except by room: team minus user:7 (a2, b1)
    a1.emit("to-rooms", ["team"], ["user:7"], "team-except-user7")
    # two rooms and two exceptions (a sid on another node and a room): union, each once
    c1.join("other")
    warm_room(b2, "team", everyone)
    b2.emit("to-rooms", ["team", "user:7"], ["user:7", c1.sid()], "team+user7-except")

    fence([a1, b1, c1, b2], everyone)
    for p in everyone:
        expected_direct = {
            "a1": [("for-a1",)], "a2": [("for-a2", 2)], "b2": [("for-b2", 1)], "c1": [("for-c1", {"x": True})],
        }.get(p.name, [])
        assert_exactly(p, expected_direct, ev="direct")
    expected = {
        "a1": [("team-except-b2",), ("team-except-user7",), ("team+user7-except",)],
        "a2": [("hello user 7",), ("team-except-b2",)],
        "b1": [("hello user 7",), ("team-except-b2",)],
        "b2": [("team-except-user7",), ("team+user7-except",)],
        "c1": [("team-except-b2",), ("team-except-user7",)],
    }
    for p in everyone:
        assert_exactly(p, expected[p.name])


def test_namespaces_are_separate_across_nodes(cluster, peers):
    A, B, _ = cluster.start(3)
    a1 = peers(A, "a1", namespaces=("/", "/custom"))
    b1 = peers(B, "b1", namespaces=("/", "/custom"))
    b2 = peers(B, "b2")
    b1.join("shared", ns="/custom")
    b2.join("shared", ns="/")
    assert a1.members("shared", ns="/custom") == [b1.sid("/custom")]
    assert a1.members("shared", ns="/") == [b2.sid("/")]
    warm_room(a1, "shared", [b1], ns="/custom")
    warm_room(a1, "shared", [b2], ns="/")
    a1.emit("to-room", "shared", "custom-only", ns="/custom")
    a1.emit("to-room", "shared", "main-only", ns="/")
    fence([a1], [a1, b1], ns="/custom")
    fence([a1], [a1, b1, b2], ns="/")
    assert_exactly(b1, [("custom-only",)], ns="/custom")
    assert_exactly(b1, [], ns="/")
    assert_exactly(b2, [("main-only",)], ns="/")


# ---------------------------------------------------------------------------------------
# 3. acks across nodes
# ---------------------------------------------------------------------------------------


def test_acks_across_nodes(cluster, peers):
    A, B, C = cluster.start(3)
    a1 = peers(A, "a1")
    b1 = peers(B, "b1", answer=lambda *args: ("answer-from-b1", list(args)))
    c1 = peers(C, "c1", answer=lambda *args: "answer-from-c1")
    a2 = peers(A, "a2", answer=lambda *args: {"local": list(args)})

    # one recipient on another node answers
    r = a1.call("call-sid", b1.sid(), "q", {"n": 1})
    assert r == {"responses": [["answer-from-b1", ["q", {"n": 1}]]], "recipients": 1, "timedOut": False}, r
    assert b1.events("ack-me") == [("q", {"n": 1})]
    # the third node, called from B
    r = b1.call("call-sid", c1.sid(), "from b")
    assert r == {"responses": [["answer-from-c1"]], "recipients": 1, "timedOut": False}, r
    # a recipient on the caller's own node (cluster mode)
    r = a1.call("call-sid", a2.sid(), "here")
    assert r == {"responses": [[{"local": ["here"]}]], "recipients": 1, "timedOut": False}, r
    # binary arguments both ways across nodes
    r = a1.call("call-sid", b1.sid(), b"\x00\x01bin\xff", {"b": b"\x02"})
    assert r == {
        "responses": [["answer-from-b1", [b"\x00\x01bin\xff", {"b": b"\x02"}]]], "recipients": 1, "timedOut": False
    }, r
    assert b1.events("ack-me")[-1] == (b"\x00\x01bin\xff", {"b": b"\x02"})

    # a room with recipients on two nodes plus the caller's node, all answer
    for p in (a2, b1, c1):
        p.join("user:9")
    _members_everywhere([a1], "user:9", [a2.sid(), b1.sid(), c1.sid()])
    warm_room(a1, "user:9", [a2, b1, c1])
    r = a1.call("call-sid", "user:9", "all")
    assert r["recipients"] == 3 and r["timedOut"] is False, r
    assert sorted(r["responses"], key=json.dumps) == sorted(
        [["answer-from-b1", ["all"]], ["answer-from-c1"], [{"local": ["all"]}]], key=json.dumps
    ), r


def test_ack_timeout_for_silent_client_on_another_node(cluster, peers):
    """A client that never answers: the caller gets timedOut true, no responses, and the
    recipient still counted (the packet did reach it)."""
    A, B, C = cluster.start(3)
    a1 = peers(A, "a1")
    b1 = peers(B, "b1", answer=lambda *args: "b1-answers")
    silent = peers.raw(C, "silent-c")
    results = []
    for i in range(4):
        t0 = time.monotonic()
        r = a1.call("call-sid", silent.sid(), "are you there", i, timeout=15)
        took = time.monotonic() - t0
        print(f"\ncall-sid to a silent client on another node answered after {took:.2f}s: {r}")
        results.append(r)
        assert r["timedOut"] is True and r["responses"] == [], r
        assert 2.5 <= took <= 12, f"timeout answer after {took:.2f}s, expected about 3 s"
    wait_until(lambda: sum('"ack-me"' in p for p in silent.packets) == 4, what="silent client got 4 ack-me")
    for pkt in (p for p in silent.packets if '"ack-me"' in p):
        assert pkt.startswith("42") and pkt[2].isdigit(), f"ack-me must carry an ack id: {pkt!r}"
    assert [r["recipients"] for r in results] == [1] * 4, (
        f"sent call-sid to the sid of a silent client on node {C.node_id} from {A.node_id} 4 times; the client "
        f"received every ack-me packet, but the answers were {results} (expected recipients 1 each time)"
    )

    # one answers (on B), one never does (on C): timedOut, one response, two recipients
    b1.join("mixed")
    silent_sid = silent.sid()
    assert a1.call("remote-join", {"rooms": [silent_sid]}, "mixed") is True
    _members_everywhere([a1], "mixed", [b1.sid(), silent_sid])
    r = a1.call("call-sid", "mixed", "mixed?", timeout=15)
    print(f"call-sid to a room with an answering and a silent client: {r}")
    assert r == {"responses": [["b1-answers"]], "recipients": 2, "timedOut": True}, r


def test_ack_timeout_for_silent_client_on_same_node_in_cluster_mode(cluster, peers):
    """The same timeout on the caller's own node: the caller must get its answer (timedOut)
    after about 3 s, as it does when the node runs without Redis."""
    (A,) = cluster.start(1)
    a1 = peers(A, "a1")
    silent = peers.raw(A, "silent-a")
    t0 = time.monotonic()
    try:
        r = a1.call("call-sid", silent.sid(), "local?", timeout=12)
    except socketio.exceptions.TimeoutError:
        r = None
    took = time.monotonic() - t0
    print(f"\ncall-sid to a silent client on the same cluster node: {r} after {took:.2f}s")
    assert r is not None, (
        f"sent ['call-sid', <sid of a silent client on the same node {A.node_id}>] with an ack; the server emits "
        f"ack-me with a 3 s ack timeout but the caller got no ack within 12 s (expected "
        f"{{'responses': [], 'recipients': 1, 'timedOut': True}} after ~3 s, as without --redis-url)"
    )
    assert r == {"responses": [], "recipients": 1, "timedOut": True}, r
    assert a1.call("message-with-ack", "ok") == "ok"


# ---------------------------------------------------------------------------------------
# 4. remote join / leave / disconnect, cluster-wide members
# ---------------------------------------------------------------------------------------


def _members_everywhere(askers, room, expected, ns="/"):
    expected = sorted(expected)
    last = {}

    def ok():
        for p in askers:
            last[p.name] = p.members(room, ns=ns)
        return all(v == expected for v in last.values())

    try:
        wait_until(ok, timeout=PROPAGATION_TIMEOUT, step=0.1, what=f"members({room!r})")
    except AssertionError:
        raise AssertionError(f"members({room!r}) expected {expected} from every node, last answers {last}") from None


def test_remote_join_leave_disconnect_and_members(cluster, peers):
    A, B, C = cluster.start(3)
    a1 = peers(A, "a1")
    b1, b2 = peers(B, "b1"), peers(B, "b2")
    c1, c2 = peers(C, "c1"), peers(C, "c2")
    askers = [a1, b1, c1]
    b1.join("user:1")
    c1.join("user:1")
    c2.join("user:1")
    b2.join("user:2")
    _members_everywhere(askers, "user:1", [b1.sid(), c1.sid(), c2.sid()])
    _members_everywhere(askers, "user:2", [b2.sid()])
    assert a1.members("empty-room") == []

    # remote join by sid (a socket on another node)
    assert a1.call("remote-join", {"rooms": [b2.sid()]}, "rj-sid") is True
    _members_everywhere(askers, "rj-sid", [b2.sid()])
    warm_room(c2, "rj-sid", [b2])
    c2.emit("to-room", "rj-sid", "to rj-sid")

    # remote join by room with an exception
    assert a1.call("remote-join", {"rooms": ["user:1"], "except": [c2.sid()]}, "rj-room") is True
    _members_everywhere(askers, "rj-room", [b1.sid(), c1.sid()])
    assert a1.call("remote-join", {"rooms": ["user:1", "user:2"]}, "rj-all") is True
    _members_everywhere(askers, "rj-all", [b1.sid(), b2.sid(), c1.sid(), c2.sid()])
    warm_room(a1, "rj-room", [b1, c1])
    a1.emit("to-room", "rj-room", "to rj-room")

    # remote leave by sid and by room
    assert a1.call("remote-leave", {"rooms": [c1.sid()]}, "rj-all") is True
    _members_everywhere(askers, "rj-all", [b1.sid(), b2.sid(), c2.sid()])
    assert b1.call("remote-leave", {"rooms": ["user:2"]}, "rj-all") is True
    _members_everywhere(askers, "rj-all", [b1.sid(), c2.sid()])

    fence([c2, a1], [a1, b1, b2, c1, c2])
    assert_exactly(b2, [("to rj-sid",)])
    assert_exactly(b1, [("to rj-room",)])
    assert_exactly(c1, [("to rj-room",)])
    assert_exactly(c2, [])
    assert_exactly(a1, [])

    # remote disconnect of a socket on another node
    c1_sid = c1.sid()
    assert a1.call("remote-disconnect", {"rooms": [c1_sid]}) is True
    ns, args = c1.wait_disconnected()
    # a namespace DISCONNECT from the server ("io server disconnect" in the JS client; the
    # python client names it reason.SERVER_DISCONNECT), not a transport close
    assert ns == "/" and args == (socketio.Client.reason.SERVER_DISCONNECT,), (ns, args)
    _members_everywhere(askers[:2], "user:1", [b1.sid(), c2.sid()])
    _members_everywhere(askers[:2], "rj-room", [b1.sid()])
    # by room, from the node that holds them: both sockets of user:1 (on B and C) go
    # by room: both remaining sockets of user:1 (on B and C), asked from B by a non-member
    assert b2.call("remote-disconnect", {"rooms": ["user:1"]}) is True
    b1.wait_disconnected()
    c2.wait_disconnected()
    _members_everywhere([a1], "user:1", [])
    assert b2.call("message-with-ack", "still here") == "still here"


def test_close_room_empties_it_on_every_node(cluster, peers):
    A, B, C = cluster.start(3)
    members = [peers(A, "a1"), peers(B, "b1"), peers(C, "c1")]
    for p in members:
        p.join("doc_1")
        p.join("keep")
    _members_everywhere(members, "doc_1", [p.sid() for p in members])
    assert members[2].call("close-room", "doc_1") is True
    _members_everywhere(members, "doc_1", [])
    _members_everywhere(members, "keep", [p.sid() for p in members])
    wait_until(
        lambda: all(cluster.rooms_of(n.node_id) == {"/\x00keep"} for n in (A, B, C)),
        timeout=PROPAGATION_TIMEOUT,
        what="doc_1 unregistered on every node, keep still registered",
    )


# ---------------------------------------------------------------------------------------
# 5. ordering
# ---------------------------------------------------------------------------------------


def test_ordering_of_200_messages_across_nodes(cluster, peers):
    A, B, C = cluster.start(3)
    sender = peers(A, "sender-a")
    members = [peers(A, "a1"), peers(B, "b1"), peers(B, "b2"), peers(C, "c1")]
    outsider = peers(C, "c-out")
    for m in members:
        m.join("ordered")
    warm_room(sender, "ordered", members)
    # Raw clients record packets in wire order; python-socketio's sync client runs each event
    # handler on its own thread, so its recorded order is not the order of arrival.
    raws = [RawPeer(node, f"raw-{node.node_id}") for node in (A, B, C)]
    try:
        for raw in raws:
            assert sender.call("remote-join", {"rooms": [raw.sid()]}, "ordered") is True
        _members_everywhere([sender], "ordered", [m.sid() for m in members] + [r.sid() for r in raws])

        def warm() -> bool:
            sender.emit("to-room", "ordered", "warm", -1)
            time.sleep(0.05)
            return all(any('"warm"' in p for p in raw.packets) for raw in raws)

        wait_until(warm, timeout=PROPAGATION_TIMEOUT, step=0.05, what="route to the raw members warm")
        n = 200
        for i in range(n):
            sender.emit("to-room", "ordered", "seq", i)
        def member_seqs(m) -> list[int]:
            return sorted(a[1] for a in m.events("room-message") if a and a[0] == "seq")

        for m in members:
            wait_until(lambda: len(member_seqs(m)) >= n, timeout=60, step=0.05, what=f"{m.name} got {n} messages")
            assert member_seqs(m) == list(range(n)), f"{m.name}: lost or duplicated"

        def seqs(raw) -> list[int]:
            return [json.loads(p[2:])[2] for p in list(raw.packets) if p.startswith('42["room-message","seq"')]

        for raw in raws:
            wait_until(lambda: len(seqs(raw)) >= n, timeout=60, step=0.05, what=f"{raw.name} got {n} messages")
            assert seqs(raw) == list(range(n)), f"{raw.name} on {raw.node.node_id}: out of order {seqs(raw)[:20]}..."
        fence([sender], members + [outsider])
        for m in members:
            assert member_seqs(m) == list(range(n)), f"{m.name}: duplicates after the fence"
        assert_exactly(outsider, [])
    finally:
        for raw in raws:
            raw.close()


# ---------------------------------------------------------------------------------------
# 6. a node killed with SIGKILL
# ---------------------------------------------------------------------------------------


def test_killed_node_is_reaped_within_ttl_and_heartbeat(cluster, peers):
    A, B, C = cluster.start(3, extra=("--user-pool", "true"))  # the pre-0.12 pool, reaped too
    a1, b1 = peers(A, "a1"), peers(B, "b1")
    c1, c2 = peers(C, "c1"), peers(C, "c2")
    for p in (a1, b1, c1, c2):
        p.join("k")
    c1.join("only-c")
    _members_everywhere([a1, b1], "k", [a1.sid(), b1.sid(), c1.sid(), c2.sid()])
    warm_room(a1, "k", [b1, c1, c2])
    r = cluster.r
    dead = C.node_id
    assert dead in r.smembers(f"{PREFIX}:nodes")
    assert r.exists(f"{PREFIX}:rooms:{dead}") and "/\x00k" in cluster.rooms_of(dead), cluster.rooms_of(dead)

    # The presence pools as an authenticated connect fills them: user "shared" on A and C.
    for peer, user in ((a1, "shared"), (b1, "ub"), (c1, "shared"), (c2, "uc")):
        assert peer.call("register-session", {"id": user, "name": user.upper()}) is True
    pools = {name: f"open-webui:{name}" for name in ("session_pool", "user_pool")}

    def session_sids() -> set:
        return set(r.command("HKEYS", pools["session_pool"]) or [])

    def user_pool() -> dict:
        flat = r.command("HGETALL", pools["user_pool"]) or []
        return {flat[i]: json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    assert session_sids() == {a1.sid(), b1.sid(), c1.sid(), c2.sid()}
    assert sorted(user_pool()["shared"]) == sorted([a1.sid(), c1.sid()])

    c1_sid = c1.sid()  # the client forgets its sid once the node is gone
    t0 = time.monotonic()
    C.kill()
    seen = {}

    def reaped() -> bool:
        now = time.monotonic() - t0
        if "nodes" not in seen and dead not in r.smembers(f"{PREFIX}:nodes"):
            seen["nodes"] = now
        if "rooms" not in seen and not r.exists(f"{PREFIX}:rooms:{dead}"):
            seen["rooms"] = now
        if "alive" not in seen and not r.exists(f"{PREFIX}:node:{dead}:alive"):
            seen["alive"] = now
        if "sessions" not in seen and not any(sid.startswith(dead) for sid in session_sids()):
            seen["sessions"] = now
        return "nodes" in seen and "rooms" in seen and "sessions" in seen

    bound = NODE_TTL_S + HEARTBEAT_S
    margin = 2.5
    wait_until(reaped, timeout=bound + 30, step=0.02, what=f"{dead} reaped from Redis")
    detected = max(seen["nodes"], seen["rooms"], seen["sessions"])
    print(
        f"\nSIGKILLed node {dead}: alive key gone after {seen.get('alive', float('nan')):.2f}s, "
        f"removed from {PREFIX}:nodes after {seen['nodes']:.2f}s, {PREFIX}:rooms:{dead} gone after "
        f"{seen['rooms']:.2f}s, its sessions gone from the pools after {seen['sessions']:.2f}s "
        f"(bound node-ttl + heartbeat = {bound:.1f}s, margin {margin}s)"
    )
    assert detected <= bound + margin, f"dead node reaped after {detected:.2f}s, bound {bound}s + {margin}s"
    assert not r.exists(f"{PREFIX}:node:{dead}:alive")
    # The pools hold exactly the survivors' sessions: "uc" is gone, "shared" keeps only A's sid.
    assert session_sids() == {a1.sid(), b1.sid()}
    assert user_pool() == {"shared": [a1.sid()], "ub": [b1.sid()]}

    # survivors: members no longer list its sids (this is immediate once reaped)
    t1 = time.monotonic()
    _members_everywhere([a1, b1], "k", [a1.sid(), b1.sid()])
    print(f"members() correct on both survivors {time.monotonic() - t1:.2f}s after the reap was seen")
    assert a1.members("only-c") == [] and b1.members("only-c") == []

    # ... and stop routing to it: an emit to k from A costs exactly one PUBLISH (to B)
    pubs = cluster.publishes_during(
        lambda: a1.emit("to-room", "k", "after-death"),
        lambda: b1.wait_for("room-message", lambda a: a == ("after-death",)),
    )
    print(f"PUBLISH for an emit to a room held by A, B and the dead C: {pubs}")
    assert pubs == 1, f"emit from A to room k (held by A, B, dead C) cost {pubs} PUBLISH, expected 1 (to B only)"
    # a room only the dead node held, and a dead node's sid: nothing to publish
    r.command("CONFIG", "RESETSTAT")
    a1.emit("to-room", "only-c", "nobody")
    a1.emit("to-sid", c1_sid, "ghost")
    assert a1.call("message-with-ack", "sync") == "sync"  # both emits were handled
    time.sleep(0.3)
    pubs = r.command_calls("publish")
    print(f"PUBLISH for emits to a room and a sid of the dead node: {pubs}")
    assert pubs == 0, f"emits to a room / sid held only by the dead node cost {pubs} PUBLISH, expected 0"
    # survivors still deliver to each other exactly once
    b1.emit("to-room", "k", "b-after-death")
    fence([a1, b1], [a1, b1])
    assert_exactly(a1, [("after-death",), ("b-after-death",)])
    assert_exactly(b1, [("after-death",), ("b-after-death",)])


# ---------------------------------------------------------------------------------------
# 7. Redis restart
# ---------------------------------------------------------------------------------------


def test_redis_restart_degrades_and_recovers(cluster, peers, redis_server):
    nodes = cluster.start(3)
    A, B, C = nodes
    a1, a2 = peers(A, "a1"), peers(A, "a2")
    b1, c1 = peers(B, "b1"), peers(C, "c1")
    everyone = [a1, a2, b1, c1]
    for p in everyone:
        p.join("before")
    warm_room(a1, "before", everyone)

    redis_server.stop()
    t_down = time.monotonic()
    wait_ready(nodes, status=503, timeout=30)
    print(f"\nall /ready -> 503 {time.monotonic() - t_down:.2f}s after redis-server was killed")
    for n in nodes:
        assert requests.get(n.base + "/health", timeout=5).status_code == 200
        assert n.alive(), f"node {n.node_id} exited when Redis went away"

    # local delivery on one node still works, including in a room joined while Redis is down
    a1.emit("to-room", "before", "local-during-outage")
    a2.wait_for("room-message", lambda a: a == ("local-during-outage",))
    a1.wait_for("room-message", lambda a: a == ("local-during-outage",))
    for p in everyone:
        p.join("late")
    a2.emit("to-room", "late", "late-local")
    a1.wait_for("room-message", lambda a: a == ("late-local",))
    assert a1.call("message-with-ack", "alive") == "alive"
    assert b1.call("message-with-ack", "alive") == "alive"
    time.sleep(1.0)  # a little real outage (several heartbeats)

    redis_server.start()
    t_up = time.monotonic()
    took = wait_ready(nodes, status=200, timeout=60)
    print(f"all /ready -> 200 {took:.2f}s after redis-server was restarted on the same port")
    assert took <= 30, f"recovery took {took:.2f}s"
    ids = {n.node_id for n in nodes}
    wait_until(lambda: cluster.r.smembers(f"{PREFIX}:nodes") >= ids, timeout=PROPAGATION_TIMEOUT,
               what="every node re-registered in the node set")
    for n in nodes:
        rooms = cluster.rooms_of(n.node_id)
        assert {"/\x00before", "/\x00late"} <= rooms, f"{n.node_id} did not re-register its rooms: {rooms}"

    # cross-node delivery resumes at once (no probes): a room from before and one joined during
    t_send = time.monotonic()
    a1.emit("to-room", "late", "late-cross")
    c1.emit("to-room", "before", "before-cross")
    for p in everyone:
        p.wait_for("room-message", lambda a: a == ("late-cross",), timeout=PROPAGATION_TIMEOUT)
        p.wait_for("room-message", lambda a: a == ("before-cross",), timeout=PROPAGATION_TIMEOUT)
    print(f"first cross-node emits after recovery delivered in {time.monotonic() - t_send:.2f}s; "
          f"redis restart to cross-node delivery {time.monotonic() - t_up:.2f}s")
    b1.emit("to-sid", c1.sid(), "direct-after")
    c1.wait_for("direct", lambda a: a == ("direct-after",))
    assert sorted(a1.members("late")) == sorted(p.sid() for p in everyone)

    fence([a1, a2, c1], everyone)
    assert_exactly(a1, [("local-during-outage",), ("late-local",), ("late-cross",), ("before-cross",)])
    assert_exactly(a2, [("local-during-outage",), ("late-local",), ("late-cross",), ("before-cross",)])
    # b1 and c1 were cut off during the outage: they get only what was sent after it
    assert_exactly(b1, [("late-cross",), ("before-cross",)])
    assert_exactly(c1, [("late-cross",), ("before-cross",)])


# ---------------------------------------------------------------------------------------
# 8. PUBLISH cost of one room emit
# ---------------------------------------------------------------------------------------


def test_publish_count_per_room_emit(cluster, peers):
    A, B, C = cluster.start(3)
    sender = peers(A, "sender-a")
    a1, b1, c1 = peers(A, "a1"), peers(B, "b1"), peers(C, "c1")
    a1.join("on-a")
    for p in (a1, b1):
        p.join("on-ab")
    for p in (a1, b1, c1):
        p.join("on-abc")
    b1.join("on-b")
    warm_room(sender, "on-ab", [a1, b1])
    warm_room(sender, "on-abc", [a1, b1, c1])
    warm_room(sender, "on-b", [b1])
    r = cluster.r

    # the cluster at rest publishes nothing (heartbeats are not publishes)
    r.command("CONFIG", "RESETSTAT")
    time.sleep(2 * HEARTBEAT_S + 0.2)
    idle = r.command_calls("publish")

    def one_emit(room, receivers, label):
        def settle():
            for p in receivers:
                p.wait_for("room-message", lambda a: a == (label,))
            sender.call("message-with-ack", "sync")

        return cluster.publishes_during(lambda: sender.emit("to-room", room, label), settle)

    figures = {
        "room held only by the emitting node": (one_emit("on-a", [a1], "e1"), 0),
        "room held by the emitting node and one other": (one_emit("on-ab", [a1, b1], "e2"), 1),
        "room held by all three nodes": (one_emit("on-abc", [a1, b1, c1], "e3"), 2),
        "room held only by one other node": (one_emit("on-b", [b1], "e4"), 1),
        "room with no member anywhere": (one_emit("on-nobody", [], "e5"), 0),
    }
    # a sid on another node needs no registry and one publish
    figures["sid on another node"] = (
        cluster.publishes_during(
            lambda: sender.emit("to-sid", c1.sid(), "e6"),
            lambda: c1.wait_for("direct", lambda a: a == ("e6",)),
        ),
        1,
    )
    print(f"\nPUBLISH with the cluster idle for {2 * HEARTBEAT_S + 0.2:.1f}s: {idle}")
    for what, (got, want) in figures.items():
        print(f"PUBLISH per emit, {what}: {got} (expected {want})")
    assert idle == 0, f"{idle} PUBLISH while idle"
    assert {k: v[0] for k, v in figures.items()} == {k: v[1] for k, v in figures.items()}
    fence([sender], [a1, b1, c1])
    assert_exactly(a1, [("e1",), ("e2",), ("e3",)])
    assert_exactly(b1, [("e2",), ("e3",), ("e4",)])
    assert_exactly(c1, [("e3",)])


# ---------------------------------------------------------------------------------------
# 9. serve mode: join / publish fan-out across three nodes
# ---------------------------------------------------------------------------------------


def _token(user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"id": user_id, "jti": uuid.uuid4().hex, "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


def test_serve_publish_fanout_across_three_nodes(cluster, peers):
    A, B, C = cluster.start(3, mode="serve", env={"WEBUI_SECRET_KEY": SECRET, "SWITCHBOARD_RELAY_EVENTS": "true"})

    def serve_peer(node, name):
        return peers(node, name, auth={"token": _token(name)})

    members = [serve_peer(A, "a1"), serve_peer(B, "b1"), serve_peer(B, "b2"), serve_peer(C, "c1")]
    outsiders = [serve_peer(A, "a-out"), serve_peer(C, "c-out")]
    publishers = [serve_peer(B, "pub-b"), serve_peer(C, "pub-c")]
    room = "fanout"
    for m in members:
        assert m.call("join", {"room": room}) is True
    # warm every publisher's route to every member's node
    for pub in publishers:
        token = uuid.uuid4().hex
        end = time.monotonic() + PROPAGATION_TIMEOUT
        pending = list(members)
        while pending:
            assert time.monotonic() < end, f"publish route from {pub.name} not warm: {[m.name for m in pending]}"
            assert pub.call("publish", {"room": room, "data": {PROBE: token}}) is True
            time.sleep(0.1)
            pending = [m for m in pending if not any(a == ({PROBE: token},) for a in m.events("message", raw=True))]
    n = 100
    for i in range(n):
        publishers[0].emit("publish", {"room": room, "data": {"seq": i, "by": "b"}})
        publishers[1].emit("publish", {"room": room, "data": {"seq": i, "by": "c"}})
    assert publishers[0].call("publish", {"room": room, "data": {"seq": "end", "by": "b"}}) is True
    assert publishers[1].call("publish", {"room": room, "data": {"seq": "end", "by": "c"}}) is True
    for m in members:
        m.wait_count("message", 2 * n + 2, timeout=60)
    # exactly once: one more message through the same paths, then nothing extra
    for pub in publishers:
        assert pub.call("publish", {"room": room, "data": {FENCE: pub.name}}) is True
    for m in members:
        for pub in publishers:
            m.wait_for("message", lambda a, p=pub.name: a == ({FENCE: p},))
    for m in members:
        got = [a[0] for a in m.events("message")]
        for by in ("b", "c"):
            seqs = [d["seq"] for d in got if d.get("by") == by]
            assert seqs == list(range(n)) + ["end"], f"{m.name} on {m.node.node_id} from {by}: {seqs[:10]}... ({len(seqs)})"
        assert len(got) == 2 * n + 2, f"{m.name}: {len(got)} messages"
    for o in outsiders + publishers:
        assert o.events("message") == [], f"{o.name} is not a member but got {o.events('message')[:3]}"
