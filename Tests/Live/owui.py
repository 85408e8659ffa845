"""Helpers for the Open WebUI live tests (docs/BACKEND.md): token minting, `serve` nodes on one
private redis-server, a recording python-socketio client, a raw client that never acks, the
backend HTTP API and the Redis pools.

Every test starts its own redis-server (conftest `redis_server`) and its own nodes (conftest
`servers`); the `owui` fixture below bundles them with a fake backend and closes every client
before the nodes are stopped.
"""

from __future__ import annotations

import collections
import json
import re
import socket
import threading
import time
import uuid
from typing import Callable

import jwt
import pytest
import redis
import requests
import socketio

from fakebackend import FakeBackend
from livehelpers import TIMEOUT, Closed, ServerProcess, eio_ws_open, ws_recv, ws_recv_msg, wait_until

SECRET = "owui-live-secret-0123456789abcdef-0123456789abcdef-0123456789abcdef"
API_KEY = "owui-live-api-key-0123456789"
WS_PATH = "/ws/socket.io"
PREFIX = "open-webui"
NODE_IDS = ("nodeA1", "nodeB2", "nodeC3", "nodeD4")
# Short cluster timings (heartbeat / TTL) so node starts and checks are quick; generous
# deadlines for everything awaited (2 cores, possibly busy building Swift).
NODE_ARGS = ["--heartbeat-interval", "200ms", "--node-ttl", "2s", "--log-level", "debug"]
PROPAGATION_TIMEOUT = 20.0
READY_TIMEOUT = 45.0
PROBE = "__probe__"
FENCE = "__fence__"
API_RE = re.compile(r"^api listening on (\S+):(\d+)\s*$")


# ---------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------


def mint(user_id: str | None, secret=SECRET, algorithm: str = "HS256", headers: dict | None = None,
         drop: tuple = (), **claims) -> str:
    """An Open WebUI-style token: {"id", "jti", "iat": now} plus `claims` (minus `drop`)."""
    body = {"id": user_id, "jti": uuid.uuid4().hex, "iat": int(time.time())}
    body.update(claims)
    for k in drop:
        body.pop(k, None)
    if user_id is None:
        body.pop("id", None)
    return jwt.encode(body, secret, algorithm=algorithm, headers=headers)


def unverified_claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# ---------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------


def api_base_of(node: ServerProcess) -> str:
    """`http://HOST:PORT` of the API: its own listener when the node printed
    `api listening on HOST:PORT`, else the main listener."""
    for line in list(node.stdout_lines):
        m = API_RE.match(line)
        if m:
            return f"http://{m.group(1)}:{m.group(2)}"
    return node.base


def ready_status(node) -> int | None:
    try:
        return requests.get(node.base + "/ready", timeout=3).status_code
    except requests.RequestException:
        return None


def wait_ready(nodes, timeout: float = READY_TIMEOUT) -> None:
    last: dict = {}

    def all_ready() -> bool:
        for n in nodes:
            last[n.node_id] = ready_status(n)
        return all(v == 200 for v in last.values())

    try:
        wait_until(all_ready, timeout=timeout, step=0.05, what="/ready == 200 on every node")
    except AssertionError:
        raise AssertionError(f"/ready did not become 200 on every node within {timeout}s; last: {last}") from None


def node_args(node_id: str, redis_url: str | None, secret: str | None, extra) -> list[str]:
    args = ["serve", "--host", "127.0.0.1", "--port", "0", "--path", WS_PATH, "--node-id", node_id, *NODE_ARGS]
    if redis_url:
        args += ["--redis-url", redis_url]
    if secret:
        args += ["--jwt-secret", secret]
    return args + list(extra)


def start_node(servers, redis_url: str | None, node_id: str, *extra: str, secret: str | None = SECRET,
               env: dict | None = None) -> ServerProcess:
    node = servers.start(*node_args(node_id, redis_url, secret, extra), name=f"serve-{node_id}", env=env)
    node.node_id = node_id
    node.api_base = api_base_of(node)
    return node


