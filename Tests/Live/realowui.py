"""The REAL Open WebUI (PyPI `open-webui`, installed by scripts/install-openwebui into
.cache/openwebui-venv) behind HAProxy, driven through its own front end in headless Chromium.

What runs (one set per test module, see test_real_openwebui.py):

    chromium ──▶ haproxy ──/ws/socket.io──▶ COLUMN: open-webui itself ("control")
                        │                           or switchboard nodes ("switchboard")
                        └─everything else─▶ open-webui (`open-webui serve`, SQLite in a temp DATA_DIR)
    open-webui ──OpenAI API──▶ FakeOpenAI (a streamed, known reply)
    open-webui ◀──▶ redis-server (WEBSOCKET_MANAGER=redis) ◀──▶ switchboard nodes

The only difference between columns is where HAProxy sends `/ws/socket.io`: `Stack.route_ws`
takes a list of (host, port). Everything here is plain helpers; the fixtures are in the test
module.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable

import requests

from livehelpers import REPO, free_port, stop_process_group

OPENWEBUI_VERSION = "0.12.4"
OPENWEBUI_VENV = Path(os.environ.get("OPENWEBUI_VENV", REPO / ".cache" / "openwebui-venv"))
INSTALL_SCRIPT = REPO / "scripts" / "install-openwebui"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

# Shared with the Switchboard nodes of the other column (they verify Open WebUI's tokens).
# Never exactly 44 characters: 0.12.4 then takes it as a Fernet key for its OAuth session
# store (OAUTH_SESSION_TOKEN_ENCRYPTION_KEY defaults to it) and fails to start unless it is one.
SECRET = "owui-real-secret-0123456789abcdef-0123456789abcdef-0123456789abcdef"
PREFIX = "open-webui"
WS_PATH = "/ws/socket.io"
FAKE_MODEL = "switchboard-fake-model"
FAKE_API_KEY = "sk-switchboard-fake"

# Generous: 2 cores, possibly busy building Swift.
START_TIMEOUT = 240.0
UI_TIMEOUT = 60.0


def openwebui_bin() -> Path:
    return OPENWEBUI_VENV / "bin" / "open-webui"


def installed_version() -> str | None:
    """The open-webui version in the venv, or None when the venv is not installed."""
    py = OPENWEBUI_VENV / "bin" / "python"
    if not py.exists() or not openwebui_bin().exists():
        return None
    r = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('open-webui'))"],
        capture_output=True, text=True, timeout=60,
    )
    return r.stdout.strip() if r.returncode == 0 else None


def ensure_installed() -> str | None:
    """None when open-webui==OPENWEBUI_VERSION is in the venv; else why not. With
    REAL_OPENWEBUI_INSTALL=1 it runs scripts/install-openwebui first (about a minute with
    network access to PyPI)."""
    if installed_version() == OPENWEBUI_VERSION:
        return None
    if os.environ.get("REAL_OPENWEBUI_INSTALL") == "1":
        r = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            return f"scripts/install-openwebui failed (rc={r.returncode}):\n{r.stderr[-3000:]}"
        if installed_version() == OPENWEBUI_VERSION:
            return None
    return (f"open-webui=={OPENWEBUI_VERSION} is not installed in {OPENWEBUI_VENV} "
            f"(found {installed_version()!r}): run scripts/install-openwebui, or set REAL_OPENWEBUI_INSTALL=1")


# ---------------------------------------------------------------------------------------
# A fake OpenAI-compatible model server
# ---------------------------------------------------------------------------------------


class FakeOpenAI:
    """`GET /v1/models` lists FAKE_MODEL; `POST /v1/chat/completions` answers with
    `reply_for(prompt)`: streamed as SSE chunks (one per word, `chunk_delay` apart) when the
    request says `stream: true`, else one JSON completion. Every request is recorded."""

    def __init__(self, chunk_delay: float = 0.05):
        self.chunk_delay = chunk_delay
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.replies: dict[str, str] = {}
        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-openai", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def set_reply(self, prompt_contains: str, reply: str) -> None:
        """The reply for any chat whose last user message contains `prompt_contains`."""
        with self.lock:
            self.replies[prompt_contains] = reply

    def reply_for(self, prompt: str) -> str:
        with self.lock:
            for key, reply in self.replies.items():
                if key in prompt:
                    return reply
        return "OK"

    def calls(self, method: str, path_suffix: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["method"] == method and r["path"].endswith(path_suffix)]

    def completions(self, stream: bool | None = None) -> list[dict]:
        with self.lock:
            return [r["body"] for r in self.requests
                    if r["path"].endswith("/chat/completions") and (stream is None or bool(r["body"].get("stream")) == stream)]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _cors(self) -> None:
                # A browser with a direct connection calls the model itself, from Open WebUI's origin.
                self.send_header("Access-Control-Allow-Origin", "*")

            def _json(self, code: int, obj) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self._cors()
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body) -> None:
                with fake.lock:
                    fake.requests.append({"method": self.command, "path": self.path, "body": body,
                                          "auth": self.headers.get("Authorization"),
                                          "origin": self.headers.get("Origin")})

            def do_OPTIONS(self):
                self._record(None)
                self.send_response(204)
                self._cors()
                self.send_header("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
                self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept")
                self.send_header("Access-Control-Max-Age", "600")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                self._record(None)
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": FAKE_MODEL, "object": "model", "created": 1700000000, "owned_by": "switchboard"}]})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                self._record(body)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                prompt = _last_user_text(body.get("messages") or [])
                reply = fake.reply_for(prompt)
                cid = "chatcmpl-" + uuid.uuid4().hex[:12]
                model = body.get("model") or FAKE_MODEL
                if not body.get("stream"):
                    self._json(200, {
                        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self._cors()
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

                def chunk(delta: dict, finish=None) -> None:
                    obj = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                           "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                    self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
                    self.wfile.flush()

                try:
                    chunk({"role": "assistant", "content": ""})
                    for piece in re.findall(r"\S+\s*", reply):
                        time.sleep(fake.chunk_delay)
                        chunk({"content": piece})
                    chunk({}, finish="stop")
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


def _last_user_text(messages: list) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
            return str(c or "")
    return ""


# ---------------------------------------------------------------------------------------
# Processes: Open WebUI and HAProxy
# ---------------------------------------------------------------------------------------


class _Proc:
    """A child in its own process group, its output in a log file, stopped by its group id."""

    def __init__(self, name: str, cmd: list[str], env: dict | None, cwd: str, log: Path):
        self.name, self.cmd, self.env, self.cwd, self.log_path = name, cmd, env, cwd, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.cwd, env=self.env, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        stop_process_group(self.proc, timeout)
        self._log.close()

    def wait_ready(self, answers: Callable[[], bool], timeout: float, step: float = 0.2) -> None:
        """Until `answers()` is true (request errors count as not yet); fails when the child exits first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited (rc={self.proc.returncode if self.proc else None}):\n{self.log_tail()}")
            try:
                if answers():
                    return
            except requests.RequestException:
                pass
            time.sleep(step)
        self.stop()
        raise TimeoutError(f"{self.name} not ready within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")[-n:]
        except FileNotFoundError:
            return ""


