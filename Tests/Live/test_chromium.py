"""The official Socket.IO JavaScript client (4.8.1 browser build) in headless Chromium
against `switchboard conformance`.

The client is taken at test time from the PyPI wheel of nicegui (which ships
`nicegui/static/socket.io.min.js`) into Tests/Live/.cache/ (git-ignored). A tiny page is
served by python's http.server on another loopback port, so polling requests are
cross-origin and exercise CORS as a real deployment would.
"""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from livehelpers import HERE, free_port

CACHE = HERE / ".cache"
CLIENT_JS = CACHE / "socket.io.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>switchboard live</title>
<script src="socket.io.min.js"></script></head>
<body><pre id="log"></pre></body></html>
"""


def _ensure_client() -> Path:
    CACHE.mkdir(exist_ok=True)
    gi = CACHE / ".gitignore"
    if not gi.exists():
        gi.write_text("*\n")
    if CLIENT_JS.exists():
        return CLIENT_JS
    wheels = CACHE / "wheels"
    wheels.mkdir(exist_ok=True)
    if not list(wheels.glob("nicegui-*.whl")):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "nicegui", "-d", str(wheels)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    wheel = sorted(wheels.glob("nicegui-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as z:
        data = z.read("nicegui/static/socket.io.min.js")
    tmp = CLIENT_JS.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(CLIENT_JS)
    return CLIENT_JS


@pytest.fixture(scope="module")
def page_url():
    js = _ensure_client()
    banner = js.read_text("utf-8", "replace")[:200]
    print("client build:", banner.splitlines()[1] if len(banner.splitlines()) > 1 else banner)
    (CACHE / "index.html").write_text(PAGE)
    handler = functools.partial(_QuietHandler, directory=str(CACHE))
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{port}/index.html"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def driver(page_url):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium / chromedriver not installed (Debian packages chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_script_timeout(60)
    d.get(page_url)
    assert d.execute_script("return typeof io") == "function"
    print("chromium", d.capabilities.get("browserVersion"))
    yield d
    d.quit()


def run(driver, body: str, server, **params):
    """Run an async scenario in the page; `done(result)` ends it. Uses `url` and `params`."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "const url = arguments[0]; const params = arguments[1];"
        "const timer = setTimeout(() => done({error: 'scenario timeout'}), 40000);"
        "const finish = (r) => { clearTimeout(timer); done(r); };"
        "try {" + body + "} catch (e) { finish({error: String(e)}); }"
    )
    result = driver.execute_async_script(script, server.base, params)
    print("observed:", json.dumps(result, sort_keys=True))
    assert "error" not in result, result
    return result


CONNECT_AND_ACK = """
const socket = io(url, {transports: params.transports, auth: {token: 'chromium'}, reconnection: false});
const out = {auth: null, upgradedTo: null};
let upgraded = null;
const upgradedP = new Promise((res) => { upgraded = res; });
socket.io.on('open', () => {
  // the engine is open: record its first transport and watch for the upgrade
  out.transportAtOpen = socket.io.engine.transport.name;
  socket.io.engine.on('upgrade', (t) => { out.upgradedTo = t.name; upgraded(); });
});
socket.on('auth', (a) => { out.auth = a; });
socket.on('connect_error', (e) => finish({error: 'connect_error: ' + e.message}));
socket.on('connect', () => {
  out.connected = socket.connected;
  out.transportAtConnect = socket.io.engine.transport.name;
  const proceed = () => {
    out.transport = socket.io.engine.transport.name;
    socket.emit('message-with-ack', 1, '2', {'3': [true]}, (...args) => {
      out.ack = args;
      socket.disconnect();
      finish(out);
    });
  };
  if (params.waitUpgrade) {
    upgradedP.then(proceed);
  } else {
    proceed();
  }
});
"""


def test_websocket_only_connect_auth_and_ack(driver, conformance):
    r = run(driver, CONNECT_AND_ACK, conformance, transports=["websocket"], waitUpgrade=False)
    assert r["connected"] is True
    assert r["transportAtOpen"] == "websocket"
    assert r["transportAtConnect"] == "websocket"
    assert r["transport"] == "websocket"
    assert r["upgradedTo"] is None
    assert r["auth"] == {"token": "chromium"}
    assert r["ack"] == [1, "2", {"3": [True]}]


def test_polling_then_upgrade_to_websocket(driver, conformance):
    r = run(driver, CONNECT_AND_ACK, conformance, transports=["polling", "websocket"], waitUpgrade=True)
    assert r["transportAtOpen"] == "polling"
    assert r["upgradedTo"] == "websocket"
    assert r["transport"] == "websocket"
    assert r["auth"] == {"token": "chromium"}
    assert r["ack"] == [1, "2", {"3": [True]}]


