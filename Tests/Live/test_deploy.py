"""The deployment files, checked by what runs on this machine (there is no Docker daemon here):

- deploy/haproxy/haproxy.cfg: `haproxy -c`, as written (for docker-compose.yml) and as
  scripts/cluster renders it for local processes; WebSocket, stickiness and health settings.
- docker-compose.yml: Debian's `docker-compose config` (it needs no daemon), and every node's
  command and environment accepted by `switchboard check-config`.
- Dockerfile: its stages, that the runtime stage's packages exist (`apt-cache show`) and own every
  shared library the node links, the CMD accepted by check-config, a non-root user, and its
  HEALTHCHECK command run against a real node.
- deploy/systemd/: `systemd-analyze verify` on both units (ExecStart pointed at the real binary).
- deploy/kubernetes/: `kubernetes-validate --strict` on every manifest, and the Deployment's
  arguments and environment accepted by check-config.
- docs/OPERATIONS.md: its `ACL SETUSER` line applied to a private Redis, a node run as that user
  through connect, presence, forwarded events and shutdown, and Redis's ACL LOG left empty.
- scripts/cluster: up with three nodes behind HAProxy, python-socketio clients over WebSocket and
  over long-polling (sticky by cookie), status, a node killed with SIGKILL and marked down by
  HAProxy while new connections still succeed, down leaving no process behind.

The validators are installed by scripts/test (install_deploy_tools, requirements.txt): a missing
one is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests
import socketio
import yaml

from livehelpers import REPO, SEP, TIMEOUT, binary_path, wait_until

DEPLOY = REPO / "deploy"
HAPROXY_CFG = DEPLOY / "haproxy" / "haproxy.cfg"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
SYSTEMD = DEPLOY / "systemd"
KUBERNETES = DEPLOY / "kubernetes"
OPERATIONS = REPO / "docs" / "OPERATIONS.md"
CLUSTER_SCRIPT = REPO / "scripts" / "cluster"

# Kubernetes versions whose schemas kubernetes-validate ships and that the manifests must pass.
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")

# Packages debian:bookworm-slim has without installing anything (libc, libgcc, libstdc++ and zlib
# are dependencies of apt and dpkg themselves).
SLIM_BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}

# The node's Swift runtime libraries: linked statically into the image's binary
# (--static-swift-stdlib), dynamically into a local build.
SWIFT_RUNTIME = re.compile(r"^(libswift|lib_?Foundation|libdispatch|libBlocksRuntime|lib_Testing|libXCTest)")

SECRET = "deploy-test-secret-0123456789abcdef-0123456789"
API_KEY = "deploy-test-api-key-0123456789"
COOKIE = "SWITCHBOARD"
EIO_PATH = "/ws/socket.io/"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """The path of a validator; missing means scripts/test did not install it: a failure."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if not path:
        pytest.fail(f"{name} is not installed (scripts/test installs it: install_deploy_tools)", pytrace=False)
    return path


def run(cmd: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def node_binary() -> Path:
    b = binary_path().resolve()
    if not b.exists():
        pytest.fail(f"switchboard binary missing: {b} (build it or set SWITCHBOARD_BIN)", pytrace=False)
    return b


def clean_env(extra: dict | None = None) -> dict:
    """An environment without the caller's configuration variables: only what a file sets."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update(extra or {})
    return env


def seconds(text: str) -> float:
    """`10s`, `500ms`, `1m`, `1m30s`, a bare number of seconds (compose, systemd, the node)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)\s*(ms|min|sec|s|m|h)", text):
        assert m.start() == pos, f"unparsable duration {text!r}"
        pos = m.end()
        value, unit = float(m.group(1)), m.group(2)
        total += value * {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]
    assert pos == len(text) and pos > 0, f"unparsable duration {text!r}"
    return total


def flag_value(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def check_config(args: list[str], env: dict | None = None) -> tuple[dict[str, str], list[str]]:
    """Runs `switchboard check-config` with the serve arguments of a deployment file (the words
    after `serve`) and its environment; returns the printed settings (and, for the callers' sake,
    an empty list of flags it had to drop: every flag a file uses must be known)."""
    r = run([str(node_binary()), "check-config", *args], env=clean_env(env), timeout=30)
    assert r.returncode == 0, (
        f"check-config refused {args} with env {sorted((env or {}).keys())}: rc={r.returncode}\n{r.stderr}"
    )
    settings = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    return settings, []


def serve_args(words: list[str]) -> list[str]:
    """The arguments after the `serve` subcommand (a command may start with the binary's path)."""
    words = list(words)
    if words and words[0].endswith("switchboard"):
        words = words[1:]
    assert words and words[0] == "serve", f"not a serve command: {words}"
    return words[1:]


def haproxy_check(cfg: Path) -> list[str]:
    """`haproxy -c`; returns its warnings."""
    r = run([tool("haproxy"), "-c", "-f", str(cfg)])
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"haproxy -c -f {cfg} failed:\n{out}"
    return [line for line in out.splitlines() if "[WARNING]" in line or "[ALERT]" in line]


def cfg_servers(text: str, backend: str = "nodes") -> list[tuple[str, str, str | None]]:
    """(name, address, cookie) of the `server` lines of `backend`."""
    out = []
    section = None
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] in (["backend"], ["frontend"], ["listen"], ["defaults"], ["global"], ["resolvers"]):
            section = words[1] if words[0] == "backend" and len(words) > 1 else None
        if words[:1] == ["server"] and section == backend:
            cookie = words[words.index("cookie") + 1] if "cookie" in words else None
            out.append((words[1], words[2], cookie))
    return out


