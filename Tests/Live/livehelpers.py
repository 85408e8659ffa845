"""Helpers shared by the live (black-box) tests of the switchboard binary.

Everything here talks to a real server process on loopback: raw HTTP long-polling
(requests), raw WebSocket (websocket-client) and small background clients that keep a
session alive (they answer the server's Engine.IO pings) so that a test can prove the
server still serves a healthy client after some abuse.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import requests
import websocket
from websocket import ABNF

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# Generous: the machine has 2 cores and may be busy building Swift.
TIMEOUT = 10.0
READY_TIMEOUT = 60.0
READY_RE = re.compile(r"^listening on (\S+):(\d+)\s*$")

# Values of the conformance fixture (see the CLI contract).
PING_INTERVAL_MS = 300
PING_TIMEOUT_MS = 200
MAX_PAYLOAD = 1_000_000
CONNECT_TIMEOUT_MS = 1000

SEP = "\x1e"  # Engine.IO v4 polling payload separator


def binary_path() -> Path:
    env = os.environ.get("SWITCHBOARD_BIN")
    if env:
        return Path(env)
    return REPO / ".build" / "debug" / "switchboard"


_LIVE: "set[ServerProcess]" = set()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort (e.g. pytest-timeout ended the run): never leave a server behind."""
    for s in list(_LIVE):
        try:
            s.stop()
        except Exception:
            pass


def stop_process_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to the child's process group; SIGKILL when it has not exited within `timeout`."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


# A JWT: two base64url JSON segments and a signature (tokens start with `{"` encoded: `eyJ`).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_SECRET_OPTIONS = ("--api-key", "--jwt-secret")
_SECRET_ENV = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.I)


def secrets_in_logs(text: str, args: list[str], env: dict | None) -> list[str]:
    """What of a node's output must never be logged: any JWT, and the keys and secrets it was given
    (options named for them, environment variables named KEY, SECRET, TOKEN or PASSWORD)."""
    found = [f"a JWT ({m.group(0)[:12]}…)" for m in _JWT.finditer(text)]
    given = [args[i + 1] for i, a in enumerate(args[:-1]) if a in _SECRET_OPTIONS]
    given += [v for k, v in (env or {}).items() if _SECRET_ENV.search(k) and isinstance(v, str)]
    for value in given:
        if len(value) >= 8 and value in text:
            found.append(f"a configured secret ({value[:3]}…)")
    return found[:5]


