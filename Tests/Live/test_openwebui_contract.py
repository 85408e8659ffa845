"""Open WebUI's real-time contract (docs/OPENWEBUI.md, docs/BACKEND.md) through live
`switchboard serve` nodes: python-socketio clients spread over THREE nodes on one private
redis-server, the pools read with redis-py, user details from an in-process fake backend.

Synchronisation: acks (every contract event sent with an ack id is acked), the pools in Redis
(wait_until), and for cross-node room delivery a *warmed* route (probes until every member saw
one: a join is acknowledged before the other nodes have learnt that this node holds the room).
"Reaches no one" is checked with fences: after the event under test, every node that could have
relayed it emits a fence through the same room; what a client got before the fences from those
nodes is all it gets.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from fakebackend import CHANNELS_PATH, FORWARD_EMPTY, FORWARD_PATH, USER_PATH
from livehelpers import TIMEOUT, free_port, wait_until
from owui import (  # noqa: F401  (owui is a fixture)
    API_KEY,
    FENCE,
    PREFIX,
    SECRET,
    WS_PATH,
    Client,
    api_ok,
    counter_of,
    mint,
    owui,
    start_nodes,
    unverified_claims,
    warm,
)

NAMES = {"u1": "Ada Lovelace", "u2": "Grace Hopper", "u3": "Alan Turing", "u4": "Edsger Dijkstra",
         "u5": "Barbara Liskov", "u6": "Ken Thompson"}


def user_join(c: Client, token: str | None = None):
    return c.call("user-join", {"auth": {"token": token if token is not None else c.token}})


def typing(channel: str, marker: str, message_id: str = "m-1", kind: str = "typing") -> dict:
    return {"channel_id": channel, "message_id": message_id, "data": {"type": kind, "data": {"typing": True, "tag": marker}}}


def tag_of(args) -> str:
    """The marker inside a typing payload (see typing()), or "" for anything else."""
    try:
        return str(args[0]["data"]["data"]["tag"])
    except (IndexError, KeyError, TypeError):
        return ""


def near_now(v, slack: float = 15.0) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v - time.time()) <= slack


# ---------------------------------------------------------------------------------------
# Connect, user-join, pools
# ---------------------------------------------------------------------------------------


def test_connect_and_user_join_fill_the_pools_and_ack_id_and_name(owui):
    A, B, C = owui.start(3, "--user-pool", "true")
    owui.backend.names.update(NAMES)
    owui.backend.channels.update({"u1": ["c1"], "u2": ["c1"], "u3": []})
    a = owui.client(A, "a", user="u1")
    b = owui.client(B, "b", user="u2")
    c = owui.client(C, "c", user="u3")
    users = {a.sid: "u1", b.sid: "u2", c.sid: "u3"}
    wait_until(lambda: set(owui.session_pool()) == set(users), what="SESSION_POOL holds the three sids")
    sessions = owui.session_pool()
    for sid, uid in users.items():
        entry = sessions[sid]
        assert entry["id"] == uid, entry
        assert entry["name"] == NAMES[uid], f"name not from the backend: {entry}"
        assert entry["role"] == "user", entry
        assert near_now(entry["last_seen_at"]), entry
    wait_until(lambda: owui.user_pool() == {"u1": [a.sid], "u2": [b.sid], "u3": [c.sid]},
               what="USER_POOL maps each user to its one sid")

    for cl, uid in ((a, "u1"), (b, "u2"), (c, "u3")):
        assert user_join(cl) == {"id": uid, "name": NAMES[uid]}
    # already authenticated at connect: user-join does not add the sid a second time
    assert owui.user_pool() == {"u1": [a.sid], "u2": [b.sid], "u3": [c.sid]}
    assert set(owui.session_pool()) == set(users)


def test_user_join_authenticates_a_socket_that_connected_without_token(owui):
    (A,) = owui.start(1, "--user-pool", "true")
    owui.backend.names.update(NAMES)
    anon = owui.client(A, "anon", token=None)
    assert anon.sid not in owui.session_pool()
    token = mint("u4")
    assert anon.call("user-join", {"auth": {"token": token}}) == {"id": "u4", "name": NAMES["u4"]}
    wait_until(lambda: owui.session_pool().get(anon.sid, {}).get("id") == "u4", what="SESSION_POOL[sid] = u4")
    wait_until(lambda: owui.user_pool().get("u4") == [anon.sid], what="USER_POOL[u4] = [sid]")


def test_user_from_token_without_backend(owui):
    (A,) = owui.start(1, backend=False)
    named = owui.client(A, "named", token=mint("tok-1", name="Token Name", email="t@example.com", role="admin",
                                                profile_image_url="/img/1.png", exp=int(time.time()) + 600))
    plain = owui.client(A, "plain", user="tok-2")
    wait_until(lambda: {named.sid, plain.sid} <= set(owui.session_pool()), what="both sessions in SESSION_POOL")
    pool = owui.session_pool()
    for sid in (named.sid, plain.sid):
        assert near_now(pool[sid].pop("last_seen_at")), pool[sid]
    # profile_image_url is one of the five fields Open WebUI keeps out of SESSION_POOL.
    assert pool[named.sid] == {"id": "tok-1", "name": "Token Name", "email": "t@example.com", "role": "admin"}, (
        pool[named.sid]
    )
    assert pool[plain.sid] == {"id": "tok-2", "name": "tok-2", "role": "user"}, (
        f"name defaults to the id, role to user, nothing else: {pool[plain.sid]}"
    )
    assert user_join(named) == {"id": "tok-1", "name": "Token Name"}
    assert user_join(plain) == {"id": "tok-2", "name": "tok-2"}


# ---------------------------------------------------------------------------------------
# events:channel typing
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["events:channel", "channel-events"])
def test_typing_reaches_exactly_the_channel_members_on_every_node(owui, event):
    A, B, C = owui.start(3)
    owui.backend.names.update(NAMES)
    owui.backend.channels.update({
        "u1": ["c1", "c2"],  # A
        "u6": ["c1"],        # A
        "u2": ["c1"],        # B
        "u5": [],            # B, authenticated, member of nothing
        "u3": ["c1"],        # C
        "u4": ["c2"],        # C, member of c2 only
    })
    u1 = owui.client(A, "u1@A", user="u1")
    u6 = owui.client(A, "u6@A", user="u6")
    u2 = owui.client(B, "u2@B", user="u2")
    u5 = owui.client(B, "u5@B", user="u5")
    u3 = owui.client(C, "u3@C", user="u3")
    u4 = owui.client(C, "u4@C", user="u4")
    for cl in (u1, u6, u2, u5, u3, u4):
        uid = cl.name.split("@")[0]
        assert user_join(cl) == {"id": uid, "name": NAMES[uid]}
    members_c1 = [u1, u6, u2, u3]
    for sender in (u1, u2, u3):
        warm(lambda tag, s=sender: s.emit(event, typing("c1", tag)), members_c1, event, what=f"{sender.name} -> c1")
    warm(lambda tag: u1.emit(event, typing("c2", tag)), [u1, u4], event, what="u1 -> c2")

    # the typing of a member on A and of a member on C
    p1 = typing("c1", "from-u1", message_id="m-u1")
    p3 = typing("c1", "from-u3", message_id="m-u3")
    assert u1.call(event, p1) is None
    assert u3.call(event, p3) is None
    # a non-member (u5 on B) and a member of another channel (u4 on C) typing in c1
    assert u5.call(event, typing("c1", "from-u5")) is None
    assert u4.call(event, typing("c1", "from-u4")) is None
    # fences from every node, through c1 (and c2 for u4)
    for s in (u1, u2, u3):
        s.emit(event, typing("c1", f"{FENCE}{s.name}"))
    u1.emit(event, typing("c2", f"{FENCE}c2"))
    for m in members_c1:
        for s in (u1, u2, u3):
            m.wait_for(event, lambda a, s=s: tag_of(a) == f"{FENCE}{s.name}", what=f"fence of {s.name}")
    u4.wait_for(event, lambda a: tag_of(a) == f"{FENCE}c2", what="c2 fence")

    want1 = {**p1, "user": {"id": "u1", "name": NAMES["u1"], "role": "user"}}
    want3 = {**p3, "user": {"id": "u3", "name": NAMES["u3"], "role": "user"}}
    for m in members_c1:
        got = [a for a in m.events(event) if not tag_of(a).startswith(FENCE)]
        assert counter_of(got) == counter_of([(want1,), (want3,)]), (
            f"{m.name} should get exactly u1's and u3's typing (with user added), got {got!r}"
        )
    for outsider in (u5, u4):
        leaked = [a for a in outsider.events(event, raw=True) if a[0].get("channel_id") == "c1"]
        assert leaked == [], f"{outsider.name} is not in c1 but got {leaked!r}"


def test_join_channels_joins_the_users_channels(owui):
    A, B = owui.start(2)
    owui.backend.names.update(NAMES)
    owui.backend.channels.update({"u1": ["c7"], "u2": ["c7"]})
    u1 = owui.client(A, "u1", user="u1")
    u2 = owui.client(B, "u2", user="u2")
    assert u1.call("join-channels", {"auth": {"token": u1.token}}) is None
    assert u2.call("join-channels", {"auth": {"token": u2.token}}) is None
    warm(lambda tag: u2.emit("events:channel", typing("c7", tag)), [u1, u2], "events:channel", what="u2 -> c7")
    p = typing("c7", "hello")
    assert u2.call("events:channel", p) is None
    u1.wait_for("events:channel", lambda a: a == ({**p, "user": {"id": "u2", "name": NAMES["u2"], "role": "user"}},))


def test_non_typing_channel_event_of_a_member_goes_to_the_backend(owui):
    (A,) = owui.start(1)
    owui.backend.channels.update({"u1": ["c1"]})
    u1 = owui.client(A, "u1", user="u1")
    user_join(u1)
    p = {"channel_id": "c1", "message_id": "m9", "data": {"type": "last_read_at", "data": {}}}
    member_acks = [u1.call("events:channel", p)]
    (body,) = owui.backend.wait_forwarded(1, pred=lambda b: b.get("event") == "events:channel")
    assert body["args"] == [p]
    assert body["sid"] == u1.sid and body["user_id"] == "u1"
    assert u1.events("events:channel", raw=True) == [], "a last_read_at is not relayed to the room"
    outsider = owui.client(A, "outsider", user="u2")  # member of no channel
    user_join(outsider)
    assert outsider.call("events:channel", {**p, "message_id": "from-outsider"}) is None
    member_acks.append(u1.call("events:channel", {**p, "message_id": "fence"}))
    owui.backend.wait_forwarded(2, pred=lambda b: b.get("event") == "events:channel")
    ids = [b["args"][0]["message_id"] for b in owui.backend.forwarded() if b.get("event") == "events:channel"]
    assert ids == ["m9", "fence"], f"a non-member's channel event was forwarded: {ids}"
    # docs/BACKEND.md: a forwarded channel event is acked with the backend's answer.
    assert member_acks == [{"ok": True}, {"ok": True}], f"events:channel acked with {member_acks!r}"


# ---------------------------------------------------------------------------------------
# usage, user-list, heartbeat
# ---------------------------------------------------------------------------------------


def test_usage_fills_usage_pool_and_broadcasts_models(owui):
    A, B, C = owui.start(3, "--broadcast-presence", "true")
    a = owui.client(A, "a", user="u1")
    b = owui.client(B, "b", user="u2")
    c = owui.client(C, "c", user="u3")
    assert a.call("usage", {"model": "llama3:8b", "chat_id": "chat-1", "action": "generate"}) is None
    pool = owui.usage_pool()
    assert "llama3:8b" in pool, pool
    assert set(pool["llama3:8b"]) == {a.sid}, pool
    assert set(pool["llama3:8b"][a.sid]) == {"updated_at"}, pool
    assert near_now(pool["llama3:8b"][a.sid]["updated_at"]), pool
    for cl in (a, b, c):
        (payload,) = cl.wait_for("usage", lambda args: "llama3:8b" in args[0].get("models", []), what="with llama3:8b")
        assert set(payload) == {"models"}, payload
    assert b.call("usage", {"model": "gpt-4o"}) is None
    assert a.sid not in owui.usage_pool().get("gpt-4o", {}), "usage is per sid"
    assert set(owui.usage_pool()["gpt-4o"]) == {b.sid}
    for cl in (a, b, c):
        cl.wait_for("usage", lambda args: "gpt-4o" in args[0].get("models", []), what="with gpt-4o")


def test_user_list_broadcast_on_connect_on_request_and_on_disconnect(owui):
    A, B, C = owui.start(3, "--broadcast-presence", "true")
    a = owui.client(A, "a", user="u1")
    b = owui.client(B, "b", user="u2")
    c = owui.client(C, "c", user="u3")
    everyone = {"u1", "u2", "u3"}
    for cl in (a, b):
        cl.wait_for("user-list", lambda args: set(args[0]["user_ids"]) == everyone, what="after u3 connected")
    n_c = len(c.events("user-list"))
    n_b = len(b.events("user-list"))
    assert a.call("user-list") is None
    for cl, n in ((c, n_c), (b, n_b)):
        wait_until(lambda cl=cl, n=n: len(cl.events("user-list")) > n, what=f"{cl.name}: a user-list after the request")
        (payload,) = cl.events("user-list")[-1]
        assert set(payload) == {"user_ids"}, payload
        assert set(payload["user_ids"]) == everyone and len(payload["user_ids"]) == 3, payload
    c.close()
    for cl in (a, b):
        cl.wait_for("user-list", lambda args: set(args[0]["user_ids"]) == {"u1", "u2"}, what="after u3 left")


def test_heartbeat_updates_last_seen_at(owui):
    A, B = owui.start(2)
    owui.backend.names.update(NAMES)
    a = owui.client(A, "a", user="u1")
    anon = owui.client(B, "anon", token=None)
    wait_until(lambda: a.sid in owui.session_pool(), what="a in SESSION_POOL")
    entry = owui.session_pool()[a.sid]
    old = int(time.time()) - 60  # stale, but younger than the 120 s reaping age
    owui.r.hset(f"{PREFIX}:session_pool", a.sid, json.dumps({**entry, "last_seen_at": old}))
    assert a.call("heartbeat", {}) is None
    after = owui.session_pool()[a.sid]
    assert after["last_seen_at"] >= int(time.time()) - 5, f"last_seen_at not refreshed: {after}"
    assert {k: v for k, v in after.items() if k != "last_seen_at"} == {k: v for k, v in entry.items() if k != "last_seen_at"}
    assert anon.call("heartbeat", {}) is None
    assert anon.sid not in owui.session_pool()


# ---------------------------------------------------------------------------------------
# disconnect
# ---------------------------------------------------------------------------------------


def test_disconnect_empties_every_pool_and_keeps_other_sessions_of_the_user(owui):
    A, B, C = owui.start(3, "--broadcast-presence", "true")
    u1a = owui.client(A, "u1@A", user="u1")
    u1b = owui.client(B, "u1@B", user="u1")
    u2 = owui.client(C, "u2@C", user="u2")
    wait_until(lambda: set(owui.session_pool()) == {u1a.sid, u1b.sid, u2.sid}, what="three sessions")
    wait_until(lambda: sorted(owui.user_pool().get("u1", [])) == sorted([u1a.sid, u1b.sid]), what="USER_POOL[u1] has both sids")
    assert u1a.call("usage", {"model": "m-a"}) is None
    assert u1b.call("usage", {"model": "m-b"}) is None
    assert u2.call("usage", {"model": "m-a"}) is None

    u1a.close()
    wait_until(lambda: u1a.sid not in owui.session_pool(), what="u1@A left SESSION_POOL")
    wait_until(lambda: owui.user_pool().get("u1") == [u1b.sid], what="USER_POOL[u1] == [u1@B]")
    for model, entries in owui.usage_pool().items():
        assert u1a.sid not in entries, f"USAGE_POOL[{model}] still has the disconnected sid: {entries}"
    assert u1b.sid in owui.session_pool() and u2.sid in owui.session_pool()
    for cl in (u1b, u2):
        cl.wait_for("user-list", lambda a: set(a[0]["user_ids"]) == {"u1", "u2"})

    u1b.close()
    wait_until(lambda: "u1" not in owui.user_pool(), what="u1 deleted from USER_POOL")
    u2.wait_for("user-list", lambda a: a[0]["user_ids"] == ["u2"], what="[u2] after u1's last session left")
    u2.close()
    wait_until(lambda: owui.session_pool() == {} and owui.user_pool() == {}, what="SESSION_POOL and USER_POOL empty")
    wait_until(lambda: all(not v for v in owui.usage_pool().values()), what="no sid left in USAGE_POOL")


def _presence_off_setup(owui):
    A, B = owui.start(2, "--broadcast-presence", "false")
    owui.backend.channels.update({"u1": ["c1"], "u2": ["c1"], "u3": ["c1"]})
    x = owui.client(A, "x@A", user="u1")
    xb = owui.client(B, "xb@B", user="u3")
    y = owui.client(B, "y@B", user="u2")
    for cl in (x, xb, y):
        user_join(cl)
    warm(lambda tag: y.emit("events:channel", typing("c1", tag)), [x, xb], "events:channel", what="y -> c1")
    return A, B, x, xb, y


def _presence_fence(y, receivers):
    """y's typing through c1 leaves B after everything y's node did before."""
    tag = f"{FENCE}{time.monotonic_ns()}"
    y.emit("events:channel", typing("c1", tag))
    for cl in receivers:
        cl.wait_for("events:channel", lambda a: tag_of(a) == tag)


def test_broadcast_presence_false_stops_connect_usage_and_disconnect_broadcasts(owui):
    A, B, x, xb, y = _presence_off_setup(owui)
    assert y.call("usage", {"model": "m1"}) is None
    assert "m1" in owui.usage_pool(), "the pool is still written"
    w = owui.client(B, "w@B", user="u4")
    wait_until(lambda: w.sid in owui.session_pool(), what="w in SESSION_POOL")
    w.close()
    wait_until(lambda: w.sid not in owui.session_pool(), what="w left SESSION_POOL")
    _presence_fence(y, [x, xb])
    for cl in (x, xb):
        got = [e for (e, _) in cl.all_events() if e in ("user-list", "usage")]
        assert got == [], f"{cl.name} got presence broadcasts with --broadcast-presence false: {cl.all_events()!r}"


def test_broadcast_presence_false_answers_a_user_list_request_to_the_sender_only(owui):
    A, B, x, xb, y = _presence_off_setup(owui)
    assert y.call("user-list") is None
    (answer,) = y.wait_for("user-list", lambda args: True, what="the answer to y's own request")
    assert sorted(answer["user_ids"]) == ["u1", "u2", "u3"], answer
    _presence_fence(y, [x, xb])
    for cl in (x, xb):
        got = [a for (e, a) in cl.all_events() if e == "user-list"]
        assert got == [], (
            f"{cl.name} (not the requester) got a user-list broadcast after y's user-list request with "
            f"--broadcast-presence false: {got!r}"
        )


# ---------------------------------------------------------------------------------------
# Anonymous sockets, strict mode, revocation
# ---------------------------------------------------------------------------------------


def test_anonymous_sockets_connect_but_join_nothing(owui):
    A, B, C = owui.start(3, "--user-pool", "true")
    owui.backend.names.update(NAMES)
    owui.backend.channels.update({"u1": ["c1"], "u2": ["c1"]})
    now = int(time.time())
    bad_tokens = {
        "none": None,
        "garbage": "not-a-jwt",
        "wrong-secret": mint("u1", secret="another-secret-0123456789abcdef-0123456789"),
        "expired": mint("u1", exp=now - 3600, iat=now - 7200),
    }
    anons = {}
    for i, (kind, tok) in enumerate(bad_tokens.items()):
        node = (A, B, C)[i % 3]
        cl = owui.client(node, f"anon-{kind}", token=tok) if tok is not None else owui.client(node, "anon-none", auth=None)
        assert cl.connected and cl.sid
        anons[kind] = cl
    m1 = owui.client(A, "m1", user="u1")
    m2 = owui.client(C, "m2", user="u2")
    assert user_join(m1) == {"id": "u1", "name": NAMES["u1"]}
    assert user_join(m2) == {"id": "u2", "name": NAMES["u2"]}

    for kind, cl in anons.items():
        tok = bad_tokens[kind] or ""
        assert cl.call("user-join", {"auth": {"token": tok}}) is None, f"{kind}: user-join must ack nothing"
        assert cl.call("join-channels", {"auth": {"token": tok}}) is None
        assert cl.call("events:channel", typing("c1", f"from-{kind}")) is None
        assert cl.call("heartbeat", {}) is None
    sessions = owui.session_pool()
    users = owui.user_pool()
    for kind, cl in anons.items():
        assert cl.sid not in sessions, f"{kind}: anonymous socket in SESSION_POOL"
        assert all(cl.sid not in sids for sids in users.values()), f"{kind}: anonymous socket in USER_POOL {users}"
    assert set(users) == {"u1", "u2"}

    # members' typing and an emit to user:u1 do not reach the anonymous sockets
    for s in (m1, m2):
        warm(lambda tag, s=s: s.emit("events:channel", typing("c1", tag)), [m1, m2], "events:channel", what=f"{s.name} -> c1")
    for s in (m1, m2):
        assert s.call("events:channel", typing("c1", f"{FENCE}{s.name}")) is None
    for m in (m1, m2):
        for s in (m1, m2):
            m.wait_for("events:channel", lambda a, s=s: tag_of(a) == f"{FENCE}{s.name}")
        leaked = [a for a in m.events("events:channel") if tag_of(a).startswith("from-")]
        assert leaked == [], f"typing of an anonymous socket reached {m.name}: {leaked!r}"
    api_ok(A, "POST", "/api/v1/emit", {"event": "to-u1", "args": [1], "to": {"user": "u1"}})
    m1.wait_for("to-u1")
    for kind, cl in anons.items():
        assert cl.events("events:channel", raw=True) == [], f"{kind} received channel events"
        assert cl.events("to-u1", raw=True) == [], f"{kind} (token claims u1) is in user:u1"


def test_strict_mode_refuses_with_unauthorized(owui):
    (A,) = owui.start(1, "--auth-mode", "strict")
    now = int(time.time())
    cases = {
        "no auth": None,
        "empty auth": {},
        "garbage": {"token": "garbage"},
        "wrong secret": {"token": mint("u1", secret="another-secret-0123456789abcdef-0123456789")},
        "expired": {"token": mint("u1", exp=now - 3600, iat=now - 7200)},
        "token not a string": {"token": 12345},
    }
    for kind, auth in cases.items():
        c = Client(A, f"refused-{kind}", auth=auth)
        owui.clients.append(c)
        payload = c.connect_refused()
        assert isinstance(payload, dict) and payload.get("message") == "unauthorized", f"{kind}: {payload!r}"
        assert isinstance(payload.get("data"), dict) and "reason" in payload["data"], f"{kind}: {payload!r}"
    ok = owui.client(A, "ok", user="u1")
    wait_until(lambda: ok.sid in owui.session_pool(), what="the valid token's session")
    assert set(owui.session_pool()) == {ok.sid}, "a refused socket left a session behind"
    # the wire: 44{"message":"unauthorized","data":{"reason":...}}
    from livehelpers import eio_ws_open, ws_recv, ws_recv_msg

    ws = eio_ws_open(A, "/ws/socket.io/")
    try:
        assert ws_recv(ws).startswith("0")
        ws.send('40{"token":"garbage"}')
        pkt = ws_recv_msg(ws)
        assert pkt.startswith("44{"), pkt
        body = json.loads(pkt[2:])
        assert body["message"] == "unauthorized" and isinstance(body["data"]["reason"], str), body
    finally:
        ws.close()


@pytest.mark.parametrize("mode", ["strict", "always-connect"])
def test_revocation_keys_invalidate_tokens(owui, mode):
    (A,) = owui.start(1, "--auth-mode", mode)
    now = int(time.time())

    def accepted(token: str, name: str) -> bool:
        c = Client(A, name, token=token)
        owui.clients.append(c)
        if mode == "strict":
            try:
                c.connect()
            except Exception:
                assert c.connect_errors and c.connect_errors[0][0].get("message") == "unauthorized", c.connect_errors
                return False
            # accepted: the session is written (not necessarily before the CONNECT ack)
            wait_until(lambda: c.sid in owui.session_pool(), what=f"{name}: session in SESSION_POOL")
        else:
            c.connect()
            assert c.call("heartbeat", {}) is None  # the connect's authentication is behind us
        ok = c.sid in owui.session_pool()
        return ok

    t_ok = mint("r1")
    assert accepted(t_ok, "control"), "control token refused"
    t_rev = mint("r1")
    owui.r.set(f"{PREFIX}:auth:token:{unverified_claims(t_rev)['jti']}:revoked", "1")
    assert not accepted(t_rev, "jti-revoked"), "a token whose jti is revoked was accepted"
    assert accepted(mint("r1"), "other-jti"), "revoking one jti must not revoke the user's other tokens"

    t_at = mint("r2", iat=now - 10)
    owui.r.set(f"{PREFIX}:auth:user:r2:revoked_at", str(now - 10))
    assert not accepted(t_at, "revoked-at-iat"), "revoked_at == iat must refuse"
    t_before = mint("r2", iat=now - 20)
    assert not accepted(t_before, "issued-before"), "token issued before revoked_at was accepted"
    t_after = mint("r2", iat=now - 5)
    assert accepted(t_after, "issued-after"), "a token issued after revoked_at must be accepted"


def test_redis_key_prefix_names_pools_and_revocation_keys(owui):
    (A,) = owui.start(1, "--redis-key-prefix", "owui-x", "--auth-mode", "strict", "--user-pool", "true")
    c = owui.client(A, "c", user="p1")
    wait_until(lambda: c.sid in owui.session_pool("owui-x"), what="owui-x:session_pool")
    assert owui.user_pool("owui-x") == {"p1": [c.sid]}
    assert c.call("usage", {"model": "mx"}) is None
    assert "mx" in owui.usage_pool("owui-x")
    assert owui.session_pool(PREFIX) == {} and owui.user_pool(PREFIX) == {}
    t = mint("p1")
    owui.r.set(f"owui-x:auth:token:{unverified_claims(t)['jti']}:revoked", "1")
    refused = Client(A, "revoked", token=t)
    owui.clients.append(refused)
    assert refused.connect_refused()["message"] == "unauthorized"
    t2 = mint("p1")
    owui.r.set(f"{PREFIX}:auth:token:{unverified_claims(t2)['jti']}:revoked", "1")  # other prefix: ignored
    owui.client(A, "other-prefix-key", token=t2)


# ---------------------------------------------------------------------------------------
# User details from the backend
# ---------------------------------------------------------------------------------------


def test_user_details_come_from_the_backend_and_are_cached_per_token(owui):
    (A,) = owui.start(1)
    owui.backend.names["u1"] = "Name From Backend"
    owui.backend.channels["u1"] = ["c1"]
    token = mint("u1", name="Name In Token")
    c1 = owui.client(A, "c1", token=token)
    assert user_join(c1) == {"id": "u1", "name": "Name From Backend"}
    assert owui.session_pool()[c1.sid]["name"] == "Name From Backend"
    assert owui.backend.count(USER_PATH) == 1
    assert owui.backend.count(CHANNELS_PATH) == 1
    auths = {r["authorization"] for r in owui.backend.requests}
    assert auths == {f"Bearer {token}"}, f"the backend must be called with the user's own token: {auths}"

    c2 = owui.client(A, "c2", token=token)
    assert user_join(c2) == {"id": "u1", "name": "Name From Backend"}
    assert owui.backend.count(USER_PATH) == 1, "second connect with the same token called the backend again"
    assert owui.backend.count(CHANNELS_PATH) == 1, "channels not cached per token"
    # join-channels comes right after the user created a channel: always asked afresh.
    assert c2.call("join-channels", {"auth": {"token": token}}) is None
    assert owui.backend.count(CHANNELS_PATH) == 2, "join-channels answered from the cache"

    c3 = owui.client(A, "c3", user="u1")  # another token of the same user
    assert user_join(c3) == {"id": "u1", "name": "Name From Backend"}
    assert owui.backend.count(USER_PATH) == 2


def test_session_pool_holds_open_webuis_user_fields_and_never_the_token(owui):
    (A,) = owui.start(1)
    owui.backend.names["u1"] = "Full User"
    token = mint("u1")
    # What Open WebUI 0.12.4's GET /api/v1/auths/ answers: the caller's own bearer token among the user's fields.
    owui.backend.user_extra = {
        "token": token, "token_type": "Bearer", "expires_at": int(time.time()) + 3600, "email": "u1@example.com",
        "profile_image_url": "/user.png", "bio": "b", "gender": "g", "date_of_birth": "1815-12-10",
        "status_emoji": None, "status_message": "busy", "status_expires_at": None,
        "permissions": {"chat": {"file_upload": True}}, "settings": {"ui": {"theme": "dark"}}, "api_key": "sk-1",
    }
    c = owui.client(A, "c", token=token)
    wait_until(lambda: c.sid in owui.session_pool(), what="session")
    entry = owui.session_pool()[c.sid]
    want = {"id": "u1", "name": "Full User", "role": "user", "email": "u1@example.com", "status_emoji": None,
            "status_message": "busy", "status_expires_at": None, "settings": {"ui": {"theme": "dark"}}}
    assert {k: v for k, v in entry.items() if k != "last_seen_at"} == want, entry
    assert near_now(entry["last_seen_at"])
    raw = owui.r.hgetall(f"{PREFIX}:session_pool")
    assert not any(token in v or "sk-1" in v or "permissions" in v for v in raw.values()), raw


def test_user_join_with_a_bad_token_on_an_authenticated_socket_acks_nothing_and_joins_nothing(owui):
    A, B = owui.start(2)
    owui.backend.channels.update({"u1": ["c1"], "u2": ["c1"]})
    c = owui.client(A, "c", user="u1")
    m = owui.client(B, "m", user="u2")
    assert user_join(m) == {"id": "u2", "name": "u2"}
    wait_until(lambda: c.sid in owui.session_pool(), what="c authenticated at connect")
    bad = mint("u1", secret="x" * 64)
    assert c.call("user-join", {"auth": {"token": bad}}) is None
    assert c.call("join-channels", {"auth": {"token": bad}}) is None
    assert c.call("user-join", {"auth": {}}) is None
    assert c.call("user-join", {}) is None
    assert c.call("user-join") is None
    # c stays authenticated, but joined no channel
    assert owui.session_pool()[c.sid]["id"] == "u1"
    wait_until(lambda: api_ok(A, "GET", "/api/v1/rooms/channel%3Ac1")["sids"] == [m.sid], what="channel:c1 == [m]")
    assert owui.backend.count(CHANNELS_PATH) == 1, "channels were looked up with a bad token"


def test_concurrent_sessions_of_one_user_keep_user_pool_and_usage_pool_consistent(owui):
    nodes = owui.start(3, "--user-pool", "true")
    n = 12
    clients = [Client(nodes[i % 3], f"s{i}", token=mint("busy")) for i in range(n)]
    owui.clients.extend(clients)
    threads = [threading.Thread(target=cl.connect, daemon=True) for cl in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert all(cl.connected for cl in clients)
    sids = sorted(cl.sid for cl in clients)
    wait_until(lambda: sorted(owui.user_pool().get("busy", [])) == sids,
               what=f"USER_POOL[busy] holds all {n} sids (got {owui.user_pool().get('busy')})")
    assert len(owui.user_pool()["busy"]) == n, "duplicates in USER_POOL"
    threads = [threading.Thread(target=cl.call, args=("usage", {"model": "shared"}), daemon=True) for cl in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert sorted(owui.usage_pool().get("shared", {})) == sids, "concurrent usage updates lost sids"
    threads = [threading.Thread(target=cl.close, daemon=True) for cl in clients[: n - 1]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    wait_until(lambda: owui.user_pool() == {"busy": [clients[-1].sid]},
               what=f"USER_POOL == {{busy: [last sid]}} (got {owui.user_pool()})")
    assert set(owui.session_pool()) == {clients[-1].sid}
    clients[-1].close()
    wait_until(lambda: owui.user_pool() == {} and owui.session_pool() == {}, what="pools empty")


def test_a_socket_gone_during_its_user_lookup_leaves_no_session(owui):
    (A,) = owui.start(1, "--backend-timeout", "5s")
    owui.backend.slow_seconds = 1.5
    owui.backend.set_mode("slow", USER_PATH)
    from livehelpers import eio_ws_open, ws_recv

    ws = eio_ws_open(A, "/ws/socket.io/")
    assert ws_recv(ws).startswith("0")
    ws.send("40" + json.dumps({"token": mint("ghost")}))
    wait_until(lambda: owui.backend.count(USER_PATH) == 1, what="the lookup in flight")
    ws.close()
    wait_until(lambda: owui.backend.done_count(USER_PATH) == 1, what="the lookup answered (in time)")
    probe = owui.client(A, "probe", token=None)
    assert probe.call("heartbeat", {}) is None
    other = owui.client(A, "other", user="u2")  # lookups are slow: this one waits 1.5 s too
    wait_until(lambda: other.sid in owui.session_pool(), what="other's session")
    assert set(owui.session_pool()) == {other.sid}, f"a session of a closed socket: {owui.session_pool()}"
    assert "ghost" not in owui.user_pool()


def test_user_cache_ttl_expires(owui):
    (A,) = owui.start(1, "--user-cache-ttl", "1s")
    token = mint("u1")
    owui.client(A, "c1", token=token)
    wait_until(lambda: owui.backend.count(USER_PATH) == 1, what="first user lookup")
    time.sleep(1.5)  # the cache entry's TTL elapses (the behaviour under test, not a synchronisation)
    c2 = owui.client(A, "c2", token=token)
    wait_until(lambda: c2.sid in owui.session_pool(), what="second session")
    assert owui.backend.count(USER_PATH) == 2, "the cached user outlived --user-cache-ttl"


def test_backend_user_with_another_id_is_refused(owui):
    (A,) = owui.start(1)
    owui.backend.user_override = {"id": "somebody-else", "name": "Mallory", "role": "admin"}
    c = owui.client(A, "c", user="u1")
    assert user_join(c) is None
    assert owui.backend.count(USER_PATH) >= 1
    assert c.sid not in owui.session_pool()
    assert owui.user_pool() == {}


def test_slow_backend_leaves_socket_anonymous_within_timeout_and_holds_up_no_one(owui):
    (A,) = owui.start(1, "--backend-timeout", "1s")
    owui.backend.slow_seconds = 4.0
    owui.backend.names.update(NAMES)
    other = owui.client(A, "other", user="u2")
    assert user_join(other) == {"id": "u2", "name": NAMES["u2"]}
    owui.backend.set_mode("slow", USER_PATH)

    slow = Client(A, "slow", token=mint("u1"))
    owui.clients.append(slow)
    took: dict = {}

    def connect_slow():
        t0 = time.monotonic()
        try:
            slow.connect()
        except Exception as e:  # reported below
            took["error"] = repr(e)
        took["s"] = time.monotonic() - t0

    n0 = owui.backend.count(USER_PATH)
    th = threading.Thread(target=connect_slow, daemon=True)
    th.start()
    wait_until(lambda: owui.backend.count(USER_PATH) > n0, what="the slow user lookup in flight")
    # while it is in flight: the other socket is served, and a new socket connects
    t0 = time.monotonic()
    assert other.call("heartbeat", {}) is None
    assert other.call("user-list") is None
    t_other = time.monotonic() - t0
    t0 = time.monotonic()
    owui.client(A, "fresh-anon", token=None)
    t_fresh = time.monotonic() - t0
    th.join(TIMEOUT)
    assert "error" not in took, f"connect failed: {took}"
    assert "s" in took, "connect did not complete"
    assert took["s"] < 3.0, f"connect took {took['s']:.2f}s with --backend-timeout 1s (backend sleeps 4s)"
    assert t_other < 0.9, f"another socket's events took {t_other:.2f}s while a lookup was slow"
    assert t_fresh < 0.9, f"a new socket took {t_fresh:.2f}s to connect while a lookup was slow"
    # the late answer does not authenticate the socket afterwards
    wait_until(lambda: owui.backend.done_count(USER_PATH) > n0, timeout=8, what="the slow lookup finished")
    assert slow.call("heartbeat", {}) is None
    assert slow.sid not in owui.session_pool(), "socket authenticated although the backend timed out"
    # unauthenticated "for that attempt": a later user-join with the backend back succeeds
    owui.backend.set_mode("normal")
    assert user_join(slow) == {"id": "u1", "name": NAMES["u1"]}
    wait_until(lambda: slow.sid in owui.session_pool(), what="slow socket authenticated on retry")


def test_failing_backend_leaves_socket_anonymous_for_that_attempt(owui):
    (A,) = owui.start(1)
    owui.backend.names.update(NAMES)
    owui.backend.channels["u1"] = ["c1"]
    owui.backend.set_mode("failing")
    c = owui.client(A, "c", user="u1")
    assert user_join(c) is None
    assert owui.backend.count(USER_PATH) >= 1
    assert c.sid not in owui.session_pool()
    owui.backend.set_mode("normal")
    assert user_join(c) == {"id": "u1", "name": NAMES["u1"]}
    wait_until(lambda: c.sid in owui.session_pool(), what="authenticated once the backend answers")


def test_unreachable_backend_leaves_socket_anonymous(owui):
    (A,) = owui.start(1, "--backend-url", f"http://127.0.0.1:{free_port()}", "--backend-timeout", "2s", backend=False)
    t0 = time.monotonic()
    c = owui.client(A, "c", user="u1")
    assert time.monotonic() - t0 < 3.5
    assert user_join(c) is None
    assert c.sid not in owui.session_pool()
    other = owui.client(A, "anon", token=None)
    assert other.call("heartbeat", {}) is None


# ---------------------------------------------------------------------------------------
# Events the node does not handle: forwarded to the backend
# ---------------------------------------------------------------------------------------


def test_unhandled_events_forwarded_over_http_in_order_with_sid_and_user(owui):
    A, B = owui.start(2)
    a = owui.client(A, "a", user="u1")
    b = owui.client(B, "b", user="u2")
    n = 25
    for i in range(n):
        a.emit("ydoc:document:update", {"chat_id": "chat-a", "seq": i})
        b.emit("ydoc:document:update", {"chat_id": "chat-b", "seq": i})
    assert a.call("ydoc:document:update", {"chat_id": "chat-a", "seq": "end"}) == {"ok": True}
    assert b.call("ydoc:document:update", {"chat_id": "chat-b", "seq": "end"}) == {"ok": True}
    a.emit("encryption:status", {"note_id": "n1"})
    b.emit("ydoc:document:update", {"document_id": "d1"}, "second-arg")
    owui.backend.wait_forwarded(2 * (n + 1) + 2)
    bodies = owui.backend.forwarded()
    for cl, node, uid, chat in ((a, A, "u1", "chat-a"), (b, B, "u2", "chat-b")):
        mine = [x for x in bodies if x.get("sid") == cl.sid]
        chats = [x for x in mine if x.get("event") == "ydoc:document:update" and "seq" in x["args"][0]]
        assert [x["args"][0]["seq"] for x in chats] == list(range(n)) + ["end"], f"order for {cl.name}: {chats[:5]}"
        for x in mine:
            assert x["user_id"] == uid and x["namespace"] == "/" and x["node"] == node.node_id, x
            assert set(x) >= {"event", "args", "sid", "user_id", "namespace", "node"}, x
        assert chats[0]["args"] == [{"chat_id": chat, "seq": 0}]
    note = [x for x in bodies if x.get("event") == "encryption:status"]
    assert note and note[0]["args"] == [{"note_id": "n1"}] and note[0]["sid"] == a.sid
    ydoc = [x for x in bodies if x.get("event") == "ydoc:document:update" and "document_id" in x["args"][0]]
    assert ydoc and ydoc[0]["args"] == [{"document_id": "d1"}, "second-arg"]
    assert {e["authorization"] for e in owui.backend.events} == {f"Bearer {API_KEY}"}


def test_forward_ack_carries_the_backends_answer(owui):
    (A,) = owui.start(1, "--backend-timeout", "1s")
    owui.backend.slow_seconds = 3.0
    c = owui.client(A, "c", user="u1")
    owui.backend.forward_answer = {"ok": True, "answer": [1, 2]}
    assert c.call("ydoc:document:update", {"x": 1}) == {"ok": True, "answer": [1, 2]}
    owui.backend.forward_answer = [1, "two", {"3": None}]
    assert c.call("ydoc:document:update", {"x": 2}) == (1, "two", {"3": None}), "a JSON array is the ack's arguments"
    owui.backend.forward_answer = "fine"
    assert c.call("ydoc:document:update", {"x": 3}) == "fine"
    owui.backend.forward_answer = FORWARD_EMPTY
    assert c.call("ydoc:document:update", {"x": 4}) is None, "an empty body acks with no arguments"
    owui.backend.set_mode("failing", FORWARD_PATH)
    assert c.call("ydoc:document:update", {"x": 5}) == {"error": "backend unavailable"}
    owui.backend.set_mode("slow", FORWARD_PATH)
    t0 = time.monotonic()
    assert c.call("ydoc:document:update", {"x": 6}) == {"error": "backend unavailable"}
    assert time.monotonic() - t0 < 2.8, "the forward POST is bounded by --backend-timeout"
    assert [b["args"] for b in owui.backend.forwarded()][:6] == [[{"x": i}] for i in range(1, 7)]


def test_forward_without_api_key_sends_no_authorization(owui):
    (A,) = owui.start(1, api_key=None)
    c = owui.client(A, "c", user="u1")
    assert c.call("ydoc:document:update", {"x": 1}) == {"ok": True}
    assert [e["authorization"] for e in owui.backend.events] == [""]


def test_forward_events_redis_appends_to_the_stream_in_order(owui):
    # node A: only Redis configured -> redis is the default; node B: explicit, custom stream
    A, B = owui.start(2, backend=False, per_node={1: ["--forward-events", "redis", "--forward-stream", "owui:test-events"]})
    a = owui.client(A, "a", user="u1")
    b = owui.client(B, "b", user="u2")
    n = 20
    for i in range(n):
        a.emit("ydoc:document:update", {"seq": i})
    assert a.call("ydoc:document:update", {"seq": "end"}) is None
    assert b.call("encryption:status", {"note_id": "n1"}, "x") is None
    entries = owui.r.xrange("switchboard:events")
    assert len(entries) == n + 1, f"{len(entries)} entries in switchboard:events"
    for i, (_id, fields) in enumerate(entries):
        assert set(fields) >= {"event", "args", "sid", "user_id", "namespace", "node"}, fields
        assert fields["event"] == "ydoc:document:update" and fields["sid"] == a.sid and fields["user_id"] == "u1", fields
        assert fields["namespace"] == "/" and fields["node"] == A.node_id, fields
        assert json.loads(fields["args"]) == [{"seq": i if i < n else "end"}], fields
    (entry,) = owui.r.xrange("owui:test-events")
    fields = entry[1]
    assert fields["event"] == "encryption:status" and fields["sid"] == b.sid and fields["node"] == B.node_id
    assert json.loads(fields["args"]) == [{"note_id": "n1"}, "x"]


def test_forward_events_none_acks_not_handled(owui):
    (A,) = owui.start(1, "--forward-events", "none")
    c = owui.client(A, "c", user="u1")
    assert c.call("ydoc:document:update", {"x": 1}) == {"error": "event not handled"}
    assert c.call("ydoc:awareness:update", {"x": 1}) == {"error": "event not handled"}
    assert c.call("encryption:status", {"note_id": "n"}) == {"error": "event not handled"}
    assert c.call("events:channel", {"channel_id": "c1", "data": {"type": "last_read_at"}}) is None  # not a member
    assert owui.backend.count(FORWARD_PATH) == 0
    assert owui.r.exists("switchboard:events") == 0
    # Never silently: each one is counted by family and reason.
    metrics = requests.get(f"http://127.0.0.1:{A.port}/metrics", timeout=10).text
    for family, n in (("ydoc", 2), ("encryption", 1)):
        line = f'switchboard_client_events_not_handled_total{{family="{family}",reason="no_target"}} {n}'
        assert line in metrics, [l for l in metrics.splitlines() if "not_handled" in l]


def test_forward_url_receives_the_events_with_token_and_rooms_then_the_disconnect(owui):
    """`--forward-url` (the Open WebUI companion): forwarded events carry the socket's token and rooms for the
    receiver's own checks, and the receiver hears when such a socket disconnects."""
    (A,) = owui.start(1, "--forward-url", owui.backend.url)
    c = owui.client(A, "c", user="u1")
    assert c.call("ydoc:document:join", {"document_id": "note:n1"}) == {"ok": True}
    (body,) = owui.backend.wait_forwarded(1, pred=lambda b: b.get("event") == "ydoc:document:join")
    assert body["sid"] == c.sid and body["user_id"] == "u1"
    assert "user:u1" in body["rooms"] and body["token"] == c.token
    sid = c.sid
    c.close()
    (gone,) = owui.backend.wait_forwarded(1, pred=lambda b: b.get("event") == "disconnect")
    assert gone["sid"] == sid and gone["user_id"] == "u1" and isinstance(gone["args"][0], str), gone
    assert body["token"] not in A.stderr_text()