def start_nodes(servers, redis_server, n: int, *extra: str, secret: str | None = SECRET, env: dict | None = None,
                ids=NODE_IDS, per_node: dict | None = None) -> list[ServerProcess]:
    """`n` serve nodes on `redis_server`, all ready and listed in `switchboard:nodes`.
    `per_node[i]` adds flags to node i only."""
    nodes = []
    for i in range(n):
        more = list(extra) + list((per_node or {}).get(i, ()))
        nodes.append(start_node(servers, redis_server.url, ids[i], *more, secret=secret, env=env))
    wait_ready(nodes)
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    try:
        want = {node.node_id for node in nodes}
        wait_until(lambda: set(r.smembers("switchboard:nodes")) >= want, timeout=PROPAGATION_TIMEOUT,
                   what=f"switchboard:nodes lists {sorted(want)}")
    finally:
        r.close()
    return nodes


# ---------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------


def _has_marker(args, marker: str) -> bool:
    try:
        return marker in json.dumps(args, default=repr)
    except (TypeError, ValueError):
        return False


class Client:
    """A python-socketio client (WebSocket only, path /ws/socket.io) that records every event
    it receives (catch-all), its disconnects and its connect_error payloads.

    `answers={event: fn}` answers server-to-client calls (fn's return value is the ack).
    Events whose arguments contain the probe marker are left out of `events()` unless raw.
    (The sync client runs each handler on its own thread: the recorded order of events that
    arrive close together can differ from their wire order.)"""

    def __init__(self, node, name: str, token: str | None = None, auth="__token__",
                 answers: dict[str, Callable] | None = None):
        self.node = node
        self.name = name
        self.token = token
        self.auth = ({"token": token} if token is not None else None) if auth == "__token__" else auth
        self.sio = socketio.Client(reconnection=False, request_timeout=TIMEOUT)
        self.cond = threading.Condition()
        self.got: list[tuple[str, tuple]] = []
        self.disconnects: list[tuple] = []
        self.connect_errors: list[tuple] = []
        self.sio.on("*", self._any)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("connect_error", self._on_connect_error)
        for ev, fn in (answers or {}).items():
            self.sio.on(ev, self._answering(ev, fn))

    # -- handlers ---------------------------------------------------------------------------
    def _record(self, ev: str, args: tuple) -> None:
        with self.cond:
            self.got.append((ev, args))
            self.cond.notify_all()

    def _any(self, ev, *args):
        self._record(ev, args)

    def _answering(self, ev, fn):
        def handler(*args):
            self._record(ev, args)
            return fn(*args)

        return handler

    def _on_disconnect(self, *args):
        with self.cond:
            self.disconnects.append(args)
            self.cond.notify_all()

    def _on_connect_error(self, *args):
        with self.cond:
            self.connect_errors.append(args)
            self.cond.notify_all()

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> "Client":
        self.sio.connect(
            self.node.base,
            transports=["websocket"],
            socketio_path=WS_PATH,
            auth=self.auth,
            wait_timeout=TIMEOUT,
        )
        return self

    def connect_refused(self) -> dict:
        """Connects expecting a CONNECT_ERROR; returns its payload."""
        try:
            self.sio.connect(self.node.base, transports=["websocket"], socketio_path=WS_PATH,
                             auth=self.auth, wait_timeout=TIMEOUT)
        except socketio.exceptions.ConnectionError:
            pass
        else:
            sid = self.sio.get_sid("/")
            self.close()
            raise AssertionError(f"{self.name}: the CONNECT was accepted (sid {sid}), expected a refusal")
        with self.cond:
            assert self.connect_errors, f"{self.name}: connection failed without a CONNECT_ERROR packet"
            (payload, *_rest) = self.connect_errors[0] or (None,)
        return payload

    @property
    def sid(self) -> str:
        return self.sio.get_sid("/")

    @property
    def connected(self) -> bool:
        return self.sio.connected

    def close(self) -> None:
        try:
            if self.sio.connected:
                self.sio.disconnect()
        except Exception:
            pass
        try:
            self.sio.eio.disconnect()
        except Exception:
            pass

    # -- sending ----------------------------------------------------------------------------
    @staticmethod
    def _data(args: tuple):
        if not args:
            return None
        if len(args) == 1:
            return args[0]
        return tuple(args)

    def emit(self, ev: str, *args) -> None:
        self.sio.emit(ev, self._data(args))

    def call(self, ev: str, *args, timeout: float = TIMEOUT):
        """Emit with an ack; returns None (empty ack), the argument, or a tuple of them."""
        return self.sio.call(ev, self._data(args), timeout=timeout)

    # -- what arrived -----------------------------------------------------------------------
    def events(self, ev: str, raw: bool = False) -> list[tuple]:
        with self.cond:
            items = [a for (e, a) in self.got if e == ev]
        if raw:
            return items
        return [a for a in items if not _has_marker(a, PROBE)]

    def all_events(self) -> list[tuple[str, tuple]]:
        with self.cond:
            return list(self.got)

    def wait_for(self, ev: str, pred=lambda args: True, timeout: float = TIMEOUT, what: str = "") -> tuple:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for e, args in self.got:
                    if e == ev and pred(args):
                        return args
                left = end - time.monotonic()
                if left <= 0:
                    seen = [a for (e, a) in self.got if e == ev][-8:]
                    raise AssertionError(
                        f"{self.name} (on {getattr(self.node, 'node_id', '?')}): no {ev!r} {what} within "
                        f"{timeout}s; last {ev!r} seen: {seen!r}"
                    )
                self.cond.wait(min(left, 0.25))

    def seen(self, ev: str, pred=lambda args: True) -> bool:
        with self.cond:
            return any(e == ev and pred(a) for (e, a) in self.got)

    def wait_disconnected(self, timeout: float = TIMEOUT) -> tuple:
        end = time.monotonic() + timeout
        with self.cond:
            while not self.disconnects:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: not disconnected within {timeout}s")
                self.cond.wait(min(left, 0.25))
            return self.disconnects[0]


