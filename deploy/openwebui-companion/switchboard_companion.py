"""Switchboard's Open WebUI companion.

Runs Open WebUI's own Socket.IO handlers (from the installed `open_webui` package, unchanged) for the client
events that need Open WebUI's database and that no Open WebUI route receives: `ydoc:*` (collaborative notes),
`events:chat` / `events:channel` `last_read_at` (read receipts) and `encryption:*` (the E2EE packet relay).
The browser's socket lives on a Switchboard node; the node forwards such an event here over HTTP
(`--forward-url`), this process runs the 0.12.x handler for that socket, and the handler's emits, room changes
and disconnects go out through Redis exactly as from an Open WebUI worker, where the Switchboard nodes carry
them out. The handler's return value is the client's ack.

What an Open WebUI worker would look up in its own process is answered from the forwarded event instead:
the socket's session (the user from SESSION_POOL, the token the socket authenticated with), its rooms, its
transport. Nothing else is changed, so every check (token, role, permissions, note access, locks, limits)
is Open WebUI's own.

Run it with Open WebUI's Python and Open WebUI's environment (the same database, WEBUI_SECRET_KEY, REDIS_URL,
REDIS_KEY_PREFIX, WEBSOCKET_MANAGER=redis):

    scripts/openwebui-companion --host 127.0.0.1 --port 8091

One replica: the encryption relay and the document rooms keep per-process state, as in one Open WebUI worker.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

log = logging.getLogger("switchboard.companion")

# The families forwarded here; everything else Switchboard serves itself and is refused.
SERVED_PREFIXES = ("ydoc:", "encryption:")
SERVED_EVENTS = {"events:chat", "events:channel"}
NOT_HANDLED = [{"error": "event not handled"}]
# Open WebUI's SESSION_POOL leaves these out of the user (socket/main.py, connect and user-join).
EXCLUDED_USER_FIELDS = ["profile_image_url", "profile_banner_image_url", "date_of_birth", "bio", "gender"]
MAX_BODY = 64 << 20  # a forwarded note update can hold a whole 2 MiB document as JSON numbers


def prepare_environment() -> None:
    """Before `open_webui` is imported: where its files are, and never its migrations (Open WebUI runs them)."""
    spec = importlib.util.find_spec("open_webui")
    if spec is None or spec.origin is None:
        sys.exit("switchboard-companion: open_webui is not importable; run it with Open WebUI's Python")
    if (Path(spec.origin).parent / "frontend").is_dir():
        # Installed from PyPI: the built front end is inside the package, as `open-webui serve` tells it.
        os.environ.setdefault("FROM_INIT_PY", "true")
    os.environ.setdefault("ENABLE_DB_MIGRATIONS", "false")
    if os.environ.get("WEBSOCKET_MANAGER", "").lower() != "redis":
        sys.exit("switchboard-companion: needs WEBSOCKET_MANAGER=redis (the Switchboard nodes hear its emits over Redis)")


class RemoteSockets:
    """What Open WebUI's handlers ask about a socket, for sockets that live on Switchboard nodes.

    A socket's rooms are those its last forwarded event carried, corrected by the rooms handlers here made it
    enter or leave since (the node applies those through Redis a moment later). Members are indexed by room:
    the document handlers ask for a note's members on every edit, which must not cost a walk over every socket."""

    def __init__(self) -> None:
        self.forwarded: dict[str, set[str]] = {}
        self.entered: dict[str, set[str]] = {}
        self.left: dict[str, set[str]] = {}
        self.sessions: dict[str, dict] = {}
        self.by_room: dict[str, set[str]] = {}

    def update(self, sid: str, rooms: list[str], session: dict) -> None:
        before = self.rooms(sid) if sid in self.forwarded else set()
        now = set(rooms)
        self.forwarded[sid] = now
        self.sessions[sid] = session
        # What the node has caught up with needs no correction any more.
        if sid in self.entered:
            self.entered[sid] -= now
        if sid in self.left:
            self.left[sid] &= now
        self._reindex(sid, before)

    def enter(self, sid: str, room: str) -> None:
        before = self._indexed(sid)
        self.entered.setdefault(sid, set()).add(room)
        self.left.get(sid, set()).discard(room)
        self._reindex(sid, before)

    def leave(self, sid: str, room: str) -> None:
        before = self._indexed(sid)
        self.left.setdefault(sid, set()).add(room)
        self.entered.get(sid, set()).discard(room)
        self._reindex(sid, before)

    def rooms(self, sid: str) -> set[str]:
        return ((self.forwarded.get(sid, set()) | self.entered.get(sid, set())) - self.left.get(sid, set())) | {sid}

    def members(self, room: str) -> list[str]:
        return sorted(self.by_room.get(room, ()))

    def forget(self, sid: str) -> None:
        before = self._indexed(sid)
        for table in (self.forwarded, self.entered, self.left, self.sessions):
            table.pop(sid, None)
        self._reindex(sid, before)

    def _indexed(self, sid: str) -> set[str]:
        """The rooms `sid` is indexed under: only sockets a forwarded event has named are members."""
        return self.rooms(sid) if sid in self.forwarded else set()

    def _reindex(self, sid: str, before: set[str]) -> None:
        after = self._indexed(sid)
        for room in before - after:
            members = self.by_room.get(room)
            if members is not None:
                members.discard(sid)
                if not members:
                    del self.by_room[room]
        for room in after - before:
            self.by_room.setdefault(room, set()).add(sid)


