"""The python-socketio Redis protocol (docs/BACKEND.md, "python-socketio Redis protocol"): a real
`socketio.AsyncRedisManager` / `socketio.AsyncServer` in this test process drives two Switchboard
nodes on one private redis-server, as Open WebUI's backend drives python-socketio servers.

Synchronisation: the nodes' subscriptions are awaited with PUBSUB NUMSUB; membership changes are
read back with the nodes' API (GET /api/v1/rooms/{room}); "not delivered" is checked after a
fence emitted through the same manager (one publisher, one channel: Redis keeps the order).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from urllib.parse import quote

import pytest
import redis as redis_sync
import socketio

from livehelpers import TIMEOUT, wait_until
from owui import (  # noqa: F401  (owui is a fixture)
    FENCE,
    api_ok,
    bridge_subscribers,
    owui,
)


def wait_bridge(owui, n: int, channel: str = "socketio") -> None:
    wait_until(lambda: bridge_subscribers(owui.r, channel) >= n, timeout=20,
               what=f"{n} subscribers on {channel!r}")
    # and the pattern subscription socketio#* (per-room channel mode)
    wait_until(lambda: owui.r.execute_command("PUBSUB", "NUMPAT") >= 1, timeout=20, what="a pattern subscription")


def room_sids(node, room: str) -> list[str]:
    return api_ok(node, "GET", f"/api/v1/rooms/{quote(room, safe='')}")["sids"]


def wait_room(node, room: str, sids) -> None:
    want = sorted(sids)
    wait_until(lambda: room_sids(node, room) == want, what=f"room {room!r} == {want}")


async def write_only_manager(url: str, channel: str = "socketio") -> socketio.AsyncRedisManager:
    return socketio.AsyncRedisManager(url, channel=channel, write_only=True)


async def close_manager(mgr) -> None:
    for obj in (getattr(mgr, "pubsub", None), getattr(mgr, "redis", None)):
        if obj is not None:
            try:
                await obj.aclose()
            except Exception:
                pass


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def fence(mgr, clients) -> None:
    """Through the same manager (one publisher, one channel): to each client's sid."""
    tag = f"{FENCE}{uuid.uuid4().hex[:8]}"
    for c in clients:
        await mgr.emit("fence", tag, room=c.sid)
    for c in clients:
        await asyncio.to_thread(c.wait_for, "fence", lambda a: a == (tag,))


@pytest.fixture
def bridge(owui):
    """Nodes A, B; clients a1 (u1@A), a2 (u2@A), b1 (u1@B), b2 (u3@B); a1 and b1 in room r1."""
    A, B = owui.start(2, backend=False)
    wait_bridge(owui, 2)
    c = {
        "a1": owui.client(A, "a1(u1@A)", user="u1"),
        "a2": owui.client(A, "a2(u2@A)", user="u2"),
        "b1": owui.client(B, "b1(u1@B)", user="u1"),
        "b2": owui.client(B, "b2(u3@B)", user="u3"),
    }
    wait_until(lambda: set(owui.session_pool()) == {x.sid for x in c.values()}, what="four sessions")
    assert api_ok(A, "POST", "/api/v1/rooms/join", {"room": "r1", "sids": [c["a1"].sid, c["b1"].sid]}) == {"ok": True}
    assert api_ok(A, "POST", "/api/v1/rooms/join", {"room": "r2", "sids": [c["b1"].sid, c["b2"].sid]}) == {"ok": True}
    wait_room(A, "r1", [c["a1"].sid, c["b1"].sid])
    wait_room(A, "r2", [c["b1"].sid, c["b2"].sid])
    return A, B, c


