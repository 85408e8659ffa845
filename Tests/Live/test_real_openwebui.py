"""The real Open WebUI 0.12.4 from PyPI, unchanged, with its own front end in headless Chromium,
behind HAProxy — in two columns that differ only in where `/ws/socket.io` goes:

    control      HAProxy sends `/ws/socket.io` to Open WebUI itself (python-socketio)
    switchboard  HAProxy sends `/ws/socket.io` to two Switchboard nodes on the same Redis

Every scenario runs in both columns and must pass in both. Nothing of Open WebUI is mocked; only
the model is a fake OpenAI server with a known, streamed reply (realowui.FakeOpenAI).

Needs: scripts/install-openwebui (scripts/test runs it), chromium + chromedriver, haproxy,
redis-server. Missing prerequisites fail the module, they never skip it.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests
import socketio

import realowui as R
from livehelpers import RedisServer, ServerProcess, wait_until

# Per test, the module's stack start included (Open WebUI boots in ~10 s, up to START_TIMEOUT).
pytestmark = pytest.mark.timeout(R.START_TIMEOUT + 120)

COLUMNS = ("control", "switchboard")
NODE_IDS = ("owuiA1", "owuiB2")
COMPANION_KEY = "companion-key-0123456789abcdef"
SOCKET_TIMEOUT = 20.0
# The user fields Open WebUI 0.12.4 leaves out of SESSION_POOL (socket/main.py, connect and
# user-join), and what `GET /api/v1/auths/` adds that must never be stored.
EXCLUDED_USER_FIELDS = {"profile_image_url", "profile_banner_image_url", "date_of_birth", "bio", "gender"}
AUTH_ANSWER_ONLY = {"token", "token_type", "expires_at", "permissions"}

# Key sets of SESSION_POOL entries as each column wrote them, for the cross-column comparison.
_POOL_KEYS: dict[str, set[str]] = {}


class Stack:
    """Redis, the fake model, Open WebUI, the column's socket servers and HAProxy."""

    def __init__(self, column: str):
        self.column = column
        self.workdir = R.make_workdir(column)
        self.redis = RedisServer().start()
        self.fake = R.FakeOpenAI().start()
        self.owui = R.OpenWebUI(self.redis.url, self.fake.base_url, self.workdir, DEFAULT_MODELS=R.FAKE_MODEL)
        self.nodes: list[ServerProcess] = []
        self.companion: R.Companion | None = None
        self.haproxy: R.HAProxy | None = None
        self.browsers: list[R.Browser] = []
        self.users: dict[str, R.User] = {}

    def start(self) -> "Stack":
        self.owui.start()
        if self.column == "switchboard":
            self.companion = R.Companion(self.owui, COMPANION_KEY).start()
            for node_id in NODE_IDS:
                node = ServerProcess([
                    "serve", "--host", "127.0.0.1", "--port", "0", "--path", R.WS_PATH, "--node-id", node_id,
                    "--redis-url", self.redis.url, "--jwt-secret", R.SECRET, "--backend-url", self.owui.base,
                    "--forward-url", self.companion.base, "--api-key", COMPANION_KEY,
                ], name=f"switchboard-{node_id}")
                self.nodes.append(node.start())
            targets = [(n.host, n.port) for n in self.nodes]
        else:
            targets = [("127.0.0.1", self.owui.port)]
        self.haproxy = R.HAProxy(self.owui.port, targets, self.workdir).start()
        pw = "pw-admin-" + uuid.uuid4().hex[:8]
        self.users["admin"] = R.User(self.owui.signup("Ada Admin", "admin@example.com", pw), pw)
        return self

    def stop(self) -> None:
        for b in self.browsers:
            b.close()
        if self.haproxy:
            self.haproxy.stop()
        for n in self.nodes:
            n.stop()
            n.cleanup_files()
        if self.companion:
            self.companion.stop()
        self.owui.stop()
        self.fake.stop()
        self.redis.stop()

    # -- users, browsers, sockets -----------------------------------------------------------
    @property
    def base(self) -> str:
        assert self.haproxy
        return self.haproxy.base

    @property
    def admin(self) -> R.User:
        return self.users["admin"]

    def add_user(self, label: str, role: str = "user") -> R.User:
        pw = "pw-" + uuid.uuid4().hex[:10]
        email = f"{label}-{uuid.uuid4().hex[:6]}@example.com"
        self.owui.add_user(self.admin.token, label.capitalize(), email, pw, role)
        # Sign in as the user: the token the front end would hold.
        info = self.owui.api_ok("POST", "/api/v1/auths/signin", body={"email": email, "password": pw})
        user = R.User(info, pw)
        self.users[label] = user
        return user

    def browser(self, label: str) -> R.Browser:
        b = R.Browser(self.base, f"{self.column}-{label}", self.workdir / "artifacts")
        self.browsers.append(b)
        return b

    def socket(self, token: str | None) -> "Socket":
        return Socket(self.base, token)

    def session_pool(self) -> dict[str, dict]:
        return R.redis_session_pool(self.redis.port)

    def sessions_of(self, user_id: str) -> dict[str, dict]:
        return {sid: e for sid, e in self.session_pool().items() if e.get("id") == user_id}

    def failure_context(self) -> str:
        parts = [f"--- open-webui log tail ---\n{self.owui.proc.log_tail(6000)}"]
        for n in self.nodes:
            parts.append(f"--- {n.name} stderr tail ---\n{n.stderr_tail(4000)}")
        if self.companion:
            parts.append(f"--- companion log tail ---\n{self.companion.proc.log_tail(4000)}")
        if self.haproxy:
            parts.append(f"--- haproxy log tail ---\n{self.haproxy.proc.log_tail(3000)}")
        return "\n".join(parts)