# ---------------------------------------------------------------------------------------------
# HAProxy
# ---------------------------------------------------------------------------------------------


def test_haproxy_cfg_is_valid_and_websocket_aware():
    warnings_seen = haproxy_check(HAPROXY_CFG)
    # As written, the server names are compose service names, unknown on this machine: the only
    # warnings allowed are those (init-addr none lets HAProxy start without them).
    unexpected = [w for w in warnings_seen if not re.search(r"could not resolve address '(node\d+|open-webui)'", w)]
    assert not unexpected, unexpected

    text = HAPROXY_CFG.read_text()
    active = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    for needle in (
        "mode http",
        "timeout tunnel",                 # upgraded WebSockets
        "option httpchk",
        "uri /ready",                     # health checks on readiness
        "http-check expect status 200",
        f"cookie {COOKIE} insert",        # sticky long-polling
        "monitor-uri /health",            # HAProxy's own /health
        "option redispatch",
    ):
        assert needle in active, f"haproxy.cfg lacks {needle!r}"
    # A node marked down drains its own connections: HAProxy must not cut them.
    assert "shutdown-sessions" not in active
    # Long-poll GETs are held up to the ping interval (25 s): client/server timeouts above it.
    for name in ("client", "server"):
        m = re.search(rf"timeout {name}\s+(\S+)", active)
        assert m and seconds(m.group(1)) > 25, f"timeout {name} must exceed the 25 s ping interval"
    servers = cfg_servers(text)
    assert len(servers) == 3 and all(cookie == name for name, _, cookie in servers), servers


def test_rendered_haproxy_cfg_is_valid(tmp_path):
    """What scripts/cluster runs: the same file with listen addresses, socket and servers rewritten."""
    r = run([str(CLUSTER_SCRIPT), "render", "--front", "28080", "--stats", "28404",
             "--socket", str(tmp_path / "haproxy.sock"),
             "node01=127.0.0.1:41001", "node02=127.0.0.1:41002", "node03=127.0.0.1:41003"])
    assert r.returncode == 0, r.stderr
    rendered = tmp_path / "haproxy.cfg"
    rendered.write_text(r.stdout)
    assert haproxy_check(rendered) == []
    assert cfg_servers(r.stdout) == [(f"node0{i}", f"127.0.0.1:4100{i}", f"node0{i}") for i in (1, 2, 3)]
    assert "bind 127.0.0.1:28080" in r.stdout and "bind 127.0.0.1:28404" in r.stdout
    # One source of truth: outside the tagged lines and the server block, nothing differs.
    template = HAPROXY_CFG.read_text().splitlines()
    out = r.stdout.splitlines()
    strip = lambda lines: [  # noqa: E731
        line for line in lines if "cluster:" not in line and not line.split("#", 1)[0].split()[:1] == ["server"]
    ]
    assert strip(template) == strip(out)


# ---------------------------------------------------------------------------------------------
# docker-compose.yml
# ---------------------------------------------------------------------------------------------


def compose_config(env: dict) -> subprocess.CompletedProcess:
    return run([tool("docker-compose"), "-f", str(COMPOSE), "--project-directory", str(REPO), "config"],
               env=clean_env(env), cwd=REPO)


OPENWEBUI_COMPOSE = REPO / "deploy" / "openwebui" / "docker-compose.yml"
COMPANION_DIR = REPO / "deploy" / "openwebui-companion"


