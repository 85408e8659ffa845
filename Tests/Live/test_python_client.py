"""The official python-socketio client (socketio.Client / AsyncClient) against the live
server: `conformance` over WebSocket only and over polling with upgrade, and `serve`
(room fan-out)."""

from __future__ import annotations

import asyncio
import queue
import time
import uuid

import jwt
import pytest
import socketio

from livehelpers import TIMEOUT, wait_until

SECRET = "live-test-secret-0123456789abcdef-0123456789"


class Recorder:
    """Collects the events a socketio.Client receives, per (namespace, event)."""

    def __init__(self, sio: socketio.Client, namespaces=("/",), events=()):
        self.sio = sio
        self.queues: dict[tuple[str, str], queue.Queue] = {}
        self.disconnects: "queue.Queue" = queue.Queue()
        for ns in namespaces:
            for ev in events:
                self._attach(ns, ev)
            sio.on("disconnect", self._on_disconnect(ns), namespace=ns)

    def _on_disconnect(self, ns):
        def handler(*args):
            self.disconnects.put((ns, args))

        return handler

    def _attach(self, ns: str, ev: str) -> None:
        q: queue.Queue = queue.Queue()
        self.queues[(ns, ev)] = q

        def handler(*args):
            q.put(args)

        self.sio.on(ev, handler, namespace=ns)

    def next(self, ev: str, ns: str = "/", timeout: float = TIMEOUT):
        try:
            return self.queues[(ns, ev)].get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {ev!r} event on {ns} within {timeout}s") from None

    def pending(self, ev: str, ns: str = "/") -> list:
        q = self.queues[(ns, ev)]
        out = []
        while True:
            try:
                out.append(q.get_nowait())
            except queue.Empty:
                return out


EVENTS = ("auth", "message-back", "room-message", "ack-result", "message")


def make_client(namespaces=("/",), answer_ack_me=None):
    sio = socketio.Client(reconnection=False, request_timeout=TIMEOUT)
    rec = Recorder(sio, namespaces, EVENTS)
    if answer_ack_me is not None:
        for ns in namespaces:
            sio.on("ack-me", answer_ack_me, namespace=ns)
    return sio, rec


def connect(sio, server, transports, auth=None, namespaces=("/",), path="socket.io"):
    sio.connect(
        server.base,
        transports=list(transports),
        auth=auth,
        namespaces=list(namespaces),
        socketio_path=path,
        wait_timeout=TIMEOUT,
    )


TRANSPORTS = {
    "websocket": ["websocket"],
    "polling-upgrade": ["polling", "websocket"],
}


@pytest.fixture(params=list(TRANSPORTS))
def transport(request):
    return request.param


def _settle(sio, transport):
    """With polling+websocket the client upgrades in the background: wait for it."""
    if transport == "polling-upgrade":
        wait_until(lambda: sio.transport() == "websocket", what="upgrade to websocket")
    assert sio.transport() == "websocket"


def test_connect_with_auth_and_auth_echo(conformance, transport):
    sio, rec = make_client()
    connect(sio, conformance, TRANSPORTS[transport], auth={"token": "t-123", "n": [1, 2]})
    try:
        first_transport = sio.transport()
        assert rec.next("auth") == ({"token": "t-123", "n": [1, 2]},)
        _settle(sio, transport)
        print(f"{transport}: connected as {sio.sid} over {first_transport}, now {sio.transport()}")
        if transport == "polling-upgrade":
            assert first_transport in ("polling", "websocket")
    finally:
        sio.disconnect()


def test_connect_without_auth_echoes_empty_object(conformance, transport):
    sio, rec = make_client()
    connect(sio, conformance, TRANSPORTS[transport])
    try:
        assert rec.next("auth") == ({},)
    finally:
        sio.disconnect()


def test_events_and_acks_client_to_server(conformance, transport):
    sio, rec = make_client()
    connect(sio, conformance, TRANSPORTS[transport])
    try:
        rec.next("auth")
        _settle(sio, transport)
        sio.emit("message", (1, "2", {"3": [True]}))
        assert rec.next("message-back") == (1, "2", {"3": [True]})
        sio.emit("message", "single")
        assert rec.next("message-back") == ("single",)
        assert sio.call("message-with-ack", (1, "2", {"3": [False]}), timeout=TIMEOUT) == (1, "2", {"3": [False]})
        assert sio.call("message-with-ack", "one", timeout=TIMEOUT) == "one"
        assert sio.call("message-with-ack", {"unicode": "€亜Б😀"}, timeout=TIMEOUT) == {"unicode": "€亜Б😀"}
    finally:
        sio.disconnect()