class Socket:
    """A python-socketio client through HAProxy, connecting as the front end does
    (path /ws/socket.io, WebSocket only, `auth: {token}`), recording what it receives."""

    def __init__(self, base: str, token: str | None):
        self.base = base
        self.token = token
        self.client = socketio.Client(reconnection=False)
        self.received: list[tuple[str, tuple]] = []
        self.disconnects: list[str] = []
        self.client.on("*", lambda ev, *args: self.received.append((ev, args)))
        self.client.on("disconnect", lambda *args: self.disconnects.append(str(args[0]) if args else ""))

    def connect(self, timeout: float = SOCKET_TIMEOUT) -> "Socket":
        self.client.connect(self.base, socketio_path=R.WS_PATH.strip("/"), transports=["websocket"],
                            auth={"token": self.token} if self.token else None, wait_timeout=timeout)
        return self

    @property
    def sid(self) -> str:
        return self.client.get_sid("/")

    def user_join(self, token: str | None = None, timeout: float = SOCKET_TIMEOUT):
        return self.client.call("user-join", {"auth": {"token": token or self.token}}, timeout=timeout)

    def wait_disconnected(self, timeout: float = SOCKET_TIMEOUT) -> str:
        wait_until(lambda: self.disconnects, timeout=timeout, what="the server disconnects the socket")
        return self.disconnects[0]

    def close(self) -> None:
        try:
            self.client.disconnect()
        except Exception:
            pass


@pytest.fixture(scope="module", params=COLUMNS)
def stack(request):
    if not R.openwebui_bin().exists():
        pytest.fail(f"Open WebUI is not installed in {R.OPENWEBUI_VENV}: run scripts/install-openwebui",
                    pytrace=False)
    s = Stack(request.param)
    try:
        s.start()
    except Exception:
        print(s.failure_context())
        s.stop()
        raise
    yield s
    s.stop()


@pytest.fixture
def on_failure(stack, request):
    """Prints the stack's logs when the test fails."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(stack.failure_context())


def sign_in(b: R.Browser, user: R.User) -> None:
    """Open WebUI's own sign-in form, as a person would use it."""
    b.get("/auth")
    b.wait_for("#email").send_keys(user.email)
    b.find("#password").send_keys(user.password)
    b.find('button[type="submit"]').click()
    b.wait(lambda: b.local_storage_token() and "/auth" not in b.driver.current_url, what="signed in")


def socket_connected_as(b: R.Browser, token: str) -> None:
    """The page's socket was let in and sent `user-join` with the token. (A page opened signed
    out connects with `auth: {}` and stays connected through the sign-in; `user-join` then
    authenticates it, as in Open WebUI's own socket layer.)"""
    b.wait_frames(lambda fs: any(f["dir"] == "in" and f["data"].startswith('40{"sid"') for f in fs)
                  and any(f["dir"] == "out" and f["data"].startswith('42["user-join"') and token in f["data"]
                          for f in fs),
                  what="the socket's CONNECT answer and user-join with the token")


# ---------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------


def test_sign_in_and_live_socket(stack, on_failure):
    """Sign in through the front end: its socket reaches the column's server through HAProxy,
    the user's session is in SESSION_POOL, and an emit from Open WebUI reaches the page."""
    alice = stack.add_user("alice")
    b = stack.browser("alice")
    sign_in(b, alice)
    token = b.local_storage_token()
    socket_connected_as(b, token)
    wait_until(lambda: stack.sessions_of(alice.id), timeout=SOCKET_TIMEOUT, what="alice in SESSION_POOL")
    # HAProxy sent the socket where the column says.
    assert stack.haproxy
    sids = set(stack.sessions_of(alice.id))
    on_switchboard = {sid for sid in sids if sid.startswith(NODE_IDS)}
    assert on_switchboard == (sids if stack.column == "switchboard" else set()), sids


def test_streamed_chat_completion(stack, on_failure):
    """A chat in the front end: Open WebUI streams the model's answer to the page over the socket
    (`events`: `response:completion` deltas, then `chat:completion` with `done`), the page shows it, and
    it is saved with the chat."""
    bob = stack.add_user("bob")
    reply = "Switchboard carried these streamed words " + uuid.uuid4().hex[:8]
    stack.fake.set_reply("tell me a streamed story", reply)
    b = stack.browser("bob")
    sign_in(b, bob)
    socket_connected_as(b, b.local_storage_token())
    box = b.wait_for("#chat-input")
    box.click()
    box.send_keys("please tell me a streamed story")
    from selenium.webdriver.common.keys import Keys

    box.send_keys(Keys.ENTER)
    b.wait(lambda: reply in b.body_text(), what="the streamed reply on the page")
    # 0.12.4 streams the answer as `response:completion` deltas and ends it with a `chat:completion`
    # carrying `done: true`, which can come a moment after the text is on the page.

    def events_of(kind: str) -> list[dict]:
        return [e[1] for k, _, e in b.socketio_events("in")
                if k == "event" and e and e[0] == "events" and len(e) > 1 and isinstance(e[1], dict)
                and (e[1].get("data") or {}).get("type") == kind]

    b.wait(lambda: any((e["data"].get("data") or {}).get("done") is True for e in events_of("chat:completion")),
           what="the chat:completion that ends the stream")
    deltas = events_of("response:completion")
    assert len(deltas) >= 2, f"not streamed: {len(deltas)} response:completion event(s)"
    assert stack.fake.completions(stream=True), "Open WebUI did not ask the model for a stream"
    # Saved: the chat Open WebUI stored has the whole answer.
    chat_id = b.wait(lambda: b.driver.current_url.split("/c/")[1] if "/c/" in b.driver.current_url else None,
                     what="the chat's URL")

    last: list[dict] = []

    def saved() -> bool:
        chat = stack.owui.api_ok("GET", f"/api/v1/chats/{chat_id}", bob.token)["chat"]
        last[:] = [chat]
        messages = list((chat.get("history") or {}).get("messages", {}).values()) + list(chat.get("messages") or [])
        return any(m.get("role") == "assistant" and reply in (m.get("content") or "") for m in messages)

    try:
        wait_until(saved, timeout=SOCKET_TIMEOUT, what="the answer saved with the chat")
    except AssertionError:
        raise AssertionError(f"the answer is not in the saved chat: {last}") from None