class RawClient:
    """A raw Socket.IO client over WebSocket on /ws/socket.io that connects with `auth` and never
    answers a server ack request; it answers Engine.IO pings and records the packets it gets."""

    def __init__(self, node, name: str, auth: dict | None = None):
        self.node = node
        self.name = name
        self.ws = eio_ws_open(node, WS_PATH + "/")
        first = ws_recv(self.ws)
        assert isinstance(first, str) and first.startswith("0"), first
        self.ws.send("40" + (json.dumps(auth, separators=(",", ":")) if auth is not None else ""))
        reply = ws_recv_msg(self.ws)
        assert isinstance(reply, str) and reply.startswith("40{"), f"{name}: CONNECT answered {reply!r}"
        self.sid = json.loads(reply[2:])["sid"]
        self.cond = threading.Condition()
        self.packets: list[str | bytes] = []
        self.closed = threading.Event()
        self._stop = False
        threading.Thread(target=self._run, daemon=True, name=f"raw-{name}").start()

    def _run(self) -> None:
        while not self._stop:
            try:
                m = ws_recv(self.ws, timeout=3600)
            except (Closed, Exception):
                break
            if m == "2":
                try:
                    self.ws.send("3")
                except Exception:
                    pass
                continue
            with self.cond:
                self.packets.append(m)
                self.cond.notify_all()
        self.closed.set()

    def wait_packet(self, pred, timeout: float = TIMEOUT) -> str:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for p in self.packets:
                    if isinstance(p, str) and pred(p):
                        return p
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: no matching packet within {timeout}s; got {self.packets[-8:]!r}")
                self.cond.wait(min(left, 0.25))

    def close(self) -> None:
        self._stop = True
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


# ---------------------------------------------------------------------------------------
# Backend HTTP API
# ---------------------------------------------------------------------------------------


def api(node, method: str, path: str, body=None, key: str | None = API_KEY, raw: bytes | None = None,
        headers: dict | None = None, timeout: float = TIMEOUT, base: str | None = None) -> requests.Response:
    """One API request to `node` (its API listener); `body` is sent as JSON, `raw` as is."""
    url = (base or getattr(node, "api_base", node.base)) + path
    h = {}
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    data = None
    if raw is not None:
        data = raw
        h["Content-Type"] = "application/json"
    elif body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if headers:
        h.update(headers)
    return requests.request(method, url, data=data, headers=h, timeout=timeout)


def api_ok(node, method: str, path: str, body=None, status: int = 200, **kw):
    """API request that must answer `status` with a JSON body; returns the parsed body."""
    r = api(node, method, path, body, **kw)
    assert r.status_code == status, f"{method} {path} {body!r}: HTTP {r.status_code} {r.content[:500]!r}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), (
        f"{method} {path}: Content-Type {r.headers.get('Content-Type')!r}"
    )
    try:
        return json.loads(r.content.decode("utf-8"))
    except ValueError:
        raise AssertionError(f"{method} {path}: answer is not JSON: {r.content[:500]!r}") from None