def test_polling_only(driver, conformance):
    r = run(driver, CONNECT_AND_ACK, conformance, transports=["polling"], waitUpgrade=False)
    assert r["transportAtOpen"] == "polling"
    assert r["transport"] == "polling"
    assert r["auth"] == {"token": "chromium"}
    assert r["ack"] == [1, "2", {"3": [True]}]


ROOM = """
const room = 'browser-room';
const mk = () => io(url, {transports: params.transports, reconnection: false, forceNew: true});
const a = mk(), b = mk(), c = mk();
const got = {a: [], b: [], c: []};
a.on('room-message', (...x) => got.a.push(x));
b.on('room-message', (...x) => got.b.push(x));
c.on('room-message', (...x) => got.c.push(x));
const connected = (s) => new Promise((res, rej) => { s.on('connect', res); s.on('connect_error', rej); });
const ack = (s, ...args) => new Promise((res) => s.emit(...args, (...r) => res(r)));
(async () => {
  await Promise.all([connected(a), connected(b), connected(c)]);
  const joinA = await ack(a, 'join', room);
  const joinB = await ack(b, 'join', room);
  const waitB = new Promise((res) => b.once('room-message', () => res()));
  c.emit('to-room', room, 'hello room', {n: 1});
  await waitB;
  // a round trip on every socket: anything else for them would have arrived before
  await Promise.all([a, b, c].map((s) => new Promise((res) => { s.once('message-back', res); s.emit('message', 'sync'); })));
  const out = {joinA, joinB, got, transports: [a, b, c].map((s) => s.io.engine.transport.name)};
  [a, b, c].forEach((s) => s.disconnect());
  finish(out);
})().catch((e) => finish({error: String(e)}));
"""


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
def test_room_broadcast(driver, conformance, transports):
    r = run(driver, ROOM, conformance, transports=transports)
    assert r["joinA"] == [True] and r["joinB"] == [True]
    assert r["got"]["a"] == [["hello room", {"n": 1}]]
    assert r["got"]["b"] == [["hello room", {"n": 1}]]
    assert r["got"]["c"] == []


BINARY = """
const socket = io(url, {transports: params.transports, reconnection: false, forceNew: true});
socket.on('connect_error', (e) => finish({error: 'connect_error: ' + e.message}));
socket.on('connect', () => {
  const bytes = new Uint8Array(256); for (let i = 0; i < 256; i++) bytes[i] = i;
  socket.once('message-back', (buf, meta, nested) => {
    const out = {
      transport: socket.io.engine.transport.name,
      isArrayBuffer: buf instanceof ArrayBuffer,
      bytes: Array.from(new Uint8Array(buf)),
      meta,
      nestedIsArrayBuffer: nested && nested.inner instanceof ArrayBuffer,
      nested: nested ? Array.from(new Uint8Array(nested.inner)) : null,
    };
    socket.emit('message-with-ack', new Uint8Array([9, 8, 7]).buffer, (back) => {
      out.ackBytes = Array.from(new Uint8Array(back));
      socket.disconnect();
      finish(out);
    });
  });
  socket.emit('message', bytes.buffer, 'meta', {inner: new Uint8Array([0xca, 0xfe]).buffer});
});
"""


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
def test_binary_arraybuffer_round_trip(driver, conformance, transports):
    r = run(driver, BINARY, conformance, transports=transports)
    assert r["transport"] == transports[0]
    assert r["isArrayBuffer"] is True
    assert r["bytes"] == list(range(256))
    assert r["meta"] == "meta"
    assert r["nestedIsArrayBuffer"] is True
    assert r["nested"] == [0xCA, 0xFE]
    assert r["ackBytes"] == [9, 8, 7]


SERVER_ACK = """
const socket = io(url, {transports: ['websocket'], reconnection: false, forceNew: true});
socket.on('ack-me', (...args) => { const cb = args.pop(); cb('browser says', args); });
socket.on('ack-result', (...r) => { socket.disconnect(); finish({result: r}); });
socket.on('connect', () => socket.emit('call-me', 'q', 7));
socket.on('connect_error', (e) => finish({error: 'connect_error: ' + e.message}));
"""


def test_server_to_browser_ack(driver, conformance):
    r = run(driver, SERVER_ACK, conformance)
    assert r["result"] == ["browser says", ["q", 7]]


DISCONNECT = """
const socket = io(url, {transports: ['websocket'], reconnection: false, forceNew: true});
socket.on('disconnect', (reason) => finish({reason, connected: socket.connected}));
socket.on('connect', () => socket.emit('disconnect-me'));
socket.on('connect_error', (e) => finish({error: 'connect_error: ' + e.message}));
"""


def test_server_side_disconnect_reason(driver, conformance):
    r = run(driver, DISCONNECT, conformance)
    assert r["reason"] == "io server disconnect"
    assert r["connected"] is False