# ---------------------------------------------------------------------------------------
# One event at a time per socket; the backlog limit
# ---------------------------------------------------------------------------------------


def test_a_sockets_events_are_handled_one_at_a_time_across_backend_waits(owui):
    (A,) = owui.start(1, "--backend-timeout", "5s")
    owui.backend.slow_seconds = 1.0
    owui.backend.set_mode("slow", FORWARD_PATH)
    c = owui.client(A, "c", user="u1")
    other = owui.client(A, "other", user="u2")
    acks: dict = {}
    cond = threading.Condition()

    def on_ack(name):
        def cb(*args):
            with cond:
                acks[name] = (time.monotonic(), args)
                cond.notify_all()
        return cb

    t0 = time.monotonic()
    c.sio.emit("ydoc:document:update", {"n": 1}, callback=on_ack("chat1"))
    c.sio.emit("ydoc:document:update", {"n": 2}, callback=on_ack("chat2"))
    c.sio.emit("usage", {"model": "ordered-model"}, callback=on_ack("usage"))
    # another socket is not queued behind c's events
    t_other = time.monotonic()
    assert other.call("heartbeat", {}) is None
    t_other = time.monotonic() - t_other
    with cond:
        assert cond.wait_for(lambda: len(acks) == 3, timeout=TIMEOUT), f"acks: {acks}"
    assert acks["chat1"][1] == ({"ok": True},) and acks["chat2"][1] == ({"ok": True},)
    assert acks["usage"][1] == ()
    assert acks["chat2"][0] - t0 >= 1.8, "the second forward did not wait for the first"
    assert acks["usage"][0] - t0 >= 1.8, "usage was handled before the socket's earlier events were done"
    arrivals = [e["t"] for e in owui.backend.events]
    assert len(arrivals) == 2 and arrivals[1] - arrivals[0] >= 0.9, (
        f"the second forwarded event reached the backend {arrivals[1] - arrivals[0]:.2f}s after the first "
        f"(the first takes 1 s): not one at a time"
    )
    assert [b["args"] for b in owui.backend.forwarded()] == [[{"n": 1}], [{"n": 2}]]
    assert t_other < 0.9, f"another socket waited {t_other:.2f}s behind c's backend calls"