def test_write_only_manager_emits_to_room_user_sid_all_list_and_skip_sid(owui, bridge):
    A, B, c = bridge
    a1, a2, b1, b2 = c["a1"], c["a2"], c["b1"], c["b2"]
    everyone = list(c.values())

    async def main():
        mgr = await write_only_manager(owui.redis_server.url)
        try:
            await mgr.emit("news", {"to": "r1"}, room="r1")
            await mgr.emit("news", {"to": "user:u1"}, room="user:u1")
            await mgr.emit("news", {"to": "sid b2"}, room=b2.sid)
            await mgr.emit("news", {"to": "all"})
            await mgr.emit("news", {"to": "r1 but a1"}, room="r1", skip_sid=a1.sid)
            await mgr.emit("news", {"to": "all but a1,b2"}, skip_sid=[a1.sid, b2.sid])
            await mgr.emit("news", {"to": "r1+r2"}, room=["r1", "r2"])
            await mgr.emit("news", (1, "two", {"3": [True, None]}), room=a2.sid)
            await fence(mgr, everyone)
        finally:
            await close_manager(mgr)

    run(main())
    expected = {
        "a1": [({"to": "r1"},), ({"to": "user:u1"},), ({"to": "all"},), ({"to": "r1+r2"},)],
        "a2": [({"to": "all"},), ({"to": "all but a1,b2"},), (1, "two", {"3": [True, None]})],
        "b1": [({"to": "r1"},), ({"to": "user:u1"},), ({"to": "all"},), ({"to": "r1 but a1"},),
               ({"to": "all but a1,b2"},), ({"to": "r1+r2"},)],
        "b2": [({"to": "sid b2"},), ({"to": "all"},), ({"to": "r1+r2"},)],
    }
    for k, cl in c.items():
        got = cl.events("news")
        assert sorted(got, key=repr) == sorted(expected[k], key=repr), f"{cl.name}: got {got!r}, expected {expected[k]!r}"


def test_write_only_manager_emits_binary_data(owui, bridge):
    A, B, c = bridge
    a1, b1 = c["a1"], c["b1"]
    blob = bytes(range(256))

    async def main():
        mgr = await write_only_manager(owui.redis_server.url)
        try:
            await mgr.emit("bin", {"blob": blob, "n": 1, "nested": [b"\x00", "text"]}, room="r1")
            await mgr.emit("bin", (b"first", "second", b""), room=b1.sid)
        finally:
            await close_manager(mgr)

    run(main())
    want = ({"blob": blob, "n": 1, "nested": [b"\x00", "text"]},)
    a1.wait_for("bin", lambda a: a == want, what="binary dict")
    b1.wait_for("bin", lambda a: a == want, what="binary dict")
    b1.wait_for("bin", lambda a: a == (b"first", "second", b""), what="binary args")


def test_enter_leave_close_room_and_disconnect_for_sids_on_the_nodes(owui, bridge):
    A, B, c = bridge
    a1, a2, b1, b2 = c["a1"], c["a2"], c["b1"], c["b2"]

    async def main():
        mgr = await write_only_manager(owui.redis_server.url)
        try:
            await mgr.enter_room(a2.sid, "/", "r9")
            await mgr.enter_room(b2.sid, "/", "r9")
            await asyncio.to_thread(wait_room, A, "r9", [a2.sid, b2.sid])
            await mgr.emit("news", "to r9", room="r9")
            for x in (a2, b2):
                await asyncio.to_thread(x.wait_for, "news", lambda a: a == ("to r9",))

            await mgr.leave_room(b2.sid, "/", "r9")
            await asyncio.to_thread(wait_room, A, "r9", [a2.sid])
            await mgr.emit("news", "to r9 after leave", room="r9")
            await fence(mgr, [a2, b2])
            assert a2.seen("news", lambda a: a == ("to r9 after leave",))
            assert not b2.seen("news", lambda a: a == ("to r9 after leave",)), "b2 left r9 but got its event"

            await mgr.enter_room(b2.sid, "/", "r9")
            await asyncio.to_thread(wait_room, A, "r9", [a2.sid, b2.sid])
            await mgr.close_room("r9", "/")
            await asyncio.to_thread(wait_room, A, "r9", [])
            await mgr.emit("news", "to r9 after close", room="r9")
            await fence(mgr, [a2, b2])
            for x in (a2, b2):
                assert not x.seen("news", lambda a: a == ("to r9 after close",)), f"{x.name}: r9 was closed"

            # disconnect a sid on each node (the manager publishes it: the sid is not local)
            await mgr.can_disconnect(b1.sid, "/")
            await mgr.can_disconnect(a1.sid, "/")
            for x in (a1, b1):
                await asyncio.to_thread(x.wait_disconnected)
        finally:
            await close_manager(mgr)

    run(main())
    wait_until(lambda: set(owui.session_pool()) == {a2.sid, b2.sid}, what="disconnected sids left SESSION_POOL")
    assert a2.connected and b2.connected
    assert {sid: v["id"] for sid, v in owui.session_pool().items()} == {a2.sid: "u2", b2.sid: "u3"}