class ServerProcess:
    """One switchboard process started with --port 0; the port comes from its ready line."""

    def __init__(self, args: list[str], name: str = "switchboard", env: dict | None = None):
        self.args = list(args)
        self.env = env
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.stdout_lines: list[str] = []
        self._stderr_file = tempfile.NamedTemporaryFile(
            prefix="switchboard-stderr-", suffix=".log", delete=False
        )
        self.stderr_path = Path(self._stderr_file.name)
        self.returncode_at_stop: int | None = None
        self.killed_on_purpose = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "ServerProcess":
        binary = binary_path()
        if not binary.exists():
            raise FileNotFoundError(
                f"switchboard binary not found at {binary} (set SWITCHBOARD_BIN or build it)"
            )
        cmd = [str(binary)] + self.args
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            start_new_session=True,
            env={**os.environ, **self.env} if self.env else None,
        )
        _LIVE.add(self)
        ready: "queue.Queue[str | None]" = queue.Queue()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            first = True
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.stdout_lines.append(line)
                if first and READY_RE.match(line):
                    first = False
                    ready.put(line)
            ready.put(None)

        threading.Thread(target=pump, name=f"{self.name}-stdout", daemon=True).start()
        try:
            line = ready.get(timeout=READY_TIMEOUT)
        except queue.Empty:
            self.stop()
            raise TimeoutError(
                f"no ready line within {READY_TIMEOUT}s from {cmd}; stdout={self.stdout_lines!r}; "
                f"stderr tail={self.stderr_tail()!r}"
            )
        if line is None:
            rc = self.proc.wait(timeout=5)
            raise RuntimeError(
                f"{cmd} exited (rc={rc}) without a ready line; stdout={self.stdout_lines!r}; "
                f"stderr tail={self.stderr_tail()!r}"
            )
        m = READY_RE.match(line)
        assert m, line
        self.host, self.port = m.group(1), int(m.group(2))
        assert self.port > 0, line
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kills the server on purpose (e.g. a crash test); teardown then does not report it."""
        assert self.proc is not None
        self.killed_on_purpose = True
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        stop_process_group(self.proc, timeout=10)
        self.returncode_at_stop = self.proc.returncode
        self._stderr_file.close()
        _LIVE.discard(self)
        leaked = secrets_in_logs("\n".join(self.stdout_lines) + "\n" + self.stderr_text(), self.args, self.env)
        assert not leaked, f"{self.name} logged secrets: {leaked}"
        return self.proc.returncode

    def cleanup_files(self) -> None:
        try:
            self.stderr_path.unlink()
        except FileNotFoundError:
            pass

    # -- introspection -------------------------------------------------------------------
    def stderr_text(self) -> str:
        if not self._stderr_file.closed:
            self._stderr_file.flush()
        try:
            return self.stderr_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, n: int = 4000) -> str:
        return self.stderr_text()[-n:]

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return -1

    # -- URLs -----------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://{self.host}:{self.port}"


# ---------------------------------------------------------------------------------------
# HTTP long-polling (mirrors the reference suites' fetch() calls)
# ---------------------------------------------------------------------------------------

TEXT_HEADERS = {"Content-Type": "text/plain;charset=UTF-8"}  # what fetch() sends for a string


def http_get(url: str, **kw) -> requests.Response:
    kw.setdefault("timeout", TIMEOUT)
    return requests.get(url, **kw)


def http_post(url: str, body: str | bytes, headers: dict | None = None, **kw) -> requests.Response:
    kw.setdefault("timeout", TIMEOUT)
    data = body.encode("utf-8") if isinstance(body, str) else body
    h = dict(TEXT_HEADERS)
    if headers:
        h.update(headers)
    return requests.post(url, data=data, headers=h, **kw)


def text(resp: requests.Response) -> str:
    """Body decoded as UTF-8 (requests would guess ISO-8859-1 for text/plain)."""
    return resp.content.decode("utf-8")


def json_body(resp: requests.Response):
    return json.loads(resp.content.decode("utf-8"))


class Polling:
    """Raw Engine.IO v4 long-polling session on one path (/engine.io/ or /socket.io/)."""

    def __init__(self, server: ServerProcess, path: str = "/engine.io/"):
        self.server = server
        self.path = path
        self.sid: str | None = None
        self.handshake: dict | None = None

    def url(self, sid: str | None = None, extra: str = "") -> str:
        u = f"{self.server.base}{self.path}?EIO=4&transport=polling"
        if sid:
            u += f"&sid={sid}"
        return u + extra

    def open(self) -> str:
        r = http_get(self.url())
        assert r.status_code == 200, (r.status_code, r.content)
        content = text(r)
        assert content.startswith("0"), content
        self.handshake = json.loads(content[1:])
        self.sid = self.handshake["sid"]
        return self.sid

    def get(self, **kw) -> requests.Response:
        return http_get(self.url(self.sid), **kw)

    def post(self, body: str | bytes, **kw) -> requests.Response:
        return http_post(self.url(self.sid), body, **kw)

    def post_ok(self, body: str | bytes) -> None:
        r = self.post(body)
        assert r.status_code == 200, (r.status_code, r.content)
        assert text(r) == "ok", r.content

    def poll_packets(self, want: int = 1, deadline: float = TIMEOUT) -> list[str]:
        """GET until `want` non-ping packets arrived; pings ("2") are answered with "3".

        The fixture pings every 300 ms, so a test that takes a little longer on a loaded
        machine may see a ping in any poll; the reference suites' exact-content assertions
        are applied to the remaining packets.
        """
        out: list[str] = []
        end = time.monotonic() + deadline
        while len(out) < want:
            assert time.monotonic() < end, f"only got {out!r} within {deadline}s"
            r = self.get()
            assert r.status_code == 200, (r.status_code, r.content, out)
            packets = text(r).split(SEP)
            pings = [p for p in packets if p == "2"]
            out.extend(p for p in packets if p != "2")
            for _ in pings:
                self.post_ok("3")
        return out


def decode_polling(payload: str) -> list[str]:
    return payload.split(SEP)


# ---------------------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------------------


class Closed(Exception):
    """The WebSocket was closed (close frame or TCP close)."""

    def __init__(self, how: str, code: int | None = None):
        super().__init__(how)
        self.how = how
        self.code = code


def ws_connect(url: str, timeout: float = TIMEOUT, **kw) -> websocket.WebSocket:
    kw.setdefault("enable_multithread", True)
    return websocket.create_connection(url, timeout=timeout, **kw)


def ws_recv(ws: websocket.WebSocket, timeout: float = TIMEOUT) -> str | bytes:
    """Next data frame: str for text, bytes for binary; raises Closed on close."""
    ws.settimeout(timeout)
    try:
        opcode, data = ws.recv_data()
    except websocket.WebSocketConnectionClosedException:
        raise Closed("tcp closed")
    except (ConnectionResetError, BrokenPipeError) as e:
        raise Closed(f"tcp reset: {e}")
    except websocket.WebSocketProtocolException as e:
        raise Closed(f"protocol error: {e}")
    if opcode == ABNF.OPCODE_TEXT:
        return data.decode("utf-8")
    if opcode == ABNF.OPCODE_BINARY:
        return bytes(data)
    if opcode == ABNF.OPCODE_CLOSE:
        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
        raise Closed("close frame", code)
    raise AssertionError(f"unexpected opcode {opcode}")


def ws_recv_msg(ws: websocket.WebSocket, timeout: float = TIMEOUT) -> str | bytes:
    """Next frame that is not an Engine.IO ping; pings are answered with "3"."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        assert left > 0, "timed out waiting for a message"
        m = ws_recv(ws, left)
        if m == "2":
            ws.send("3")
            continue
        return m