def test_openwebui_compose_adds_open_webui_and_the_companion():
    """docker-compose.yml + deploy/openwebui/docker-compose.yml: Open WebUI 0.12.4 and the companion in
    Open WebUI's image with Open WebUI's environment, and nodes that call one and forward to the other."""
    import realowui

    def config(env: dict) -> subprocess.CompletedProcess:
        return run([tool("docker-compose"), "-f", str(COMPOSE), "-f", str(OPENWEBUI_COMPOSE), "--project-directory",
                    str(REPO), "config"], env=clean_env(env), cwd=REPO)

    missing = config({"WEBUI_SECRET_KEY": SECRET})
    assert missing.returncode != 0 and "SWITCHBOARD_API_KEY" in (missing.stdout + missing.stderr)
    r = config({"WEBUI_SECRET_KEY": SECRET, "SWITCHBOARD_API_KEY": API_KEY})
    assert r.returncode == 0, r.stdout + r.stderr
    services = yaml.safe_load(r.stdout)["services"]
    owui, companion = services["open-webui"], services["openwebui-companion"]
    assert owui["image"] == companion["image"] == f"ghcr.io/open-webui/open-webui:{realowui.OPENWEBUI_VERSION}"

    # The companion: the script this repository ships, mounted; Open WebUI's environment and data.
    entry = companion["entrypoint"]
    assert entry[0] == "python" and entry[1].startswith("/companion/"), entry
    def volumes(svc) -> dict[str, str]:
        """{target: source} of a service's volumes, short ("src:dst[:mode]") or long syntax."""
        out = {}
        for m in svc.get("volumes", []):
            if isinstance(m, dict):
                out[m["target"]] = m["source"]
            else:
                src, dst = m.split(":")[:2]
                out[dst] = src
        return out

    mounts = volumes(companion)
    assert Path(mounts["/companion"]) == COMPANION_DIR and (COMPANION_DIR / Path(entry[1]).name).is_file(), mounts
    owui_env, comp_env = owui["environment"], companion["environment"]
    for key in ("WEBUI_SECRET_KEY", "WEBSOCKET_MANAGER", "REDIS_URL", "REDIS_KEY_PREFIX", "DATA_DIR"):
        assert comp_env.get(key) == owui_env.get(key), key
    assert owui_env["WEBSOCKET_MANAGER"] == "redis" and owui_env["WEBUI_SECRET_KEY"] == SECRET
    owui_mounts = volumes(owui)
    assert mounts[owui_env["DATA_DIR"]] == owui_mounts[owui_env["DATA_DIR"]]
    comp_port = int(companion["command"][companion["command"].index("--port") + 1])

    nodes = {name: svc for name, svc in services.items() if svc.get("command") and "serve" in svc["command"]}
    assert len(nodes) == 3
    for name, svc in nodes.items():
        env = {k: str(v) for k, v in svc["environment"].items() if v is not None}
        assert env["SWITCHBOARD_API_KEY"] == comp_env["SWITCHBOARD_API_KEY"] == API_KEY
        assert env["WEBUI_SECRET_KEY"] == SECRET and env["REDIS_KEY_PREFIX"] == owui_env["REDIS_KEY_PREFIX"]
        settings, _ = check_config(serve_args(svc["command"]), env)
        assert settings["forward-url"] == f"http://openwebui-companion:{comp_port}", settings
        assert settings["forward-events"] == "http"

    # HAProxy sends Open WebUI's pages and API to the open-webui service.
    assert cfg_servers(HAPROXY_CFG.read_text(), "openwebui")[0][1] == "open-webui:8080"


def test_compose_file_is_valid_and_nodes_accept_their_configuration():
    # The JWT secret is required: without it the file does not resolve.
    missing = compose_config({})
    assert missing.returncode != 0 and "WEBUI_SECRET_KEY" in (missing.stdout + missing.stderr)

    r = compose_config({"WEBUI_SECRET_KEY": SECRET, "SWITCHBOARD_API_KEY": API_KEY})
    assert r.returncode == 0, r.stdout + r.stderr
    config = yaml.safe_load(r.stdout)
    services = config["services"]
    assert "redis" in services and "haproxy" in services
    nodes = {name: s for name, s in services.items() if s.get("command") and "serve" in s["command"]}
    assert len(nodes) == 3, sorted(services)

    ids, ports = {}, {}
    for name, svc in nodes.items():
        args = serve_args(svc["command"])
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items() if v is not None}
        assert env.get("WEBUI_SECRET_KEY") == SECRET
        assert env.get("SWITCHBOARD_API_KEY") == API_KEY
        assert re.fullmatch(r"redis://redis:\d+/\d+", env.get("SWITCHBOARD_REDIS_URL", "")), env
        settings, _ = check_config(args, env)
        assert settings["host"] == "0.0.0.0"
        assert settings["redis-url"] == env["SWITCHBOARD_REDIS_URL"]
        assert settings["jwt-secret"] == "(set)" and settings["api-key"] == "(set)"
        ids[name] = settings["node-id"]
        ports[name] = settings["port"]
        # Docker's SIGKILL comes after the node's own bound on its drain.
        grace = seconds(svc["stop_grace_period"])
        drain = seconds(flag_value(args, "--drain-window") or "10s")
        bound = seconds(flag_value(args, "--shutdown-timeout") or "30s")
        assert grace > bound > drain, (name, grace, bound, drain)
        assert svc.get("read_only") is True and "ALL" in svc.get("cap_drop", [])
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        # The container's health is the node's readiness, asked on the node's port.
        probe = " ".join(svc["healthcheck"]["test"])
        assert f"/dev/tcp/127.0.0.1/{settings['port']}" in probe and "GET /ready" in probe, probe
    assert len(set(ids.values())) == 3 and all(len(i) == 6 for i in ids.values()), ids

    # HAProxy: the shared configuration, its servers are exactly the node services.
    haproxy = services["haproxy"]
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in haproxy.get("volumes", [])]
    assert any(m.split(":")[0] == str(HAPROXY_CFG) and "/usr/local/etc/haproxy/haproxy.cfg" in m for m in mounts), mounts
    servers = cfg_servers(HAPROXY_CFG.read_text())
    assert {(n, a) for n, a, _ in servers} == {(n, f"{n}:{ports[n]}") for n in nodes}
    published = {str(p.get("target") if isinstance(p, dict) else p.split(":")[-1].split("/")[0]) for p in haproxy["ports"]}
    front = re.search(r"bind :(\d+)\s+# cluster:front-bind", HAPROXY_CFG.read_text()).group(1)
    assert front in published, (front, haproxy["ports"])


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------