def test_raw_publish_on_the_per_room_channel_is_delivered(owui, bridge):
    A, B, c = bridge
    a1, a2, b1, b2 = c["a1"], c["a2"], c["b1"], c["b2"]
    r = redis_sync.Redis(port=owui.redis_server.port)
    try:
        def publish(channel: str, room, data, skip_sid=None):
            msg = {"method": "emit", "event": "news", "data": data, "binary": False, "namespace": "/",
                   "room": room, "skip_sid": skip_sid, "callback": None, "host_id": "raw-publisher-0001"}
            return r.publish(channel, json.dumps(msg))

        assert publish("socketio#/#r1", "r1", [{"via": "per-room"}]) >= 1
        assert publish("socketio#/#r2", "r2", [{"via": "per-room, skip b1"}], skip_sid=b1.sid) >= 1
        for x in (a1, b1):
            x.wait_for("news", lambda a: a == ({"via": "per-room"},))
        b2.wait_for("news", lambda a: a == ({"via": "per-room, skip b1"},))
        # fence on the same channel, then nothing else arrived
        publish("socketio#/#r1", "r1", [FENCE])
        publish("socketio#/#r2", "r2", [FENCE])
        for x in (a1, b1, b2):
            x.wait_for("news", lambda a: a == (FENCE,))
    finally:
        r.close()
    assert a2.events("news") == [], a2.events("news")
    assert [a for a in b1.events("news") if a != (FENCE,)] == [({"via": "per-room"},)]
    assert [a for a in b2.events("news") if a != (FENCE,)] == [({"via": "per-room, skip b1"},)]