def test_a_socket_with_more_than_256_waiting_events_is_disconnected(owui):
    (A,) = owui.start(1, "--backend-timeout", "20s")
    owui.backend.slow_seconds = 15.0
    owui.backend.set_mode("slow", FORWARD_PATH)
    flood = owui.client(A, "flood", user="u1")
    other = owui.client(A, "other", user="u2")
    wait_until(lambda: {flood.sid, other.sid} <= set(owui.session_pool()), what="both sessions")
    for i in range(400):
        flood.emit("ydoc:document:update", {"n": i})
    flood.wait_disconnected(timeout=TIMEOUT)
    wait_until(lambda: flood.sid not in owui.session_pool(), what="flood left SESSION_POOL")
    assert other.connected and other.call("heartbeat", {}) is None
    assert owui.backend.count(FORWARD_PATH) <= 2, "the queued events were not dropped"
    wait_until(lambda: "event_backlog" in A.stderr_text(), timeout=5, what="reason event_backlog logged")


# ---------------------------------------------------------------------------------------
# Configuration: backend paths, environment, strict mode with a failing backend
# ---------------------------------------------------------------------------------------


def test_custom_backend_paths(owui):
    owui.backend.user_path = "/custom/me"
    owui.backend.channels_path = "/custom/my-channels/"
    owui.backend.forward_path = "/custom/events"
    owui.backend.names["u1"] = "Custom Path User"
    owui.backend.channels["u1"] = ["c5"]
    (A,) = owui.start(1, "--backend-user-path", "/custom/me", "--backend-channels-path", "/custom/my-channels/",
                      "--forward-path", "/custom/events")
    c = owui.client(A, "c", user="u1")
    assert user_join(c) == {"id": "u1", "name": "Custom Path User"}
    assert owui.backend.count("/custom/me") == 1 and owui.backend.count("/custom/my-channels/") == 1
    wait_until(lambda: api_ok(A, "GET", "/api/v1/rooms/channel%3Ac5")["sids"] == [c.sid], what="c in channel:c5")
    assert c.call("ydoc:document:update", {"x": 1}) == {"ok": True}
    assert owui.backend.count("/custom/events") == 1
    for default in (USER_PATH, CHANNELS_PATH, FORWARD_PATH):
        assert owui.backend.count(default) == 0, f"the default path {default} was called"


