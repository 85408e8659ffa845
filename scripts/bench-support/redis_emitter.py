"""The baseline's backend path for switchboard-bench: a python-socketio AsyncRedisManager(write_only=True)
emitting `events:channel` typing to `channel:c<n % rooms>` at a fixed rate, as an Open WebUI backend does.

Each message carries `bench_t`, the CLOCK_MONOTONIC nanosecond it was due (time.monotonic_ns), so the
bench measures latency from the schedule even when this process falls behind. Prints
{"published": N, "seconds": S} when done.
"""
import argparse
import asyncio
import json
import time

import socketio

ap = argparse.ArgumentParser()
ap.add_argument("--redis", required=True)
ap.add_argument("--rate", type=float, required=True)
ap.add_argument("--seconds", type=float, required=True)
ap.add_argument("--rooms", type=int, required=True)
args = ap.parse_args()


async def main():
    manager = socketio.AsyncRedisManager(args.redis, write_only=True)
    total = int(args.rate * args.seconds)
    start = time.monotonic_ns()
    published = 0
    while published < total:
        due = min(total, int((time.monotonic_ns() - start) * args.rate / 1e9) + 1)
        while published < due:
            room = published % args.rooms
            await manager.emit(
                "events:channel",
                {"channel_id": f"c{room}", "message_id": f"m{published}",
                 "data": {"type": "typing", "data": {"typing": True,
                                                     "bench_t": start + int(published * 1e9 / args.rate)}}},
                room=f"channel:c{room}", namespace="/")
            published += 1
        await asyncio.sleep(0.001)
    print(json.dumps({"published": published, "seconds": (time.monotonic_ns() - start) / 1e9}))


asyncio.run(main())