def test_async_server_call_to_a_sid_on_a_switchboard_node(owui):
    A, B = owui.start(2, backend=False)
    wait_bridge(owui, 2)
    on_b = owui.client(B, "confirm@B", user="u1", answers={"confirm": lambda *a: {"confirmed": True, "got": list(a)}})
    on_a = owui.client(A, "confirm@A", user="u2", answers={"confirm": lambda *a: ("yes", 2)})
    silent = owui.raw_client(B, "silent@B", user="u3")

    async def main():
        sio = socketio.AsyncServer(client_manager=socketio.AsyncRedisManager(owui.redis_server.url),
                                   logger=False, engineio_logger=False)
        # No HTTP is served, so no Engine.IO connect triggers manager.initialize(): do it here
        # (what AsyncServer._handle_eio_connect does) to start the manager's listener task.
        sio.manager_initialized = True
        sio.manager.initialize()
        try:
            await asyncio.to_thread(wait_until, lambda: bridge_subscribers(owui.r) >= 3, 20,
                                    0.02, "the AsyncServer's manager subscribed")
            got = await sio.call("confirm", {"q": 1}, to=on_b.sid, timeout=5)
            assert got == {"confirmed": True, "got": [{"q": 1}]}, got
            got = await sio.call("confirm", ("a", "b"), to=on_a.sid, timeout=5)
            assert got == ("yes", 2), got
            # several calls at once, to both nodes
            results = await asyncio.gather(*[
                sio.call("confirm", i, to=(on_a.sid if i % 2 else on_b.sid), timeout=5) for i in range(6)
            ])
            assert results == [("yes", 2) if i % 2 else {"confirmed": True, "got": [i]} for i in range(6)], results
            # a client that never answers: python-socketio's own timeout
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(socketio.exceptions.TimeoutError):
                await sio.call("confirm", "anyone?", to=silent.sid, timeout=1)
            assert loop.time() - t0 < 3
            # the AsyncServer's other operations on a Switchboard sid
            await sio.enter_room(on_b.sid, "from-server")
            await asyncio.to_thread(wait_room, A, "from-server", [on_b.sid])
            await sio.emit("news", {"from": "server"}, room="from-server")
            await asyncio.to_thread(on_b.wait_for, "news", lambda a: a == ({"from": "server"},))
            await sio.disconnect(on_a.sid)
            await asyncio.to_thread(on_a.wait_disconnected)
        finally:
            task = getattr(sio.manager, "thread", None)
            if task is not None:
                task.cancel()
                try:
                    await task
                except BaseException:
                    pass
            await close_manager(sio.manager)

    run(main())
    silent.wait_packet(lambda p: p.startswith("42") and '"anyone?"' in p)
    wait_until(lambda: on_a.sid not in owui.session_pool(), what="on_a left SESSION_POOL")


def test_custom_bridge_channel_and_bridge_off(owui):
    # both on a custom channel; B has the bridge off.
    A, B = owui.start(2, "--bridge-channel", "owui-sio", backend=False, per_node={1: ["--python-bridge", "false"]})
    wait_until(lambda: bridge_subscribers(owui.r, "owui-sio") >= 1, timeout=20, what="A subscribed to owui-sio")
    a = owui.client(A, "a", user="u1")
    b = owui.client(B, "b", user="u2")
    assert bridge_subscribers(owui.r, "socketio") == 0, "a node listens on the default channel"
    assert bridge_subscribers(owui.r, "owui-sio") == 1, "the node with --python-bridge false subscribed"

    async def main():
        mgr = await write_only_manager(owui.redis_server.url, channel="owui-sio")
        try:
            await mgr.emit("news", "custom channel")
            await mgr.emit("fence", FENCE, room=a.sid)
        finally:
            await close_manager(mgr)

    run(main())
    a.wait_for("news", lambda x: x == ("custom channel",))
    a.wait_for("fence")
    assert b.events("news") == [], "the node with --python-bridge false acted on a bridge emit"


def test_raw_emit_with_callback_publishes_the_callback_message_and_garbage_is_ignored(owui):
    A, B = owui.start(2, backend=False)
    wait_bridge(owui, 2)
    c = owui.client(B, "c@B", user="u1", answers={"confirm": lambda *a: ("yes", {"got": list(a)})})
    r = redis_sync.Redis(port=owui.redis_server.port, decode_responses=True)
    ps = r.pubsub(ignore_subscribe_messages=True)
    try:
        ps.subscribe("socketio")
        # garbage and unknown methods first: the nodes must survive them and go on
        for junk in ("not json", "[1,2]", "{}", json.dumps({"method": "teleport", "host_id": "x"}),
                     json.dumps({"method": "emit", "host_id": "x"}),
                     json.dumps({"method": "emit", "event": 5, "data": "x", "namespace": "/", "room": None, "host_id": "x"}),
                     json.dumps({"method": "enter_room", "sid": None, "room": None, "namespace": "/", "host_id": "x"})):
            r.publish("socketio", junk)
        msg = {"method": "emit", "event": "confirm", "data": [1, "two"], "binary": False, "namespace": "/",
               "room": c.sid, "skip_sid": None, "callback": [c.sid, "/", 7], "host_id": "origin-host-0001"}
        r.publish("socketio", json.dumps(msg))
        c.wait_for("confirm", lambda a: a == (1, "two"))
        seen = []
        end = time.monotonic() + TIMEOUT
        callback = None
        while callback is None and time.monotonic() < end:
            m = ps.get_message(timeout=0.5)
            if m is None:
                continue
            try:
                d = json.loads(m["data"])
            except ValueError:
                continue
            seen.append(d)
            if isinstance(d, dict) and d.get("method") == "callback":
                callback = d
        assert callback is not None, f"no callback message published; seen {seen[-10:]!r}"
        assert callback == {"method": "callback", "host_id": "origin-host-0001", "sid": c.sid, "namespace": "/",
                            "id": 7, "args": ["yes", {"got": [1, "two"]}]}, callback
    finally:
        ps.close()
        r.close()
    for n in (A, B):
        assert n.alive(), f"{n.node_id} died on garbage bridge messages"
    assert c.call("heartbeat", {}) is None


