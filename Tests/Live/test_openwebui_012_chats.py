"""Open WebUI 0.12.4's shared chats and notes through live `switchboard serve` nodes on one private redis-server:
`events:chat` join/leave/typing with SESSION_POOL `chat_ids` and `chat:presence`, and `join-note`, checked against a
backend that answers Open WebUI's access routes (`GET /api/v1/chats/{id}/tags`, `GET /api/v1/chats/{id}`,
`GET /api/v1/notes/{id}`) for the users a test allows.

Synchronisation: acks (every event under test is sent with an ack; an ack comes after the event's effects on
Redis and after its presence was published), events awaited with wait_for, room membership read from the cluster
API (wait_until).
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from fakebackend import FakeBackend, _norm
from livehelpers import wait_until
from owui import PREFIX, SECRET, Env, api_ok

NAMES = {"u1": "Ada", "u2": "Grace", "u3": "Alan"}
CHAT = re.compile(r"^/api/v1/chats/([^/]+)(/tags)?$")
NOTE = re.compile(r"^/api/v1/notes/([^/]+)$")


class AccessBackend(FakeBackend):
    """The fake backend plus Open WebUI's chat and note access routes."""

    def __init__(self, secret: str):
        super().__init__(secret)
        self.chat_readers: dict[str, set[str]] = {}
        self.chat_writers: dict[str, set[str]] = {}
        self.note_readers: dict[str, set[str]] = {}

    def _answer(self, h, method: str) -> None:
        path = _norm(h.path)
        chat, note = CHAT.match(path), NOTE.match(path)
        if method != "GET" or not (chat or note):
            return super()._answer(h, method)
        with self.cond:
            self.counts[path] += 1
            self.requests.append({"method": method, "path": path, "authorization": h.headers.get("Authorization", "")})
        claims = self._claims(h.headers.get("Authorization", ""))
        if claims is None:
            return self._reply(h, 401, {"detail": "invalid token"})
        uid = str(claims.get("id"))
        with self.cond:
            if note:
                allowed = uid in self.note_readers.get(note.group(1), set())
                return self._reply(h, 200, {"id": note.group(1), "write_access": False}) if allowed else \
                    self._reply(h, 403, {"detail": "forbidden"})
            chat_id = chat.group(1)
            if uid not in self.chat_readers.get(chat_id, set()):
                return self._reply(h, 401, {"detail": "not found"})
            if chat.group(2):
                return self._reply(h, 200, [])
            share_mode = "continue" if uid in self.chat_writers.get(chat_id, set()) else None
            # A long history, as real chats have: the write check must read past it.
            history = {"messages": {f"m{i}": {"content": "x" * 200} for i in range(6000)}}  # > 1 MiB
            return self._reply(h, 200, {"id": chat_id, "chat": {"history": history, "share_mode": share_mode}})


@pytest.fixture
def env(servers, redis_server):
    e = Env(servers, redis_server)
    e.backend.stop()
    e.backend = AccessBackend(SECRET).start()
    e.backend.names.update(NAMES)
    try:
        yield e
    finally:
        e.close()


def chat(kind: str, chat_id: str = "c1", **data) -> dict:
    return {"chat_id": chat_id, "data": {"type": kind, **data}}


def presence_users(args) -> list | None:
    payload = args[0] if args else None
    if isinstance(payload, dict) and payload.get("data", {}).get("type") == "chat:presence":
        return payload["data"]["data"]["users"]
    return None


def chat_ids(env: Env, sid: str):
    return env.session_pool().get(sid, {}).get("chat_ids")


def room_sids(node, room: str) -> list[str]:
    return sorted(api_ok(node, "GET", f"/api/v1/rooms/{quote(room, safe='')}")["sids"])