def test_configuration_from_the_environment(owui):
    env = {
        "WEBUI_SECRET_KEY": SECRET,
        "SWITCHBOARD_AUTH_MODE": "strict",
        "REDIS_KEY_PREFIX": "envp",
        "SWITCHBOARD_API_KEY": API_KEY,
        "SWITCHBOARD_BACKEND_URL": owui.backend.url,
        "SWITCHBOARD_FORWARD_EVENTS": "none",
        "SWITCHBOARD_BROADCAST_PRESENCE": "false",
    }
    (A,) = start_nodes(owui.servers, owui.redis_server, 1, secret=None, env=env)
    owui.backend.names["u1"] = "Env User"
    refused = Client(A, "refused", token=mint("u1", secret="x" * 64))
    owui.clients.append(refused)
    assert refused.connect_refused()["message"] == "unauthorized"
    c = owui.client(A, "c", user="u1")
    wait_until(lambda: c.sid in owui.session_pool("envp"), what="envp:session_pool")
    assert owui.session_pool("envp")[c.sid]["name"] == "Env User"
    assert c.call("ydoc:document:update", {}) == {"error": "event not handled"}
    assert api_ok(A, "GET", "/api/v1/users/online") == {"user_ids": ["u1"]}


def test_strict_mode_defers_a_connect_the_backend_cannot_decide(owui):
    """Strict mode with a failing backend: the node does not refuse the token it could not judge (a
    CONNECT_ERROR ends a Socket.IO client's reconnects); it closes the transport with reason
    backend_unavailable, and a client that keeps reconnecting, as Socket.IO clients do, is let in once the
    backend answers. A bad token is still refused."""
    import socketio

    (A,) = owui.start(1, "--auth-mode", "strict")
    owui.backend.set_mode("failing", USER_PATH)
    deferred = Client(A, "deferred", token=mint("u1"))
    owui.clients.append(deferred)
    with pytest.raises(socketio.exceptions.ConnectionError):
        deferred.connect()
    assert not deferred.connect_errors, f"refused instead of deferred: {deferred.connect_errors}"
    assert owui.backend.count(USER_PATH) >= 1
    wait_until(lambda: "backend_unavailable" in A.stderr_text(), timeout=5, what="reason backend_unavailable logged")
    assert deferred.token not in A.stderr_text()

    # A client retrying on its own (python-socketio's reconnection) gets in once the backend recovers.
    retrying = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=0.5)
    done = threading.Event()

    def connect() -> None:
        try:
            retrying.connect(A.base, transports=["websocket"], socketio_path=WS_PATH, auth={"token": mint("u2")},
                             wait_timeout=2, retry=True)
        except socketio.exceptions.ConnectionError:
            pass  # the first attempt's closed transport already started the client's own reconnect task
        finally:
            done.set()

    threading.Thread(target=connect, daemon=True).start()
    try:
        time.sleep(1.5)
        assert not retrying.connected
        owui.backend.set_mode("normal")
        wait_until(lambda: retrying.connected and retrying.get_sid("/") in owui.session_pool(), timeout=15,
                   what="the retrying client let in once the backend answers")
        refused = Client(A, "refused", token="not-a-jwt")
        owui.clients.append(refused)
        assert refused.connect_refused()["message"] == "unauthorized"
    finally:
        retrying.disconnect()
        done.wait(5)