def test_session_pool_holds_open_webui_user_fields_only(stack, on_failure):
    """SESSION_POOL entries are what Open WebUI's own socket layer stores: the user without the five
    excluded fields, plus `last_seen_at` — never the token or the permission map."""
    carol = stack.add_user("carol")
    s = stack.socket(carol.token).connect()
    try:
        s.user_join()
        entries = wait_until(lambda: stack.sessions_of(carol.id), timeout=SOCKET_TIMEOUT,
                             what="carol in SESSION_POOL")
        for sid, entry in entries.items():
            raw = str(entry)
            assert carol.token not in raw, f"{sid}: the bearer token is in SESSION_POOL"
            assert not (AUTH_ANSWER_ONLY & entry.keys()), f"{sid}: {sorted(AUTH_ANSWER_ONLY & entry.keys())}"
            assert not (EXCLUDED_USER_FIELDS & entry.keys()), f"{sid}: {sorted(EXCLUDED_USER_FIELDS & entry.keys())}"
            assert entry["role"] == "user" and entry["email"] == carol.email
            assert isinstance(entry["last_seen_at"], int)
            _POOL_KEYS[stack.column] = set(entry.keys()) - {"chat_ids"}
        if "control" in _POOL_KEYS and stack.column != "control":
            # Never a field Open WebUI does not store. Switchboard stores the fields a user's token
            # can read (`GET /api/v1/auths/`); the rest of the UserModel (username, oauth, scim,
            # settings, info, timestamps, presence_state, timezone) no user-token route returns,
            # and 0.12.4 reads only id, name, role, chat_ids and last_seen_at from entries.
            mine, theirs = _POOL_KEYS[stack.column], _POOL_KEYS["control"]
            assert mine <= theirs, f"fields Open WebUI does not store: {sorted(mine - theirs)}"
            assert {"id", "name", "email", "role", "last_seen_at"} <= mine
            print(f"[{stack.column}] SESSION_POOL fields Open WebUI has and Switchboard does not: {sorted(theirs - mine)}")
    finally:
        s.close()


def test_pending_user_gets_nothing(stack, on_failure):
    """A `pending` user's token opens no session: no SESSION_POOL entry, and `user-join` answers
    nothing."""
    dave = stack.add_user("dave", role="pending")
    s = stack.socket(dave.token).connect()
    try:
        assert s.user_join() is None
        assert not stack.sessions_of(dave.id)
    finally:
        s.close()


def _reconnect_is_refused(stack, user: R.User) -> str:
    """The same token reconnecting right away opens no session. Returns how it was refused:
    Open WebUI 0.12.4 itself answers a deleted user's CONNECT with nothing at all (its connect
    handler raises a 401 HTTPException from the MFA lookup), a revoked or demoted one with an
    anonymous socket whose `user-join` answers nothing."""
    again = Socket(stack.base, user.token)
    try:
        try:
            again.connect(timeout=5.0)
        except socketio.exceptions.ConnectionError:
            how = "CONNECT refused or unanswered"
        else:
            try:
                answer = again.user_join(timeout=5.0)
            except socketio.exceptions.TimeoutError:
                how = "connected anonymously, user-join unanswered"
            else:
                assert answer is None, f"the revoked token was let back in: user-join answered {answer!r}"
                how = "connected anonymously, user-join answered nothing"
        assert not stack.sessions_of(user.id), f"the revoked session is in SESSION_POOL: {stack.sessions_of(user.id)}"
        print(f"[{stack.column}] reconnect of {user.name}: {how}")
        return how
    finally:
        again.close()


def test_sign_out_disconnects_and_the_token_is_refused_at_once(stack, on_failure):
    """Sign-out revokes the token: Open WebUI disconnects the user's sockets, and the same token
    reconnecting at once gets nothing."""
    erin = stack.add_user("erin")
    s = stack.socket(erin.token).connect()
    try:
        s.user_join()
        wait_until(lambda: stack.sessions_of(erin.id), timeout=SOCKET_TIMEOUT, what="erin in SESSION_POOL")
        r = requests.post(stack.owui.base + "/api/v1/auths/signout",
                          headers={"Authorization": f"Bearer {erin.token}"}, timeout=30)
        assert r.status_code == 200, r.text
        s.wait_disconnected()
        _reconnect_is_refused(stack, erin)
    finally:
        s.close()