def openwebui_env(data_dir: Path, redis_url: str, openai_base: str, **extra: str) -> dict:
    """The environment the tests run Open WebUI 0.12.4 with (offline-safe, quick to start)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OLLAMA_", "WEBUI_", "WEBSOCKET_"))}
    env.update({
        # storage: SQLite in a fresh DATA_DIR, migrations run at start (the default)
        "DATA_DIR": str(data_dir),
        "WEBUI_SECRET_KEY": SECRET,
        # the socket layer through Redis, as a Switchboard deployment needs it
        "WEBSOCKET_MANAGER": "redis",
        "WEBSOCKET_REDIS_URL": redis_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": PREFIX,
        # one model: the fake OpenAI server; no Ollama
        "ENABLE_OLLAMA_API": "false",
        "ENABLE_OPENAI_API": "true",
        "OPENAI_API_BASE_URLS": openai_base,
        "OPENAI_API_KEYS": FAKE_API_KEY,
        "BYPASS_MODEL_ACCESS_CONTROL": "true",  # users see the fake model without an access grant
        # background tasks that would send extra completions to the model
        "ENABLE_TITLE_GENERATION": "false",
        "ENABLE_TAGS_GENERATION": "false",
        "ENABLE_FOLLOW_UP_GENERATION": "false",
        "ENABLE_AUTOCOMPLETE_GENERATION": "false",
        # nothing downloaded at startup: no local embedding model (engine 'openai' loads none),
        # HF hub offline, no version check, no pip installs for tools
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
        "RAG_RERANKING_MODEL_AUTO_UPDATE": "false",
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "ENABLE_VERSION_UPDATE_CHECK": "false",
        "ENABLE_COMMUNITY_SHARING": "false",
        # users: the second one is added by the admin as `user`; signups would be active too
        "DEFAULT_USER_ROLE": "user",
        "ENABLE_CHANNELS": "true",
        # encrypted chats in DMs and private groups (the `encryption:*` relay), for users too
        "ENABLE_ENCRYPTED_CHANNELS": "true",
        "USER_PERMISSIONS_FEATURES_ENCRYPTED_CHANNELS": "true",
        "WEBUI_NAME": "Open WebUI",
        "GLOBAL_LOG_LEVEL": "INFO",
        "ANONYMIZED_TELEMETRY": "false",
        "SCARF_NO_ANALYTICS": "true",
        "DO_NOT_TRACK": "true",
    })
    env.update(extra)
    return env


class OpenWebUI:
    """`open-webui serve --host 127.0.0.1 --port N` on a fresh DATA_DIR; ready when
    `/health` and `/api/config` answer."""

    def __init__(self, redis_url: str, openai_base: str, workdir: Path, **extra_env: str):
        self.port = free_port()
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = openwebui_env(self.data_dir, redis_url, openai_base, **extra_env)
        self.proc = _Proc("open-webui", [str(openwebui_bin()), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                          self.env, str(workdir), workdir / "open-webui.log")
        self.start_seconds: float | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT) -> "OpenWebUI":
        t0 = time.monotonic()
        self.proc.start()
        self.proc.wait_ready(lambda: requests.get(self.base + "/health", timeout=2).status_code == 200
                             and requests.get(self.base + "/api/config", timeout=5).status_code == 200, timeout, 0.25)
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        self.proc.stop()

    # -- HTTP API --------------------------------------------------------------------------
    def api(self, method: str, path: str, token: str | None = None, body=None, timeout: float = 30.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = requests.request(method, self.base + path, json=body, headers=headers, timeout=timeout)
        return r

    def api_ok(self, method: str, path: str, token: str | None = None, body=None):
        r = self.api(method, path, token, body)
        assert r.status_code == 200, f"{method} {path} -> {r.status_code} {r.text[:500]}"
        return r.json()

    def signup(self, name: str, email: str, password: str) -> dict:
        return self.api_ok("POST", "/api/v1/auths/signup", body={"name": name, "email": email, "password": password})

    def add_user(self, admin_token: str, name: str, email: str, password: str, role: str = "user") -> dict:
        return self.api_ok("POST", "/api/v1/auths/add", admin_token,
                           {"name": name, "email": email, "password": password, "role": role})


COMPANION = REPO / "deploy" / "openwebui-companion" / "switchboard_companion.py"


class Companion:
    """Switchboard's Open WebUI companion, in Open WebUI's venv with Open WebUI's environment."""

    def __init__(self, owui: "OpenWebUI", api_key: str):
        self.port = free_port()
        env = {**owui.env, "SWITCHBOARD_API_KEY": api_key}
        self.proc = _Proc("companion", [str(OPENWEBUI_VENV / "bin" / "python"), str(COMPANION), "--host", "127.0.0.1",
                                        "--port", str(self.port), "--log-level", "debug"],
                          env, str(owui.workdir), owui.workdir / "companion.log")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT) -> "Companion":
        self.proc.start()
        self.proc.wait_ready(lambda: requests.get(self.base + "/health", timeout=2).status_code == 200, timeout)
        return self

    def health(self) -> dict:
        return requests.get(self.base + "/health", timeout=5).json()

    def stop(self) -> None:
        self.proc.stop()


