"""The companion's room index (deploy/openwebui-companion): the members Open WebUI's handlers are told for
a room follow forwarded rooms, the handlers' own enters and leaves, and forgotten sockets — from an index,
compared here with the definition (every socket whose rooms hold the room)."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

COMPANION = Path(__file__).resolve().parents[2] / "deploy" / "openwebui-companion" / "switchboard_companion.py"


def load():
    spec = importlib.util.spec_from_file_location("switchboard_companion", COMPANION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def by_definition(sockets, room: str) -> list[str]:
    return sorted(sid for sid in sockets.forwarded if room in sockets.rooms(sid))


def test_members_follow_forwards_enters_leaves_and_forgets():
    sockets = load().RemoteSockets()
    sockets.update("s1", ["user:u1", "note:n1"], {"id": "u1"})
    sockets.update("s2", ["user:u2"], {"id": "u2"})
    assert sockets.members("note:n1") == ["s1"]
    sockets.enter("s2", "note:n1")  # the handler joined it; the node has not caught up yet
    assert sockets.members("note:n1") == ["s1", "s2"]
    sockets.update("s2", ["user:u2"], {"id": "u2"})  # a forward from before the node applied the join
    assert sockets.members("note:n1") == ["s1", "s2"]
    sockets.leave("s1", "note:n1")
    assert sockets.members("note:n1") == ["s2"]
    sockets.update("s1", ["user:u1"], {"id": "u1"})  # the node caught up with the leave
    assert sockets.members("note:n1") == ["s2"] and sockets.left["s1"] == set()
    sockets.forget("s2")
    assert sockets.members("note:n1") == [] and "note:n1" not in sockets.by_room
    # A socket is in its own room; an enter for a socket never forwarded makes it no member.
    assert sockets.members("s1") == ["s1"]
    sockets.enter("ghost", "note:n1")
    assert sockets.members("note:n1") == []


def test_the_index_matches_the_definition_under_random_operations():
    sockets = load().RemoteSockets()
    rng = random.Random(1234)
    sids = [f"s{i}" for i in range(30)]
    rooms = [f"note:n{i}" for i in range(8)] + [f"user:u{i}" for i in range(4)]
    for _ in range(5000):
        sid, op = rng.choice(sids), rng.random()
        if op < 0.4:
            sockets.update(sid, rng.sample(rooms, rng.randint(0, 4)), {"id": sid})
        elif op < 0.65:
            sockets.enter(sid, rng.choice(rooms))
        elif op < 0.9:
            sockets.leave(sid, rng.choice(rooms))
        else:
            sockets.forget(sid)
        for room in rooms + [sid]:
            assert sockets.members(room) == by_definition(sockets, room), room