def test_acks_server_to_client(conformance, transport):
    def ack_me(*args):
        return ("got", list(args))

    sio, rec = make_client(answer_ack_me=ack_me)
    connect(sio, conformance, TRANSPORTS[transport])
    try:
        rec.next("auth")
        _settle(sio, transport)
        sio.emit("call-me", ("a", 1))
        assert rec.next("ack-result") == ("got", ["a", 1])
    finally:
        sio.disconnect()


def test_binary_both_ways(conformance, transport):
    def ack_me(*args):
        return b"\x00reply\xff"

    sio, rec = make_client(answer_ack_me=ack_me)
    connect(sio, conformance, TRANSPORTS[transport])
    try:
        rec.next("auth")
        _settle(sio, transport)
        blob = bytes(range(256))
        sio.emit("message", (blob, {"nested": b"\x01\x02", "text": "t"}))
        assert rec.next("message-back") == (blob, {"nested": b"\x01\x02", "text": "t"})
        assert sio.call("message-with-ack", (b"\xde\xad", "x", [b"\xbe\xef"]), timeout=TIMEOUT) == (
            b"\xde\xad",
            "x",
            [b"\xbe\xef"],
        )
        big = bytes(200_000)
        assert sio.call("message-with-ack", big, timeout=TIMEOUT) == big
        sio.emit("call-me", b"\x07")
        assert rec.next("ack-result") == (b"\x00reply\xff",)
    finally:
        sio.disconnect()


def test_rooms_among_three_clients(conformance, transport):
    clients = [make_client() for _ in range(3)]
    try:
        for sio, rec in clients:
            connect(sio, conformance, TRANSPORTS[transport])
            rec.next("auth")
        (a, ra), (b, rb), (c, rc) = clients
        room = f"room-{uuid.uuid4().hex[:8]}"
        assert a.call("join", room, timeout=TIMEOUT) is True
        assert b.call("join", room, timeout=TIMEOUT) is True
        a.emit("to-room", (room, "hello", {"i": 1}))
        assert ra.next("room-message") == ("hello", {"i": 1})
        assert rb.next("room-message") == ("hello", {"i": 1})
        # c (not a member) sends; the members get it, c does not
        c.emit("to-room", (room, "from c"))
        assert ra.next("room-message") == ("from c",)
        assert rb.next("room-message") == ("from c",)
        # in-order delivery per socket: after c's own echo arrives, nothing else is pending
        for sio, rec in clients:
            sio.emit("message", "sync")
            assert rec.next("message-back") == ("sync",)
        assert rc.pending("room-message") == []
        assert ra.pending("room-message") == [] and rb.pending("room-message") == []
        # leave: b stops receiving
        b.emit("leave", room)
        b.emit("message", "sync-leave")
        assert rb.next("message-back") == ("sync-leave",)
        a.emit("to-room", (room, "after leave"))
        assert ra.next("room-message") == ("after leave",)
        b.emit("message", "sync2")
        assert rb.next("message-back") == ("sync2",)
        assert rb.pending("room-message") == []
    finally:
        for sio, _ in clients:
            sio.disconnect()


def test_two_namespaces(conformance, transport):
    sio, rec = make_client(namespaces=("/", "/custom"))
    connect(sio, conformance, TRANSPORTS[transport], auth={"who": "both"}, namespaces=("/", "/custom"))
    try:
        assert rec.next("auth", "/") == ({"who": "both"},)
        assert rec.next("auth", "/custom") == ({"who": "both"},)
        assert sio.get_sid("/") and sio.get_sid("/custom")
        assert sio.get_sid("/") != sio.get_sid("/custom")
        sio.emit("message", "to custom", namespace="/custom")
        assert rec.next("message-back", "/custom") == ("to custom",)
        sio.emit("message", "to main", namespace="/")
        assert rec.next("message-back", "/") == ("to main",)
        assert rec.pending("message-back", "/custom") == []
        assert sio.call("message-with-ack", "c", namespace="/custom", timeout=TIMEOUT) == "c"
    finally:
        sio.disconnect()


def test_client_disconnect_and_reconnect(conformance, transport):
    sio, rec = make_client()
    connect(sio, conformance, TRANSPORTS[transport], auth={"round": 1})
    assert rec.next("auth") == ({"round": 1},)
    sid1 = sio.sid
    sio.disconnect()
    assert not sio.connected
    connect(sio, conformance, TRANSPORTS[transport], auth={"round": 2})
    try:
        assert rec.next("auth") == ({"round": 2},)
        sid2 = sio.sid
        assert sid2 and sid2 != sid1
        assert sio.call("message-with-ack", "still works", timeout=TIMEOUT) == "still works"
    finally:
        sio.disconnect()


