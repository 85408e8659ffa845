"""An in-process stand-in for the Open WebUI backend the node talks to (docs/BACKEND.md):

- `GET /api/v1/auths/`     → the token's user `{"id", "name", "role": "user"}` (401 on a bad token;
  HS256 verified with the test secret). `names[user_id]` overrides the name, `user_override`
  replaces the whole answer (e.g. a user object with another id).
- `GET /api/v1/channels/`  → `[{"id": c} ...]` from `channels[user_id]`.
- `POST /api/v1/socket/events` → records every forwarded event (parsed body, Authorization
  header, arrival time) in arrival order and answers `forward_answer` (JSON; default `{"ok": true}`;
  `FORWARD_EMPTY` answers an empty body).

Modes (global, or per path with `set_mode(mode, path)`): `normal`, `slow` (sleeps
`slow_seconds` — longer than the node's --backend-timeout — before answering), `failing`
(HTTP 500). Requests are counted per path (to test the node's user cache). The three paths
can be changed (`user_path`, `channels_path`, `forward_path`) to test the node's path flags.

ThreadingHTTPServer on 127.0.0.1, port 0, in a daemon thread: `start()` / `stop()`.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

USER_PATH = "/api/v1/auths/"
CHANNELS_PATH = "/api/v1/channels/"
FORWARD_PATH = "/api/v1/socket/events"

FORWARD_EMPTY = object()  # forward_answer value: 200 with an empty body


def _norm(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/") or "/"


class FakeBackend:
    def __init__(self, secret: str, slow_seconds: float = 4.0):
        self.secret = secret
        self.slow_seconds = slow_seconds
        self.channels: dict[str, list[str]] = {}
        self.names: dict[str, str] = {}
        self.user_override: dict | None = None
        self.user_extra: dict = {}  # more fields in every user object
        self.forward_answer = {"ok": True}
        # the paths served (the node's --backend-user-path / --backend-channels-path / --forward-path)
        self.user_path = USER_PATH
        self.channels_path = CHANNELS_PATH
        self.forward_path = FORWARD_PATH
        self.mode = "normal"
        self.path_modes: dict[str, str] = {}
        self.cond = threading.Condition()
        self.counts: collections.Counter = collections.Counter()
        self.done: collections.Counter = collections.Counter()  # requests answered (or given up)
        self.requests: list[dict] = []  # every request: {"method", "path", "authorization", "t" (arrival)}
        self.events: list[dict] = []  # forwarded events: {"body", "authorization", "raw"}
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "FakeBackend":
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                backend._handle(self, "GET")

            def do_POST(self):
                backend._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-backend", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- configuration ---------------------------------------------------------------------------
    def set_mode(self, mode: str, path: str | None = None) -> None:
        assert mode in ("normal", "slow", "failing"), mode
        with self.cond:
            if path is None:
                self.mode = mode
                self.path_modes.clear()
            else:
                self.path_modes[_norm(path)] = mode

    def count(self, path: str) -> int:
        with self.cond:
            return self.counts[_norm(path)]

    def forwarded(self) -> list[dict]:
        """Bodies of the forwarded events so far, in arrival order."""
        with self.cond:
            return [e["body"] for e in self.events]

    def wait_forwarded(self, n: int, timeout: float = 10.0, pred=lambda body: True) -> list[dict]:
        """Waits until at least `n` forwarded bodies matching `pred` arrived; returns them."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [e["body"] for e in self.events if pred(e["body"])]
                if len(got) >= n:
                    return got
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"fake backend: {len(got)} of {n} forwarded events within {timeout}s; "
                        f"all so far: {[e['body'] for e in self.events][-10:]!r}"
                    )
                self.cond.wait(min(left, 0.25))

    # -- request handling ------------------------------------------------------------------------
    def done_count(self, path: str) -> int:
        with self.cond:
            return self.done[_norm(path)]

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        try:
            self._answer(h, method)
        finally:
            with self.cond:
                self.done[_norm(h.path)] += 1
                self.cond.notify_all()

    def _answer(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = _norm(h.path)
        auth = h.headers.get("Authorization", "")
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        with self.cond:
            self.counts[path] += 1
            self.requests.append({"method": method, "path": path, "authorization": auth, "t": time.monotonic()})
            mode = self.path_modes.get(path, self.mode)
        if method == "POST" and path == _norm(self.forward_path):
            # recorded on arrival, whatever the mode
            try:
                body = json.loads(raw.decode("utf-8"))
            except ValueError:
                body = {"__unparseable__": raw.decode("utf-8", "replace")}
            with self.cond:
                self.events.append({"body": body, "authorization": auth, "raw": raw, "t": time.monotonic()})
                self.cond.notify_all()
        if mode == "slow":
            self._stopping.wait(self.slow_seconds)
        if mode == "failing":
            return self._reply(h, 500, {"detail": "backend failure (test)"})

        if method == "GET" and path == _norm(self.user_path):
            claims = self._claims(auth)
            if claims is None:
                return self._reply(h, 401, {"detail": "invalid token"})
            uid = str(claims.get("id", claims.get("sub", "")))
            with self.cond:
                override = self.user_override
                name = self.names.get(uid, claims.get("name", uid))
            if override is not None:
                return self._reply(h, 200, override)
            with self.cond:
                extra = dict(self.user_extra)
            return self._reply(h, 200, {"id": uid, "name": name, "role": "user", **extra})
        if method == "GET" and path == _norm(self.channels_path):
            claims = self._claims(auth)
            if claims is None:
                return self._reply(h, 401, {"detail": "invalid token"})
            uid = str(claims.get("id", claims.get("sub", "")))
            with self.cond:
                chans = list(self.channels.get(uid, []))
            return self._reply(h, 200, [{"id": c} for c in chans])
        if method == "POST" and path == _norm(self.forward_path):
            with self.cond:
                answer = self.forward_answer
            if answer is FORWARD_EMPTY:
                return self._reply_raw(h, 200, b"")
            return self._reply(h, 200, answer)
        return self._reply(h, 404, {"detail": "not found"})

    def _claims(self, auth: str) -> dict | None:
        if not auth.startswith("Bearer "):
            return None
        token = auth[len("Bearer "):].strip()
        try:
            return jwt.decode(token, self.secret, algorithms=["HS256"], options={"verify_aud": False})
        except Exception:
            return None

    def _reply(self, h: BaseHTTPRequestHandler, status: int, body) -> None:
        self._reply_raw(h, status, json.dumps(body).encode())

    @staticmethod
    def _reply_raw(h: BaseHTTPRequestHandler, status: int, data: bytes) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the node gave up (timeout): nothing to answer to