def dockerfile_stages() -> list[dict]:
    """Instructions per stage, continuation lines joined, ARGs before the first FROM substituted."""
    lines, buf = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        lines.append(buf + stripped)
        buf = ""
    args: dict[str, str] = {}
    stages: list[dict] = []
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif instr == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            stages.append({"image": image, "name": name, "instructions": []})
        else:
            assert stages, f"instruction before FROM: {line}"
            stages[-1]["instructions"].append((instr, rest))
    return stages


def apt_packages(stage: dict) -> list[str]:
    pkgs = []
    for instr, rest in stage["instructions"]:
        if instr != "RUN":
            continue
        for m in re.finditer(r"apt-get install\s+(.*?)(?:&&|;|$)", rest):
            pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    return pkgs


def instruction(stage: dict, name: str) -> list[str]:
    return [rest for instr, rest in stage["instructions"] if instr == name]


def packages_of(paths: list[str]) -> dict[str, str]:
    """The Debian package owning each file (one `dpkg -S` for all), trying the /usr-merged spellings."""
    spellings: dict[str, str] = {}
    for path in paths:
        for p in {path, os.path.realpath(path)}:
            spellings[p] = path
            if p.startswith("/lib"):
                spellings["/usr" + p] = path
            if p.startswith("/usr/lib"):
                spellings[p[4:]] = path
    r = run(["dpkg", "-S", *spellings])
    owners: dict[str, str] = {}
    for line in r.stdout.splitlines():
        pkg, _, file = line.partition(": ")
        if file in spellings:
            owners[spellings[file]] = pkg.split(",")[0].split(":")[0].strip()
    return owners


def test_dockerfile_stages_packages_user_and_command():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a Swift build stage and a slim runtime"
    build, runtime = stages[0], stages[-1]

    # Build: the Swift image on Debian 12, the C libraries' headers, a static-stdlib release build.
    assert re.fullmatch(r"swift:6\.\d+(\.\d+)?-bookworm", build["image"]), build["image"]
    assert {"libhiredis-dev", "libssl-dev", "libsystemd-dev", "pkg-config"} <= set(apt_packages(build))
    runs = " ".join(instruction(build, "RUN"))
    assert re.search(r"swift build -c release --product switchboard\b.*--static-swift-stdlib", runs), runs

    # Runtime: Debian 12 slim with the runtime libraries only, the binary from the build stage.
    assert runtime["image"] == "debian:bookworm-slim", runtime["image"]
    runtime_pkgs = apt_packages(runtime)
    assert {"libhiredis0.14", "libssl3", "libsystemd0", "ca-certificates"} <= set(runtime_pkgs), runtime_pkgs
    assert not [p for p in runtime_pkgs if p.endswith("-dev") or p in ("curl", "wget", "swift")], runtime_pkgs
    copies = instruction(runtime, "COPY")
    assert any(f"--from={build['name']}" in c and "/usr/local/bin/switchboard" in c for c in copies), copies

    # This machine is Debian 12 too: its apt knows the packages both stages install.
    assert "bookworm" in Path("/etc/os-release").read_text(), "the package check needs a Debian 12 machine"
    wanted = apt_packages(build) + runtime_pkgs
    r = run(["apt-cache", "show", "--no-all-versions", *wanted])
    known = set(re.findall(r"^Package: (\S+)$", r.stdout, re.M))
    assert set(wanted) <= known, f"apt-cache does not know {sorted(set(wanted) - known)}: {r.stderr}"

    # Every shared library the node links directly (but the Swift runtime, static in the image)
    # comes from a package the runtime stage installs or the slim image has (apt brings their own
    # dependencies). readelf names them, ldd finds their files.
    elf = run([tool("readelf"), "-d", str(node_binary())])
    assert elf.returncode == 0, elf.stderr
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", elf.stdout))
    ldd = run(["ldd", str(node_binary())])
    assert ldd.returncode == 0, ldd.stderr
    provided = set(runtime_pkgs) | SLIM_BASE_PACKAGES
    linked = {}
    for line in ldd.stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m and m.group(1) in needed and not SWIFT_RUNTIME.match(m.group(1)):
            assert m.group(2) != "not", f"{m.group(1)} not found"
            linked[m.group(2)] = m.group(1)
    assert any(lib.startswith("libhiredis") for lib in linked.values()), linked
    owners = packages_of(list(linked))
    for path, lib in linked.items():
        assert path in owners, f"{lib} ({path}) belongs to no Debian package"
        assert owners[path] in provided, f"{lib} comes from {owners[path]}, which the runtime stage does not install"

    # A non-root user, numeric so that Kubernetes' runAsNonRoot can check it, created in the stage.
    users = instruction(runtime, "USER")
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root"), users
    assert uid.isdigit(), f"USER {uid}: numeric please"
    assert re.search(rf"useradd\b.*--uid {uid}\b", " ".join(instruction(runtime, "RUN"))), "USER not created"

    assert "8080" in " ".join(instruction(runtime, "EXPOSE")).split()
    assert json.loads(instruction(runtime, "ENTRYPOINT")[-1]) == ["switchboard"]
    cmd = json.loads(instruction(runtime, "CMD")[-1])
    assert cmd[:1] == ["serve"]
    settings, _ = check_config(serve_args(cmd))
    assert settings["host"] == "0.0.0.0" and settings["port"] == "8080"
    assert instruction(runtime, "HEALTHCHECK"), "no HEALTHCHECK"

    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ".build" in ignored and ".git" in ignored and ".cache" in ignored
    assert not {"Sources", "Package.swift", "Tests"} & set(ignored)


