"""A fault-injecting TCP proxy for the live tests (the kernel here has no netem, so no `tc`).

`FaultProxy(host, port).start()` listens on 127.0.0.1:<free port> and forwards every accepted
connection to host:port. Its asyncio loop runs in a daemon thread; the control methods are called
from the test thread and take effect before they return:

- `latency(s)`: every chunk is forwarded `s` seconds after it was read, in order, both directions.
- `loss(p, stall)`: TCP never shows a lost segment to the application. It shows a retransmission
  stall: the lost segment and everything behind it in that direction wait for the retransmission
  (Linux's minimum RTO is 200 ms, so 0.2-0.6 s is realistic). So with probability `p` per chunk
  read, that chunk is held `stall` seconds, and the chunks behind it wait behind it (in order).
  No byte is dropped.
- `partition()`: a black hole. Nothing is forwarded in either direction and nothing is closed;
  bytes already read are held, and each direction reads at most `window` bytes more, so the
  senders see the TCP window close as they would with a peer that stopped acknowledging. New
  connections are accepted (our kernel completes the handshake) but not connected upstream until
  the heal, as a SYN sent into a partition goes unanswered.
- `heal()`: no latency, no loss, no partition; held bytes are released in order.
- `reset_all()`: every proxied connection is reset (RST to both ends).

`stats()` counts bytes forwarded and held, and connections.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections import deque

CHUNK = 65536


class _Pipe:
    """One direction of one connection: chunks read, waiting to be written in order."""

    def __init__(self) -> None:
        self.chunks: deque[tuple[float, bytes]] = deque()  # (due, data); b"" is the EOF
        self.held = 0
        self.readable = asyncio.Event()  # a chunk was queued
        self.has_room = asyncio.Event()  # held fell below the window
        self.has_room.set()


class _Conn:
    def __init__(self, client_writer: asyncio.StreamWriter) -> None:
        self.client_writer = client_writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.up = _Pipe()    # node -> target
        self.down = _Pipe()  # target -> node
        self.tasks: list[asyncio.Task] = []
        self.closed = False

    def abort(self, reset: bool) -> None:
        self.closed = True
        for w in (self.client_writer, self.upstream_writer):
            if w is None:
                continue
            sock = w.get_extra_info("socket")
            if reset and sock is not None:
                # Linger 0: close() sends RST instead of FIN, as a middlebox reset would.
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            w.transport.abort()
        for t in self.tasks:
            t.cancel()


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, window: int = 1 << 20) -> None:
        self.target = (target_host, target_port)
        self.window = window
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[_Conn] = set()
        self._latency = 0.0
        self._loss = 0.0
        self._stall = 0.0
        self._flowing: asyncio.Event | None = None  # cleared during a partition
        self._counts = dict(forwarded_up=0, forwarded_down=0, held_max=0, stalls=0,
                            accepted=0, upstream_connects=0, resets=0)

    # -- lifecycle (test thread) ----------------------------------------------------------
    def start(self) -> "FaultProxy":
        self._thread.start()
        self._call(self._listen)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            for c in list(self._conns):
                c.abort(reset=False)
            if self._server is not None:
                self._server.close()

        self._call(close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # -- control (test thread) ------------------------------------------------------------
    def latency(self, seconds: float) -> None:
        self._set(lambda: setattr(self, "_latency", float(seconds)))

    def loss(self, probability: float, stall: float = 0.4) -> None:
        def apply() -> None:
            self._loss, self._stall = float(probability), float(stall)

        self._set(apply)

    def partition(self) -> None:
        self._set(lambda: self._flowing.clear())

    def heal(self) -> None:
        def apply() -> None:
            self._latency = self._loss = self._stall = 0.0
            self._flowing.set()

        self._set(apply)

    def reset_all(self) -> int:
        """Resets every proxied connection; returns how many there were."""

        async def reset() -> int:
            conns = list(self._conns)
            for c in conns:
                c.abort(reset=True)
            self._counts["resets"] += len(conns)
            return len(conns)

        return self._call(reset)

    def stats(self) -> dict:
        async def snapshot() -> dict:
            s = dict(self._counts)
            s["held"] = sum(c.up.held + c.down.held for c in self._conns)
            s["connections"] = len(self._conns)
            s["partitioned"] = not self._flowing.is_set()
            return s

        return self._call(snapshot)

    # -- internals (event loop) -----------------------------------------------------------
    def _call(self, coro_fn, timeout: float = 5.0):
        return asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(timeout)

    def _set(self, fn) -> None:
        async def run() -> None:
            fn()

        self._call(run)

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._counts["accepted"] += 1
        conn = _Conn(client_writer)
        self._conns.add(conn)
        upstream: asyncio.Future = self._loop.create_future()
        conn.tasks = [
            asyncio.ensure_future(self._read(client_reader, conn.up)),
            asyncio.ensure_future(self._write(conn.up, upstream, "forwarded_up")),
        ]
        try:
            await self._flowing.wait()  # a SYN into a partition goes unanswered
            if conn.closed:  # reset while it waited
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._counts["upstream_connects"] += 1
            conn.upstream_writer = up_writer
            upstream.set_result(up_writer)
            client: asyncio.Future = self._loop.create_future()
            client.set_result(client_writer)
            conn.tasks += [
                asyncio.ensure_future(self._read(up_reader, conn.down)),
                asyncio.ensure_future(self._write(conn.down, client, "forwarded_down")),
            ]
            # Either end failing (reset, error) ends the connection at once; clean EOFs end it
            # once both directions have forwarded theirs.
            await asyncio.gather(*conn.tasks)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            conn.abort(reset=False)
            self._conns.discard(conn)

    async def _read(self, reader: asyncio.StreamReader, pipe: _Pipe) -> None:
        while True:
            # At most `window` bytes in flight: beyond that the sender must see backpressure.
            while pipe.held >= self.window:
                pipe.has_room.clear()
                await pipe.has_room.wait()
            data = await reader.read(CHUNK)
            now = self._loop.time()
            due = now + self._latency
            if data and self._loss and random.random() < self._loss:
                due = max(due, now + self._stall)
                self._counts["stalls"] += 1
            pipe.chunks.append((due, data))
            pipe.held += len(data)
            self._counts["held_max"] = max(self._counts["held_max"], self._held_total())
            pipe.readable.set()
            if not data:
                return

    async def _write(self, pipe: _Pipe, destination: asyncio.Future, key: str) -> None:
        writer: asyncio.StreamWriter = await destination
        while True:
            while not pipe.chunks:
                pipe.readable.clear()
                await pipe.readable.wait()
            due, data = pipe.chunks[0]
            delay = due - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._flowing.wait()
            pipe.chunks.popleft()
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            pipe.held -= len(data)
            self._counts[key] += len(data)
            pipe.has_room.set()

    def _held_total(self) -> int:
        return sum(c.up.held + c.down.held for c in self._conns)