@pytest.mark.parametrize("change", ["role-to-pending", "deletion"])
def test_role_change_and_deletion_disconnect_the_user(stack, on_failure, change):
    """An admin demoting a user to `pending`, or deleting them, disconnects their sockets on every
    server, and their reconnect gets nothing."""
    frank = stack.add_user(f"frank-{change}")
    sockets = [stack.socket(frank.token).connect() for _ in range(3)]
    try:
        for s in sockets:
            s.user_join()
        wait_until(lambda: len(stack.sessions_of(frank.id)) == 3, timeout=SOCKET_TIMEOUT,
                   what="frank's three sessions in SESSION_POOL")
        if change == "deletion":
            stack.owui.api_ok("DELETE", f"/api/v1/users/{frank.id}", stack.admin.token)
        else:
            stack.owui.api_ok("POST", f"/api/v1/users/{frank.id}/update", stack.admin.token, {"role": "pending"})
        for s in sockets:
            s.wait_disconnected()
        _reconnect_is_refused(stack, frank)
        wait_until(lambda: not stack.sessions_of(frank.id), timeout=SOCKET_TIMEOUT,
                   what="frank's sessions out of SESSION_POOL")
    finally:
        for s in sockets:
            s.close()


def _events_channel(b: R.Browser, channel_id: str, kind: str) -> list[dict]:
    return [e[1] for k, _, e in b.socketio_events("in")
            if k == "event" and e and e[0] == "events:channel" and len(e) > 1 and isinstance(e[1], dict)
            and (e[1].get("channel_id") == channel_id or kind == "channel:created")
            and (e[1].get("data") or {}).get("type") == kind]


