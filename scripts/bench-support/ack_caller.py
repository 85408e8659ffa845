"""Emit-with-ack round trips for switchboard-bench: a python-socketio AsyncServer that serves no HTTP and
only joins the cluster through AsyncRedisManager, calling `bench-ack` on sids held by the relay's nodes
(`sio.call(..., to=sid)` travels as an `emit` with a callback and comes back as a `callback` message
addressed to this host). Prints {"answered", "failed", "seconds", "latencies_us": [...]}.
"""
import argparse
import asyncio
import json
import time

import socketio

ap = argparse.ArgumentParser()
ap.add_argument("--redis", required=True)
ap.add_argument("--sids", required=True, help="file with one sid per line")
ap.add_argument("--calls", type=int, required=True)
ap.add_argument("--concurrency", type=int, default=16)
args = ap.parse_args()


async def main():
    sids = [line.strip() for line in open(args.sids) if line.strip()]
    sio = socketio.AsyncServer(client_manager=socketio.AsyncRedisManager(args.redis))
    # No HTTP is served, so no Engine.IO connect would initialise the manager's listener.
    sio.manager_initialized = True
    sio.manager.initialize()
    await asyncio.sleep(0.5)  # the listener subscribes before the first callback can come back
    latencies, failed, issued = [], 0, 0

    async def worker():
        nonlocal failed, issued
        while issued < args.calls:
            n = issued
            issued += 1
            sent = time.monotonic_ns()
            try:
                await sio.call("bench-ack", {"n": n}, to=sids[n % len(sids)], timeout=10)
                latencies.append((time.monotonic_ns() - sent) // 1000)
            except Exception:
                failed += 1

    start = time.monotonic_ns()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    seconds = (time.monotonic_ns() - start) / 1e9
    print(json.dumps({"answered": len(latencies), "failed": failed, "seconds": seconds,
                      "latencies_us": latencies}))


asyncio.run(main())