def test_a_redis_user_without_psubscribe_hears_room_emits_through_per_room_subscriptions(owui):
    """Open WebUI 0.12.3's suggested ACL (`&socketio &socketio#*`, no PSUBSCRIBE): the nodes fall back to one
    SUBSCRIBE per room with a local member (socket ids included), as python-socketio 5.16's room channels do,
    so they hear emits to their own rooms only, and drop a room's subscription when its last member leaves."""
    from types import SimpleNamespace

    from owui import NODE_IDS, start_nodes

    owui.r.execute_command("ACL", "SETUSER", "owui-socket", "on", ">owui-socket-pw", "~*", "resetchannels",
                           "&socketio", "&socketio#*", "&switchboard*", "+@all", "-psubscribe", "-punsubscribe")
    acl_redis = SimpleNamespace(url=f"redis://owui-socket:owui-socket-pw@127.0.0.1:{owui.redis_server.port}/0",
                                port=owui.redis_server.port)
    A, B = start_nodes(owui.servers, acl_redis, 2, "--api-key", "owui-live-api-key-0123456789", ids=NODE_IDS[2:])
    wait_until(lambda: bridge_subscribers(owui.r) >= 2, timeout=20, what="both nodes on socketio")
    assert owui.r.execute_command("PUBSUB", "NUMPAT") == 0
    for node in (A, B):
        wait_until(lambda: "subscribing per room" in node.stderr_text(), what=f"{node.node_id} falls back per room")

    a1 = owui.client(A, "a1(u1@A)", user="u1")
    b1 = owui.client(B, "b1(u2@B)", user="u2")

    def subscribers(room: str) -> int:
        return bridge_subscribers(owui.r, f"socketio#/#{room}")

    for room in ("user:u1", a1.sid, "user:u2", b1.sid):
        wait_until(lambda: subscribers(room) == 1, what=f"one node subscribed to socketio#/#{room}")
    assert subscribers("user:nobody") == 0

    def publish(room: str, data) -> int:
        msg = {"method": "emit", "event": "news", "data": [data], "binary": False, "namespace": "/", "room": room,
               "skip_sid": None, "callback": None, "host_id": "acl-publisher-0001"}
        return owui.r.publish(f"socketio#/#{room}", json.dumps(msg))

    assert publish("user:u1", "to u1") == 1  # exactly one receiver: A, the node with u1's socket
    assert publish(b1.sid, "to b1") == 1
    a1.wait_for("news", lambda a: a == ("to u1",))
    b1.wait_for("news", lambda a: a == ("to b1",))
    assert a1.events("news") == [("to u1",)] and b1.events("news") == [("to b1",)]

    sid = a1.sid
    a1.close()
    for room in ("user:u1", sid):
        wait_until(lambda: subscribers(room) == 0, what=f"socketio#/#{room} dropped with its last member")
    assert subscribers("user:u2") == 1
