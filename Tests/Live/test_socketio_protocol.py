"""Socket.IO v5 black-box checks against `switchboard conformance` (path /socket.io/).

Part 1 ports every `it(...)` of the official socket.io-protocol test suite
(socketio/socket.io-protocol, test-suite/test-suite.js, protocol v5 / EIO=4) with the same
requests and assertions (raw HTTP with requests, raw WebSocket with websocket-client).
Engine.IO pings that the reference's timing assumptions ignore are answered and skipped.

Part 2 adds the rest of the protocol as the fixture exposes it: polling variants of
connect / events / acks / binary, several namespaces on one connection, server-to-client
acks (`call-me`), rooms, server-side disconnect, connect timeout over polling.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from livehelpers import (
    HANDSHAKE_KEYS,
    endpoint_helpers,
    CONNECT_TIMEOUT_MS,
    MAX_PAYLOAD,
    PING_INTERVAL_MS,
    PING_TIMEOUT_MS,
    SEP,
    TIMEOUT,
    Polling,
    eio_ws_open,
    http_get,
    sio_ws_connect,
    text,
    ws_connect,
    ws_open_refused_or_closed,
    ws_recv,
    ws_recv_msg,
    ws_recv_n,
    ws_send_binary,
    ws_wait_closed,
)

PATH = "/socket.io/"
url, ws_url, init_long_polling_session = endpoint_helpers(PATH)


def init_socketio_connection(server):
    return sio_ws_connect(server, "40", PATH)


def assert_connect_packet(data: str, prefix: str) -> str:
    assert isinstance(data, str) and data.startswith(prefix), data
    handshake = json.loads(data[len(prefix):])
    assert sorted(handshake.keys()) == ["sid"], handshake
    assert isinstance(handshake["sid"], str) and handshake["sid"]
    return handshake["sid"]


# =======================================================================================
# Part 1 — the official socket.io-protocol test suite (v5)
# =======================================================================================

# --- Engine.IO protocol / handshake / HTTP long-polling --------------------------------


def test_eio_handshake_polling_should_successfully_open_a_session(conformance):
    response = http_get(url(conformance, "EIO=4&transport=polling"))
    assert response.status_code == 200
    content = text(response)
    assert content.startswith("0")
    value = json.loads(content[1:])
    assert sorted(value.keys()) == HANDSHAKE_KEYS
    assert isinstance(value["sid"], str)
    assert value["upgrades"] == ["websocket"]
    assert value["pingInterval"] == PING_INTERVAL_MS
    assert value["pingTimeout"] == PING_TIMEOUT_MS
    assert value["maxPayload"] == MAX_PAYLOAD


def test_eio_handshake_polling_should_fail_with_an_invalid_eio_query_parameter(conformance):
    assert http_get(url(conformance, "transport=polling")).status_code == 400
    assert http_get(url(conformance, "EIO=abc&transport=polling")).status_code == 400


def test_eio_handshake_polling_should_fail_with_an_invalid_transport_query_parameter(conformance):
    assert http_get(url(conformance, "EIO=4")).status_code == 400
    assert http_get(url(conformance, "EIO=4&transport=abc")).status_code == 400


def test_eio_handshake_polling_should_fail_with_an_invalid_request_method(conformance):
    assert requests.post(url(conformance, "EIO=4&transport=polling"), timeout=TIMEOUT).status_code == 400
    assert requests.put(url(conformance, "EIO=4&transport=polling"), timeout=TIMEOUT).status_code == 400


# --- Engine.IO protocol / handshake / WebSocket ----------------------------------------


def test_eio_handshake_websocket_should_successfully_open_a_session(conformance):
    socket = ws_connect(ws_url(conformance, "EIO=4&transport=websocket"))
    data = ws_recv(socket)
    assert isinstance(data, str) and data.startswith("0")
    value = json.loads(data[1:])
    assert sorted(value.keys()) == HANDSHAKE_KEYS
    assert isinstance(value["sid"], str)
    assert value["upgrades"] == []
    assert value["pingInterval"] == PING_INTERVAL_MS
    assert value["pingTimeout"] == PING_TIMEOUT_MS
    assert value["maxPayload"] == MAX_PAYLOAD
    socket.close()


def test_eio_handshake_websocket_should_fail_with_an_invalid_eio_query_parameter(conformance):
    print(ws_open_refused_or_closed(ws_url(conformance, "transport=websocket")))
    print(ws_open_refused_or_closed(ws_url(conformance, "EIO=abc&transport=websocket")))


def test_eio_handshake_websocket_should_fail_with_an_invalid_transport_query_parameter(conformance):
    print(ws_open_refused_or_closed(ws_url(conformance, "EIO=4")))
    print(ws_open_refused_or_closed(ws_url(conformance, "EIO=4&transport=abc")))


# --- Engine.IO protocol / heartbeat ----------------------------------------------------


def test_eio_heartbeat_polling_should_send_ping_pong_packets(conformance):
    p = init_long_polling_session(conformance)
    for _ in range(3):
        poll = p.get()
        assert poll.status_code == 200
        assert text(poll) == "2"
        push = p.post("3")
        assert push.status_code == 200


def test_eio_heartbeat_polling_should_close_the_session_upon_ping_timeout(conformance):
    p = init_long_polling_session(conformance)
    time.sleep((PING_INTERVAL_MS + PING_TIMEOUT_MS) / 1000 + 0.3)  # the test is about time passing
    poll = p.get()
    assert poll.status_code == 400 or (poll.status_code == 200 and text(poll) == "1"), (
        poll.status_code,
        poll.content,
    )


def test_eio_heartbeat_websocket_should_send_ping_pong_packets(conformance):
    socket = eio_ws_open(conformance, PATH)
    ws_recv(socket)  # handshake
    for _ in range(3):
        assert ws_recv(socket) == "2"
        socket.send("3")
    socket.close()


def test_eio_heartbeat_websocket_should_close_the_session_upon_ping_timeout(conformance):
    socket = eio_ws_open(conformance, PATH)
    seen, _ = ws_wait_closed(socket, timeout=5)
    assert seen and seen[0].startswith("0"), seen


# --- Engine.IO protocol / close --------------------------------------------------------


def test_eio_close_polling_should_forcefully_close_the_session(conformance):
    from concurrent.futures import ThreadPoolExecutor

    p = init_long_polling_session(conformance)
    with ThreadPoolExecutor(2) as ex:
        poll_f = ex.submit(p.get)
        time.sleep(0.1)  # the GET must be pending before the close packet arrives
        push_f = ex.submit(p.post, "1")
        poll_response = poll_f.result()
        push_f.result()
    assert poll_response.status_code == 200
    assert text(poll_response) == "6"
    assert p.get().status_code == 400


def test_eio_close_websocket_should_forcefully_close_the_session(conformance):
    socket = eio_ws_open(conformance, PATH)
    ws_recv(socket)  # handshake
    socket.send("1")
    ws_wait_closed(socket)


# --- Engine.IO protocol / upgrade ------------------------------------------------------


def test_eio_upgrade_should_successfully_upgrade_from_polling_to_websocket(conformance):
    p = init_long_polling_session(conformance)
    socket = eio_ws_open(conformance, PATH, sid=p.sid)
    socket.send("2probe")
    assert ws_recv(socket) == "3probe"
    socket.send("5")  # complete upgrade
    # (the reference stops here; prove the upgraded session works)
    socket.send("40")
    assert_connect_packet(ws_recv_msg(socket), "40")
    assert ws_recv_msg(socket) == '42["auth",{}]'
    socket.close()


def test_eio_upgrade_should_ignore_http_requests_with_same_sid_after_upgrade(conformance):
    p = init_long_polling_session(conformance)
    socket = eio_ws_open(conformance, PATH, sid=p.sid)
    socket.send("2probe")
    socket.send("5")
    socket.send("40")  # synchronisation point: answered only after "5" was processed
    assert ws_recv_msg(socket) == "3probe"
    assert_connect_packet(ws_recv_msg(socket), "40")
    poll = p.get()
    assert poll.status_code == 400


def test_eio_upgrade_should_ignore_websocket_connection_with_same_sid_after_upgrade(conformance):
    p = init_long_polling_session(conformance)
    socket = eio_ws_open(conformance, PATH, sid=p.sid)
    socket.send("2probe")
    socket.send("5")
    socket.send("40")
    assert ws_recv_msg(socket) == "3probe"
    assert_connect_packet(ws_recv_msg(socket), "40")
    print(ws_open_refused_or_closed(ws_url(conformance, f"EIO=4&transport=websocket&sid={p.sid}")))


# --- Socket.IO protocol / connect ------------------------------------------------------


def test_sio_connect_should_allow_connection_to_the_main_namespace(conformance):
    socket = eio_ws_open(conformance, PATH)
    ws_recv(socket)  # Engine.IO handshake
    socket.send("40")
    assert_connect_packet(ws_recv_msg(socket), "40")
    assert ws_recv_msg(socket) == '42["auth",{}]'


def test_sio_connect_should_allow_connection_to_the_main_namespace_with_a_payload(conformance):
    socket = eio_ws_open(conformance, PATH)
    ws_recv(socket)
    socket.send('40{"token":"123"}')
    assert_connect_packet(ws_recv_msg(socket), "40")
    assert ws_recv_msg(socket) == '42["auth",{"token":"123"}]'


def test_sio_connect_should_allow_connection_to_a_custom_namespace(conformance):
    socket = eio_ws_open(conformance, PATH)
    ws_recv(socket)
    socket.send("40/custom,")
    assert_connect_packet(ws_recv_msg(socket), "40/custom,")
    assert ws_recv_msg(socket) == '42/custom,["auth",{}]'


def test_sio_connect_should_allow_connection_to_a_custom_namespace_with_a_payload(conformance):
    socket = eio_ws_open(conformance, PATH)
    ws_recv(socket)
    socket.send('40/custom,{"token":"abc"}')
    assert_connect_packet(ws_recv_msg(socket), "40/custom,")
    assert ws_recv_msg(socket) == '42/custom,["auth",{"token":"abc"}]'


def test_sio_connect_should_disallow_connection_to_an_unknown_namespace(conformance):
    socket = eio_ws_open(conformance, PATH)
    ws_recv(socket)
    socket.send("40/random")
    assert ws_recv_msg(socket) == '44/random,{"message":"Invalid namespace"}'


def test_sio_connect_should_disallow_connection_with_an_invalid_handshake(conformance):
    socket = eio_ws_open(conformance, PATH)
    ws_recv(socket)
    socket.send("4abc")
    ws_wait_closed(socket, answer_pings=True)


def test_sio_connect_should_close_the_connection_if_no_handshake_is_received(conformance):
    socket = ws_connect(ws_url(conformance, "EIO=4&transport=websocket"))
    t0 = time.monotonic()
    # answer pings so that only the connect timeout (1000 ms) can close the connection
    seen, _ = ws_wait_closed(socket, timeout=6, answer_pings=True)
    elapsed = time.monotonic() - t0
    print(f"closed after {elapsed:.3f}s (connectTimeout {CONNECT_TIMEOUT_MS} ms)")
    assert elapsed >= CONNECT_TIMEOUT_MS / 1000 - 0.15, elapsed


# --- Socket.IO protocol / disconnect ---------------------------------------------------


def test_sio_disconnect_should_disconnect_from_the_main_namespace(conformance):
    socket = init_socketio_connection(conformance)
    socket.send("41")
    # the Engine.IO session stays open: the next thing the server sends is a ping
    assert ws_recv(socket) == "2"


def test_sio_disconnect_should_connect_then_disconnect_from_a_custom_namespace(conformance):
    socket = init_socketio_connection(conformance)
    assert ws_recv(socket) == "2"  # ping
    socket.send("3")
    socket.send("40/custom")
    ws_recv_msg(socket)  # Socket.IO handshake
    ws_recv_msg(socket)  # auth packet
    socket.send("41/custom")
    socket.send('42["message","message to main namespace"]')
    assert ws_recv_msg(socket) == '42["message-back","message to main namespace"]'


# --- Socket.IO protocol / message ------------------------------------------------------


def test_sio_message_should_send_a_plain_text_packet(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('42["message",1,"2",{"3":[true]}]')
    assert ws_recv_msg(socket) == '42["message-back",1,"2",{"3":[true]}]'


def test_sio_message_should_send_a_packet_with_binary_attachments(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    ws_send_binary(socket, bytes([1, 2, 3]))
    ws_send_binary(socket, bytes([4, 5, 6]))
    packets = ws_recv_n(socket, 3)
    assert packets[0] == '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    assert packets[1] == bytes([1, 2, 3])
    assert packets[2] == bytes([4, 5, 6])
    socket.close()


def test_sio_message_should_send_a_plain_text_packet_with_an_ack(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('42456["message-with-ack",1,"2",{"3":[false]}]')
    assert ws_recv_msg(socket) == '43456[1,"2",{"3":[false]}]'


def test_sio_message_should_send_a_packet_with_binary_attachments_and_an_ack(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    ws_send_binary(socket, bytes([1, 2, 3]))
    ws_send_binary(socket, bytes([4, 5, 6]))
    packets = ws_recv_n(socket, 3)
    assert packets[0] == '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    assert packets[1] == bytes([1, 2, 3])
    assert packets[2] == bytes([4, 5, 6])
    socket.close()


def test_sio_message_should_close_the_connection_upon_invalid_format_unknown_packet_type(conformance):
    socket = init_socketio_connection(conformance)
    socket.send("4abc")
    ws_wait_closed(socket, answer_pings=True)


def test_sio_message_should_close_the_connection_upon_invalid_format_invalid_payload_format(conformance):
    socket = init_socketio_connection(conformance)
    socket.send("42{}")
    ws_wait_closed(socket, answer_pings=True)


def test_sio_message_should_close_the_connection_upon_invalid_format_invalid_ack_id(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('42abc["message-with-ack",1,"2",{"3":[false]}]')
    ws_wait_closed(socket, answer_pings=True)


# =======================================================================================
# Part 2 — further Socket.IO v5 behaviours
# =======================================================================================


def sio_polling_connect(server, connect_packet: str = "40") -> Polling:
    p = init_long_polling_session(server)
    p.post_ok(connect_packet)
    return p


def test_polling_connect_main_namespace_and_auth_event(conformance):
    p = sio_polling_connect(conformance)
    packets = p.poll_packets(2)
    assert_connect_packet(packets[0], "40")
    assert packets[1] == '42["auth",{}]'


def test_polling_connect_custom_namespace_with_payload(conformance):
    p = sio_polling_connect(conformance, '40/custom,{"token":"xyz","n":[1,2]}')
    packets = p.poll_packets(2)
    assert_connect_packet(packets[0], "40/custom,")
    assert packets[1] == '42/custom,["auth",{"token":"xyz","n":[1,2]}]'


def test_polling_connect_unknown_namespace(conformance):
    p = sio_polling_connect(conformance, "40/random,")
    assert p.poll_packets(1) == ['44/random,{"message":"Invalid namespace"}']


def test_polling_event_and_ack(conformance):
    p = sio_polling_connect(conformance)
    p.poll_packets(2)
    p.post_ok('42["message","héllo",{"x":null}]\x1e427["message-with-ack",1.5,[true,false]]')
    assert p.poll_packets(2) == ['42["message-back","héllo",{"x":null}]', "437[1.5,[true,false]]"]


def test_polling_binary_event(conformance):
    p = sio_polling_connect(conformance)
    p.poll_packets(2)
    p.post_ok('451-["message",{"_placeholder":true,"num":0}]\x1ebAQID')
    assert p.poll_packets(2) == ['451-["message-back",{"_placeholder":true,"num":0}]', "bAQID"]


def test_polling_binary_ack(conformance):
    p = sio_polling_connect(conformance)
    p.poll_packets(2)
    p.post_ok('452-12["message-with-ack",{"_placeholder":true,"num":0},"s",{"_placeholder":true,"num":1}]\x1ebAQID\x1ebBAUG')
    assert p.poll_packets(3) == [
        '462-12[{"_placeholder":true,"num":0},"s",{"_placeholder":true,"num":1}]',
        "bAQID",
        "bBAUG",
    ]


def test_polling_binary_attachments_split_across_posts(conformance):
    p = sio_polling_connect(conformance)
    p.poll_packets(2)
    p.post_ok('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]\x1ebAQID')
    p.post_ok("bBAUG")
    assert p.poll_packets(3) == [
        '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        "bAQID",
        "bBAUG",
    ]


def test_polling_connect_timeout(conformance):
    p = init_long_polling_session(conformance)
    t0 = time.monotonic()
    end = t0 + 6
    outcome = None
    while time.monotonic() < end:
        r = p.get()
        if r.status_code == 400:
            outcome = "400"
            break
        assert r.status_code == 200, r.status_code
        packets = text(r).split(SEP)
        if "1" in packets:
            outcome = "close packet"
            break
        assert all(x == "2" for x in packets), packets
        for _ in packets:
            p.post_ok("3")
    elapsed = time.monotonic() - t0
    print(f"polling session without CONNECT ended by {outcome} after {elapsed:.3f}s")
    assert outcome is not None, "session still open 6 s after the handshake without a CONNECT"
    assert elapsed >= CONNECT_TIMEOUT_MS / 1000 - 0.15


def test_upgrade_then_socketio_over_websocket(conformance):
    p = sio_polling_connect(conformance, '40{"via":"polling"}')
    packets = p.poll_packets(2)
    assert_connect_packet(packets[0], "40")
    assert packets[1] == '42["auth",{"via":"polling"}]'
    socket = eio_ws_open(conformance, PATH, sid=p.sid)
    socket.send("2probe")
    assert ws_recv(socket) == "3probe"
    socket.send("5")
    socket.send('42["message","upgraded"]')
    assert ws_recv_msg(socket) == '42["message-back","upgraded"]'
    socket.close()


def test_two_namespaces_on_one_connection(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('40/custom,{"k":1}')
    assert_connect_packet(ws_recv_msg(socket), "40/custom,")
    assert ws_recv_msg(socket) == '42/custom,["auth",{"k":1}]'
    socket.send('42/custom,["message","to custom"]')
    socket.send('42["message","to main"]')
    socket.send('42/custom,5["message-with-ack","c"]')
    assert ws_recv_n(socket, 3) == [
        '42/custom,["message-back","to custom"]',
        '42["message-back","to main"]',
        '43/custom,5["c"]',
    ]


def test_namespace_sids_differ_between_namespaces(conformance):
    socket = eio_ws_open(conformance, PATH)
    ws_recv(socket)
    socket.send("40")
    sid_main = assert_connect_packet(ws_recv_msg(socket), "40")
    ws_recv_msg(socket)
    socket.send("40/custom,")
    sid_custom = assert_connect_packet(ws_recv_msg(socket), "40/custom,")
    assert sid_main != sid_custom


@pytest.mark.parametrize(
    "sent,expected",
    [
        ('420["message-with-ack","zero"]', '430["zero"]'),
        ('424294967295["message-with-ack"]', "434294967295[]"),
        ('421["message-with-ack",{"nested":{"deep":[1,{"a":"b"}]}},null]', '431[{"nested":{"deep":[1,{"a":"b"}]}},null]'),
        ('422["message-with-ack","€亜Б😀\\n\\"q\\""]', '432["€亜Б😀\\n\\"q\\""]'),
    ],
)
def test_ack_id_and_argument_variants(conformance, sent, expected):
    socket = init_socketio_connection(conformance)
    socket.send(sent)
    got = ws_recv_msg(socket)
    # same packet type and id; arguments compared as JSON values (escaping may differ)
    prefix = re.match(r"^43\d+", expected).group(0)
    assert isinstance(got, str) and got.startswith(prefix) and got[len(prefix)] == "[", got
    assert json.loads(got[len(prefix):]) == json.loads(expected[len(prefix):]), got


def test_binary_attachment_nested_in_objects(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('451-["message",{"a":[{"_placeholder":true,"num":0}],"b":"x"}]')
    ws_send_binary(socket, b"\x00\xff\x10")
    assert ws_recv_n(socket, 2) == ['451-["message-back",{"a":[{"_placeholder":true,"num":0}],"b":"x"}]', b"\x00\xff\x10"]


ACK_ME = re.compile(r'^42(\d+)\["ack-me",(.*)\]$')


def test_server_to_client_ack(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('42["call-me","question",2]')
    m = ACK_ME.match(ws_recv_msg(socket))
    assert m, "expected 42<id>[\"ack-me\",...]"
    assert m.group(2) == '"question",2'
    socket.send(f'43{m.group(1)}["answer",{{"n":42}}]')
    assert ws_recv_msg(socket) == '42["ack-result","answer",{"n":42}]'


def test_server_to_client_ack_on_custom_namespace(conformance):
    socket = sio_ws_connect(conformance, "40/custom,", PATH)
    socket.send('42/custom,["call-me"]')
    msg = ws_recv_msg(socket)
    m = re.match(r'^42/custom,(\d+)\["ack-me"\]$', msg)
    assert m, msg
    socket.send(f"43/custom,{m.group(1)}[true]")
    assert ws_recv_msg(socket) == '42/custom,["ack-result",true]'


def test_server_to_client_binary_ack(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('42["call-me"]')
    msg = ws_recv_msg(socket)
    m = re.match(r'^42(\d+)\["ack-me"\]$', msg)
    assert m, msg
    socket.send(f'461-{m.group(1)}[{{"_placeholder":true,"num":0}}]')
    ws_send_binary(socket, b"\x09\x08\x07")
    assert ws_recv_n(socket, 2) == ['451-["ack-result",{"_placeholder":true,"num":0}]', b"\x09\x08\x07"]


def test_server_to_client_ack_with_binary_request(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('451-["call-me",{"_placeholder":true,"num":0}]')
    ws_send_binary(socket, b"\x01\x02")
    header = ws_recv_msg(socket)
    m = re.match(r'^451-(\d+)\["ack-me",\{"_placeholder":true,"num":0\}\]$', header)
    assert m, header
    assert ws_recv_msg(socket) == b"\x01\x02"
    socket.send(f'43{m.group(1)}["ok"]')
    assert ws_recv_msg(socket) == '42["ack-result","ok"]'


def test_server_to_client_ack_timeout(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('42["call-me","no answer"]')
    msg = ws_recv_msg(socket)
    assert ACK_ME.match(msg), msg
    t0 = time.monotonic()
    assert ws_recv_msg(socket, timeout=15) == '42["ack-result","timeout"]'  # time passing is the point
    elapsed = time.monotonic() - t0
    print(f"ack timeout fired after {elapsed:.3f}s (fixture: 5 s)")
    assert elapsed >= 4.5


def test_rooms_join_and_to_room(conformance):
    a = init_socketio_connection(conformance)
    b = init_socketio_connection(conformance)
    c = init_socketio_connection(conformance)
    a.send('421["join","r1"]')
    assert ws_recv_msg(a) == "431[true]"
    b.send('427["join","r1"]')
    assert ws_recv_msg(b) == "437[true]"
    b.send('42["to-room","r1","hi",{"n":1}]')
    assert ws_recv_msg(a) == '42["room-message","hi",{"n":1}]'
    assert ws_recv_msg(b) == '42["room-message","hi",{"n":1}]'
    # c is not a member: the next packet it gets is the answer to its own message
    c.send('42["message","c-probe"]')
    assert ws_recv_msg(c) == '42["message-back","c-probe"]'
    # non-member sender: a (member) receives, c (sender) does not
    c.send('42["to-room","r1","from-outside"]')
    assert ws_recv_msg(a) == '42["room-message","from-outside"]'
    c.send('42["message","c-probe-2"]')
    assert ws_recv_msg(c) == '42["message-back","c-probe-2"]'


def test_rooms_leave(conformance):
    a = init_socketio_connection(conformance)
    b = init_socketio_connection(conformance)
    for s in (a, b):
        s.send('421["join","r2"]')
        assert ws_recv_msg(s) == "431[true]"
    a.send('42["leave","r2"]')
    a.send('42["message","sync"]')
    assert ws_recv_msg(a) == '42["message-back","sync"]'
    b.send('42["to-room","r2","after-leave"]')
    assert ws_recv_msg(b) == '42["room-message","after-leave"]'
    a.send('42["message","sync-2"]')
    assert ws_recv_msg(a) == '42["message-back","sync-2"]'


def test_rooms_are_per_namespace(conformance):
    main = init_socketio_connection(conformance)
    custom = sio_ws_connect(conformance, "40/custom,", PATH)
    main.send('421["join","shared"]')
    assert ws_recv_msg(main) == "431[true]"
    custom.send('42/custom,1["join","shared"]')
    assert ws_recv_msg(custom) == "43/custom,1[true]"
    custom.send('42/custom,["to-room","shared","only-custom"]')
    assert ws_recv_msg(custom) == '42/custom,["room-message","only-custom"]'
    main.send('42["message","sync"]')
    assert ws_recv_msg(main) == '42["message-back","sync"]'


def test_room_broadcast_with_binary(conformance):
    a = init_socketio_connection(conformance)
    b = init_socketio_connection(conformance)
    for s in (a, b):
        s.send('421["join","bin"]')
        assert ws_recv_msg(s) == "431[true]"
    a.send('451-["to-room","bin",{"_placeholder":true,"num":0}]')
    ws_send_binary(a, b"\xde\xad\xbe\xef")
    for s in (a, b):
        assert ws_recv_n(s, 2) == ['451-["room-message",{"_placeholder":true,"num":0}]', b"\xde\xad\xbe\xef"]


def test_server_side_disconnect_main(conformance):
    socket = init_socketio_connection(conformance)
    socket.send('42["disconnect-me"]')
    assert ws_recv_msg(socket) == "41"


def test_server_side_disconnect_custom_namespace_keeps_main(conformance):
    socket = init_socketio_connection(conformance)
    socket.send("40/custom,")
    assert_connect_packet(ws_recv_msg(socket), "40/custom,")
    ws_recv_msg(socket)
    socket.send('42/custom,["disconnect-me"]')
    assert ws_recv_msg(socket) == "41/custom,"
    socket.send('42["message","main still here"]')
    assert ws_recv_msg(socket) == '42["message-back","main still here"]'


def test_server_side_disconnect_over_polling(conformance):
    p = sio_polling_connect(conformance)
    p.poll_packets(2)
    p.post_ok('42["disconnect-me"]')
    assert p.poll_packets(1) == ["41"]


def test_reconnect_namespace_after_client_disconnect(conformance):
    socket = init_socketio_connection(conformance)
    socket.send("41")
    socket.send('40{"again":true}')
    assert_connect_packet(ws_recv_msg(socket), "40")
    assert ws_recv_msg(socket) == '42["auth",{"again":true}]'
    socket.send('42["message","back"]')
    assert ws_recv_msg(socket) == '42["message-back","back"]'


def test_connect_with_non_object_payload_is_rejected(conformance):
    socket = eio_ws_open(conformance, PATH)
    ws_recv(socket)
    socket.send('40"just a string"')
    seen, closed = ws_wait_closed(socket, answer_pings=True)
    assert not any(isinstance(m, str) and m.startswith("40{") for m in seen), seen


def test_event_with_empty_array_closes(conformance):
    socket = init_socketio_connection(conformance)
    socket.send("42[]")
    ws_wait_closed(socket, answer_pings=True)


def test_room_broadcast_across_transports_binary_is_base64_for_polling(conformance):
    ws = init_socketio_connection(conformance)
    ws.send('421["join","mixed"]')
    assert ws_recv_msg(ws) == "431[true]"
    p = sio_polling_connect(conformance)
    p.poll_packets(2)
    p.post_ok('429["join","mixed"]')
    assert p.poll_packets(1) == ["439[true]"]
    # websocket sender, binary attachment: raw frame for the websocket member, "b<base64>" for polling
    ws.send('451-["to-room","mixed",{"_placeholder":true,"num":0},"t"]')
    ws_send_binary(ws, b"\x01\x02\x03")
    assert ws_recv_n(ws, 2) == ['451-["room-message",{"_placeholder":true,"num":0},"t"]', b"\x01\x02\x03"]
    assert p.poll_packets(2) == ['451-["room-message",{"_placeholder":true,"num":0},"t"]', "bAQID"]
    # polling sender, text
    p.post_ok('42["to-room","mixed","from polling"]')
    assert ws_recv_msg(ws) == '42["room-message","from polling"]'
    assert p.poll_packets(1) == ['42["room-message","from polling"]']
    ws.close()
