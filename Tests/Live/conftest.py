"""Fixtures for the live tests: start the real switchboard binary on an ephemeral loopback
port (`--port 0`), read its ready line (`listening on 127.0.0.1:<port>`) and kill it at
teardown. A server that died during a test fails that test's teardown with its stderr."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from livehelpers import RedisServer, ServerProcess, binary_path, redis_server_binary  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _require_binary() -> None:
    b = binary_path()
    if not b.exists():
        pytest.fail(f"switchboard binary missing: {b} (build it or set SWITCHBOARD_BIN)", pytrace=False)


class _Servers:
    def __init__(self, request):
        self.request = request
        self.started: list[ServerProcess] = []

    def start(self, *args: str, name: str = "switchboard", env: dict | None = None) -> ServerProcess:
        _require_binary()
        s = ServerProcess(list(args), name=name, env=env)
        self.started.append(s)
        s.start()
        return s

    def finish(self) -> None:
        problems = []
        node = self.request.node
        failed = getattr(node, "rep_call", None) is not None and node.rep_call.failed
        for s in self.started:
            # A test that kills a server on purpose (ServerProcess.kill) expects it gone.
            died = s.proc is not None and s.proc.poll() is not None and not s.killed_on_purpose
            if died:
                problems.append(
                    f"{s.name} {' '.join(s.args)} exited during the test with rc={s.proc.returncode}; "
                    f"stderr tail:\n{s.stderr_tail()}"
                )
            elif failed:
                print(f"\n--- {s.name} stderr tail ---\n{s.stderr_tail(3000)}")
            s.stop()
            s.cleanup_files()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def servers(request):
    """Factory: servers.start('serve', '--host', ...) -> ServerProcess."""
    reg = _Servers(request)
    yield reg
    reg.finish()


@pytest.fixture
def conformance(servers) -> ServerProcess:
    """`switchboard conformance --host 127.0.0.1 --port 0` (one fresh process per test)."""
    return servers.start("conformance", "--host", "127.0.0.1", "--port", "0", name="conformance")


@pytest.fixture
def serve_factory(servers):
    def start(*extra: str, env: dict | None = None) -> ServerProcess:
        return servers.start("serve", "--host", "127.0.0.1", "--port", "0", *extra, name="serve", env=env)

    return start


@pytest.fixture
def redis_server():
    """A private `redis-server` on a free loopback port (no persistence, temp dir), killed at
    teardown. Never a Redis started by hand."""
    if not redis_server_binary():
        pytest.fail("redis-server not found on PATH (Debian: apt-get install redis-server)", pytrace=False)
    r = RedisServer().start()
    try:
        yield r
    finally:
        r.cleanup()


def pytest_terminal_summary(terminalreporter):
    """Artifacts the tests kept (the dashboard's screenshot, the drain's figures) and where they are."""
    from livehelpers import REPORTED_ARTIFACTS

    if not REPORTED_ARTIFACTS:
        return
    terminalreporter.section("artifacts")
    for path, text in REPORTED_ARTIFACTS:
        terminalreporter.write_line(f"{path}")
        for line in text.splitlines():
            terminalreporter.write_line(f"    {line}")