# ---------------------------------------------------------------------------------------
# Malformed contract payloads; polling clients
# ---------------------------------------------------------------------------------------


def test_malformed_contract_payloads_are_acked_and_change_nothing(owui):
    A, B = owui.start(2)
    owui.backend.channels.update({"u1": ["c1"], "u2": ["c1"]})
    c = owui.client(A, "c", user="u1")
    m = owui.client(B, "m", user="u2")
    user_join(c)
    user_join(m)
    wait_until(lambda: set(owui.session_pool()) == {c.sid, m.sid}, what="two sessions")
    before = (owui.session_pool(), owui.user_pool())
    bad = [
        ("usage",), ("usage", {}), ("usage", {"model": None}), ("usage", {"model": 5}), ("usage", "gpt"),
        ("usage", {"model": ""}),
        ("events:channel",), ("events:channel", {}), ("events:channel", {"channel_id": "c1"}),
        ("events:channel", {"channel_id": "c1", "data": "typing"}), ("events:channel", {"channel_id": 5, "data": {"type": "typing"}}),
        ("events:channel", {"channel_id": None, "data": {"type": "typing"}}), ("events:channel", [1, 2]),
        ("channel-events", "x"),
        ("user-join", "token"), ("user-join", {"auth": "token"}), ("user-join", {"auth": {"token": 5}}), ("user-join", None),
        ("join-channels",), ("join-channels", {"auth": None}), ("join-channels", 7),
        ("heartbeat",), ("heartbeat", "x"), ("heartbeat", 1, 2, 3),
        ("user-list", {"x": 1}),
    ]
    for ev, *args in bad:
        ack = c.call(ev, *args)  # acked, not left hanging
        if ev in ("events:channel", "channel-events"):
            # a member's channel event that is not a typing goes to the backend; what its ack
            # carries is checked in test_non_typing_channel_event_of_a_member_goes_to_the_backend
            assert ack in (None, {"ok": True}), f"{ev} {args!r}: ack {ack!r}"
        else:
            assert ack is None, f"{ev} {args!r} not acked empty: {ack!r}"
    for model, entries in owui.usage_pool().items():
        assert c.sid not in entries, f"a malformed usage wrote USAGE_POOL[{model!r}]: {entries}"
    after_sessions = owui.session_pool()
    assert set(after_sessions) == set(before[0]) and owui.user_pool() == before[1]
    assert {k: v for k, v in after_sessions[c.sid].items() if k != "last_seen_at"} == \
        {k: v for k, v in before[0][c.sid].items() if k != "last_seen_at"}
    assert m.events("events:channel", raw=True) == [], f"a malformed channel event was relayed: {m.events('events:channel', raw=True)}"
    for n in (A, B):
        assert n.alive()
    # c still works
    warm(lambda tag: c.emit("events:channel", typing("c1", tag)), [m], "events:channel", what="c -> c1")