def ws_recv_n(ws, n: int, timeout: float = TIMEOUT) -> list[str | bytes]:
    return [ws_recv_msg(ws, timeout) for _ in range(n)]


def ws_wait_closed(ws: websocket.WebSocket, timeout: float = TIMEOUT, answer_pings: bool = False):
    """Read until the server closes the connection; returns (messages seen, Closed)."""
    seen: list = []
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {timeout}s; received {seen!r}")
        try:
            m = ws_recv(ws, left)
        except websocket.WebSocketTimeoutException:
            raise AssertionError(f"connection still open after {timeout}s; received {seen!r}")
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout}s; received {seen!r}")
        except Closed as c:
            return seen, c
        if answer_pings and m == "2":
            try:
                ws.send("3")
            except Exception:
                pass
        seen.append(m)


def ws_send_binary(ws: websocket.WebSocket, data: bytes) -> None:
    ws.send(data, opcode=ABNF.OPCODE_BINARY)


def ws_open_refused_or_closed(url: str, timeout: float = TIMEOUT) -> str:
    """For a WebSocket request the server must refuse: either the HTTP upgrade is refused
    (non-101 status) or the connection is closed before any Engine.IO open packet.
    Returns a description of what happened."""
    try:
        ws = ws_connect(url, timeout=timeout)
    except websocket.WebSocketBadStatusException as e:
        return f"refused with HTTP {e.status_code}"
    except (websocket.WebSocketConnectionClosedException, ConnectionResetError, BrokenPipeError) as e:
        return f"connection closed during handshake ({e!r})"
    try:
        seen, c = ws_wait_closed(ws, timeout)
    finally:
        ws.close()
    opens = [m for m in seen if isinstance(m, str) and m.startswith("0")]
    assert not opens, f"server opened a session it should have refused: {seen!r}"
    return f"upgraded, then closed ({c.how}, code={c.code}) after {seen!r}"


def eio_ws_open(server: ServerProcess, path: str = "/engine.io/", sid: str | None = None):
    url = f"{server.ws_base}{path}?EIO=4&transport=websocket"
    if sid:
        url += f"&sid={sid}"
    return ws_connect(url)


def eio_ws_session(server: ServerProcess, path: str = "/engine.io/"):
    """WebSocket-only Engine.IO session; returns (ws, handshake dict)."""
    ws = eio_ws_open(server, path)
    first = ws_recv(ws)
    assert isinstance(first, str) and first.startswith("0"), first
    return ws, json.loads(first[1:])


def sio_ws_connect(server: ServerProcess, nsp_packet: str = "40", path: str = "/socket.io/"):
    """Like initSocketIOConnection() of the reference suite: EIO open, CONNECT, auth event."""
    ws, hs = eio_ws_session(server, path)
    ws.send(nsp_packet)
    connect = ws_recv_msg(ws)
    assert isinstance(connect, str) and connect.startswith("40"), connect
    auth = ws_recv_msg(ws)
    assert isinstance(auth, str) and auth.startswith("42") and '"auth"' in auth, auth
    return ws