class User:
    def __init__(self, info: dict, password: str):
        self.id: str = info["id"]
        self.name: str = info["name"]
        self.email: str = info["email"]
        self.role: str = info["role"]
        self.token: str = info["token"]
        self.password = password

    def __repr__(self) -> str:
        return f"User({self.name!r}, {self.role})"


HAPROXY_CFG = """\
# generated by Tests/Live/realowui.py: Open WebUI's own routing split of a Switchboard deployment
global
    maxconn 2000
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlognull
    option forwardfor
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-request 30s
    timeout tunnel 1h
    timeout client-fin 10s
    timeout server-fin 10s

frontend front
    bind 127.0.0.1:{port}
    acl socketio path_beg {ws_path}
    use_backend socketio if socketio
    default_backend openwebui

backend openwebui
    server owui 127.0.0.1:{owui_port}

backend socketio
    balance roundrobin
    cookie SWITCHBOARD insert indirect nocache httponly
{servers}
"""


class HAProxy:
    """HAProxy on a free loopback port: `/ws/socket.io` to `ws_targets`, the rest to Open WebUI."""

    def __init__(self, owui_port: int, ws_targets: Iterable[tuple[str, int]], workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.ws_targets = list(ws_targets)
        assert self.ws_targets, "no /ws/socket.io target"
        servers = "\n".join(f"    server ws{i} {h}:{p} cookie ws{i}" for i, (h, p) in enumerate(self.ws_targets, 1))
        self.cfg_path = workdir / f"haproxy-{self.port}.cfg"
        self.cfg_path.write_text(HAPROXY_CFG.format(port=self.port, ws_path=WS_PATH, owui_port=owui_port, servers=servers))
        self.proc = _Proc("haproxy", [HAPROXY, "-db", "-f", str(self.cfg_path)], None, str(workdir),
                          workdir / f"haproxy-{self.port}.log")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "HAProxy":
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(self.cfg_path)], capture_output=True, text=True)
        assert check.returncode == 0, f"haproxy -c: {check.stdout}{check.stderr}"
        self.proc.start()
        self.proc.wait_ready(lambda: requests.get(self.base + "/health", timeout=3).status_code == 200, timeout, 0.1)
        return self

    def stop(self) -> None:
        self.proc.stop()

    def socketio_log_lines(self) -> list[str]:
        """The access-log lines of requests HAProxy sent to the `socketio` backend."""
        return [l for l in self.proc.log_tail(1_000_000).splitlines() if " socketio/" in l]