def test_polling_client_goes_through_the_contract(owui):
    A, B = owui.start(2)
    owui.backend.names.update(NAMES)
    owui.backend.channels.update({"u1": ["c1"], "u2": ["c1"]})
    poller = Client(A, "poller", token=mint("u1"))
    owui.clients.append(poller)
    poller.sio.connect(A.base, transports=["polling"], socketio_path="/ws/socket.io", auth=poller.auth,
                       wait_timeout=TIMEOUT)
    assert poller.sio.transport() == "polling"
    ws = owui.client(B, "ws", user="u2")
    assert user_join(poller) == {"id": "u1", "name": NAMES["u1"]}
    assert user_join(ws) == {"id": "u2", "name": NAMES["u2"]}
    wait_until(lambda: owui.session_pool().get(poller.sid, {}).get("id") == "u1", what="poller's session")
    warm(lambda tag: ws.emit("events:channel", typing("c1", tag)), [poller], "events:channel", what="ws -> c1 (polling)")
    p = typing("c1", "to-poller")
    assert ws.call("events:channel", p) is None
    poller.wait_for("events:channel", lambda a: a == ({**p, "user": {"id": "u2", "name": NAMES["u2"], "role": "user"}},))


def test_revocation_keys_are_read_from_open_webuis_redis_when_it_is_another(owui):
    """Open WebUI writes revocation keys to its REDIS_URL, which may not be the socket Redis
    (WEBSOCKET_REDIS_URL): `--auth-redis-url` points the node there, for connects and re-validation."""
    from livehelpers import RedisServer
    import redis as redis_sync

    auth = RedisServer().start()
    try:
        (A,) = owui.start(1, "--auth-mode", "strict", "--auth-redis-url", auth.url)
        r_auth = redis_sync.Redis(port=auth.port, decode_responses=True)
        t = mint("ar1")
        r_auth.set(f"{PREFIX}:auth:token:{unverified_claims(t)['jti']}:revoked", "1")
        refused = Client(A, "revoked-in-auth-redis", token=t)
        owui.clients.append(refused)
        assert refused.connect_refused()["message"] == "unauthorized"
        # The same key in the socket Redis is not Open WebUI's: ignored.
        t2 = mint("ar1")
        owui.r.set(f"{PREFIX}:auth:token:{unverified_claims(t2)['jti']}:revoked", "1")
        ok = owui.client(A, "revoked-in-socket-redis", token=t2)
        wait_until(lambda: ok.sid in owui.session_pool(), what="accepted: the socket Redis holds no revocation")
        r_auth.close()
    finally:
        auth.stop()
