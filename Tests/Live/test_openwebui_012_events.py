"""Open WebUI 0.12.4's real-time behaviour that the older contract lacked, through live `switchboard serve`
nodes on one private redis-server: direct completions handed to `{prefix}:direct_completion`, the channel
rooms joined after Open WebUI announces a new channel, typing shaped as Python shapes it.

Synchronisation: acks (every event under test is sent with an ack id, and a socket's events are handled
in order, so an ack means the event before it was handled), a Redis subscription made before the first
event, and the cluster API's room membership (wait_until).
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import redis

from livehelpers import TIMEOUT, wait_until
from owui import PREFIX, api_ok, owui, warm  # noqa: F401  (owui is a fixture)


def _subscribe(r: redis.Redis, channel: str) -> redis.client.PubSub:
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    # The subscription is in place once Redis confirms it.
    end = time.monotonic() + TIMEOUT
    while time.monotonic() < end:
        message = pubsub.get_message(timeout=0.1)
        if message is None and pubsub.subscribed:
            return pubsub
    raise AssertionError(f"no subscription to {channel}")


def _messages(pubsub: redis.client.PubSub, n: int, timeout: float = TIMEOUT) -> list[dict]:
    got: list[dict] = []
    end = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "message":
            got.append(json.loads(message["data"]))
    assert len(got) >= n, f"{len(got)} of {n} messages: {got!r}"
    return got


def test_direct_completion_chunks_reach_open_webuis_channel_in_order_and_only_from_their_owner(owui):
    A, B = owui.start(2)
    pubsub = _subscribe(owui.r, f"{PREFIX}:direct_completion")
    try:
        u1 = owui.client(A, "u1", user="u1")
        other = owui.client(B, "other", user="u2")
        anonymous = owui.client(B, "anonymous", token="not-a-jwt")
        channel = f"u1:{u1.sid}:req-1"
        chunks = [f'data: {{"n": {i}}}' for i in range(20)] + [{"done": True}]
        # Another user, an anonymous socket and a call without arguments publish nothing.
        assert other.call(channel, "data: forged") is None
        assert anonymous.call(channel, "data: anonymous") is None
        assert u1.call(channel) is None
        for chunk in chunks:
            u1.emit(channel, chunk)
        assert u1.call(channel, "data: fence") is None
        got = _messages(pubsub, len(chunks) + 1)
        assert got == [{"channel": channel, "data": c} for c in chunks + ["data: fence"]], got
        # Nothing else arrives: the forged and anonymous chunks were dropped, not delayed.
        assert pubsub.get_message(timeout=0.3) is None
        # Names Open WebUI has handlers for are not direct completions even with two colons.
        assert u1.call("ydoc:document:leave", {"document_id": "note:x"}) is not None
        assert pubsub.get_message(timeout=0.3) is None
    finally:
        pubsub.close()


def _room_sids(node, room: str) -> list[str]:
    return sorted(api_ok(node, "GET", f"/api/v1/rooms/{quote(room, safe='')}")["sids"])


def test_users_join_a_channel_open_webui_announces_with_channel_created_on_every_node(owui):
    A, B = owui.start(2)
    owui.backend.channels.update({"u1": [], "u2": []})
    u1a = owui.client(A, "u1a", user="u1")
    u1b = owui.client(B, "u1b", user="u1")
    u2 = owui.client(B, "u2", user="u2")
    bystander = owui.client(A, "bystander", user="u3")
    for c in (u1a, u1b, u2, bystander):
        assert c.call("user-join", {"auth": {"token": c.token}}) is not None
    assert _room_sids(A, "channel:dm-1") == []
    # Open WebUI creates the DM, then emits channel:created to each participant and joins their sockets
    # in its own process only (enter_room_for_users), which holds none of them.
    owui.backend.channels.update({"u1": ["dm-1"], "u2": ["dm-1"]})
    for user in ("u1", "u2"):
        message = {
            "method": "emit", "event": "events:channel", "data": [{"data": {"type": "channel:created"}}],
            "namespace": "/", "room": f"user:{user}", "skip_sid": None, "callback": None, "host_id": "open-webui-1",
        }
        owui.r.publish(f"socketio#/#user:{user}", json.dumps(message))
    u1a.wait_for("events:channel", lambda a: a == ({"data": {"type": "channel:created"}},))
    u2.wait_for("events:channel", lambda a: a == ({"data": {"type": "channel:created"}},))
    want = sorted([u1a.sid, u1b.sid, u2.sid])
    wait_until(lambda: _room_sids(A, "channel:dm-1") == want, what=f"channel:dm-1 == {want}")
    # Live messages in the new channel reach both users; the bystander was never asked to join.
    warm(lambda tag: u2.emit("events:channel", {"channel_id": "dm-1", "data": {"type": "typing", "data": {"tag": tag}}}),
         [u1a, u1b], "events:channel", what="u2 -> dm-1")
    assert bystander.events("events:channel") == []


def test_channel_typing_is_shaped_as_python_shapes_it(owui):
    (A,) = owui.start(1)
    owui.backend.channels.update({"u1": ["c1"]})
    owui.backend.names["u1"] = "Ada"
    u1 = owui.client(A, "u1", user="u1")
    assert u1.call("user-join", {"auth": {"token": u1.token}}) is not None
    sent = {"channel_id": "c1", "data": {"type": "typing", "data": {"typing": True}}, "extra": "dropped"}
    assert u1.call("events:channel", sent) is None
    got = u1.wait_for("events:channel")[0]
    assert got == {
        "channel_id": "c1", "message_id": None, "data": {"type": "typing", "data": {"typing": True}},
        "user": {"id": "u1", "name": "Ada", "role": "user"},
    }, got