# ---------------------------------------------------------------------------------------
# Background clients: keep a session alive and prove the server still serves it
# ---------------------------------------------------------------------------------------


class KeepAliveClient:
    """A raw WebSocket client whose reader thread answers Engine.IO pings and queues the
    rest. `roundtrip()` proves the server still serves it."""

    def __init__(self, server: ServerProcess, kind: str = "socketio"):
        self.kind = kind
        self.server = server
        if kind == "socketio":
            self.ws = sio_ws_connect(server)
        elif kind == "engineio":
            self.ws, _ = eio_ws_session(server)
        else:
            raise ValueError(kind)
        self.inbox: "queue.Queue" = queue.Queue()
        self.closed = threading.Event()
        self.close_info: Closed | None = None
        self._n = 0
        self._stop = False
        self.pings: list[tuple[float, float]] = []  # (received, pong sent), monotonic
        self.started_at = time.monotonic()
        self.closed_at: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"keepalive-{kind}")
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                m = ws_recv(self.ws, timeout=3600)
            except Closed as c:
                self.close_info = c
                break
            except Exception as e:  # socket errors after close()
                self.close_info = Closed(repr(e))
                break
            if m == "2":
                t_recv = time.monotonic()
                try:
                    self.ws.send("3")
                except Exception:
                    pass
                self.pings.append((t_recv, time.monotonic()))
                continue
            self.inbox.put(m)
        self.closed_at = time.monotonic()
        self.closed.set()

    def ping_report(self) -> str:
        now = time.monotonic()
        if not self.pings:
            return "no ping received"
        worst = max(b - a for a, b in self.pings)
        gaps = [round(b[0] - a[0], 3) for a, b in zip(self.pings, self.pings[1:])][-8:]
        closed = (
            f"; connection lost {self.closed_at - self.pings[-1][0]:.3f}s after the last ping"
            if self.closed_at
            else ""
        )
        return (
            f"{len(self.pings)} pings answered in {now - self.started_at:.2f}s, slowest pong "
            f"{worst * 1000:.1f} ms after its ping; recent ping gaps {gaps}{closed}"
        )

    def roundtrip(self, timeout: float = TIMEOUT) -> None:
        assert not self.closed.is_set(), (
            f"healthy {self.kind} client was disconnected: {self.close_info!r} ({self.ping_report()})"
        )
        self._n += 1
        token = f"healthy-{self._n}-{time.monotonic_ns()}"
        if self.kind == "socketio":
            self.ws.send(json_packet("42", ["message", token]))
            expected = json_packet("42", ["message-back", token])
        else:
            self.ws.send("4" + token)
            expected = "4" + token
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            assert left > 0, f"no echo of {token!r} within {timeout}s"
            try:
                m = self.inbox.get(timeout=left)
            except queue.Empty:
                assert not self.closed.is_set(), f"healthy client disconnected: {self.close_info!r}"
                continue
            if m == expected:
                return

    def close(self) -> None:
        self._stop = True
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


