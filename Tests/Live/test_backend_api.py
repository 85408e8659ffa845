"""The backend HTTP API of `switchboard serve` (docs/BACKEND.md, "Backend HTTP API"): every route
and every error status, across two nodes on one private redis-server. The API is called on node
A; clients sit on A and on B. Membership is read back with GET /api/v1/rooms/{room}; deliveries
to another node's sockets go through a warmed route (probes until every target saw one), and
"nobody else got it" is checked after a fence emitted to everyone.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from urllib.parse import quote

import pytest

from livehelpers import wait_until
from owui import (  # noqa: F401  (owui is a fixture)
    API_KEY,
    FENCE,
    PROBE,
    api,
    api_ok,
    owui,
    raw_request,
    warm,
)


def room_sids(node, room: str, **kw) -> list[str]:
    body = api_ok(node, "GET", f"/api/v1/rooms/{quote(room, safe='')}", **kw)
    assert body.get("room") == room, body
    return body["sids"]


def wait_room(node, room: str, sids, what: str = "") -> None:
    want = sorted(sids)
    last = {}

    def check():
        last["v"] = room_sids(node, room)
        return last["v"] == want

    try:
        wait_until(check, what=f"room {room!r} == {want}")
    except AssertionError:
        raise AssertionError(f"room {room!r}: expected sids {want} ({what}), last answer {last.get('v')}") from None


def emit(node, event: str, to, *args, exclude=None):
    body = {"event": event, "args": list(args), "namespace": "/", "to": to}
    if exclude is not None:
        body["except"] = exclude
    assert api_ok(node, "POST", "/api/v1/emit", body) == {"ok": True}


def fence(node, clients) -> None:
    """Emit a fence to everyone from `node`; wait until every client got it."""
    tag = f"{FENCE}{uuid.uuid4().hex[:8]}"
    emit(node, "fence", "all", tag)
    for c in clients:
        c.wait_for("fence", lambda a: a == (tag,), what="fence")


def warm_emit(node, to, receivers, event: str = "news") -> None:
    warm(lambda tag: emit(node, event, to, {PROBE: tag}), receivers, event, what=f"emit to {to!r}")


@pytest.fixture
def two(owui):
    """Nodes A and B (both with the API key), clients: ua@A, ub@B, ua@B (second session of ua), uc@A."""
    A, B = owui.start(2, backend=False)
    c = {
        "a1": owui.client(A, "a1(ua@A)", user="ua"),
        "b1": owui.client(B, "b1(ub@B)", user="ub"),
        "b2": owui.client(B, "b2(ua@B)", user="ua"),
        "a2": owui.client(A, "a2(uc@A)", user="uc"),
    }
    wait_until(lambda: set(owui.session_pool()) == {x.sid for x in c.values()}, what="four sessions")
    return A, B, c


def news(c):
    return c.events("news")


# ---------------------------------------------------------------------------------------
# emit
# ---------------------------------------------------------------------------------------


def test_emit_to_room_rooms_sid_user_and_all_with_except(owui, two):
    A, B, c = two
    a1, b1, b2, a2 = c["a1"], c["b1"], c["b2"], c["a2"]
    everyone = list(c.values())
    assert api_ok(A, "POST", "/api/v1/rooms/join", {"room": "r1", "sids": [a1.sid, b1.sid]}) == {"ok": True}
    assert api_ok(A, "POST", "/api/v1/rooms/join", {"room": "r2", "sids": [b1.sid, b2.sid]}) == {"ok": True}
    wait_room(A, "r1", [a1.sid, b1.sid])
    wait_room(A, "r2", [b1.sid, b2.sid])

    # room
    warm_emit(A, {"room": "r1"}, [a1, b1])
    emit(A, "news", {"room": "r1"}, {"to": "r1"}, 2, "three")
    # rooms (b1 is in both: once)
    warm_emit(A, {"rooms": ["r1", "r2"]}, [a1, b1, b2])
    emit(A, "news", {"rooms": ["r1", "r2"]}, {"to": "r1+r2"})
    # sid on the other node
    warm_emit(A, {"sid": b2.sid}, [b2])
    emit(A, "news", {"sid": b2.sid}, {"to": "sid b2"})
    # user (both sessions of ua, on A and on B)
    warm_emit(A, {"user": "ua"}, [a1, b2])
    emit(A, "news", {"user": "ua"}, {"to": "user ua"})
    # all except a room and a sid
    emit(A, "news", "all", {"to": "all"})
    emit(A, "news", "all", {"to": "all but r1"}, exclude=["r1"])
    emit(A, "news", "all", {"to": "all but r2 and a2"}, exclude=["r2", a2.sid])
    fence(A, everyone)

    expected = {
        "a1": [({"to": "r1"}, 2, "three"), ({"to": "r1+r2"},), ({"to": "user ua"},), ({"to": "all"},)],
        "b1": [({"to": "r1"}, 2, "three"), ({"to": "r1+r2"},), ({"to": "all"},)],
        "b2": [({"to": "r1+r2"},), ({"to": "sid b2"},), ({"to": "user ua"},), ({"to": "all"},),
               ({"to": "all but r1"},)],
        "a2": [({"to": "all"},), ({"to": "all but r1"},)],
    }
    # "all but r2 and a2" reaches only a1
    expected["a1"].append(({"to": "all but r2 and a2"},))
    for k, cl in c.items():
        got = sorted(news(cl), key=repr)
        assert got == sorted(expected[k], key=repr), f"{cl.name}: got {news(cl)!r}, expected {expected[k]!r}"


def test_emit_defaults_and_binary_free_json_args(owui, two):
    A, B, c = two
    b1 = c["b1"]
    warm_emit(A, {"sid": b1.sid}, [b1], event="plain")
    # no namespace, no except: defaults
    assert api_ok(A, "POST", "/api/v1/emit", {"event": "plain", "args": [{"nested": {"list": [1, None, True]}}, "é€😀"],
                                               "to": {"sid": b1.sid}}) == {"ok": True}
    b1.wait_for("plain", lambda a: a == ({"nested": {"list": [1, None, True]}}, "é€😀"))


# ---------------------------------------------------------------------------------------
# call
# ---------------------------------------------------------------------------------------


def test_call_returns_the_clients_ack_arguments(owui):
    A, B = owui.start(2, backend=False)
    on_b = owui.client(B, "confirm@B", user="ub", answers={"confirm": lambda *a: {"confirmed": True, "got": list(a)}})
    on_a = owui.client(A, "confirm@A", user="ua", answers={"confirm": lambda *a: ("two", "args")})
    on_b2 = owui.client(B, "empty@B", user="uc", answers={"confirm": lambda *a: None})
    body = api_ok(A, "POST", "/api/v1/call", {"sid": on_b.sid, "event": "confirm", "args": [{"q": 1}, 2], "timeout": 5})
    assert body == {"args": [{"confirmed": True, "got": [{"q": 1}, 2]}]}
    body = api_ok(A, "POST", "/api/v1/call", {"sid": on_a.sid, "event": "confirm", "args": [], "timeout": 5, "namespace": "/"})
    assert body == {"args": ["two", "args"]}
    body = api_ok(A, "POST", "/api/v1/call", {"sid": on_b2.sid, "event": "confirm", "args": ["x"], "timeout": 5})
    assert body == {"args": []}


def test_call_to_a_client_that_does_not_answer_times_out_with_504(owui):
    A, B = owui.start(2, backend=False)
    silent = owui.raw_client(B, "silent@B", user="us")
    t0 = time.monotonic()
    r = api(A, "POST", "/api/v1/call", {"sid": silent.sid, "event": "confirm", "args": [1], "timeout": 1})
    took = time.monotonic() - t0
    assert r.status_code == 504, (r.status_code, r.content)
    assert isinstance(json.loads(r.content)["error"], str)
    assert 0.8 <= took < 5.0, f"call with timeout 1 answered after {took:.2f}s"
    # the client did get the event, with an ack id
    silent.wait_packet(lambda p: p.startswith("42") and '"confirm"' in p and p[2].isdigit())


def test_call_to_an_unknown_sid_is_404(owui):
    A, B = owui.start(2, backend=False)
    gone = owui.client(B, "gone@B", user="ug")
    sid = gone.sid
    gone.close()
    wait_until(lambda: sid not in owui.session_pool(), what="gone left SESSION_POOL")
    for unknown in (sid, "zzzzzzNoSuchSocket000", B.node_id + "AAAAAAAAAAAAAAAAAAAA"):
        r = api(A, "POST", "/api/v1/call", {"sid": unknown, "event": "confirm", "args": [], "timeout": 2})
        assert r.status_code == 404, (unknown, r.status_code, r.content)
        assert isinstance(json.loads(r.content)["error"], str)


# ---------------------------------------------------------------------------------------
# rooms join / leave, GET rooms, users, usage
# ---------------------------------------------------------------------------------------


def test_rooms_join_and_leave_by_sids_user_and_from_room(owui, two):
    A, B, c = two
    a1, b1, b2, a2 = c["a1"], c["b1"], c["b2"], c["a2"]
    ok = {"ok": True}
    assert api_ok(A, "POST", "/api/v1/rooms/join", {"room": "x", "sids": [a2.sid, b1.sid]}) == ok
    wait_room(A, "x", [a2.sid, b1.sid], "join by sids")
    assert api_ok(A, "POST", "/api/v1/rooms/join", {"room": "y", "user": "ua"}) == ok
    wait_room(A, "y", [a1.sid, b2.sid], "join by user")
    assert api_ok(A, "POST", "/api/v1/rooms/join", {"room": "z", "from_room": "x"}) == ok
    wait_room(A, "z", [a2.sid, b1.sid], "join from_room")
    assert api_ok(A, "POST", "/api/v1/rooms/join", {"room": "z", "from_room": "y"}) == ok
    wait_room(A, "z", [a1.sid, a2.sid, b1.sid, b2.sid], "join from_room y")
    # delivery follows the API's membership
    warm_emit(A, {"room": "y"}, [a1, b2])

    assert api_ok(A, "POST", "/api/v1/rooms/leave", {"room": "z", "sids": [b1.sid]}) == ok
    wait_room(A, "z", [a1.sid, a2.sid, b2.sid], "leave by sids")
    assert api_ok(A, "POST", "/api/v1/rooms/leave", {"room": "z", "user": "ua"}) == ok
    wait_room(A, "z", [a2.sid], "leave by user")
    assert api_ok(A, "POST", "/api/v1/rooms/leave", {"room": "y", "from_room": "x"}) == ok
    wait_room(A, "y", [a1.sid, b2.sid], "leave from_room x (no member of x is in y)")
    assert api_ok(A, "POST", "/api/v1/rooms/join", {"room": "y", "sids": [a2.sid]}) == ok
    wait_room(A, "y", [a1.sid, a2.sid, b2.sid])
    assert api_ok(A, "POST", "/api/v1/rooms/leave", {"room": "y", "from_room": "x"}) == ok
    wait_room(A, "y", [a1.sid, b2.sid], "leave from_room x")
    # the same answers on node B
    assert room_sids(B, "y") == sorted([a1.sid, b2.sid])
    assert room_sids(B, "x") == sorted([a2.sid, b1.sid])
    # the client's own sid room and the user room
    assert room_sids(A, b1.sid) == [b1.sid]
    assert room_sids(A, "user:ua") == sorted([a1.sid, b2.sid])


def test_get_room_with_url_encoded_name_and_namespace_query(owui, two):
    A, B, c = two
    a1, b1 = c["a1"], c["b1"]
    for room in ("channel:x y", "note:ü€/1?&#%"):
        assert api_ok(A, "POST", "/api/v1/rooms/join", {"room": room, "sids": [a1.sid, b1.sid]}) == {"ok": True}
        wait_room(A, room, [a1.sid, b1.sid])
        body = api_ok(A, "GET", f"/api/v1/rooms/{quote(room, safe='')}?namespace=%2F")
        assert body == {"room": room, "sids": sorted([a1.sid, b1.sid])}
    r = api(A, "GET", "/api/v1/rooms/channel%3Ax%20y")
    assert r.status_code == 200 and json.loads(r.content)["room"] == "channel:x y"
    # a room without members
    assert api_ok(A, "GET", "/api/v1/rooms/nobody-here") == {"room": "nobody-here", "sids": []}


def test_get_room_with_an_empty_or_undecodable_room_path(owui):
    (A,) = owui.start(1, backend=False)
    _error(api(A, "GET", "/api/v1/rooms/"), 404, "GET /api/v1/rooms/ (empty room)")
    _error(api(A, "GET", "/api/v1/users//sessions"), 404, "GET /api/v1/users//sessions (empty user)")
    # requests would re-quote `%ZZ` as `%25ZZ`; http.client sends the path as written.
    base = getattr(A, "api_base", A.base)
    host, port = base.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/api/v1/rooms/%ZZ", headers={"Authorization": f"Bearer {API_KEY}"})
        r = conn.getresponse()
        body = json.loads(r.read())
        assert r.status == 400 and "percent-encoding" in body["error"], (r.status, body)
    finally:
        conn.close()
    # A literal `%` in a room name, properly encoded, is just a room.
    assert api_ok(A, "GET", "/api/v1/rooms/%25ZZ") == {"room": "%ZZ", "sids": []}


def test_users_sessions_online_and_usage(owui, two):
    A, B, c = two
    a1, b1, b2, a2 = c["a1"], c["b1"], c["b2"], c["a2"]
    body = api_ok(A, "GET", "/api/v1/users/ua/sessions")
    assert body["user_id"] == "ua" and sorted(body["sids"]) == sorted([a1.sid, b2.sid]), body
    body = api_ok(A, "GET", "/api/v1/users/ub/sessions")
    assert body == {"user_id": "ub", "sids": [b1.sid]}
    body = api_ok(A, "GET", "/api/v1/users/online")
    assert set(body) == {"user_ids"} and sorted(body["user_ids"]) == ["ua", "ub", "uc"], body
    assert a1.call("usage", {"model": "m-1"}) is None
    assert b1.call("usage", {"model": "m-2"}) is None
    body = api_ok(A, "GET", "/api/v1/usage")
    assert set(body) == {"models"} and sorted(body["models"]) == ["m-1", "m-2"], body
    # a user id that needs URL encoding
    odd = owui.client(B, "odd", user="user x:1")
    wait_until(lambda: odd.sid in owui.session_pool(), what="odd user's session")
    body = api_ok(A, "GET", f"/api/v1/users/{quote('user x:1', safe='')}/sessions")
    assert body == {"user_id": "user x:1", "sids": [odd.sid]}
    b2.close()
    wait_until(lambda: api_ok(A, "GET", "/api/v1/users/ua/sessions")["sids"] == [a1.sid], what="ua's sessions after b2 left")
    a2.close()
    wait_until(lambda: sorted(api_ok(A, "GET", "/api/v1/users/online")["user_ids"]) == sorted(["ua", "ub", "user x:1"]),
               what="uc offline")


# ---------------------------------------------------------------------------------------
# disconnect
# ---------------------------------------------------------------------------------------


def test_disconnect_by_sids_room_and_user(owui):
    A, B = owui.start(2, backend=False)
    s1 = owui.client(B, "s1@B", user="u1")
    s2 = owui.client(A, "s2@A", user="u2")
    r1 = owui.client(B, "r1@B", user="u3")
    r2 = owui.client(A, "r2@A", user="u4")
    u1 = owui.client(A, "u5@A", user="u5")
    u2 = owui.client(B, "u5@B", user="u5")
    keep = owui.client(B, "keep@B", user="u6")
    everyone = [s1, s2, r1, r2, u1, u2, keep]
    wait_until(lambda: set(owui.session_pool()) == {x.sid for x in everyone}, what="seven sessions")

    assert api_ok(A, "POST", "/api/v1/disconnect", {"sids": [s1.sid, s2.sid]}) == {"ok": True}
    for x in (s1, s2):
        x.wait_disconnected()
    assert api_ok(A, "POST", "/api/v1/rooms/join", {"room": "kick", "sids": [r1.sid, r2.sid]}) == {"ok": True}
    wait_room(A, "kick", [r1.sid, r2.sid])
    assert api_ok(A, "POST", "/api/v1/disconnect", {"room": "kick"}) == {"ok": True}
    for x in (r1, r2):
        x.wait_disconnected()
    assert api_ok(A, "POST", "/api/v1/disconnect", {"user": "u5"}) == {"ok": True}
    for x in (u1, u2):
        x.wait_disconnected()
    wait_until(lambda: set(owui.session_pool()) == {keep.sid}, what="only keep left in SESSION_POOL")
    assert api_ok(A, "GET", "/api/v1/users/u6/sessions")["sids"] == [keep.sid]
    assert owui.user_pool() == {}, "USER_POOL is written only with --user-pool"
    assert keep.connected and keep.disconnects == []
    assert keep.call("heartbeat", {}) is None
    wait_room(A, "kick", [])


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------


def _error(r, status: int, what: str) -> None:
    assert r.status_code == status, f"{what}: HTTP {r.status_code} (expected {status}) {r.content[:300]!r}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), f"{what}: {r.headers.get('Content-Type')!r}"
    try:
        body = json.loads(r.content.decode("utf-8"))
    except ValueError:
        raise AssertionError(f"{what}: error answer is not JSON: {r.content[:300]!r}") from None
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], f"{what}: {body!r}"


def test_error_statuses(owui):
    (A,) = owui.start(1, backend=False)
    c = owui.client(A, "c", user="u1")
    wait_until(lambda: c.sid in owui.session_pool(), what="c's session")
    emit_body = {"event": "e", "args": [], "to": "all"}
    _error(api(A, "POST", "/api/v1/emit", emit_body, key=None), 401, "no key")
    _error(api(A, "GET", "/api/v1/users/online", key=None), 401, "no key (GET)")
    _error(api(A, "POST", "/api/v1/emit", emit_body, key="wrong-key"), 403, "wrong key")
    _error(api(A, "GET", "/api/v1/users/online", key=API_KEY + "x"), 403, "wrong key (longer)")
    _error(api(A, "POST", "/api/v1/emit", raw=b'{"event": "e", "args": ['), 400, "malformed JSON")
    _error(api(A, "POST", "/api/v1/emit", raw=b""), 400, "empty body")
    _error(api(A, "POST", "/api/v1/emit", raw=b"[1, 2]"), 400, "body not an object")
    _error(api(A, "POST", "/api/v1/emit", {"args": [], "to": "all"}), 400, "emit without event")
    _error(api(A, "POST", "/api/v1/emit", {"event": 5, "args": [], "to": "all"}), 400, "emit with a non-string event")
    _error(api(A, "POST", "/api/v1/emit", {"event": "e", "args": "not-a-list", "to": "all"}), 400, "emit args not a list")
    _error(api(A, "POST", "/api/v1/emit", {"event": "e", "args": [], "to": {"planet": "x"}}), 400, "emit to an unknown target")
    _error(api(A, "POST", "/api/v1/call", {"event": "e", "args": []}), 400, "call without sid")
    _error(api(A, "POST", "/api/v1/rooms/join", {"sids": [c.sid]}), 400, "join without room")
    _error(api(A, "POST", "/api/v1/rooms/leave", {"room": "r"}), 400, "leave without sids/user/from_room")
    _error(api(A, "POST", "/api/v1/disconnect", {}), 400, "disconnect without target")
    _error(api(A, "GET", "/api/v1/nope"), 404, "unknown route")
    _error(api(A, "POST", "/api/v1/nope", {}), 404, "unknown route (POST)")
    _error(api(A, "GET", "/api/v1/users/u1/nope"), 404, "unknown route under users")
    _error(api(A, "GET", "/api/v1/emit"), 405, "GET on emit")
    _error(api(A, "POST", "/api/v1/users/online", {}), 405, "POST on users/online")
    _error(api(A, "DELETE", "/api/v1/rooms/join"), 405, "DELETE on rooms/join")
    _error(api(A, "PUT", "/api/v1/usage", {}), 405, "PUT on usage")
    # body over 1 MB
    big = json.dumps({"event": "e", "args": ["x" * 1_500_000], "to": "all"}).encode()
    head = (f"POST /api/v1/emit HTTP/1.1\r\nHost: {A.host}:{A.port}\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(big)}\r\n\r\n").encode()
    host, port = A.api_base.removeprefix("http://").rsplit(":", 1)
    status, body = raw_request(host, int(port), head, big)
    assert status == 413, f"body of {len(big)} bytes: HTTP {status} {body[:200]!r}"
    assert isinstance(json.loads(body)["error"], str)
    # the node still serves
    assert api_ok(A, "GET", "/api/v1/users/online") == {"user_ids": ["u1"]}
    assert c.call("heartbeat", {}) is None


def test_node_without_api_key_refuses_with_403(owui):
    (A,) = owui.start(1, backend=False, api_key=None)
    for method, path, body in (("GET", "/api/v1/users/online", None), ("POST", "/api/v1/emit",
                                                                       {"event": "e", "args": [], "to": "all"})):
        for key in (API_KEY, "anything"):
            _error(api(A, method, path, body, key=key), 403, f"{method} {path} with a key on a node without one")


def test_api_on_its_own_port(owui):
    A, B = owui.start(2, "--api-port", "0", backend=False)
    for n in (A, B):
        lines = [line for line in n.stdout_lines if line.startswith("api listening on ")]
        assert lines, f"no 'api listening on' line: {n.stdout_lines!r}"
        idx_api = n.stdout_lines.index(lines[0])
        idx_main = next(i for i, line in enumerate(n.stdout_lines) if line.startswith("listening on "))
        assert idx_api < idx_main, n.stdout_lines
        assert n.api_base != n.base
    b1 = owui.client(B, "b1", user="u1")
    wait_until(lambda: api_ok(A, "GET", "/api/v1/users/online") == {"user_ids": ["u1"]}, what="u1 online via the API port")
    warm_emit(A, {"sid": b1.sid}, [b1])
    emit(A, "news", {"sid": b1.sid}, "via-api-port")
    b1.wait_for("news", lambda a: a == ("via-api-port",))
    _error(api(A, "GET", "/api/v1/users/online", key=None), 401, "no key on the API port")
    # the main listener no longer serves the API
    r = api(A, "GET", "/api/v1/users/online", base=A.base)
    assert r.status_code == 404, f"API still on the main listener: HTTP {r.status_code} {r.content[:200]!r}"