def _room_sids(node: ServerProcess, room: str) -> list[str]:
    from urllib.parse import quote

    r = requests.get(f"http://{node.host}:{node.port}/api/v1/rooms/{quote(room, safe='')}",
                     headers={"Authorization": f"Bearer {COMPANION_KEY}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["sids"]


def test_dm_to_an_online_user_then_live_messages_and_typing(stack, on_failure):
    """Bob opens a DM with Alice while both are online. Alice's page hears `channel:created` and her
    live socket joins the new channel at once (Open WebUI's `enter_room_for_users`), so Bob's first
    message reaches her without a reload; then both open the DM in the front end, Alice's typing
    shows on Bob's page and the message she sends appears there."""
    from selenium.webdriver.common.keys import Keys

    alice, bob = stack.add_user("alice-dm"), stack.add_user("bob-dm")
    ba, bb = stack.browser("alice-dm"), stack.browser("bob-dm")
    for b, u in ((ba, alice), (bb, bob)):
        sign_in(b, u)
        socket_connected_as(b, b.local_storage_token())
    wait_until(lambda: stack.sessions_of(alice.id) and stack.sessions_of(bob.id), timeout=SOCKET_TIMEOUT,
               what="both in SESSION_POOL")
    dm = stack.owui.api_ok("POST", "/api/v1/channels/create", bob.token, {"type": "dm", "user_ids": [alice.id]})
    ba.wait(lambda: _events_channel(ba, dm["id"], "channel:created"), what="channel:created on Alice's page")
    if stack.nodes:
        # Open WebUI joins its own sockets before the create call returns; a node learns of the new channel
        # from `channel:created` and asks Open WebUI for the user's channels first, so its join comes a moment
        # later (measured and printed here; docs/OPENWEBUI.md). A message posted inside that moment is missed.
        t0 = time.monotonic()
        room = f"channel:{dm['id']}"
        wait_until(lambda: any(_room_sids(n, room) for n in stack.nodes), timeout=SOCKET_TIMEOUT,
                   what="Alice's socket in the new channel's room")
        print(f"[switchboard] live channel join {time.monotonic() - t0:.3f} s after channel:created was seen")
    first = "first DM line " + uuid.uuid4().hex[:6]
    stack.owui.api_ok("POST", f"/api/v1/channels/{dm['id']}/messages/post", bob.token, {"content": first})
    ba.wait(lambda: any((m.get("data") or {}).get("data", {}).get("content") == first
                        for m in _events_channel(ba, dm["id"], "message")),
            what="Bob's first DM message on Alice's socket (her socket joined the new channel live)")

    for b in (ba, bb):
        b.get(f"/channels/{dm['id']}")
    ba.wait(lambda: first in ba.body_text(), what="the first message in Alice's DM page")
    box = ba.wait_for("#chat-input")
    box.click()
    # Each keystroke sends `typing`; Open WebUI relays it only once the reloaded page's `user-join` has put
    # the socket back in the channel's room (its CONNECT joins `user:{id}` alone), so keep typing, as a
    # person would, until Bob's page shows it.
    end = time.monotonic() + R.UI_TIMEOUT
    for ch in "hello Bob, are you there?" * 4:
        box.send_keys(ch)
        if "is typing" in bb.body_text() or time.monotonic() > end:
            break
        time.sleep(0.3)
    bb.wait(lambda: "is typing" in bb.body_text(), what="Alice is typing, on Bob's page")
    typing = _events_channel(bb, dm["id"], "typing")
    assert typing and typing[-1]["user"]["id"] == alice.id and typing[-1]["user"]["role"] == "user", typing[-1:]
    assert typing[-1]["message_id"] is None
    line = "live line " + uuid.uuid4().hex[:6]
    box.send_keys(" - " + line, Keys.ENTER)
    bb.wait(lambda: line in bb.body_text(), what="Alice's message on Bob's page")


def _companion_ran(stack, event_prefix: str) -> None:
    """In the Switchboard column, Open WebUI's handlers ran in the companion for these events."""
    if stack.companion is None:
        return
    counts = stack.companion.health()["handled_by_event"]
    assert any(e.startswith(event_prefix) and n > 0 for e, n in counts.items()), counts


def _editor(b: R.Browser):
    return b.wait_for("#note-content-container .ProseMirror")


def _type_into(b: R.Browser, el, text: str) -> None:
    """Types at the end of a contenteditable editor as the browser's own text input does (the note page's
    floating menus can cover the editor for a pointer click)."""
    b.js("""
        const el = arguments[0];
        el.focus();
        const range = document.createRange();
        range.selectNodeContents(el);
        range.collapse(false);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        document.execCommand('insertText', false, arguments[1]);
    """, el, text)


def test_collaborative_note_in_two_browsers_saved_and_reloaded(stack, on_failure):
    """Alice's note, opened by Alice and by the admin in two browsers: Open WebUI's Yjs handlers
    (`ydoc:*`) send each the document state, relay each one's edits to the other, save the note,
    and the text is there after a reload."""
    alice = stack.add_user("alice-note")
    note = stack.owui.api_ok("POST", "/api/v1/notes/create", alice.token,
                             {"title": "Shared plan", "data": {"content": {"md": "", "html": "", "json": None}}})
    ba, bz = stack.browser("alice-note"), stack.browser("admin-note")
    for b, u in ((ba, alice), (bz, stack.admin)):
        sign_in(b, u)
        socket_connected_as(b, b.local_storage_token())
        b.get(f"/notes/{note['id']}")
        b.wait_frames(lambda fs: any(f["dir"] == "in" and '"ydoc:document:state"' in f["data"] for f in fs),
                      what="ydoc:document:state for the note")
    first = "alice wrote " + uuid.uuid4().hex[:6]
    _type_into(ba, _editor(ba), first)
    bz.wait(lambda: first in _editor(bz).text, what="Alice's text in the admin's editor")
    second = "admin added " + uuid.uuid4().hex[:6]
    _type_into(bz, _editor(bz), " " + second)
    ba.wait(lambda: second in _editor(ba).text, what="the admin's text in Alice's editor")

    def saved() -> str | None:
        md = ((stack.owui.api_ok("GET", f"/api/v1/notes/{note['id']}", alice.token).get("data") or {})
              .get("content") or {}).get("md") or ""
        return md if first in md and second in md else None

    wait_until(saved, timeout=SOCKET_TIMEOUT, what="both edits saved with the note")
    ba.get(f"/notes/{note['id']}")
    ba.wait(lambda: first in _editor(ba).text and second in _editor(ba).text, what="both edits after a reload")
    _companion_ran(stack, "ydoc:")
    # Closing a browser takes its socket out of the document (Open WebUI's disconnect clean-up).
    import redis

    r = redis.Redis(port=stack.redis.port, decode_responses=True)
    try:
        (users_key,) = [k for k in r.scan_iter(match=f"*:note:{note['id']}:users")]
        wait_until(lambda: r.scard(users_key) == 2, timeout=SOCKET_TIMEOUT, what="two sessions in the document")
        bz.close()
        wait_until(lambda: r.scard(users_key) < 2, timeout=SOCKET_TIMEOUT,
                   what="the closed browser's session out of the document")
    finally:
        r.close()


def test_read_receipts_survive_a_reload(stack, on_failure):
    """Bob writes in a channel while Alice is elsewhere: her channel list counts one unread message.
    She opens the channel (the front end sends `events:channel` `last_read_at`, which Open WebUI
    writes to its database); after a reload the channel is read."""
    alice, bob = stack.add_user("alice-read"), stack.add_user("bob-read")
    channel = stack.owui.api_ok("POST", "/api/v1/channels/create", bob.token,
                                {"type": "group", "name": "reads-" + uuid.uuid4().hex[:4], "user_ids": [alice.id]})
    stack.owui.api_ok("POST", f"/api/v1/channels/{channel['id']}/messages/post", bob.token,
                      {"content": "did you read this?"})

    def unread() -> int:
        listed = stack.owui.api_ok("GET", "/api/v1/channels/", alice.token)
        return next(c for c in listed if c["id"] == channel["id"]).get("unread_count", 0)

    assert unread() == 1
    b = stack.browser("alice-read")
    sign_in(b, alice)
    socket_connected_as(b, b.local_storage_token())
    b.get(f"/channels/{channel['id']}")
    b.wait(lambda: "did you read this?" in b.body_text(), what="the message in the channel page")
    # Leaving the channel inside the app sends `last_read_at` (the one sent as the page opens can come before
    # `user-join` has put the socket in the channel's room, and then Open WebUI itself drops it).
    b.js("document.querySelector('a[href=\"/\"]').click()")
    b.wait(lambda: "/channels/" not in b.driver.current_url, what="back on the home page, inside the app")
    wait_until(lambda: unread() == 0, timeout=SOCKET_TIMEOUT, what="the channel read in Open WebUI's database")
    b.get("/")
    b.wait(lambda: b.find("#chat-input"), what="the home page after a reload")
    assert unread() == 0
    _companion_ran(stack, "events:channel")


def _saved_chat(stack, owner: R.User, title: str, question: str = "Hello", answer: str = "Hi there") -> dict:
    """A saved chat of `owner` with one question and its (done) answer from the fake model."""
    now = int(time.time())
    user_msg = {"id": "u1", "parentId": None, "childrenIds": ["a1"], "role": "user", "content": question,
                "timestamp": now, "models": [R.FAKE_MODEL]}
    answer_msg = {"id": "a1", "parentId": "u1", "childrenIds": [], "role": "assistant", "content": answer,
                  "model": R.FAKE_MODEL, "modelName": R.FAKE_MODEL, "done": True, "timestamp": now + 1}
    return stack.owui.api_ok("POST", "/api/v1/chats/new", owner.token, {"chat": {
        "title": title, "models": [R.FAKE_MODEL],
        "history": {"currentId": "a1", "messages": {"u1": user_msg, "a1": answer_msg}},
        "messages": [user_msg, answer_msg], "tags": [], "timestamp": now * 1000}})


def test_shared_chat_presence_and_typing(stack, on_failure):
    """Alice shares a chat with Bob so that he may continue it (`share_mode: continue`). Both open it in the
    front end: each page shows the other as present (`events:chat` join → `chat:presence`), Bob's typing
    shows on Alice's page ("Bob… is typing..."), and when Bob leaves the chat Alice's page no longer shows
    him."""
    alice, bob = stack.add_user("alice-shared"), stack.add_user("bob-shared")
    chat = _saved_chat(stack, alice, "Plans we share")
    stack.owui.api_ok("POST", f"/api/v1/chats/{chat['id']}/share", alice.token, {"share_mode": "continue"})
    stack.owui.api_ok("POST", f"/api/v1/chats/shared/{chat['id']}/access/update", alice.token, {
        "access_grants": [{"principal_type": "user", "principal_id": bob.id, "permission": "read"}],
        "share_mode": "continue"})
    ba, bb = stack.browser("alice-shared"), stack.browser("bob-shared")
    for b, u in ((ba, alice), (bb, bob)):
        sign_in(b, u)
        socket_connected_as(b, b.local_storage_token())
        b.get(f"/c/{chat['id']}")
        b.wait(lambda b=b: "Hi there" in b.body_text(), what="the shared chat's answer on the page")

    def shows(b: R.Browser, who: R.User) -> bool:
        return bool(b.find(f'nav [data-chat-participants] button[aria-label="{who.name}"]'))

    ba.wait(lambda: shows(ba, bob), what="Bob present on Alice's page")
    bb.wait(lambda: shows(bb, alice), what="Alice present on Bob's page")
    presence = [e[1] for k, _, e in ba.socketio_events("in")
                if k == "event" and e and e[0] == "events" and len(e) > 1 and isinstance(e[1], dict)
                and (e[1].get("data") or {}).get("type") == "chat:presence"]
    assert presence and presence[-1]["chat_id"] == chat["id"] and presence[-1]["shared"] is True
    assert sorted(u["id"] for u in presence[-1]["data"]["data"]["users"]) == sorted([alice.id, bob.id])

    # Typing: keystrokes in Bob's input send `typing` (one per 2 s); Alice's page shows it for 5 s after each.
    box = bb.wait_for("#chat-input")
    box.click()
    end = time.monotonic() + R.UI_TIMEOUT
    for ch in "shall we meet on Tuesday?" * 3:
        box.send_keys(ch)
        if f"{bob.name} is typing" in ba.body_text() or time.monotonic() > end:
            break
        time.sleep(0.3)
    ba.wait(lambda: f"{bob.name} is typing" in ba.body_text(), what="Bob is typing, on Alice's page")
    typing = [e[1] for k, _, e in ba.socketio_events("in")
              if k == "event" and e and e[0] == "events" and len(e) > 1 and isinstance(e[1], dict)
              and (e[1].get("data") or {}).get("type") == "typing"]
    assert typing[-1]["user"] == {"id": bob.id, "name": bob.name} and typing[-1]["shared"] is True, typing[-1]
    assert not any((e[1].get("data") or {}).get("type") == "typing" for k, _, e in bb.socketio_events("in")
                   if k == "event" and e and e[0] == "events" and len(e) > 1 and isinstance(e[1], dict)
                   and e[1].get("user_id") == bob.id), "Bob's own typing came back to him"

    # Bob leaves the chat (back to the home page inside the app): Alice no longer sees him.
    bb.js("document.querySelector('a[href=\"/\"]').click()")
    bb.wait(lambda: "/c/" not in bb.driver.current_url, what="Bob back on the home page")
    ba.wait(lambda: not shows(ba, bob), what="Bob gone from Alice's page")


def test_direct_completion_streamed_by_the_browser(stack, on_failure):
    """A direct connection: the model is called by the browser, not by Open WebUI. Open WebUI asks the page
    (`request:chat:completion`), the page streams the model's answer back as `{user}:{session}:{request}`
    events, Open WebUI turns them into the chat's completion, and the reply is shown and saved."""
    stack.owui.api_ok("POST", "/api/v1/configs/connections", stack.admin.token, {
        "ENABLE_DIRECT_CONNECTIONS": True, "ENABLE_DIRECT_INTEGRATIONS": False, "ENABLE_BASE_MODELS_CACHE": False})
    hana = stack.add_user("hana-direct")
    stack.owui.api_ok("POST", "/api/v1/users/user/settings/update", hana.token, {"ui": {
        "directConnections": {"OPENAI_API_BASE_URLS": [stack.fake.base_url], "OPENAI_API_KEYS": [R.FAKE_API_KEY],
                              "OPENAI_API_CONFIGS": {"0": {"enable": True, "model_ids": ["direct-fake"]}}},
        "title": {"auto": False}, "autoTags": False, "autoFollowUps": False}})
    reply = "the browser streamed this itself " + uuid.uuid4().hex[:8]
    stack.fake.set_reply("stream it directly", reply)
    posts_before = len(stack.fake.calls("POST", "/chat/completions"))
    b = stack.browser("hana-direct")
    sign_in(b, hana)
    socket_connected_as(b, b.local_storage_token())
    b.get("/?models=direct-fake")
    box = b.wait_for("#chat-input")
    box.click()
    from selenium.webdriver.common.keys import Keys

    box.send_keys("please stream it directly", Keys.ENTER)
    b.wait(lambda: reply in b.body_text(), what="the directly streamed reply on the page")
    direct = [r for r in stack.fake.calls("POST", "/chat/completions")[posts_before:]
              if (r["body"] or {}).get("model") == "direct-fake"]
    assert direct and direct[-1]["origin"], "the model was not called by the browser"
    assert stack.fake.calls("OPTIONS", "/chat/completions"), "no CORS preflight: not a browser's call"
    chunks = [e for k, _, e in b.socketio_events("out")
              if k == "event" and e and isinstance(e[0], str) and e[0].startswith(f"{hana.id}:") and e[0].count(":") == 2]
    assert len(chunks) >= 2 and chunks[-1][1] == {"done": True}, chunks[-3:]
    chat_id = b.wait(lambda: b.driver.current_url.split("/c/")[1] if "/c/" in b.driver.current_url else None,
                     what="the chat's URL")

    def saved() -> bool:
        chat = stack.owui.api_ok("GET", f"/api/v1/chats/{chat_id}", hana.token)["chat"]
        messages = (chat.get("history") or {}).get("messages", {}).values()
        return any(m.get("role") == "assistant" and reply in (m.get("content") or "") for m in messages)

    wait_until(saved, timeout=SOCKET_TIMEOUT, what="the direct reply saved with the chat")


# An Action function that asks the browser before a tool runs, as Open WebUI's tool permission
# prompt does (`confirmation` with `tool_call`; Open WebUI waits min(max(timeout_ms, 60 s), 240 s)),
# and reports the answer it got as the message's status line.
ASK_BEFORE_ACTING = '''"""
title: Ask before acting
"""
from pydantic import BaseModel


class Action:
    class Valves(BaseModel):
        pass

    def __init__(self):
        self.valves = self.Valves()

    async def action(self, body: dict, __user__=None, __event_emitter__=None, __event_call__=None):
        answer = await __event_call__({
            "type": "confirmation",
            "data": {
                "title": "Ask before acting",
                "message": "May the report be sent?",
                "tool_call": {"id": "call-report-1", "name": "send_report", "arguments": {"to": "team"}},
                "timeout_ms": 120000,
            },
        })
        await __event_emitter__({"type": "status", "data": {"description": f"tool-answer={answer!r}", "done": True}})
        return None
'''
CONFIRMATION_ANSWERED_AFTER = 90.0


@pytest.mark.timeout(R.START_TIMEOUT + 120 + CONFIRMATION_ANSWERED_AFTER)
def test_tool_confirmation_answered_after_90_seconds(stack, on_failure):
    """Open WebUI asks the page whether a tool may run (`sio.call` of `confirmation` with `tool_call`) and
    waits for the answer. The "Tool Permissions" dialog stays open for 90 s before the user clicks Allow;
    the answer still reaches the action (its status line says `tool-answer=True`), and Open WebUI then
    tells the page the interaction is done."""
    admin = stack.admin.token
    stack.owui.api_ok("POST", "/api/v1/functions/create", admin, {
        "id": "ask_before_acting", "name": "Ask before acting", "content": ASK_BEFORE_ACTING,
        "meta": {"description": "asks the browser before a tool runs"}})
    stack.owui.api_ok("POST", "/api/v1/functions/id/ask_before_acting/toggle", admin)
    stack.owui.api_ok("POST", "/api/v1/functions/id/ask_before_acting/toggle/global", admin)
    # A plain user may run an action only on a registered model they can read (Admin → Models, public).
    if not stack.owui.api("GET", f"/api/v1/models/model?id={R.FAKE_MODEL}", admin).ok:
        stack.owui.api_ok("POST", "/api/v1/models/create", admin, {
            "id": R.FAKE_MODEL, "base_model_id": None, "name": R.FAKE_MODEL, "meta": {}, "params": {},
            "access_grants": [{"principal_type": "user", "principal_id": "*", "permission": "read"}]})
    ivy = stack.add_user("ivy-tool")
    chat = _saved_chat(stack, ivy, "Weekly report", question="Send the weekly report", answer="Ready to send it")
    b = stack.browser("ivy-tool")
    sign_in(b, ivy)
    socket_connected_as(b, b.local_storage_token())
    b.get(f"/c/{chat['id']}")
    b.wait(lambda: "Ready to send it" in b.body_text(), what="the chat's answer on the page")
    b.wait_for('button[aria-label="Ask before acting"]').click()

    allow_xpath = "//div[@role='dialog']//button[normalize-space()='Allow']"

    def dialog():
        from selenium.webdriver.common.by import By

        shown = [e for e in b.driver.find_elements(By.XPATH, allow_xpath) if e.is_displayed()]
        return shown[0] if shown and "Tool Permissions" in b.body_text() else None

    b.wait(dialog, what="the Tool Permissions dialog")
    calls = [(ack_id, e[1]) for k, ack_id, e in b.socketio_events("in")
             if k == "event" and ack_id and e and e[0] == "events" and len(e) > 1 and isinstance(e[1], dict)
             and (e[1].get("data") or {}).get("type") == "confirmation"]
    assert calls, "the confirmation did not come as a call (an event with an ack id)"
    ack_id, call = calls[-1]
    assert call["chat_id"] == chat["id"] and call["data"]["data"]["tool_call"]["name"] == "send_report"
    interaction_id = call["data"]["data"]["interaction_id"]
    asked = time.monotonic()
    while time.monotonic() - asked < CONFIRMATION_ANSWERED_AFTER:
        time.sleep(5)
        assert dialog(), f"the dialog closed by itself after {time.monotonic() - asked:.0f} s"
    assert "send_report" in b.body_text()
    dialog().click()
    b.wait(lambda: "tool-answer=True" in b.body_text(), what="the action's status line with the answer")
    acks = [e for k, i, e in b.socketio_events("out") if k == "ack" and i == ack_id]
    assert acks == [[True]], acks
    done = [e[1] for k, _, e in b.socketio_events("in")
            if k == "event" and e and e[0] == "events" and len(e) > 1 and isinstance(e[1], dict)
            and (e[1].get("data") or {}).get("type") == "request:interaction:done"]
    assert any(d["data"]["data"]["interaction_id"] == interaction_id for d in done), done


def test_encrypted_chat_in_a_dm_between_two_browsers(stack, on_failure):
    """Alice starts an encrypted chat in her DM with Bob (Open WebUI's `encryption:*` packet relay; the
    browsers do the MLS cryptography). Bob's DM page is told a chat is in progress and he joins it; Alice's
    page admits him, a line from each reaches the other and is shown delivered, and when Bob leaves, Alice
    sees him go. The relay only sees ciphertext; every packet arrives in order (the pages drop a session on
    any gap)."""
    from selenium.webdriver.common.keys import Keys

    alice, bob = stack.add_user("alice-e2ee"), stack.add_user("bob-e2ee")
    dm = stack.owui.api_ok("POST", "/api/v1/channels/create", alice.token, {"type": "dm", "user_ids": [bob.id]})
    ba, bb = stack.browser("alice-e2ee"), stack.browser("bob-e2ee")
    for b, u in ((ba, alice), (bb, bob)):
        sign_in(b, u)
        socket_connected_as(b, b.local_storage_token())
        b.get(f"/channels/{dm['id']}")
        b.wait_for('nav button[aria-label="Conversation options"]')

    ba.find('nav button[aria-label="Conversation options"]').click()
    from selenium.webdriver.common.by import By

    ba.wait(lambda: [e for e in ba.driver.find_elements(By.XPATH, "//button[@role='menuitem'][normalize-space()='Encrypted Chat']")
                     if e.is_displayed()], what="the Encrypted Chat menu item")[0].click()
    ba.wait(lambda: "/encrypted" in ba.driver.current_url, what="Alice on the encrypted chat page")
    ba.wait(lambda: "end-to-end encrypted" in ba.body_text(), what="Alice's encrypted chat active")

    join = bb.wait_for('button[aria-label="Join encrypted chat"]')
    join.click()
    bb.wait(lambda: "/encrypted" in bb.driver.current_url, what="Bob on the encrypted chat page")
    bb.wait(lambda: "end-to-end encrypted" in bb.body_text() or "joined" in bb.body_text(),
            what="Bob admitted to the encrypted chat")
    ba.wait(lambda: f"{bob.name} joined" in ba.body_text(), what="Bob joined, on Alice's page")

    def say(b: R.Browser, line: str) -> None:
        box = b.wait_for("#chat-input")
        box.click()
        box.send_keys(line)
        b.wait(lambda: b.find("#send-message-button") and b.find("#send-message-button").is_enabled(),
               what="the send button enabled")
        box.send_keys(Keys.ENTER)

    to_bob, to_alice = "sealed for Bob " + uuid.uuid4().hex[:6], "sealed for Alice " + uuid.uuid4().hex[:6]
    say(ba, to_bob)
    bb.wait(lambda: to_bob in bb.body_text(), what="Alice's encrypted line on Bob's page")
    ba.wait(lambda: "Delivered" in ba.body_text(), what="Alice's line shown delivered (Bob's receipt)")
    say(bb, to_alice)
    ba.wait(lambda: to_alice in ba.body_text(), what="Bob's encrypted line on Alice's page")

    # What went over the sockets: sequenced relay events, never the plain text.
    for b in (ba, bb):
        relayed = [e[1] for k, _, e in b.socketio_events("in")
                   if k == "event" and e and e[0] == "encryption:event" and len(e) > 1 and isinstance(e[1], dict)]
        sequences = [r["sequence"] for r in relayed if "sequence" in r]
        assert len(sequences) >= 2 and sequences == list(range(1, len(sequences) + 1)), sequences
        frames = " ".join(f["data"] for f in b.socketio_frames())
        assert to_bob not in frames and to_alice not in frames, "plain text on the wire"
    assert stack.redis.client().command("KEYS", f"{R.PREFIX}:encryption:*"), "no relay state in Redis"

    bb.js("Array.from(document.querySelectorAll('nav button')).find(x => x.innerText.trim() == 'Leave').click()")
    bb.wait(lambda: "/encrypted" not in bb.driver.current_url, what="Bob back in the DM")
    ba.wait(lambda: ba.find('button[aria-label="1 participants"]') or ba.find('button[aria-label="1 participant"]'),
            what="Alice alone in the encrypted chat")
    _companion_ran(stack, "encryption:")