def raw_request(host: str, port: int, head: bytes, body: bytes = b"", timeout: float = TIMEOUT) -> tuple[int, bytes]:
    """Sends a raw HTTP request (the body in chunks; the server may answer and close before
    reading it all) and returns (status, body) of the answer."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(head)
            for i in range(0, len(body), 65536):
                s.sendall(body[i:i + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
                buf = b"".join(chunks)
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    m = re.search(rb"(?i)content-length:\s*(\d+)", buf[:head_end])
                    if m and len(buf) - head_end - 4 >= int(m.group(1)):
                        break
        except (socket.timeout, ConnectionResetError):
            pass
    buf = b"".join(chunks)
    m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
    assert m, f"no HTTP answer: {buf[:300]!r}"
    return int(m.group(1)), buf.partition(b"\r\n\r\n")[2]


# ---------------------------------------------------------------------------------------
# Redis pools
# ---------------------------------------------------------------------------------------


def hash_json(r: redis.Redis, key: str) -> dict:
    return {k: json.loads(v) for k, v in r.hgetall(key).items()}


def bridge_subscribers(r: redis.Redis, channel: str = "socketio") -> int:
    return dict(r.pubsub_numsub(channel)).get(channel, 0)


# ---------------------------------------------------------------------------------------
# The test environment: redis, nodes, fake backend, clients
# ---------------------------------------------------------------------------------------


class Env:
    def __init__(self, servers, redis_server):
        self.servers = servers
        self.redis_server = redis_server
        self.r = redis.Redis(port=redis_server.port, decode_responses=True)
        self.backend = FakeBackend(SECRET).start()
        self.clients: list = []

    def start(self, n: int = 3, *extra: str, backend: bool = True, api_key: str | None = API_KEY,
              **kw) -> list[ServerProcess]:
        flags = list(extra)
        if backend:
            flags += ["--backend-url", self.backend.url]
        if api_key is not None:
            flags += ["--api-key", api_key]
        return start_nodes(self.servers, self.redis_server, n, *flags, **kw)

    def client(self, node, name: str, user: str | None = None, token: str | None = None, connect: bool = True,
               **kw) -> Client:
        if token is None and user is not None:
            token = mint(user)
        c = Client(node, name, token=token, **kw)
        self.clients.append(c)
        if connect:
            c.connect()
        return c

    def raw_client(self, node, name: str, user: str | None = None, auth: dict | None = None) -> RawClient:
        if auth is None and user is not None:
            auth = {"token": mint(user)}
        c = RawClient(node, name, auth)
        self.clients.append(c)
        return c

    # pools
    def session_pool(self, prefix: str = PREFIX) -> dict:
        return hash_json(self.r, f"{prefix}:session_pool")

    def user_pool(self, prefix: str = PREFIX) -> dict:
        return hash_json(self.r, f"{prefix}:user_pool")

    def usage_pool(self, prefix: str = PREFIX) -> dict:
        return hash_json(self.r, f"{prefix}:usage_pool")

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.backend.stop()
        self.r.close()


@pytest.fixture
def owui(servers, redis_server):
    e = Env(servers, redis_server)
    try:
        yield e
    finally:
        e.close()


# ---------------------------------------------------------------------------------------
# Delivery helpers
# ---------------------------------------------------------------------------------------


def warm(send: Callable[[str], None], receivers: list[Client], event: str, timeout: float = PROPAGATION_TIMEOUT,
         what: str = "") -> None:
    """A join is acknowledged before other nodes learn that this node holds the room: send
    probes (`send(marker)` must put the marker string into the event's arguments) until every
    receiver got one. Probes are left out of Client.events()."""
    pending = list(receivers)
    end = time.monotonic() + timeout
    while pending:
        assert time.monotonic() < end, f"route {what} not warm within {timeout}s: {[c.name for c in pending]} got no probe"
        tag = f"{PROBE}{uuid.uuid4().hex[:8]}"
        send(tag)
        step_end = time.monotonic() + 0.3
        for c in list(pending):
            left = step_end - time.monotonic()
            try:
                c.wait_for(event, lambda a: _has_marker(a, PROBE), timeout=max(left, 0.01))
                pending.remove(c)
            except AssertionError:
                pass


def counter_of(items) -> collections.Counter:
    return collections.Counter(json.dumps(i, sort_keys=True, default=repr) for i in items)