def test_shared_chat_join_presence_typing_leave_and_disconnect_across_nodes(env):
    A, B = env.start(2)
    env.backend.chat_readers["c1"] = {"u1", "u2"}
    env.backend.chat_writers["c1"] = {"u1"}
    u1 = env.client(A, "u1", user="u1")
    u2 = env.client(B, "u2", user="u2")
    u3 = env.client(B, "u3", user="u3")

    assert u1.call("events:chat", chat("join")) is True
    assert chat_ids(env, u1.sid) == ["c1"]
    u1.wait_for("events", lambda a: presence_users(a) == [{"id": "u1", "name": "Ada"}])
    assert u2.call("events:chat", chat("join")) is True
    both = [{"id": "u1", "name": "Ada"}, {"id": "u2", "name": "Grace"}]
    for c in (u1, u2):
        c.wait_for("events", lambda a: presence_users(a) == both, what=f"{c.name} sees both")
    # No read access, a temporary chat, or a malformed id: refused, no room, no chat_ids.
    assert u3.call("events:chat", chat("join")) is False
    assert u3.call("events:chat", chat("join", "temporary:x")) is False
    assert u3.call("events:chat", chat("join", "../admin")) is False
    assert chat_ids(env, u3.sid) in (None, [])
    wait_until(lambda: room_sids(A, "chat:c1") == sorted([u1.sid, u2.sid]), what="chat:c1 holds u1 and u2")

    # Typing: the writer's reaches the others (not the writer); a reader without write access is refused.
    assert u1.call("events:chat", chat("typing", data={"typing": True})) is True
    u2.wait_for("events", lambda a: a == ({
        "chat_id": "c1", "user_id": "u1", "user": {"id": "u1", "name": "Ada"}, "shared": True,
        "data": {"type": "typing", "data": {"typing": True}},
    },))
    assert u2.call("events:chat", chat("typing", data={"typing": True})) is False
    assert u2.call("events:chat", chat("typing", data={"typing": "yes"})) is False
    assert not u1.seen("events", lambda a: a and a[0].get("data", {}).get("type") == "typing")

    # Leave, then a disconnect: the others learn each time.
    assert u2.call("events:chat", chat("leave")) is True
    assert chat_ids(env, u2.sid) == []
    u1.wait_for("events", lambda a: presence_users(a) == [{"id": "u1", "name": "Ada"}], what="u1 alone")
    assert u2.call("events:chat", chat("join")) is True
    u1.wait_for("events", lambda a: presence_users(a) == both, what="u2 back")
    u1.close()
    u2.wait_for("events", lambda a: presence_users(a) == [{"id": "u2", "name": "Grace"}], what="u1 gone")
    # Python's lock was released every time.
    assert env.r.keys(f"{PREFIX}:chat:*:presence:lock") == []


def test_chat_presence_lock_held_by_python_is_respected(env):
    (A,) = env.start(1)
    env.backend.chat_readers["c2"] = {"u1"}
    u1 = env.client(A, "u1", user="u1")
    lock = env.r.lock(f"{PREFIX}:chat:c2:presence:lock", timeout=60)
    assert lock.acquire(blocking=False)
    try:
        # The join waits for the lock Python holds; nothing is published meanwhile.
        u1.emit("events:chat", chat("join", "c2"))
        wait_until(lambda: chat_ids(env, u1.sid) == ["c2"], what="chat_ids written before the lock is taken")
        assert not u1.seen("events", lambda a: presence_users(a) is not None)
    finally:
        lock.release()
    u1.wait_for("events", lambda a: presence_users(a) == [{"id": "u1", "name": "Ada"}], what="published after")


def test_join_note_joins_only_readers_of_the_note(env):
    (A,) = env.start(1)
    env.backend.note_readers["n1"] = {"u1"}
    u1 = env.client(A, "u1", user="u1")
    u3 = env.client(A, "u3", user="u3")
    for c in (u1, u3):
        assert c.call("join-note", {"note_id": "n1", "auth": {"token": c.token}}) is None
    assert u1.call("join-note", {"note_id": "../users", "auth": {"token": u1.token}}) is None
    assert u1.call("join-note", {"note_id": "n1", "auth": {"token": "bad"}}) is None
    assert room_sids(A, "note:n1") == [u1.sid]
    assert not any("users" in r["path"] for r in env.backend.requests if r["path"].startswith("/api/v1/notes"))