def with_binary_as_lists(value):
    """Switchboard sends a binary argument as {"base64": …}; Open WebUI's packet class turns attachments into
    lists of ints before its handlers see them, so do the same."""
    import base64

    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("base64"), str):
            return list(base64.b64decode(value["base64"]))
        return {k: with_binary_as_lists(v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_binary_as_lists(v) for v in value]
    return value


def ack_args(ret) -> list:
    """python-socketio's rule for a handler's return value."""
    if ret is None:
        return []
    if isinstance(ret, tuple):
        return list(ret)
    return [ret]


class Companion:
    def __init__(self, client_scheme: str, api_key: str | None):
        import open_webui.socket.main as socket_main

        self.sm = socket_main
        self.sio = socket_main.sio
        self.sockets = RemoteSockets()
        self.client_scheme = client_scheme
        self.api_key = api_key
        self.started = time.time()
        self.handled: dict[str, int] = {}
        self._patch()

    # -- the local-state lookups of an Open WebUI worker, answered for remote sockets -------------------
    def _patch(self) -> None:
        sio, sm, sockets = self.sio, self.sm, self.sockets
        enter_room, leave_room, emit = sio.enter_room, sio.leave_room, sio.emit

        async def get_session(sid, namespace=None):
            return sockets.sessions.get(sid, {})

        async def save_session(sid, session, namespace=None):
            sockets.sessions[sid] = session

        async def enter(sid, room, namespace=None):
            sockets.enter(sid, room)
            await enter_room(sid, room, namespace=namespace)  # not local: published for the node

        async def leave(sid, room, namespace=None):
            sockets.leave(sid, room)
            await leave_room(sid, room, namespace=namespace)

        async def emit_through_redis(*args, ignore_queue=False, **kwargs):
            # No socket is local here: an emit "to this process only" must still reach the node.
            return await emit(*args, **kwargs)

        sio.get_session = get_session
        sio.save_session = save_session
        sio.enter_room = enter
        sio.leave_room = leave
        sio.emit = emit_through_redis
        sio.rooms = lambda sid, namespace=None: sorted(sockets.rooms(sid))
        sio.transport = lambda sid, namespace=None: "websocket"
        sio.get_environ = lambda sid, namespace=None: {"asgi.scope": {"scheme": self.client_scheme, "app": None}}
        sm.get_room_sid_map = lambda manager, namespace, room: {sid: sid for sid in sockets.members(room)} or None

    async def _session_of(self, sid: str, user_id: str | None, token: str | None) -> dict:
        """The session an Open WebUI worker would hold for the socket: SESSION_POOL's user and the token."""
        if not token:
            return {}
        user = self.sm.SESSION_POOL.get(sid)
        if not user and user_id:
            # The entry was reaped while the socket lives (Open WebUI keeps its in-process session then).
            from open_webui.models.users import Users

            found = await Users.get_user_by_id(user_id)
            user = found.model_dump(exclude=EXCLUDED_USER_FIELDS) if found else None
        return {"user": user, "token": token} if user else {}

    # -- forwarded events ---------------------------------------------------------------------------
    async def handle(self, body: dict) -> list:
        event, sid = body.get("event"), body.get("sid")
        if not isinstance(event, str) or not isinstance(sid, str) or not sid:
            raise ValueError("a forwarded event needs `event` and `sid`")
        if body.get("namespace", "/") != "/":
            return NOT_HANDLED
        if event == "disconnect":
            await self.disconnect(sid)
            return []
        handler = self.sio.handlers.get("/", {}).get(event)
        if handler is None or not (event.startswith(SERVED_PREFIXES) or event in SERVED_EVENTS):
            log.info("event not handled: %s", event)
            return NOT_HANDLED
        rooms = body.get("rooms") or []
        session = await self._session_of(sid, body.get("user_id"), body.get("token"))
        self.sockets.update(sid, [r for r in rooms if isinstance(r, str)], session)
        args = with_binary_as_lists(body.get("args") or [])
        self.handled[event] = self.handled.get(event, 0) + 1
        return ack_args(await handler(sid, *args))

    async def disconnect(self, sid: str) -> None:
        """Open WebUI's disconnect clean-up for what lives here: the encryption relay and the documents."""
        try:
            await self.sm.encryption.disconnect(sid)
            await self.sm.YDOC_MANAGER.remove_user_from_all_documents(sid)
        finally:
            self.sockets.forget(sid)

    # -- process ----------------------------------------------------------------------------------
    async def start_background(self) -> list[asyncio.Task]:
        from open_webui.tasks import redis_task_command_listener

        # As Open WebUI's lifespan: listen on Redis at once (ack answers and room messages need it).
        self.sio.manager_initialized = True
        self.sio.manager.initialize()
        app = SimpleNamespace(state=SimpleNamespace(redis=self.sm.REDIS))

        async def sweep_encryption():
            while True:
                await asyncio.sleep(30)
                try:
                    await self.sm.encryption.sweep()
                except Exception:
                    log.exception("encryption sweep failed")

        # Debounced note saves run here; Open WebUI stops them through the task command channel.
        return [asyncio.create_task(redis_task_command_listener(app)), asyncio.create_task(sweep_encryption())]


def make_app(companion: Companion, path: str):
    from aiohttp import web

    async def events(request: web.Request) -> web.Response:
        if companion.api_key is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {companion.api_key}".encode()):
                return web.json_response({"error": "unauthorized"}, status=401)
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as e:
            return web.json_response({"error": f"bad event: {e}"}, status=400)
        try:
            return web.json_response(await companion.handle(body))
        except ValueError as e:
            return web.json_response({"error": f"bad event: {e}"}, status=400)
        except Exception:
            # Never log the event: it can carry a token or a private message.
            log.exception("handler failed for %s", body.get("event"))
            return web.json_response([{"error": "handler failed"}])

    async def health(request: web.Request) -> web.Response:
        import importlib.metadata as md

        return web.json_response({"status": True, "open_webui": md.version("open-webui"),
                                  "handled_by_event": companion.handled, "uptime_s": int(time.time() - companion.started)})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(path, events)
    app.router.add_get("/health", health)
    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="switchboard-companion", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default=os.environ.get("SWITCHBOARD_COMPANION_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("SWITCHBOARD_COMPANION_PORT", "8091")))
    p.add_argument("--path", default=os.environ.get("SWITCHBOARD_FORWARD_PATH", "/api/v1/socket/events"),
                   help="the path the nodes post to (their --forward-path)")
    p.add_argument("--client-scheme", default=os.environ.get("SWITCHBOARD_COMPANION_CLIENT_SCHEME", "ws"),
                   choices=["ws", "wss", "http", "https"],
                   help="how browsers reach the cluster; Open WebUI's E2EE relay requires wss/https when ENV=prod")
    p.add_argument("--log-level", default=os.environ.get("SWITCHBOARD_COMPANION_LOG_LEVEL", "info"))
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")

    api_key = os.environ.get("SWITCHBOARD_API_KEY") or None
    key_file = os.environ.get("SWITCHBOARD_API_KEY_FILE")
    if key_file:
        api_key = Path(key_file).read_text().strip()
    prepare_environment()
    companion = Companion(args.client_scheme, api_key)
    if api_key is None:
        log.warning("no SWITCHBOARD_API_KEY: any caller that reaches %s:%d can send events", args.host, args.port)

    from aiohttp import web

    async def run() -> None:
        tasks = await companion.start_background()
        runner = web.AppRunner(make_app(companion, args.path), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        print(f"switchboard-companion listening on {args.host}:{args.port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            for t in tasks:
                t.cancel()
            await runner.cleanup()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