def json_packet(prefix: str, value) -> str:
    """Socket.IO packet text with compact JSON, as JS JSON.stringify writes it."""
    return prefix + json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def wait_until(pred: Callable[[], bool], timeout: float = TIMEOUT, step: float = 0.02, what: str = "condition"):
    """For state that has no event to await (e.g. a client library's transport name).
    Returns the predicate's first truthy answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = pred()
        if r:
            return r
        time.sleep(step)
    raise AssertionError(f"{what} not reached within {timeout}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_http(host: str, port: int, request: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send raw bytes, read until the server closes or `timeout`; returns what was read."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
                if b"\r\n\r\n" in b"".join(chunks) and _complete_http(b"".join(chunks)):
                    break
        except socket.timeout:
            pass
        return b"".join(chunks)


def _complete_http(buf: bytes) -> bool:
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if m:
        return len(body) >= int(m.group(1))
    return False


# ---------------------------------------------------------------------------------------
# Redis (cluster tests): a private redis-server per test and a minimal RESP client
# ---------------------------------------------------------------------------------------


def redis_server_binary() -> str | None:
    import shutil

    return os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")


class RedisServer:
    """A throwaway `redis-server` on a free loopback port: no persistence, its own temp dir.
    `stop()` + `start()` restarts it on the same port with the same configuration (empty)."""

    def __init__(self, port: int | None = None):
        binary = redis_server_binary()
        if not binary:
            raise FileNotFoundError("redis-server not found on PATH (install redis-server or set REDIS_SERVER_BIN)")
        self.binary = binary
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="switchboard-redis-")
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(self.dir) / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.dir,
            "--logfile", str(self.log_path),
            "--protected-mode", "no",
        ]

    def start(self, timeout: float = 20.0) -> "RedisServer":
        assert self.proc is None or self.proc.poll() is not None, "redis-server already running"
        end = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(
                self.args(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )
            _LIVE_REDIS.add(self)
            # Ready when it answers PING; if it exited (port briefly busy), try again.
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    break
                try:
                    if RespClient(self.port, timeout=1.0).command("PING") == "PONG":
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            if time.monotonic() >= end:
                log = self.log_path.read_text("utf-8", "replace")[-2000:] if self.log_path.exists() else ""
                self.stop()
                raise TimeoutError(f"redis-server on port {self.port} not ready within {timeout}s; log:\n{log}")
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stops the server (SIGKILL: nothing to save anyway) and waits until it is gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        _LIVE_REDIS.discard(self)

    def cleanup(self) -> None:
        self.stop()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, timeout: float = TIMEOUT) -> "RespClient":
        return RespClient(self.port, timeout=timeout)


_LIVE_REDIS: "set[RedisServer]" = set()


@atexit.register
def _kill_leftover_redis() -> None:
    for r in list(_LIVE_REDIS):
        try:
            r.stop()
        except Exception:
            pass


class RedisError(Exception):
    pass


class RespClient:
    """Just enough RESP2 to inspect a Redis server from a test: one command at a time,
    reconnecting on demand. Bulk strings are decoded as UTF-8 (with surrogateescape)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT):
        self.addr = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = b""

    def command(self, *args):
        """One command; a connection found dead (e.g. Redis restarted) is reopened once."""
        reused = self.sock is not None
        try:
            return self._command(*args)
        except (OSError, EOFError):
            if not reused:
                raise
            return self._command(*args)

    def _command(self, *args):
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=self.timeout)
            self.buf = b""
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode("utf-8")
            out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
        try:
            self.sock.sendall(b"".join(out))
            return self._read()
        except (OSError, EOFError):
            self.close()
            raise

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("redis closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "surrogateescape")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError(f"unexpected RESP line {line!r}")

    # -- conveniences ---------------------------------------------------------------------
    def smembers(self, key: str) -> set[str]:
        return set(self.command("SMEMBERS", key))

    def exists(self, key: str) -> bool:
        return self.command("EXISTS", key) == 1

    def command_calls(self, name: str) -> int:
        """`calls` of one command in INFO commandstats (0 when it was not called)."""
        info = self.command("INFO", "commandstats")
        m = re.search(rf"^cmdstat_{name.lower()}:calls=(\d+)", info, re.M)
        return int(m.group(1)) if m else 0


HANDSHAKE_KEYS = ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"]


def endpoint_helpers(path: str):
    """`url`, `ws_url` and `init_long_polling_session` for the endpoint at `path`."""

    def url(server, query: str) -> str:
        return f"{server.base}{path}?{query}"

    def ws_url(server, query: str) -> str:
        return f"{server.ws_base}{path}?{query}"

    def init_long_polling_session(server) -> Polling:
        p = Polling(server, path)
        p.open()
        return p

    return url, ws_url, init_long_polling_session


# -- artifacts ------------------------------------------------------------------------------
ARTIFACTS = Path(os.environ.get("SWITCHBOARD_ARTIFACTS", HERE / ".cache" / "artifacts"))
REPORTED_ARTIFACTS: list[tuple[Path, str]] = []


def artifact_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def report_artifact(name: str, text: str | None = None) -> Path:
    """Keeps a test artifact (written by the caller at `artifact_path(name)`, or `text`) and lists
    it, with its text, in the run's summary."""
    path = artifact_path(name)
    if text is not None:
        path.write_text(text)
    REPORTED_ARTIFACTS.append((path, text or ""))
    return path
