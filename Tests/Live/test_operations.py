"""Operations of a live node: systemd notifications and socket activation, readiness through Redis,
the drain on SIGTERM, key reload on SIGHUP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import requests
import socketio

from livehelpers import READY_RE, RedisServer, binary_path, wait_until
from owui import SECRET, mint

TIMEOUT = 10.0


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; records every message in order."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sb-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def lines(self, prefix: str) -> list[str]:
        return [m for (_, m) in list(self.messages) if m.startswith(prefix)]

    def first_index(self, line: str) -> int:
        return next(i for i, (_, m) in enumerate(list(self.messages)) if m == line)

    def close(self):
        self._stop = True
        self.sock.close()
        self.thread.join(timeout=2)


def client(node, token: str | None = None) -> socketio.Client:
    sio = socketio.Client(reconnection=False, request_timeout=TIMEOUT)
    sio.connect(node.base, socketio_path="/ws/socket.io", transports=["websocket"],
                auth={"token": token} if token else None, wait_timeout=TIMEOUT)
    return sio


def test_systemd_ready_watchdog_status_and_stopping_in_order(servers, redis_server):
    notify = NotifySocket()
    try:
        node = servers.start(
            "serve", "--host", "127.0.0.1", "--port", "0", "--redis-url", redis_server.url,
            "--drain-window", "300ms", "--heartbeat-interval", "200ms", "--node-ttl", "1s",
            env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000", "WEBUI_SECRET_KEY": SECRET},
        )
        wait_until(lambda: notify.lines("READY=1"), timeout=TIMEOUT, what="READY=1")
        wait_until(lambda: len(notify.lines("WATCHDOG=1")) >= 3, timeout=TIMEOUT, what="three watchdog pings")
        wait_until(lambda: any("connections" in s for s in notify.lines("STATUS=")), timeout=TIMEOUT, what="STATUS")
        # READY only once the node answers /ready.
        assert requests.get(node.base + "/ready", timeout=TIMEOUT).status_code == 200
        # Pings come at half of WatchdogSec (400 ms → about every 200 ms).
        times = [t for (t, m) in list(notify.messages) if m == "WATCHDOG=1"]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps) < 0.4, f"watchdog pings too far apart: {gaps}"
        node.proc.send_signal(signal.SIGTERM)
        node.proc.wait(timeout=TIMEOUT)
        node.killed_on_purpose = True
        assert notify.lines("STOPPING=1"), [m for _, m in notify.messages]
        assert notify.first_index("READY=1") < notify.first_index("STOPPING=1")
        assert node.proc.returncode == 0, node.stderr_tail()
    finally:
        notify.close()


def test_socket_activation_uses_the_inherited_listening_socket(tmp_path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    fd = listener.fileno()

    def as_fd_3():
        os.dup2(fd, 3)
        os.set_inheritable(3, True)

    # LISTEN_PID must be the node's own pid: the shell sets it, then becomes the node.
    cmd = ["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh", str(binary_path()),
           "serve", "--host", "127.0.0.1", "--port", "1"]
    stderr = open(tmp_path / "stderr.log", "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, preexec_fn=as_fd_3, close_fds=False,
                            start_new_session=True)
    try:
        line = proc.stdout.readline().decode().strip()
        m = READY_RE.match(line)
        assert m and int(m.group(2)) == port, (line, (tmp_path / "stderr.log").read_text()[-2000:])
        listener.close()  # only the node holds the socket now
        r = requests.get(f"http://127.0.0.1:{port}/health", timeout=TIMEOUT)
        assert r.status_code == 200 and r.text == "ok"
        sio = socketio.Client(reconnection=False)
        sio.connect(f"http://127.0.0.1:{port}", socketio_path="/ws/socket.io", transports=["websocket"])
        assert sio.connected
        sio.disconnect()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=TIMEOUT)
        stderr.close()


def test_readiness_follows_redis(servers, redis_server):
    node = servers.start(
        "serve", "--host", "127.0.0.1", "--port", "0", "--redis-url", redis_server.url,
        "--heartbeat-interval", "200ms", "--node-ttl", "1s", "--ready-deadline", "300ms",
    )
    ready = lambda: requests.get(node.base + "/ready", timeout=TIMEOUT)  # noqa: E731
    wait_until(lambda: ready().status_code == 200, timeout=TIMEOUT, what="ready with Redis")
    assert requests.get(node.base + "/health", timeout=TIMEOUT).status_code == 200
    port = redis_server.port
    redis_server.stop()
    wait_until(lambda: ready().status_code == 503, timeout=TIMEOUT, what="not ready once Redis is gone")
    assert "redis" in ready().text
    # Alive all along, and clients can still connect (local delivery goes on).
    assert requests.get(node.base + "/health", timeout=TIMEOUT).status_code == 200
    revived = RedisServer(port=port).start()
    try:
        wait_until(lambda: ready().status_code == 200, timeout=20, what="ready again once Redis is back")
    finally:
        revived.cleanup()


def test_drain_spreads_closes_refuses_new_sessions_and_cleans_the_pools(servers, redis_server):
    window = 2.0
    node = servers.start(
        "serve", "--host", "127.0.0.1", "--port", "0", "--redis-url", redis_server.url,
        "--heartbeat-interval", "200ms", "--node-ttl", "1s", "--drain-window", f"{int(window * 1000)}ms",
        env={"WEBUI_SECRET_KEY": SECRET},
    )
    wait_until(lambda: requests.get(node.base + "/ready", timeout=TIMEOUT).status_code == 200, what="ready")
    closed_at: dict[int, float] = {}
    clients = []
    for i in range(20):
        sio = client(node, mint(f"drain-{i}"))
        sio.on("disconnect", (lambda i: lambda *a: closed_at.setdefault(i, time.monotonic()))(i))
        clients.append(sio)
    r = redis_server.client()
    wait_until(lambda: len(r.command("HKEYS", "open-webui:session_pool")) == 20, what="20 sessions in the pool")
    started = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    node.killed_on_purpose = True
    # Not ready at once, and no new sessions.
    wait_until(lambda: requests.get(node.base + "/ready", timeout=TIMEOUT).status_code == 503, timeout=1.0,
               what="not ready while draining")
    node.proc.wait(timeout=window + 5)
    exited = time.monotonic() - started
    assert node.proc.returncode == 0, node.stderr_tail()
    wait_until(lambda: len(closed_at) == 20, timeout=2, what="every client closed")
    offsets = sorted(t - started for t in closed_at.values())
    assert offsets[-1] <= window + 0.5, offsets
    assert offsets[-1] - offsets[0] >= window / 4, f"closes not spread over the window: {offsets}"
    assert exited <= window + 2.0, exited
    assert r.command("HKEYS", "open-webui:session_pool") == []
    assert r.command("HKEYS", "open-webui:user_pool") == []
    assert r.command("SMEMBERS", "switchboard:nodes") == []
    assert "server_shutdown" in node.stderr_text()


def test_new_sessions_are_refused_while_draining(servers):
    node = servers.start("serve", "--host", "127.0.0.1", "--port", "0", "--drain-window", "3s")
    keep = client(node)  # keeps the drain going for a while
    session = requests.Session()
    assert session.get(node.base + "/ws/socket.io/?EIO=4&transport=polling", timeout=TIMEOUT).status_code == 200
    node.proc.send_signal(signal.SIGTERM)
    node.killed_on_purpose = True

    def refused() -> bool:
        try:
            # An existing keep-alive HTTP connection survives the listener's close.
            r = session.get(node.base + "/ws/socket.io/?EIO=4&transport=polling", timeout=TIMEOUT)
        except requests.ConnectionError:
            return False
        return r.status_code == 503 and "shutting down" in r.text

    wait_until(refused, timeout=2, what="a new polling session refused with 503")
    keep.disconnect()
    node.proc.wait(timeout=10)


def test_sighup_reloads_the_jwt_secret_without_dropping_connections(servers, tmp_path):
    first, second = SECRET, "rotated-" + SECRET
    secret_file = tmp_path / "secret"
    secret_file.write_text(first + "\n")
    node = servers.start(
        "serve", "--host", "127.0.0.1", "--port", "0", "--auth-mode", "strict",
        "--jwt-secret-file", str(secret_file),
    )
    old = client(node, mint("u-old", secret=first))
    secret_file.write_text(second + "\n")
    node.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reloaded keys" in node.stderr_text(), what="reload logged")
    fresh = client(node, mint("u-new", secret=second))
    with pytest.raises(socketio.exceptions.ConnectionError):
        client(node, mint("u-stale", secret=first))
    # The connection made before the reload is still up and answered.
    assert old.connected and fresh.connected
    assert old.call("heartbeat", {}, timeout=TIMEOUT) is None
    # A broken file keeps the keys in use.
    secret_file.write_text("")
    node.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "keys not reloaded" in node.stderr_text(), what="failed reload logged")
    client(node, mint("u-newer", secret=second)).disconnect()
    for c in (old, fresh):
        c.disconnect()
