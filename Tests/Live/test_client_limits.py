"""Per-address and per-connection limits against a live node: handshake floods and connection hoarding
from one address get 429 with Retry-After (the stock clients retry after their backoff), a client that
floods packets is closed with 1008, every refusal is counted in /metrics with its reason, clients behind
a trusted proxy are told apart by X-Forwarded-For, and the well-behaved clients never notice."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time

import jwt
import requests
import socketio
import websocket

from livehelpers import (
    TIMEOUT,
    KeepAliveClient,
    binary_path,
    eio_ws_session,
    wait_until,
    ws_connect,
    ws_wait_closed,
)


def metric(server, name: str, **labels) -> float:
    body = requests.get(server.base + "/metrics", timeout=TIMEOUT).text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.splitlines():
        if line.startswith(name) and (not labels or "{" + wanted + "}" in line or wanted in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def handshake(server, headers: dict | None = None) -> requests.Response:
    return requests.get(f"{server.base}/engine.io/?EIO=4&transport=polling", headers=headers or {},
                        timeout=TIMEOUT)


def test_a_handshake_flood_from_one_address_is_refused_with_retry_after(servers):
    node = servers.start("conformance", "--host", "127.0.0.1", "--port", "0",
                         "--address-handshake-rate", "2", "--address-handshake-burst", "3", name="limits")
    statuses = [handshake(node) for _ in range(12)]
    accepted = [r for r in statuses if r.status_code == 200]
    refused = [r for r in statuses if r.status_code == 429]
    # The burst, plus at most one token refilled while the requests ran.
    assert 3 <= len(accepted) <= 4 and len(accepted) + len(refused) == 12, [r.status_code for r in statuses]
    assert refused[0].json() == {"code": 3, "message": "Too many handshakes from this address"}
    assert int(refused[0].headers["Retry-After"]) >= 1
    assert metric(node, "switchboard_engineio_refused_handshakes_total", reason="handshake_rate") == len(refused)

    # The stock client is told to retry and gets in once the bucket refills.
    sio = socketio.Client(reconnection=True, reconnection_delay=0.5, reconnection_delay_max=1)
    try:
        started = time.monotonic()
        sio.connect(node.base, transports=["websocket"], retry=True, wait_timeout=TIMEOUT)
        assert sio.connected and time.monotonic() - started < TIMEOUT
    finally:
        sio.disconnect()
    assert node.alive()


def test_connections_per_address_behind_a_trusted_proxy_count_each_client(servers):
    node = servers.start("conformance", "--host", "127.0.0.1", "--port", "0",
                         "--max-connections-per-address", "2", "--trusted-proxies", "127.0.0.1/32", name="limits")
    url = f"{node.ws_base}/engine.io/?EIO=4&transport=websocket"

    def open_as(client: str):
        return ws_connect(url, header=[f"X-Forwarded-For: {client}"])

    first, second = open_as("198.51.100.1"), open_as("198.51.100.1")
    for ws in (first, second):
        assert ws.recv().startswith("0")
    try:
        open_as("198.51.100.1")
        raise AssertionError("a third connection from the same client was upgraded")
    except websocket.WebSocketBadStatusException as e:
        assert e.status_code == 429
        assert b"Too many connections from this address" in (e.resp_body or b"")
    # Another client behind the same proxy is its own address.
    other = open_as("198.51.100.2")
    assert other.recv().startswith("0")
    # A client cannot claim another address: only what the trusted proxy appended counts.
    try:
        spoofed = open_as("203.0.113.9, 198.51.100.1")
        raise AssertionError(f"spoofed leftmost address admitted: {spoofed.recv()!r}")
    except websocket.WebSocketBadStatusException as e:
        assert e.status_code == 429
    assert metric(node, "switchboard_engineio_refused_handshakes_total", reason="connections_per_address") >= 1
    # A connection that closes frees its place.
    first.close()
    wait_until(lambda: _upgrades(url, "198.51.100.1"), what="a place freed by the closed connection")
    for ws in (second, other):
        ws.close()


def _upgrades(url: str, client: str) -> bool:
    try:
        ws = ws_connect(url, header=[f"X-Forwarded-For: {client}"])
    except websocket.WebSocketBadStatusException:
        return False
    ws.close()
    return True


def test_an_untrusted_peer_cannot_choose_its_address(servers):
    node = servers.start("conformance", "--host", "127.0.0.1", "--port", "0",
                         "--max-connections-per-address", "1", "--trusted-proxies", "10.0.0.0/8", name="limits")
    url = f"{node.ws_base}/engine.io/?EIO=4&transport=websocket"
    held = ws_connect(url, header=["X-Forwarded-For: 198.51.100.1"])
    assert held.recv().startswith("0")
    try:
        ws_connect(url, header=["X-Forwarded-For: 198.51.100.2"])
        raise AssertionError("the loopback peer is not a trusted proxy: its header must not count")
    except websocket.WebSocketBadStatusException as e:
        assert e.status_code == 429
    held.close()


def test_a_client_flooding_packets_is_closed_and_nobody_else_notices(servers):
    node = servers.start("conformance", "--host", "127.0.0.1", "--port", "0",
                         "--packet-rate", "50", "--packet-burst", "100", name="limits")
    healthy = [KeepAliveClient(node, "socketio"), KeepAliveClient(node, "engineio")]
    for client in healthy:
        client.roundtrip()
    flooder, _ = eio_ws_session(node)
    # 150 packets in one write: all of them reach the node before it closes, so the close frame is not
    # lost to a reset caused by data arriving after the close.
    burst = b"".join(websocket.ABNF.create_frame(f"4flood-{index}", websocket.ABNF.OPCODE_TEXT).format()
                     for index in range(150))
    flooder.sock.sendall(burst)
    _, closed = ws_wait_closed(flooder)
    assert closed.code == 1008, closed
    for client in healthy:
        client.roundtrip()
    assert metric(node, "switchboard_engineio_disconnects_total", reason="packet_rate") == 1
    assert "packet_rate" in node.stderr_text() + "\n".join(node.stdout_lines)
    # A client within the rate is never cut off: 40 packets a second for 2 seconds (its reader answers the
    # fixture's 300 ms pings meanwhile).
    steady, _ = eio_ws_session(node)
    echoes = []

    def read():
        steady.settimeout(TIMEOUT)
        while len(echoes) < 80:
            message = steady.recv()
            if message == "2":
                steady.send("3")
            elif message.startswith("4steady-"):
                echoes.append(message)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for index in range(80):
        steady.send(f"4steady-{index}")
        time.sleep(0.025)
    reader.join(TIMEOUT)
    assert len(echoes) == 80, len(echoes)
    steady.close()
    assert node.alive()


def test_bad_limit_settings_are_refused_with_their_name():
    for flag, value, says in [
        ("--trusted-proxies", "10.0.0.0/33", "is not an address or network"),
        ("--packet-rate", "-1", "events per second"),
        ("--max-connections-per-address", "many", "whole number"),
    ]:
        result = subprocess.run([str(binary_path()), "check-config", f"{flag}={value}"], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode != 0, (flag, value, result.stdout)
        assert flag in result.stderr and says in result.stderr, result.stderr
    ok = subprocess.run([str(binary_path()), "check-config", "--trusted-proxies", "*", "--packet-rate", "100"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"trusted-proxies=0\.0\.0\.0/0,0:0:0:0:0:0:0:0/0", ok.stdout), ok.stdout
    assert "packet-rate=100/s (burst 200)" in ok.stdout, ok.stdout


def _closed_within(host: str, port: int, first: bytes, seconds: float) -> float:
    """Sends `first`, then a header byte every 0.2 s; returns how long until the node closed."""
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    started = time.monotonic()
    try:
        sock.sendall(first)
        sock.settimeout(0.2)
        while time.monotonic() - started < seconds:
            try:
                if sock.recv(4096) == b"":
                    return time.monotonic() - started
            except socket.timeout:
                pass
            except ConnectionResetError:
                # Closed with the partial head unread: the kernel resets rather than ends the connection.
                return time.monotonic() - started
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
        raise AssertionError(f"a slow-loris connection was still open after {seconds} s")
    finally:
        sock.close()


def test_slow_and_oversized_requests_are_cut_off_on_every_listener(servers):
    from owui import API_KEY, SECRET, api_base_of

    node = servers.start("serve", "--host", "127.0.0.1", "--port", "0", "--api-port", "0",
                         "--request-head-timeout", "1s",
                         env={"WEBUI_SECRET_KEY": SECRET, "SWITCHBOARD_API_KEY": API_KEY}, name="listeners")
    api = api_base_of(node)
    api_port = int(api.rsplit(":", 1)[1])
    assert api_port != node.port
    targets = [
        (node.port, b"GET /ws/socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"),
        (node.port, b"GET /ws/socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"),
        (node.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
        (node.port, b"GET /dashboard HTTP/1.1\r\nHost: x\r\n"),
        (api_port, b"POST /api/v1/emit HTTP/1.1\r\nHost: x\r\n"),
    ]
    results = {}
    threads = []
    for port, first in targets:
        def run(port=port, first=first):
            results[(port, first)] = _closed_within("127.0.0.1", port, first, 5.0)
        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)
    # Everyone else is served while the slow clients hold their connections.
    for _ in range(5):
        assert requests.get(node.base + "/health", timeout=TIMEOUT).status_code == 200
        assert requests.get(api + "/api/v1/users/online", headers={"Authorization": f"Bearer {API_KEY}"},
                            timeout=TIMEOUT).status_code == 200
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    assert len(results) == len(targets)
    for (port, first), seconds in results.items():
        print(f"slow loris {first.split(b' ')[1][:30]!r}: closed after {seconds:.2f} s")
        assert 0.9 <= seconds < 3.0, (port, first, seconds)

    # Oversized heads and bodies: refused, the connection closed, memory bounded.
    rss_before = node.rss_kib()
    for port, request, status in [
        (node.port, b"GET /metrics?" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (node.port, b"GET /dashboard HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", b"400"),
        # Refused on its declared length, before the node reads a byte of it; the answer survives the
        # body the client keeps sending.
        (api_port, b"POST /api/v1/emit HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n" + b"{" * 70_000,
         b"413"),
        (api_port, b"GET /api/v1/users/online HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", b"400"),
    ]:
        answer = _send_and_read(port, request)
        status_line = answer.split(b"\r\n", 1)[0]
        print(f"{request[:30]!r}… on port {'api' if port == api_port else 'main'} -> {status_line!r}")
        assert status_line.startswith(b"HTTP/1.1 " + status), (port, request[:40], answer[:80])
    assert requests.get(node.base + "/health", timeout=TIMEOUT).status_code == 200
    growth = node.rss_kib() - rss_before
    print(f"resident memory grew {growth} KiB")
    assert growth < 100_000
    assert node.alive()


def _send_and_read(port: int, request: bytes) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


def test_a_users_sockets_over_its_limit_are_disconnected_and_the_stock_client_stays_off(serve_factory):
    secret = "per-user-limit-secret-0123456789abcdef0123"
    node = serve_factory("--path", "/ws/socket.io", "--jwt-secret", secret, "--max-connections-per-user", "2")

    def token(user: str) -> str:
        return jwt.encode({"id": user, "iat": int(time.time())}, secret, algorithm="HS256")

    clients: list[socketio.Client] = []

    def connect(user: str) -> tuple[socketio.Client, list]:
        sio = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=0.5)
        disconnects: list = []
        sio.on("disconnect", lambda *reason: disconnects.append(reason))
        sio.connect(node.base, socketio_path="/ws/socket.io", transports=["websocket"],
                    auth={"token": token(user)}, wait_timeout=TIMEOUT)
        clients.append(sio)
        return sio, disconnects

    try:
        (first, _), (second, _) = connect("ada"), connect("ada")
        third, third_disconnects = connect("ada")
        wait_until(lambda: bool(third_disconnects), what="the third socket of one user disconnected")
        # Told by the server (python-socketio names it), so the client does not reconnect by itself.
        assert third_disconnects[0] in ((), ("io server disconnect",), ("server disconnect",)), third_disconnects
        time.sleep(1.5)
        assert not third.connected and len(third_disconnects) == 1, third_disconnects
        assert first.connected and second.connected
        assert metric(node, "switchboard_engineio_disconnects_total", reason="connections_per_user") == 1

        # Another user is not affected; one of Ada's sockets going lets the next one in.
        other, other_disconnects = connect("grace")
        first.disconnect()
        # Ada's other socket and Grace's are what the node holds once it has let the first go.
        wait_until(lambda: metric(node, "switchboard_socketio_sockets") == 2, what="the first socket released")
        fourth, fourth_disconnects = connect("ada")
        time.sleep(1.0)
        assert fourth.connected and not fourth_disconnects and other.connected and not other_disconnects
        assert metric(node, "switchboard_engineio_disconnects_total", reason="connections_per_user") == 1
        assert "its user has too many connections on this node" in node.stderr_text()
    finally:
        for sio in clients:
            sio.disconnect()
    assert node.alive()
