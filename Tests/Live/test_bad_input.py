"""Hostile and broken input against `switchboard conformance`.

Every test first connects healthy clients (a raw Socket.IO client and a raw Engine.IO
client whose background threads answer pings), then abuses the server on a separate
connection, and finally proves that:
  * the offending connection / session was closed (where the input is invalid),
  * both healthy clients still get an echo round trip,
  * the process is still alive (the fixture also fails the test if it died).
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time

import pytest
import requests
import websocket

from livehelpers import (
    MAX_PAYLOAD,
    SEP,
    TIMEOUT,
    Closed,
    KeepAliveClient,
    Polling,
    eio_ws_session,
    http_get,
    http_post,
    json_body,
    sio_ws_connect,
    text,
    wait_until,
    ws_connect,
    ws_open_refused_or_closed,
    ws_recv,
    ws_recv_msg,
    ws_send_binary,
    ws_wait_closed,
)


@pytest.fixture
def healthy(conformance):
    clients = [KeepAliveClient(conformance, "socketio"), KeepAliveClient(conformance, "engineio")]
    for c in clients:
        c.roundtrip()

    class H:
        server = conformance

        @staticmethod
        def check():
            assert conformance.alive(), f"server died; stderr:\n{conformance.stderr_tail()}"
            for c in clients:
                c.roundtrip()
            # and a brand-new session still works
            ws, _ = eio_ws_session(conformance)
            ws.send("4fresh")
            assert ws_recv_msg(ws) == "4fresh"
            ws.close()

    yield H
    for c in clients:
        c.close()


def sio_abuser(server):
    return sio_ws_connect(server)


def expect_closed(ws, what: str):
    seen, closed = ws_wait_closed(ws, timeout=TIMEOUT, answer_pings=True)
    echoes = [m for m in seen if m != "2"]
    print(f"{what}: closed ({closed.how}, code={closed.code}); other frames before close: {[str(m)[:60] for m in echoes]}")
    return seen, closed


# --- malformed Engine.IO packets -------------------------------------------------------


@pytest.mark.parametrize("frame", ["abc", "", "9", "x4hello", "\x00garbage", "-1"])
def test_malformed_engineio_websocket_packet(healthy, frame):
    ws, _ = eio_ws_session(healthy.server)
    ws.send(frame)
    seen, _ = expect_closed(ws, f"engine.io frame {frame!r}")
    assert not any(isinstance(m, str) and m.startswith("4") for m in seen), seen
    healthy.check()


@pytest.mark.parametrize("body", ["abc", "4ok\x1e\x1e4ok", "bnot-base64!!", "9"])
def test_malformed_polling_payload(healthy, body):
    p = Polling(healthy.server)
    p.open()
    try:
        r = p.post(body)
        status = r.status_code
        print(f"POST {body!r} -> {r.status_code} {r.content[:80]!r}")
    except requests.ConnectionError as e:
        status = None
        print(f"POST {body!r} -> connection dropped {e!r}")
    assert status in (None, 200, 400), status
    r2 = p.get()
    assert r2.status_code == 400 or (r2.status_code == 200 and "1" in text(r2).split(SEP)), (
        r2.status_code,
        r2.content[:100],
    )
    healthy.check()


# --- malformed Socket.IO packets -------------------------------------------------------


@pytest.mark.parametrize(
    "packet",
    [
        '42["message",',  # truncated JSON
        "42[1,2",  # truncated JSON
        "4{",  # not a packet
        "42",  # EVENT without payload
        "49[]",  # unknown Socket.IO packet type
        '42"just a string"',
        "42null",
        "42[]",
        "42[{}]",  # event name is not a string
        '42["message",NaN]',
        '42["message",undefined]',
        "42['single-quoted']",
        '42["message",1]trailing',
        '4-1["message"]',
        '42/custom["message"]',  # namespace without the comma and not connected
    ],
)
def test_malformed_socketio_packet(healthy, packet):
    ws = sio_abuser(healthy.server)
    ws.send(packet)
    seen, _ = expect_closed(ws, f"socket.io packet {packet!r}")
    assert not any(isinstance(m, str) and m.startswith("42[\"message-back\"") for m in seen), seen
    healthy.check()


def test_invalid_utf8_websocket_text_frame(healthy):
    ws = sio_abuser(healthy.server)
    ws.send(b'42["message","\xff\xfe\xc3\x28"]', opcode=websocket.ABNF.OPCODE_TEXT)
    seen, closed = expect_closed(ws, "invalid UTF-8 text frame")
    assert not any(isinstance(m, str) and "message-back" in m for m in seen), seen
    healthy.check()


def test_invalid_utf8_polling_body(healthy):
    p = Polling(healthy.server)
    p.open()
    try:
        r = p.post(b'4\xff\xfe\xc3\x28')
        print("POST invalid UTF-8 ->", r.status_code, r.content[:80])
        # like the reference's invalid-packet case: 400, or "ok" and the session closed
        assert r.status_code in (200, 400), (r.status_code, r.content[:80])
    except requests.ConnectionError as e:
        print("POST invalid UTF-8 -> connection dropped", e)
    r2 = p.get()
    assert r2.status_code == 400, ("session still open after invalid UTF-8", r2.status_code, r2.content[:80])
    healthy.check()


def test_invalid_utf8_in_socketio_event_over_polling(healthy):
    p = Polling(healthy.server, "/socket.io/")
    p.open()
    p.post_ok("40")
    p.poll_packets(2)
    try:
        r = p.post(b'42["message","\xc0\xaf"]')
        print("POST invalid UTF-8 event ->", r.status_code, r.content[:80])
        assert r.status_code in (200, 400)
    except requests.ConnectionError as e:
        print("POST invalid UTF-8 event -> connection dropped", e)
    assert p.get().status_code == 400
    healthy.check()


# --- deeply nested JSON ----------------------------------------------------------------

DEPTH = 100_000


@pytest.mark.parametrize(
    "kind",
    ["balanced-arrays", "balanced-objects", "unbalanced-arrays", "connect-payload"],
)
def test_deeply_nested_json_websocket(healthy, kind):
    if kind == "connect-payload":
        ws, _ = eio_ws_session(healthy.server, "/socket.io/")
        ws.send("40" + '{"a":' * DEPTH + "1" + "}" * DEPTH)
        seen, closed = expect_closed(ws, "deeply nested CONNECT payload")
        assert not any(isinstance(m, str) and m.startswith("40{") for m in seen), [str(m)[:40] for m in seen]
        healthy.check()
        return
    ws = sio_abuser(healthy.server)
    if kind == "balanced-arrays":
        arg = "[" * DEPTH + "]" * DEPTH
    elif kind == "balanced-objects":
        arg = '{"a":' * DEPTH + "0" + "}" * DEPTH
    else:
        arg = "[" * DEPTH
    ws.send('42["message",' + arg + "]")
    if kind == "unbalanced-arrays":
        expect_closed(ws, "unbalanced 100k '['")
    else:
        # valid JSON: an exact echo or closing the connection are both acceptable
        try:
            m = ws_recv_msg(ws, timeout=TIMEOUT)
        except Closed as c:
            print(f"{kind}: connection closed ({c.how}, code={c.code})")
        else:
            assert m == '42["message-back",' + arg + "]", str(m)[:80]
            print(f"{kind}: echoed exactly ({len(m)} chars)")
    healthy.check()


def test_deeply_nested_json_polling(healthy):
    p = Polling(healthy.server, "/socket.io/")
    p.open()
    p.post_ok("40")
    p.poll_packets(2)
    try:
        r = p.post('42["message",' + "[" * DEPTH + "]")
        print("POST unbalanced nesting ->", r.status_code, r.content[:60])
        assert r.status_code in (200, 400)
    except requests.ConnectionError as e:
        print("POST unbalanced nesting -> dropped", e)
    r2 = p.get()
    assert r2.status_code == 400 or (r2.status_code == 200 and "1" in text(r2).split(SEP)), r2.content[:80]
    healthy.check()


# --- attachments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        '4599999999-["message",{"_placeholder":true,"num":0}]',
        "45" + "9" * 40 + '-["message",{"_placeholder":true,"num":0}]',
        '45-1-["message"]',
        '45abc-["message"]',
        '4699999999-1[{"_placeholder":true,"num":0}]',
    ],
)
def test_absurd_attachment_counts(healthy, header):
    ws = sio_abuser(healthy.server)
    ws.send(header)
    expect_closed(ws, f"attachment header {header[:30]!r}")
    healthy.check()


def test_placeholder_index_out_of_range(healthy):
    ws = sio_abuser(healthy.server)
    ws.send('451-["message",{"_placeholder":true,"num":7}]')
    ws_send_binary(ws, b"\x01")
    seen, _ = expect_closed(ws, "placeholder num 7 with 1 attachment")
    assert not any(isinstance(m, str) and "message-back" in m for m in seen), seen
    healthy.check()


def test_placeholder_with_non_integer_index(healthy):
    ws = sio_abuser(healthy.server)
    ws.send('451-["message",{"_placeholder":true,"num":"0"}]')
    ws_send_binary(ws, b"\x01")
    seen, _ = expect_closed(ws, "placeholder num \"0\"")
    assert not any(isinstance(m, str) and "message-back" in m for m in seen), seen
    healthy.check()


def test_unexpected_binary_frame(healthy):
    ws = sio_abuser(healthy.server)
    ws_send_binary(ws, b"\x01\x02\x03")  # no BINARY_EVENT is waiting for an attachment
    expect_closed(ws, "binary frame with no pending binary packet")
    healthy.check()


def test_text_packet_while_attachments_pending(healthy):
    ws = sio_abuser(healthy.server)
    ws.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    ws_send_binary(ws, b"\x01")
    ws.send('42["message","interleaved"]')
    seen, _ = expect_closed(ws, "text packet between attachments")
    healthy.check()


def test_many_pending_attachments_are_bounded(healthy):
    # a large but not absurd count, then a flood of attachments that never completes it
    ws = sio_abuser(healthy.server)
    ws.send('45100000-["message",{"_placeholder":true,"num":0}]')
    closed = None
    for i in range(2000):
        try:
            ws_send_binary(ws, b"\x00" * 1000)
        except (websocket.WebSocketConnectionClosedException, BrokenPipeError, ConnectionResetError) as e:
            closed = f"closed after {i} attachments ({e!r})"
            break
    print(closed or "accepted 2000 attachments (2 MB) for one packet")
    healthy.check()
    rss = healthy.server.rss_kib()
    print(f"server RSS {rss} KiB")
    assert rss < 1_000_000


# --- oversized input -------------------------------------------------------------------


def test_oversized_websocket_text_frame(healthy):
    ws = sio_abuser(healthy.server)
    ws.send('42["message","' + "x" * MAX_PAYLOAD + '"]')
    seen, _ = expect_closed(ws, "text frame > maxPayload")
    assert not any(isinstance(m, str) and "message-back" in m for m in seen)
    healthy.check()


def test_oversized_websocket_binary_frame(healthy):
    ws = sio_abuser(healthy.server)
    ws.send('451-["message",{"_placeholder":true,"num":0}]')
    ws_send_binary(ws, b"\x00" * (MAX_PAYLOAD + 1))
    seen, _ = expect_closed(ws, "binary frame > maxPayload")
    assert not any(isinstance(m, str) and "message-back" in m for m in seen)
    healthy.check()


def test_oversized_fragmented_websocket_message(healthy):
    ws = sio_abuser(healthy.server)
    chunk = "y" * 300_000
    ws.send_frame(websocket.ABNF.create_frame('42["message","' + chunk, websocket.ABNF.OPCODE_TEXT, 0))
    try:
        for _ in range(3):
            ws.send_frame(websocket.ABNF.create_frame(chunk, websocket.ABNF.OPCODE_CONT, 0))
        ws.send_frame(websocket.ABNF.create_frame('"]', websocket.ABNF.OPCODE_CONT, 1))
    except (websocket.WebSocketConnectionClosedException, BrokenPipeError, ConnectionResetError):
        pass
    seen, _ = expect_closed(ws, "fragmented message of 1.2 MB")
    assert not any(isinstance(m, str) and "message-back" in m for m in seen)
    healthy.check()


def test_websocket_frame_header_claims_huge_length(healthy):
    s = healthy.server
    sock = socket.create_connection((s.host, s.port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {s.host}:{s.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        c = sock.recv(4096)
        assert c, buf
        buf += c
    assert buf.startswith(b"HTTP/1.1 101"), buf[:100]
    # FIN+text, masked, 64-bit length 2^63-1
    sock.sendall(bytes([0x81, 0xFF]) + struct.pack(">Q", 2**63 - 1) + os.urandom(4) + b"4abc")
    sock.settimeout(TIMEOUT)
    closed = False
    try:
        while True:
            c = sock.recv(65536)
            if not c:
                closed = True
                break
            if b"\x88" in c:  # a close frame
                closed = True
                break
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        pass
    sock.close()
    assert closed, "connection not closed after a frame header claiming 2^63-1 bytes"
    healthy.check()


def test_oversized_polling_post(healthy):
    p = Polling(healthy.server)
    p.open()
    r = p.post("4" + "a" * (MAX_PAYLOAD + 10))
    assert r.status_code == 413, (r.status_code, r.content[:100])
    healthy.check()


def test_polling_post_with_huge_content_length(healthy):
    s = healthy.server
    p = Polling(s)
    p.open()
    sock = socket.create_connection((s.host, s.port), timeout=TIMEOUT)
    sock.sendall(
        (
            f"POST /engine.io/?EIO=4&transport=polling&sid={p.sid} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 1000000000000\r\n\r\n"
        ).encode()
    )
    outcome = None
    try:
        sent = 0
        while sent < 2 * MAX_PAYLOAD:
            sock.sendall(b"a" * 65536)
            sent += 65536
        sock.settimeout(TIMEOUT)
        data = sock.recv(4096)
        outcome = data[:40]
    except (BrokenPipeError, ConnectionResetError) as e:
        outcome = repr(e)
    except socket.timeout:
        outcome = "timeout"
    finally:
        sock.close()
    print("claimed 10^12-byte POST ->", outcome)
    assert outcome != "timeout", "server kept reading a body far above maxPayload without answering"
    if isinstance(outcome, bytes) and outcome:
        assert outcome.startswith(b"HTTP/1.1 413"), outcome
    healthy.check()
    rss = s.rss_kib()
    print(f"server RSS {rss} KiB")
    assert rss < 1_000_000


@pytest.mark.parametrize("where", ["url", "header"])
def test_huge_http_request_head(healthy, where):
    s = healthy.server
    big = "a" * 200_000
    if where == "url":
        req = f"GET /engine.io/?EIO=4&transport=polling&x={big} HTTP/1.1\r\nHost: x\r\n\r\n"
    else:
        req = f"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"
    sock = socket.create_connection((s.host, s.port), timeout=TIMEOUT)
    outcome = None
    try:
        sock.sendall(req.encode())
        data = sock.recv(4096)
        outcome = data[:60]
    except (BrokenPipeError, ConnectionResetError) as e:
        outcome = repr(e)
    except socket.timeout:
        outcome = "timeout"
    finally:
        sock.close()
    print(f"200 kB request {where} ->", outcome)
    assert outcome != "timeout"
    if isinstance(outcome, bytes) and outcome:
        assert not outcome.startswith(b"HTTP/1.1 200"), outcome
    healthy.check()


# --- unknown / bogus sids --------------------------------------------------------------


@pytest.mark.parametrize("sid", ["unknown", "%00", "..%2F..%2Fetc", "a" * 5000, "%F0%28%8C%BC"])
def test_bogus_sids(healthy, sid):
    base = f"{healthy.server.base}/engine.io/?EIO=4&transport=polling&sid={sid}"
    g = http_get(base)
    assert g.status_code == 400, (g.status_code, g.content[:100])
    p = http_post(base, "4x")
    assert p.status_code == 400, (p.status_code, p.content[:100])
    print(ws_open_refused_or_closed(f"{healthy.server.ws_base}/engine.io/?EIO=4&transport=websocket&sid={sid}"))
    healthy.check()


def test_many_unknown_sid_requests(healthy):
    for i in range(200):
        r = http_get(f"{healthy.server.base}/socket.io/?EIO=4&transport=polling&sid=bogus{i}")
        assert r.status_code == 400
        assert json_body(r) == {"code": 1, "message": "Session ID unknown"}
    healthy.check()


# --- slow and half-open clients --------------------------------------------------------


def test_half_sent_http_requests_do_not_block_others(healthy):
    s = healthy.server
    stalled = []
    for i in range(30):
        c = socket.create_connection((s.host, s.port), timeout=TIMEOUT)
        if i % 3 == 0:
            c.sendall(b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
        elif i % 3 == 1:
            c.sendall(b"POST /engine.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n4abc")
        else:
            c.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nUpgrade: websocket\r\n")
        stalled.append(c)
    try:
        healthy.check()
        # new HTTP sessions keep working while 30 connections stall
        for _ in range(5):
            Polling(s).open()
    finally:
        for c in stalled:
            c.close()
    healthy.check()


def test_byte_at_a_time_client(healthy):
    s = healthy.server
    req = b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    result = {}

    def slow():
        with socket.create_connection((s.host, s.port), timeout=TIMEOUT) as c:
            for b in req:
                c.sendall(bytes([b]))
                time.sleep(0.01)
            data = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data and b'"maxPayload"' in data:
                    break
            result["data"] = data

    t = threading.Thread(target=slow)
    t.start()
    healthy.check()
    t.join(timeout=30)
    assert not t.is_alive()
    assert result["data"].startswith(b"HTTP/1.1 200"), result.get("data", b"")[:80]
    healthy.check()


def test_websocket_client_that_never_reads(healthy):
    s = healthy.server
    ws = ws_connect(
        f"{s.ws_base}/socket.io/?EIO=4&transport=websocket",
        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),),
    )
    ws_recv(ws)
    ws.send("40")
    ws.sock.settimeout(3)
    payload = '42["message","' + "q" * 50_000 + '"]'
    sent = 0
    stop_reason = "sent all"
    t0 = time.monotonic()
    try:
        for _ in range(40):  # 2 MB of echoes the client never reads (beyond socket buffers)
            ws.send(payload)
            sent += 1
            if time.monotonic() - t0 > 20:
                stop_reason = "time bound"
                break
    except (websocket.WebSocketConnectionClosedException, BrokenPipeError, ConnectionResetError) as e:
        stop_reason = f"closed by server ({e!r})"
    except (socket.timeout, websocket.WebSocketTimeoutException):
        stop_reason = "send blocked (server applies backpressure)"
    print(f"never-reading client: {sent} x 50 kB sent; {stop_reason}")
    healthy.check()
    # it never answered a ping, so the server must drop it (ping timeout or queue policy)
    ws.sock.settimeout(TIMEOUT)
    frames = 0
    end = time.monotonic() + 30
    closed = False
    while time.monotonic() < end:
        try:
            m = ws_recv(ws, timeout=max(0.1, end - time.monotonic()))
            frames += 1
        except Closed:
            closed = True
            break
        except (websocket.WebSocketTimeoutException, socket.timeout):
            break
        except OSError:
            closed = True
            break
    print(f"drained {frames} frames before close")
    assert closed, "the never-reading client was not disconnected"
    rss = s.rss_kib()
    print(f"server RSS {rss} KiB")
    assert rss < 1_000_000
    healthy.check()


def test_abrupt_tcp_resets(healthy):
    s = healthy.server
    for i in range(100):
        c = socket.create_connection((s.host, s.port), timeout=TIMEOUT)
        if i % 2:
            key = base64.b64encode(os.urandom(16)).decode()
            c.sendall(
                (
                    f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            c.recv(4096)
            c.sendall(bytes([0x81, 0x85]) + os.urandom(4) + b"4")  # half a frame
        else:
            c.sendall(b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        c.close()
    healthy.check()


def test_not_http_at_all(healthy):
    s = healthy.server
    for junk in [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64), b"\x00" * 1000, b"HELLO\r\n\r\n"]:
        c = socket.create_connection((s.host, s.port), timeout=TIMEOUT)
        try:
            c.sendall(junk)
            data = c.recv(4096)
            print(repr(junk[:8]), "->", data[:40])
            assert not data.startswith(b"HTTP/1.1 200")
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            c.close()
    healthy.check()


def test_unknown_ack_id_is_harmless(healthy):
    ws = sio_abuser(healthy.server)
    ws.send('43999["not","awaited"]')
    ws.send('42["message","after"]')
    try:
        m = ws_recv_msg(ws)
        assert m == '42["message-back","after"]', m
        print("unknown ack id ignored")
    except Closed as c:
        print(f"unknown ack id closed the connection ({c.how})")
    healthy.check()


def test_flood_of_small_packets(healthy):
    ws = sio_abuser(healthy.server)
    n = 3000
    for i in range(n):
        ws.send(f'42["message",{i}]')
    got = []
    while len(got) < n:
        got.append(ws_recv_msg(ws))
    assert got == [f'42["message-back",{i}]' for i in range(n)]
    healthy.check()


def _sio_session(server):
    ws, hs = eio_ws_session(server, "/socket.io/")
    ws.send("40")
    ws_recv_msg(ws)
    ws_recv_msg(ws)
    return ws, hs


def _answer_pings_in_background(ws):
    """Keep a session alive (so that no ping timeout muddles what is being logged)."""
    stop = threading.Event()

    def run():
        while not stop.is_set():
            try:
                m = ws_recv(ws, timeout=3600)
            except Exception:
                return
            if m == "2":
                try:
                    ws.send("3")
                except Exception:
                    return

    threading.Thread(target=run, daemon=True).start()
    return stop


def _provoke(kind: str, path: str, server):
    """Make the server disconnect one client; returns (Engine.IO sid, cleanup)."""
    cleanup = lambda: None  # noqa: E731
    if kind == "invalid-packet":
        if path == "/socket.io/":
            ws, hs = _sio_session(server)
            ws.send("4abc")
        else:
            ws, hs = eio_ws_session(server, path)
            ws.send("abc")
        ws_wait_closed(ws, answer_pings=True)
    elif kind == "ping-timeout":
        ws, hs = eio_ws_session(server, path)
        if path == "/socket.io/":
            ws.send("40")
        ws_wait_closed(ws)
    elif kind == "oversized-frame":
        ws, hs = _sio_session(server) if path == "/socket.io/" else eio_ws_session(server, path)
        ws.send("4" + "z" * MAX_PAYLOAD)
        ws_wait_closed(ws, answer_pings=True)
    elif kind == "connect-timeout":
        ws, hs = eio_ws_session(server, path)
        ws_wait_closed(ws, answer_pings=True)
    elif kind == "duplicate-poll":
        p = Polling(server, path)
        p.open()
        hs = {"sid": p.sid}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as ex:
            a = ex.submit(p.get)
            time.sleep(0.1)
            b = ex.submit(p.get)
            a.result(), b.result()
    elif kind == "namespace-disconnect":
        ws, hs = _sio_session(server)
        ws.send('42["disconnect-me"]')
        assert ws_recv_msg(ws) == "41"
        stop = _answer_pings_in_background(ws)

        def cleanup():
            stop.set()
            ws.close()

    else:
        raise ValueError(kind)
    return hs["sid"], cleanup


@pytest.mark.parametrize(
    "path,kind",
    [
        ("/engine.io/", "invalid-packet"),
        ("/engine.io/", "ping-timeout"),
        ("/engine.io/", "oversized-frame"),
        ("/engine.io/", "duplicate-poll"),
        ("/socket.io/", "invalid-packet"),
        ("/socket.io/", "ping-timeout"),
        ("/socket.io/", "oversized-frame"),
        ("/socket.io/", "duplicate-poll"),
        ("/socket.io/", "connect-timeout"),
        ("/socket.io/", "namespace-disconnect"),
    ],
)
def test_server_initiated_disconnect_is_logged_with_a_reason(healthy, path, kind):
    before = len(healthy.server.stderr_text())
    sid, cleanup = _provoke(kind, path, healthy.server)
    try:

        def lines():
            return [l for l in healthy.server.stderr_text()[before:].splitlines() if sid in l]

        wait_until(
            lambda: any("reason" in l.lower() for l in lines()),
            timeout=5,
            what=f"a stderr line naming engine sid {sid} and a reason ({path} {kind})",
        )
        print(f"{path} {kind}:", [l.split(" switchboard: ", 1)[-1] for l in lines()])
        if kind != "ping-timeout":
            assert not any("ping_timeout" in l or "ping timeout" in l.lower() for l in lines()), lines()
    finally:
        cleanup()
    healthy.check()


def test_flooding_client_does_not_starve_others(healthy):
    """One client sends 10 MB of 50 kB events as fast as it can (and reads its echoes).
    The healthy clients keep answering pings within a millisecond; the server must keep
    serving them (no ping_timeout for them) while it works through the flood."""
    s = healthy.server
    ws = sio_ws_connect(s)
    received = []
    done = threading.Event()

    def reader():
        try:
            while True:
                m = ws_recv(ws, timeout=60)
                if m == "2":
                    ws.send("3")
                else:
                    received.append(len(m))
        except Exception:
            pass
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    payload = '42["message","' + "f" * 50_000 + '"]'
    n = 200
    t0 = time.monotonic()
    sent = 0
    try:
        for _ in range(n):
            ws.send(payload)
            sent += 1
    except (websocket.WebSocketConnectionClosedException, BrokenPipeError, ConnectionResetError) as e:
        print(f"flooding client dropped after {sent} sends: {e!r}")  # acceptable for the flooder
    wait_until(lambda: len(received) >= sent or done.is_set(), timeout=120, step=0.05, what="flood echoes")
    print(f"flood: {sent} x 50 kB sent, {len(received)} echoes read in {time.monotonic() - t0:.2f}s")
    healthy.check()
    ws.close()