def healthcheck_command() -> list[str]:
    runtime = dockerfile_stages()[-1]
    (hc,) = instruction(runtime, "HEALTHCHECK")
    m = re.search(r"\bCMD\s+(\[.*\])\s*$", hc)
    assert m, hc
    return json.loads(m.group(1))


def test_dockerfile_healthcheck_works_without_extra_tools(serve_factory):
    """The image has no curl: its HEALTHCHECK (bash /dev/tcp) run against a real node."""
    cmd = healthcheck_command()
    assert cmd[0] == "bash" and "curl" not in " ".join(cmd) and "wget" not in " ".join(cmd)
    node = serve_factory()
    ok = run(cmd, env=clean_env({"SWITCHBOARD_PORT": str(node.port)}), timeout=10)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    node.kill(signal.SIGTERM)
    down = run(cmd, env=clean_env({"SWITCHBOARD_PORT": str(node.port)}), timeout=10)
    assert down.returncode != 0


# ---------------------------------------------------------------------------------------------
# systemd
# ---------------------------------------------------------------------------------------------


def unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def test_systemd_units_verify(tmp_path):
    analyze = tool("systemd-analyze")
    binary = node_binary()
    service = SYSTEMD / "switchboard.service"
    socket_unit = SYSTEMD / "switchboard.socket"
    text = service.read_text()
    assert re.search(r"^ExecStart=/usr/local/bin/switchboard serve", text, re.M)
    # verify checks that ExecStart exists: point it at the real binary.
    (tmp_path / "switchboard.service").write_text(
        text.replace("ExecStart=/usr/local/bin/switchboard", f"ExecStart={binary}")
    )
    shutil.copy(socket_unit, tmp_path / "switchboard.socket")
    r = run([analyze, "verify", str(tmp_path / "switchboard.service"), str(tmp_path / "switchboard.socket")],
            cwd=tmp_path, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and not out, f"systemd-analyze verify (rc={r.returncode}):\n{out}"

    svc = unit_entries(service)["Service"]
    values = {}
    for k, v in svc:
        values.setdefault(k, []).append(v)
    one = lambda k: values[k][-1]  # noqa: E731
    expected = {
        "Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "NoNewPrivileges": "yes",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "DynamicUser": "yes",
        "CapabilityBoundingSet": "", "MemoryDenyWriteExecute": "yes", "KillSignal": "SIGTERM",
        "LimitNOFILE": "1048576", "SystemCallFilter": "@system-service",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "EnvironmentFile": "-/etc/switchboard/switchboard.env",
        "ExecReload": "/bin/kill -HUP $MAINPID",
    }
    for k, v in expected.items():
        assert k in values and v in values[k], f"{k}={v} expected, have {values.get(k)}"
    assert seconds(one("WatchdogSec")) > 0

    # The unit's own settings are valid node settings, and it stops after the node's drain bound.
    env = {}
    for assignment in values.get("Environment", []):
        for word in shlex.split(assignment):
            k, _, v = word.partition("=")
            env[k] = v
    args = serve_args(shlex.split(one("ExecStart")))
    settings, _ = check_config(args, env)
    assert settings["host"] == "0.0.0.0" and settings["port"] == "8080"
    drain = seconds(env.get("SWITCHBOARD_DRAIN_WINDOW", "10s"))
    bound = seconds(env.get("SWITCHBOARD_SHUTDOWN_TIMEOUT", "30s"))
    assert seconds(one("TimeoutStopSec")) > bound > drain

    sock = dict(unit_entries(socket_unit)["Socket"])
    assert sock["ListenStream"] == "8080" and sock["Service"] == "switchboard.service"


# ---------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------


def manifests() -> dict[str, dict]:
    found = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[doc["kind"]] = doc
    return found


def test_kubernetes_manifests_validate():
    files = sorted(str(p) for p in KUBERNETES.glob("*.yaml"))
    assert files
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        pytest.fail("kubernetes-validate is not installed (Tests/Live/requirements.txt)", pytrace=False)
    for version in KUBERNETES_VERSIONS:
        r = run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, *files])
        assert r.returncode == 0, f"kubernetes-validate -k {version}:\n{r.stdout}{r.stderr}"
        assert r.stdout.count("passed") == len(files), r.stdout

    m = manifests()
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap", "Secret"} <= set(m)
    dep = m["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["replicas"] == 3
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    runtime_user = instruction(dockerfile_stages()[-1], "USER")[-1].split(":")[0]
    assert str(pod["securityContext"]["runAsUser"]) == runtime_user
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]

    # The Deployment's arguments and environment are valid node settings.
    env = dict(m["ConfigMap"]["data"])
    env.update(m["Secret"]["stringData"])
    refs = {(list(e)[0], list(e.values())[0]["name"]) for e in container["envFrom"]}
    assert refs == {("configMapRef", m["ConfigMap"]["metadata"]["name"]), ("secretRef", m["Secret"]["metadata"]["name"])}
    settings, _ = check_config(serve_args(container["args"]), env)
    assert settings["host"] == "0.0.0.0" and settings["port"] == "8080"
    assert settings["jwt-secret"] == "(set)" and settings["redis-url"].startswith("redis://")

    # Termination: preStop, then SIGTERM and the drain, all before the kubelet's SIGKILL.
    pre_stop = container["lifecycle"]["preStop"]
    pause = float(pre_stop["sleep"]["seconds"]) if "sleep" in pre_stop else float(pre_stop["exec"]["command"][-1])
    drain = seconds(env.get("SWITCHBOARD_DRAIN_WINDOW", "10s"))
    bound = seconds(env.get("SWITCHBOARD_SHUTDOWN_TIMEOUT", "30s"))
    assert pod["terminationGracePeriodSeconds"] > pause + bound > pause + drain

    # Everything points at the same pods.
    for kind in ("Service", "PodDisruptionBudget"):
        spec = m[kind]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), (kind, selector)
    hpa = m["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}
    assert hpa["minReplicas"] >= 3


# ---------------------------------------------------------------------------------------------
# The Redis ACL of docs/OPERATIONS.md
# ---------------------------------------------------------------------------------------------


def documented_acl() -> list[str]:
    text = OPERATIONS.read_text()
    m = re.search(r"^(ACL SETUSER switchboard\b.*?)(?:\n\s*\n|\n```)", text, re.M | re.S)
    assert m, "docs/OPERATIONS.md has no `ACL SETUSER switchboard …` line"
    return shlex.split(m.group(1).replace("\\\n", " "))


def token(user: str = "user-1", name: str = "Ada") -> str:
    return jwt.encode({"id": user, "name": name, "exp": int(time.time()) + 600, "jti": f"jti-{user}"}, SECRET, "HS256")


def attempted(r, command: str) -> bool:
    """Whether Redis ran, or refused, `command` (INFO commandstats; scripts' commands included)."""
    m = re.search(rf"^cmdstat_{command}:(.*)$", r.command("INFO", "commandstats"), re.M)
    stats = dict(kv.split("=") for kv in m.group(1).strip().split(",")) if m else {}
    return int(stats.get("calls", 0)) + int(stats.get("rejected_calls", 0)) > 0


def test_documented_redis_acl_is_enough_for_a_node(serve_factory, redis_server):
    """Two nodes run as the documented ACL user through connect, presence, forwarded events, the
    API, a node's death and its reaping by the other, and shutdown; Redis denies nothing."""
    acl = documented_acl()
    password = "acl-test-password-0123456789"
    acl = [f">{password}" if w.startswith(">") else w for w in acl]
    r = redis_server.client()
    assert r.command(*acl) == "OK"
    url = f"redis://switchboard:{password}@127.0.0.1:{redis_server.port}/0"
    env = {"WEBUI_SECRET_KEY": SECRET, "SWITCHBOARD_API_KEY": API_KEY}
    nodes = [
        serve_factory("--redis-url", url, "--node-id", node_id, "--forward-events", "redis",
                      "--heartbeat-interval", "200ms", "--node-ttl", "2s", env=env)
        for node_id in ("aclnd1", "aclnd2")
    ]
    first, second = nodes
    for node in nodes:
        wait_until(lambda: requests.get(node.base + "/ready", timeout=3).status_code == 200,
                   timeout=30, what="/ready 200 as the ACL user")
    # The presence sweep lock's holder renews it on its second tick (a script calling EXPIRE).
    wait_until(lambda: attempted(r, "expire"), timeout=15, what="the sweep lock renewed")
    auth = {"Authorization": f"Bearer {API_KEY}"}
    client = socketio.Client(reconnection=False)
    client.connect(first.base, socketio_path="/ws/socket.io", transports=["websocket"],
                   auth={"token": token()}, wait_timeout=TIMEOUT)
    try:
        assert client.call("user-join", {"auth": {"token": token()}}, timeout=TIMEOUT) == {"id": "user-1", "name": "Ada"}
        client.call("heartbeat", {}, timeout=TIMEOUT)
        client.call("usage", {"model": "m1"}, timeout=TIMEOUT)
        client.call("ydoc:document:update", {"x": 1}, timeout=TIMEOUT)  # forwarded: XADD on the stream
        assert r.command("XLEN", "switchboard:events") >= 1
        # The backend API on the other node: a cluster-wide emit and the pools.
        api = requests.post(second.base + "/api/v1/emit", json={"event": "hello", "args": [1], "to": "all"},
                            headers=auth, timeout=TIMEOUT)
        assert api.status_code == 200, api.text
        online = requests.get(second.base + "/api/v1/users/online", headers=auth, timeout=TIMEOUT)
        assert online.json()["user_ids"] == ["user-1"], online.text
        # The first node dies: the second reaps its records and its sessions (a scan by prefix).
        first.kill(signal.SIGKILL)
        wait_until(lambda: not client.connected, what="the client of the killed node disconnected")
        wait_until(lambda: r.command("HLEN", "open-webui:session_pool") == 0, timeout=20,
                   what="the dead node's session reaped")
    finally:
        client.disconnect()
    second.kill(signal.SIGTERM)  # the shutdown's clean-up runs as the ACL user too
    denied = r.command("ACL", "LOG")
    assert denied == [], f"Redis denied the documented ACL user: {denied}"


# ---------------------------------------------------------------------------------------------
# scripts/cluster
# ---------------------------------------------------------------------------------------------


class LocalCluster:
    def __init__(self, state: Path, env: dict):
        self.state = state
        self.env = env
        self.pids: dict[str, tuple[int, str]] = {}

    def run(self, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
        return run([str(CLUSTER_SCRIPT), *args], env=self.env, cwd=REPO, timeout=timeout)

    def record_pids(self) -> None:
        for f in self.state.glob("*.pid"):
            pid, started = f.read_text().split()
            self.pids[f.stem] = (int(pid), started)

    def node_ids(self) -> list[str]:
        return sorted(p.stem for p in self.state.glob("node*.port"))

    def node_port(self, node: str) -> int:
        return int((self.state / f"{node}.port").read_text())

    def front(self) -> str:
        return f"http://127.0.0.1:{(self.state / 'front.port').read_text().strip()}"

    def stats(self) -> str:
        return f"http://127.0.0.1:{(self.state / 'stats.port').read_text().strip()}"

    def haproxy_view(self) -> dict[str, tuple[str, str]]:
        csv = requests.get(self.stats() + "/stats;csv", timeout=3).text
        view = {}
        for line in csv.splitlines():
            f = line.split(",")
            if len(f) > 37 and f[0] == "nodes" and f[1] not in ("FRONTEND", "BACKEND"):
                view[f[1]] = (f[17], f[36])
        return view

    def running(self) -> list[str]:
        """The recorded processes that still run (same pid and start time, not a zombie)."""
        alive = []
        for name, (pid, started) in self.pids.items():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except FileNotFoundError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z" and fields[19] == started:
                alive.append(f"{name} (pid {pid})")
        return alive

    def teardown(self) -> None:
        if self.state.exists():
            self.record_pids()
            self.run("down", timeout=90)
        for name, (pid, _) in self.pids.items():
            if f"{name} (pid {pid})" in self.running():
                os.kill(pid, signal.SIGKILL)


def local_cluster_env(state: Path, **settings: str) -> dict:
    """The environment `scripts/cluster` runs with in tests: none of the caller's SWITCHBOARD_*
    settings, the state in `state`, the binary under test, a JWT secret, and `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update({
        "SWITCHBOARD_CLUSTER_DIR": str(state),
        "SWITCHBOARD_BIN": str(node_binary()),
        "WEBUI_SECRET_KEY": SECRET,
    })
    env.update(settings)
    return env


@pytest.fixture
def cluster(tmp_path):
    # A quick `down`: the drain is the subject of its own test.
    state = tmp_path / "cluster"
    c = LocalCluster(state, local_cluster_env(state, SWITCHBOARD_DRAIN_WINDOW="1s", SWITCHBOARD_SHUTDOWN_TIMEOUT="5s"))
    try:
        yield c
    finally:
        c.teardown()


def connect(url: str, transports: list[str]) -> socketio.Client:
    c = socketio.Client(reconnection=False)
    c.connect(url, socketio_path="/ws/socket.io", transports=transports, auth={"token": token()},
              wait_timeout=TIMEOUT)
    return c


def roundtrip(c: socketio.Client) -> None:
    assert c.call("user-join", {"auth": {"token": token()}}, timeout=TIMEOUT) == {"id": "user-1", "name": "Ada"}


def eio_packets(resp: requests.Response) -> list[str]:
    assert resp.status_code == 200, (resp.status_code, resp.text)
    return resp.content.decode().split(SEP)


def test_cluster_script_runs_three_nodes_behind_haproxy(cluster):
    tool("haproxy")
    tool("redis-server")
    front_port = subprocess.check_output(
        [sys.executable, "-c", "import livehelpers; print(livehelpers.free_port())"],
        cwd=Path(__file__).parent, text=True).strip()
    up = cluster.run("up", "--nodes", "3", "--port", front_port)
    assert up.returncode == 0, f"scripts/cluster up failed:\n{up.stdout}\n{up.stderr}"
    front = up.stdout.strip().splitlines()[-1]
    assert front == f"http://127.0.0.1:{front_port}" == cluster.front()
    cluster.record_pids()
    assert set(cluster.pids) == {"redis", "haproxy", "node01", "node02", "node03"}

    # Twice is safe: the running cluster is reported, nothing is started.
    before = dict(cluster.pids)
    again = cluster.run("up", "--nodes", "3")
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == front, again.stderr
    cluster.record_pids()
    assert cluster.pids == before

    nodes = cluster.node_ids()
    assert nodes == ["node01", "node02", "node03"]
    for n in nodes:
        assert requests.get(f"http://127.0.0.1:{cluster.node_port(n)}/ready", timeout=TIMEOUT).status_code == 200
    status = cluster.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "nodes ready: 3/3" in status.stdout
    for n in nodes:
        assert re.search(rf"^{n}\s+pid \d+\s+127\.0\.0\.1:\d+ alive ready=200 haproxy=UP/L7OK$", status.stdout, re.M), status.stdout
    assert requests.get(cluster.stats() + "/health", timeout=TIMEOUT).status_code == 200
    assert requests.get(front + "/health", timeout=TIMEOUT).status_code == 200

    # WebSocket through HAProxy.
    ws = connect(front, ["websocket"])
    roundtrip(ws)
    assert ws.transport() == "websocket" and ws.get_sid()[:6] in nodes

    # Long-polling: every request of the session sticks to the node the cookie names.
    poll = connect(front, ["polling"])
    try:
        assert poll.transport() == "polling"
        assert poll.eio.http.cookies.get(COOKIE) == poll.get_sid()[:6], dict(poll.eio.http.cookies)
        for _ in range(3):
            roundtrip(poll)
    finally:
        poll.disconnect()

    # The same at the protocol level: the cookie is what routes a session's requests.
    s = requests.Session()
    handshake = eio_packets(s.get(f"{front}{EIO_PATH}?EIO=4&transport=polling", timeout=TIMEOUT))[0]
    eio_sid = json.loads(handshake[1:])["sid"]
    sticky = s.cookies.get(COOKIE)
    assert sticky in nodes
    session_url = f"{front}{EIO_PATH}?EIO=4&transport=polling&sid={eio_sid}"
    assert s.post(session_url, data="40", timeout=TIMEOUT).text == "ok"
    connected = [p for p in eio_packets(s.get(session_url, timeout=TIMEOUT)) if p.startswith("40")]
    assert connected and json.loads(connected[0][2:])["sid"].startswith(sticky), connected
    other = next(n for n in nodes if n != sticky)
    assert requests.get(session_url, cookies={COOKIE: other}, timeout=TIMEOUT).status_code == 400
    assert s.post(session_url, data="1", timeout=TIMEOUT).status_code == 200

    # Polling upgraded to WebSocket through HAProxy (the upgrade carries the cookie).
    upgraded = connect(front, ["polling", "websocket"])
    try:
        wait_until(lambda: upgraded.transport() == "websocket", what="upgrade to websocket")
        roundtrip(upgraded)
    finally:
        upgraded.disconnect()

    # SIGKILL the WebSocket client's node: HAProxy marks it down, new connections go elsewhere.
    victim = ws.get_sid()[:6]
    os.kill(cluster.pids[victim][0], signal.SIGKILL)
    wait_until(lambda: not ws.connected, what="the client of the killed node disconnected")
    wait_until(lambda: cluster.haproxy_view()[victim][0] == "DOWN", timeout=20, step=0.1,
               what=f"HAProxy marks {victim} down")
    for _ in range(6):
        c = connect(front, ["websocket"])
        try:
            assert c.get_sid()[:6] in set(nodes) - {victim}
            roundtrip(c)
        finally:
            c.disconnect()
    # A polling client whose cookie names the dead node is sent to a live one.
    stale = requests.get(f"{front}{EIO_PATH}?EIO=4&transport=polling", cookies={COOKIE: victim}, timeout=TIMEOUT)
    assert stale.status_code == 200 and stale.cookies.get(COOKIE) in set(nodes) - {victim}
    status = cluster.run("status")
    assert status.returncode != 0 and "nodes ready: 2/3" in status.stdout, status.stdout
    assert re.search(rf"^{victim}\s+dead .*haproxy=DOWN/", status.stdout, re.M), status.stdout

    # down: everything ends, the state is gone, and twice is safe.
    down = cluster.run("down", timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert cluster.running() == []
    assert not cluster.state.exists()
    assert cluster.run("status").returncode == 3
    assert cluster.run("down").returncode == 0
