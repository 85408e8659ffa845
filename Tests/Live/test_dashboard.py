"""`/dashboard` in headless Chromium: three live nodes on one Redis, their connections and rooms,
users online; the page's screenshot is kept as a test artifact."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import requests
import socketio

from livehelpers import artifact_path, report_artifact, wait_until
from owui import API_KEY, SECRET, mint

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TIMEOUT = 10.0


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium / chromedriver not installed (Debian packages chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--window-size=1200,900"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield d
    d.quit()


def start_cluster(servers, redis_server, n=3):
    nodes = []
    for i in range(n):
        nodes.append(servers.start(
            "serve", "--host", "127.0.0.1", "--port", "0", "--redis-url", redis_server.url,
            "--node-id", f"dash0{i}", "--heartbeat-interval", "200ms", "--node-ttl", "1s",
            env={"WEBUI_SECRET_KEY": SECRET, "SWITCHBOARD_API_KEY": API_KEY},
        ))
    for node in nodes:
        wait_until(lambda: requests.get(node.base + "/ready", timeout=TIMEOUT).status_code == 200, what="ready")
    return nodes


def connect(node, user: str) -> socketio.Client:
    sio = socketio.Client(reconnection=False, request_timeout=TIMEOUT)
    sio.connect(node.base, socketio_path="/ws/socket.io", transports=["websocket"], auth={"token": mint(user)},
                wait_timeout=TIMEOUT)
    return sio


def test_dashboard_data_needs_the_api_key(servers):
    node = servers.start("serve", "--host", "127.0.0.1", "--port", "0", env={"SWITCHBOARD_API_KEY": API_KEY})
    page = requests.get(node.base + "/dashboard", timeout=TIMEOUT)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<script" in page.text and "src=" not in page.text.split("<script", 1)[1].split(">", 1)[0]
    assert requests.get(node.base + "/dashboard/data", timeout=TIMEOUT).status_code == 401
    assert requests.get(node.base + "/dashboard/data?key=wrong", timeout=TIMEOUT).status_code == 400
    # The right key in the URL is refused too: URLs are kept in access logs and browser history.
    in_url = requests.get(node.base + f"/dashboard/data?key={API_KEY}", timeout=TIMEOUT)
    assert in_url.status_code == 400 and "Authorization header" in in_url.json()["error"], in_url.text
    assert requests.get(node.base + "/dashboard/data", headers={"Authorization": "Bearer wrong"},
                        timeout=TIMEOUT).status_code == 401
    ok = requests.get(node.base + "/dashboard/data", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=TIMEOUT)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["this_node"] == "local" and body["redis"].startswith("none")
    assert [n["alive"] for n in body["nodes"]] == [True]
    off = servers.start("serve", "--host", "127.0.0.1", "--port", "0")
    assert requests.get(off.base + "/dashboard/data?key=x", timeout=TIMEOUT).status_code == 403


def test_dashboard_shows_three_live_nodes_in_chromium(servers, redis_server, browser):
    nodes = start_cluster(servers, redis_server)
    clients = [connect(node, f"dash-user-{i}") for i, node in enumerate(nodes * 2)]
    try:
        # user:{id} rooms exist on every node; the dashboard sums them cluster-wide.
        def data():
            r = requests.get(nodes[0].base + "/dashboard/data", headers={"Authorization": f"Bearer {API_KEY}"},
                             timeout=TIMEOUT)
            return r.json()

        wait_until(lambda: sum(n.get("connections", 0) for n in data()["nodes"]) == 6, timeout=TIMEOUT,
                   what="six connections reported across the cluster")
        body = data()
        assert sorted(n["id"] for n in body["nodes"]) == ["dash00", "dash01", "dash02"], body
        assert all(n["alive"] for n in body["nodes"]), body
        assert body["users_online"] == 6 and body["redis"] == "connected", body

        # The page asks for the key; it then travels only in the Authorization header.
        browser.get(f"{nodes[1].base}/dashboard")
        wait_until(lambda: browser.find_element("id", "sign-in").is_displayed(), timeout=TIMEOUT,
                   what="the page asking for the API key")
        browser.find_element("id", "key").send_keys(API_KEY)
        browser.find_element("css selector", "#sign-in button").click()
        assert API_KEY not in browser.current_url
        rows = lambda: browser.execute_script(  # noqa: E731
            "return [...document.querySelectorAll('#nodes tbody tr')].map(r => "
            "({id: r.dataset.node, alive: r.dataset.alive, cells: [...r.cells].map(c => c.textContent)}))"
        )
        wait_until(lambda: len(rows()) == 3 and all(r["alive"] == "true" for r in rows()), timeout=TIMEOUT,
                   what="three live nodes in the page")
        wait_until(lambda: browser.find_element("id", "connections").text == "6", timeout=TIMEOUT,
                   what="six connections on the page")
        assert browser.find_element("id", "users-online").text == "6"
        assert browser.find_element("id", "redis-status").text == "connected"
        assert browser.find_element("id", "nodes-alive").text == "3"
        assert browser.find_element("id", "error").text == ""
        top = browser.execute_script(
            "return [...document.querySelectorAll('#top-rooms tbody tr')].map(r => r.cells[0].textContent)")
        assert any(room.startswith("user:dash-user-") for room in top), top
        shot = artifact_path("dashboard.png")
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        report_artifact("dashboard.png")
        print("dashboard rows:", json.dumps(rows()))

        # Messages per second follow the traffic: events to everyone through the API, 10 a second
        # for as long as the checks take.
        stop = threading.Event()

        def traffic():
            i = 0
            while not stop.is_set():
                requests.post(nodes[0].base + "/api/v1/emit", json={"event": "tick", "args": [i], "to": "all"},
                              headers={"Authorization": f"Bearer {API_KEY}"}, timeout=TIMEOUT)
                i += 1
                stop.wait(0.1)

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        try:
            wait_until(lambda: all(n.get("events_out_per_second", 0) > 0 for n in data()["nodes"]),
                       timeout=TIMEOUT, what="every node reporting events sent per second")
            wait_until(lambda: float(browser.find_element("id", "rate").text) > 0, timeout=TIMEOUT,
                       what="a message rate on the page")
        finally:
            stop.set()
            sender.join(timeout=5)

        # A node that dies shows as dead (until it is reaped), and the page keeps going.
        nodes[2].kill()
        wait_until(lambda: any(r["alive"] == "false" for r in rows()) or len(rows()) == 2, timeout=TIMEOUT,
                   what="the killed node shown dead or gone")
    finally:
        for c in clients:
            try:
                c.disconnect()
            except Exception:
                pass
