"""The real-time layer Switchboard replaces, as a baseline: Open WebUI's socket layer reduced to its
contract (the pre-0.12 one) on python-socketio AsyncServer + AsyncRedisManager (uvicorn).

usage: python3 owui_socket.py --port 8001 --redis redis://127.0.0.1:6379/0 \
           --backend http://127.0.0.1:9000 --secret secret [--prefix open-webui]

- connect: JWT HS256 (claim `id`); user details from GET {backend}/api/v1/auths/ (Bearer token);
  SESSION_POOL / USER_POOL as Redis hashes (RedisDict layout); joins `user:{id}`; broadcasts user-list.
- user-join / join-channels: joins `channel:{id}` for GET {backend}/api/v1/channels/ (Bearer token).
- events:channel (typing): relayed to `channel:{id}` with the sender's user, if the sender is a member.
- heartbeat, usage, user-list, disconnect as in the contract.
- join / publish: a generic room join and a room emit of event `message`, for plain fan-out workloads.
"""
import argparse, json, time
import aiohttp, jwt, redis, socketio, uvicorn

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, default=8001)
ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
ap.add_argument("--backend", default="http://127.0.0.1:9000")
ap.add_argument("--secret", default="secret")
ap.add_argument("--prefix", default="open-webui")
args = ap.parse_args()

r = redis.Redis.from_url(args.redis, decode_responses=True)


class RedisDict:  # the RedisDict layout: one hash, JSON values
    def __init__(self, name): self.name = name
    def __setitem__(self, k, v): r.hset(self.name, k, json.dumps(v))
    def __getitem__(self, k):
        v = r.hget(self.name, k)
        if v is None: raise KeyError(k)
        return json.loads(v)
    def __delitem__(self, k): r.hdel(self.name, k)
    def __contains__(self, k): return r.hexists(self.name, k)
    def keys(self): return r.hkeys(self.name)
    def get(self, k, d=None):
        try: return self[k]
        except KeyError: return d


SESSION_POOL = RedisDict(f"{args.prefix}:session_pool")
USER_POOL = RedisDict(f"{args.prefix}:user_pool")
USAGE_POOL = RedisDict(f"{args.prefix}:usage_pool")
sio = socketio.AsyncServer(async_mode="asgi", client_manager=socketio.AsyncRedisManager(args.redis),
                           cors_allowed_origins="*", always_connect=True)
http = None


async def backend_get(path, token):
    global http
    if http is None: http = aiohttp.ClientSession()
    async with http.get(args.backend + path, headers={"Authorization": f"Bearer {token}"}) as resp:
        return await resp.json() if resp.status == 200 else None


async def verified_user(token):
    try: claims = jwt.decode(token or "", args.secret, algorithms=["HS256"])
    except Exception: return None
    if "id" not in claims: return None
    return await backend_get("/api/v1/auths/", token)


async def join_user(sid, user):
    SESSION_POOL[sid] = {**user, "last_seen_at": int(time.time())}
    USER_POOL[user["id"]] = USER_POOL.get(user["id"], []) + [sid]
    await sio.enter_room(sid, f"user:{user['id']}")


async def join_channels(sid, token):
    for ch in await backend_get("/api/v1/channels/", token) or []:
        await sio.enter_room(sid, f"channel:{ch['id']}")


@sio.event
async def connect(sid, environ, auth):
    user = await verified_user((auth or {}).get("token"))
    if user:
        await join_user(sid, user)
        await sio.emit("user-list", {"user_ids": USER_POOL.keys()})


@sio.on("user-join")
async def user_join(sid, data):
    token = ((data or {}).get("auth") or {}).get("token")
    user = await verified_user(token)
    if not user: return None
    if sid not in SESSION_POOL: await join_user(sid, user)
    await join_channels(sid, token)
    return {"id": user["id"], "name": user.get("name")}


@sio.on("join-channels")
async def on_join_channels(sid, data):
    token = ((data or {}).get("auth") or {}).get("token")
    if await verified_user(token): await join_channels(sid, token)


@sio.on("events:channel")
async def channel_events(sid, data):
    room = f"channel:{data['channel_id']}"
    if room not in sio.rooms(sid) or sid not in SESSION_POOL: return
    if data["data"]["type"] == "typing":
        user = SESSION_POOL[sid]
        await sio.emit("events:channel", {"channel_id": data["channel_id"], "message_id": data.get("message_id"),
                                          "data": data["data"], "user": {"id": user["id"], "name": user.get("name")}},
                       room=room)


@sio.on("heartbeat")
async def heartbeat(sid, data):
    user = SESSION_POOL.get(sid)
    if user: SESSION_POOL[sid] = {**user, "last_seen_at": int(time.time())}


@sio.on("usage")
async def usage(sid, data):
    model = data["model"]
    USAGE_POOL[model] = {**USAGE_POOL.get(model, {}), sid: {"updated_at": int(time.time())}}
    await sio.emit("usage", {"models": USAGE_POOL.keys()})


@sio.on("user-list")
async def user_list(sid, *a):
    await sio.emit("user-list", {"user_ids": USER_POOL.keys()})


@sio.on("join")
async def join(sid, data):
    await sio.enter_room(sid, data["room"])


@sio.on("publish")
async def publish(sid, data):
    await sio.emit("message", data["data"], room=data["room"])


@sio.event
async def disconnect(sid, *a):
    user = SESSION_POOL.get(sid)
    if not user: return
    del SESSION_POOL[sid]
    left = [s for s in USER_POOL.get(user["id"], []) if s != sid]
    if left: USER_POOL[user["id"]] = left
    else: del USER_POOL[user["id"]]
    await sio.emit("user-list", {"user_ids": USER_POOL.keys()})


app = socketio.ASGIApp(sio, socketio_path="/ws/socket.io")
if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