def test_server_side_disconnect(conformance, transport):
    sio, rec = make_client()
    connect(sio, conformance, TRANSPORTS[transport])
    try:
        rec.next("auth")
        _settle(sio, transport)
        sio.emit("disconnect-me")
        ns, args = rec.disconnects.get(timeout=TIMEOUT)
        print(f"{transport}: disconnect handler called with {args!r}")
        assert ns == "/"
        wait_until(lambda: not sio.connected, what="client sees itself disconnected")
    finally:
        if sio.connected:
            sio.disconnect()


def test_server_side_disconnect_of_custom_namespace_keeps_main(conformance):
    sio, rec = make_client(namespaces=("/", "/custom"))
    connect(sio, conformance, ["websocket"], namespaces=("/", "/custom"))
    try:
        rec.next("auth", "/")
        rec.next("auth", "/custom")
        sio.emit("disconnect-me", namespace="/custom")
        ns, _ = rec.disconnects.get(timeout=TIMEOUT)
        assert ns == "/custom"
        assert sio.call("message-with-ack", "main alive", timeout=TIMEOUT) == "main alive"
    finally:
        sio.disconnect()


def test_async_client(conformance):
    async def main():
        sio = socketio.AsyncClient(reconnection=False)
        got: asyncio.Queue = asyncio.Queue()

        @sio.on("auth")
        async def on_auth(data):
            await got.put(("auth", data))

        @sio.on("ack-me")
        async def on_ack_me(*args):
            return "async-answer"

        @sio.on("ack-result")
        async def on_ack_result(*args):
            await got.put(("ack-result", args))

        await sio.connect(conformance.base, transports=["websocket"], auth={"a": 1}, wait_timeout=TIMEOUT)
        try:
            assert await asyncio.wait_for(got.get(), TIMEOUT) == ("auth", {"a": 1})
            r = await sio.call("message-with-ack", (b"\x01", "x"), timeout=TIMEOUT)
            assert r == (b"\x01", "x")
            await sio.emit("call-me")
            assert await asyncio.wait_for(got.get(), TIMEOUT) == ("ack-result", ("async-answer",))
        finally:
            await sio.disconnect()

    asyncio.run(main())


# --- serve: room fan-out ---------------------------------------------------------------


def _token(user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"id": user_id, "jti": uuid.uuid4().hex, "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


SERVE_ENV = {"WEBUI_SECRET_KEY": SECRET, "SWITCHBOARD_RELAY_EVENTS": "true"}


@pytest.mark.parametrize("transport_name", list(TRANSPORTS))
def test_serve_publish_fanout_exactly_once_in_order(serve_factory, transport_name):
    node = serve_factory("--path", "/ws/socket.io", env=SERVE_ENV)
    members = [make_client() for _ in range(3)]
    publisher, prec = make_client()
    room = f"fanout-{uuid.uuid4().hex[:8]}"
    n = 100
    try:
        for i, (sio, _) in enumerate(members):
            connect(sio, node, TRANSPORTS[transport_name], auth={"token": _token(f"user-{i}")}, path="/ws/socket.io")
            sio.call("join", {"room": room}, timeout=TIMEOUT)
        connect(publisher, node, TRANSPORTS[transport_name], auth={"token": _token("publisher")}, path="/ws/socket.io")
        for i in range(n):
            publisher.emit("publish", {"room": room, "data": {"seq": i}})
        publisher.call("publish", {"room": room, "data": {"seq": "end"}}, timeout=TIMEOUT)
        for idx, (sio, rec) in enumerate(members):
            got = []
            while True:
                (data,) = rec.next("message", timeout=TIMEOUT)
                got.append(data)
                if data == {"seq": "end"}:
                    break
            assert got == [{"seq": i} for i in range(n)] + [{"seq": "end"}], f"member {idx}: {got[:5]}..."
        # exactly once: after a round trip on each member, nothing more is pending
        for sio, rec in members:
            sio.call("join", {"room": room}, timeout=TIMEOUT)
            assert rec.pending("message") == []
        assert prec.pending("message") == []  # the publisher is not a member
    finally:
        for sio, _ in members + [(publisher, prec)]:
            if sio.connected:
                sio.disconnect()


def test_serve_leave_stops_delivery(serve_factory):
    node = serve_factory("--path", "/ws/socket.io", env=SERVE_ENV)
    a, ra = make_client()
    b, rb = make_client()
    room = "leave-room"
    try:
        for i, sio in enumerate((a, b)):
            connect(sio, node, ["websocket"], auth={"token": _token(f"u{i}")}, path="/ws/socket.io")
            sio.call("join", {"room": room}, timeout=TIMEOUT)
        b.call("leave", {"room": room}, timeout=TIMEOUT)
        a.call("publish", {"room": room, "data": "only-a"}, timeout=TIMEOUT)
        assert ra.next("message") == ("only-a",)
        b.call("join", {"room": "other"}, timeout=TIMEOUT)
        assert rb.pending("message") == []
    finally:
        for sio in (a, b):
            if sio.connected:
                sio.disconnect()