# ---------------------------------------------------------------------------------------
# Chromium
# ---------------------------------------------------------------------------------------


class Browser:
    """One headless Chromium (its own profile, so its own localStorage token) with
    the DevTools performance log on: `ws_frames()` returns the WebSocket frames the page sent
    and received, as the wire carried them, whatever served `/ws/socket.io`."""

    def __init__(self, base: str, name: str, artifacts: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.base = base
        self.name = name
        self.artifacts = artifacts
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--window-size=1400,1000", "--disable-extensions", "--disable-background-networking"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_page_load_timeout(UI_TIMEOUT)
        self.driver.set_script_timeout(UI_TIMEOUT)
        self._perf: list[dict] = []
        self._ws_urls: dict[str, str] = {}
        self.frames: list[dict] = []

    def close(self) -> None:
        try:
            self.driver.quit()
        except Exception:
            pass

    # -- DevTools performance log -----------------------------------------------------------
    def _drain_perf(self) -> None:
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            method, params = msg.get("method", ""), msg.get("params", {})
            if method == "Network.webSocketCreated":
                self._ws_urls[params["requestId"]] = params["url"]
            elif method in ("Network.webSocketFrameSent", "Network.webSocketFrameReceived"):
                rid = params["requestId"]
                self.frames.append({
                    "dir": "out" if method.endswith("Sent") else "in",
                    "url": self._ws_urls.get(rid, ""),
                    "ws": rid,
                    "data": params["response"].get("payloadData", ""),
                    "t": params.get("timestamp"),
                })
            elif method == "Network.webSocketClosed":
                self.frames.append({"dir": "closed", "url": self._ws_urls.get(params["requestId"], ""),
                                    "ws": params["requestId"], "data": "", "t": params.get("timestamp")})

    def ws_frames(self) -> list[dict]:
        self._drain_perf()
        return self.frames

    def socketio_frames(self) -> list[dict]:
        return [f for f in self.ws_frames() if WS_PATH in f["url"]]

    def socketio_events(self, direction: str = "in") -> list[tuple]:
        """Socket.IO EVENT/ACK packets of /ws/socket.io frames (`42…`, `43…`) as
        (kind, ack_id, [name, *args] or args)."""
        out = []
        for f in self.socketio_frames():
            if f["dir"] != direction:
                continue
            m = re.match(r"^4([23])(\d*)(.*)$", f["data"], re.S)
            if not m:
                continue
            try:
                payload = json.loads(m.group(3))
            except ValueError:
                continue
            out.append(("event" if m.group(1) == "2" else "ack", m.group(2), payload))
        return out

    def wait_frames(self, pred: Callable[[list[dict]], object], timeout: float = UI_TIMEOUT, what: str = "frames"):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = pred(self.socketio_frames())
            if r:
                return r
            time.sleep(0.25)
        raise AssertionError(f"{self.name}: {what} not seen within {timeout}s; /ws/socket.io frames:\n"
                             + "\n".join(f"{f['dir']} {f['data'][:200]}" for f in self.socketio_frames()[-40:]))

    # -- page helpers -----------------------------------------------------------------------
    def get(self, path: str) -> None:
        self.driver.get(self.base + path)

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, pred: Callable[[], object], timeout: float = UI_TIMEOUT, what: str = "condition"):
        end = time.monotonic() + timeout
        last_exc = None
        while time.monotonic() < end:
            try:
                r = pred()
                if r:
                    return r
            except Exception as e:  # noqa: BLE001 (stale elements while the SPA re-renders)
                last_exc = e
            time.sleep(0.25)
        shot = self.screenshot(f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())[:40]}")
        raise AssertionError(f"{self.name}: {what} not reached within {timeout}s (last error: {last_exc!r}); "
                             f"url={self.driver.current_url}; screenshot {shot}; console:\n{self.console_tail()}")

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        els = [e for e in self.driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
        return els[0] if els else None

    def wait_for(self, css: str, timeout: float = UI_TIMEOUT):
        return self.wait(lambda: self.find(css), timeout, f"element {css}")

    def body_text(self) -> str:
        return self.js("return document.body ? document.body.innerText : ''") or ""

    def console_tail(self, n: int = 30) -> str:
        try:
            logs = self.driver.get_log("browser")
        except Exception:
            return ""
        return "\n".join(f"{l.get('level')} {l.get('message', '')[:300]}" for l in logs[-n:])

    def screenshot(self, label: str) -> Path:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        p = self.artifacts / f"{self.name}-{label}.png"
        try:
            self.driver.save_screenshot(str(p))
        except Exception:
            pass
        return p

    def local_storage_token(self) -> str | None:
        return self.js("return localStorage.getItem('token')")


def redis_session_pool(redis_port: int, prefix: str = PREFIX) -> dict[str, dict]:
    """{sid: entry} of `{prefix}:session_pool` (written by whatever serves the sockets)."""
    import redis

    r = redis.Redis(host="127.0.0.1", port=redis_port, decode_responses=True)
    try:
        return {k: json.loads(v) for k, v in r.hgetall(f"{prefix}:session_pool").items()}
    finally:
        r.close()


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def make_workdir(label: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"real-owui-{label}-"))
