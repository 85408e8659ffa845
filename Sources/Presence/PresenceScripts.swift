import Redis

/// The Lua scripts behind ``RedisPresenceStore`` and ``RedisSweepLock``. Every update of the pools is one script,
/// so no two nodes ever interleave a read-modify-write of the same hash field.
///
/// Values are JSON that Python's `json.loads` reads to what Open WebUI's `RedisDict` holds. Lists and maps are
/// re-encoded with Redis's cjson, which writes an empty table as `{}`: an empty list or map is therefore never
/// stored, its field is deleted instead. Times are integers (cjson writes integral numbers below 1e14 without a
/// fraction). The user object in SESSION_POOL is never decoded and re-encoded (cjson would turn its empty lists
/// into `{}`): only its `last_seen_at` member is rewritten in place.
///
/// Keys of the pool scripts: `KEYS[1]` SESSION_POOL, `KEYS[2]` USER_POOL, `KEYS[3]` USAGE_POOL.
enum PresenceScripts {
    /// Helpers shared by the pool scripts.
    private static let prelude = #"""
        local session_key, user_key, usage_key = KEYS[1], KEYS[2], KEYS[3]

        local function decode(raw)
          if not raw then return nil end
          local ok, value = pcall(cjson.decode, raw)
          if ok then return value end
          return nil
        end

        -- The user id of a SESSION_POOL value (its top-level string `id`), or nil.
        local function user_of(raw)
          local value = decode(raw)
          if type(value) == 'table' and type(value.id) == 'string' then return value.id end
          return nil
        end

        -- The strings of a JSON list, in order (anything else: an empty list).
        local function string_list(raw)
          local value = decode(raw)
          local list = {}
          if type(value) == 'table' then
            for _, item in ipairs(value) do
              if type(item) == 'string' then list[#list + 1] = item end
            end
          end
          return list
        end

        -- Removes the sids in the set `drop` from USER_POOL[uid]; deletes the user when none is left.
        -- Returns how many sids the user still has.
        local function drop_from_user(uid, drop)
          local raw = redis.call('HGET', user_key, uid)
          if not raw then return 0 end
          local kept, changed = {}, false
          for _, sid in ipairs(string_list(raw)) do
            if drop[sid] then changed = true else kept[#kept + 1] = sid end
          end
          if #kept == 0 then
            redis.call('HDEL', user_key, uid)
          elseif changed then
            redis.call('HSET', user_key, uid, cjson.encode(kept))
          end
          return #kept
        end

        -- Removes the sids in the set `drop` (or, with `prefix`, every sid starting with it) from every model of
        -- USAGE_POOL; deletes models left empty.
        local function drop_from_usage(drop, prefix)
          local all = redis.call('HGETALL', usage_key)
          for i = 1, #all, 2 do
            local connections = decode(all[i + 1])
            if type(connections) == 'table' then
              local changed = false
              for sid in pairs(connections) do
                if drop[sid] or (prefix and type(sid) == 'string' and string.sub(sid, 1, #prefix) == prefix) then
                  connections[sid] = nil
                  changed = true
                end
              end
              if changed then
                if next(connections) == nil then
                  redis.call('HDEL', usage_key, all[i])
                else
                  redis.call('HSET', usage_key, all[i], cjson.encode(connections))
                end
              end
            end
          end
        end

        """#

    /// ARGV: sid, user id, session JSON (with `last_seen_at` already set), `1` to list the sid in USER_POOL.
    /// Returns the user's session count in USER_POOL (0 when not listed).
    static let addSession = RedisScript(
        prelude + #"""
            local sid, uid, session, list_user = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
            local previous = user_of(redis.call('HGET', session_key, sid))
            if previous and previous ~= uid then drop_from_user(previous, { [sid] = true }) end
            redis.call('HSET', session_key, sid, session)
            if not list_user then return 0 end
            local list = string_list(redis.call('HGET', user_key, uid))
            for _, existing in ipairs(list) do
              if existing == sid then
                -- Rewritten anyway: a stored value that was not a clean list of strings becomes one.
                redis.call('HSET', user_key, uid, cjson.encode(list))
                return #list
              end
            end
            list[#list + 1] = sid
            redis.call('HSET', user_key, uid, cjson.encode(list))
            return #list
            """#
    )

    /// One batch of a read of SESSION_POOL's owners, over `HSCAN`. ARGV: cursor, count.
    /// Returns `{next cursor, {sid, user id, sid, user id, …}}` (sessions without a user id left out).
    static let sessionOwnersBatch = RedisScript(
        prelude + #"""
            local scan = redis.call('HSCAN', session_key, ARGV[1], 'COUNT', ARGV[2])
            local items, owners = scan[2], {}
            for i = 1, #items, 2 do
              local owner = user_of(items[i + 1])
              if owner then
                owners[#owners + 1] = items[i]
                owners[#owners + 1] = owner
              end
            end
            return { scan[1], owners }
            """#
    )

    /// ARGV: sid. Returns `{removed (0/1), has user (0/1), user id, sessions the user still has}`.
    static let removeSession = RedisScript(
        prelude + #"""
            local sid = ARGV[1]
            local raw = redis.call('HGET', session_key, sid)
            local removed, has_user, uid, remaining = 0, 0, '', 0
            if raw then
              redis.call('HDEL', session_key, sid)
              removed = 1
              local owner = user_of(raw)
              if owner then
                has_user, uid = 1, owner
                remaining = drop_from_user(owner, { [sid] = true })
              end
            end
            drop_from_usage({ [sid] = true }, nil)
            return { removed, has_user, uid, remaining }
            """#
    )

    /// One batch of a session sweep or of a removal by prefix, over `HSCAN` of SESSION_POOL.
    /// ARGV: mode (`stale` or `prefix`), cursor, count, then `now`, `max age` (stale) or the prefix (prefix).
    /// Returns `{next cursor, {removed sids…}}`.
    static let removeSessionBatch = RedisScript(
        prelude + #"""
            local mode, cursor, count = ARGV[1], ARGV[2], ARGV[3]
            local now, max_age, prefix
            if mode == 'stale' then
              now, max_age = tonumber(ARGV[4]), tonumber(ARGV[5])
            else
              prefix = ARGV[4]
            end
            local scan = redis.call('HSCAN', session_key, cursor, 'COUNT', count)
            local items = scan[2]
            local drop, owners, removed = {}, {}, {}
            for i = 1, #items, 2 do
              local sid, raw = items[i], items[i + 1]
              local hit
              if prefix then
                hit = string.sub(sid, 1, #prefix) == prefix
              else
                -- Entries without a numeric last_seen_at were not written by a heartbeat-aware node: left alone.
                local value = decode(raw)
                local seen = type(value) == 'table' and value.last_seen_at
                hit = type(seen) == 'number' and now - seen > max_age
              end
              if hit and not drop[sid] then
                redis.call('HDEL', session_key, sid)
                drop[sid] = true
                removed[#removed + 1] = sid
                local owner = user_of(raw)
                if owner then owners[owner] = true end
              end
            end
            for owner in pairs(owners) do drop_from_user(owner, drop) end
            if #removed > 0 then drop_from_usage(drop, nil) end
            return { scan[1], removed }
            """#
    )

    /// After a removal by prefix: drops sids with the prefix left in USER_POOL and USAGE_POOL without a session.
    /// ARGV: prefix.
    static let removeOrphansWithPrefix = RedisScript(
        prelude + #"""
            local prefix = ARGV[1]
            local users = redis.call('HGETALL', user_key)
            for i = 1, #users, 2 do
              local drop, any = {}, false
              for _, sid in ipairs(string_list(users[i + 1])) do
                if string.sub(sid, 1, #prefix) == prefix then drop[sid] = true; any = true end
              end
              if any then drop_from_user(users[i], drop) end
            end
            drop_from_usage({}, prefix)
            return 0
            """#
    )

    /// The Lua for editing one member of a stored session object in place (never re-encoding the rest).
    private static let memberSetter = #"""
        local function skip_ws(s, i) return (string.find(s, '[^ \t\r\n]', i)) end

        local function skip_string(s, i)
          local j = i + 1
          while true do
            local q = string.find(s, '["\\]', j)
            if not q then return nil end
            if string.byte(s, q) == 92 then j = q + 2 else return q + 1 end
          end
        end

        local function skip_value(s, i)
          local c = string.byte(s, i)
          if c == 34 then return skip_string(s, i) end
          if c == 123 or c == 91 then
            local depth, j = 0, i
            while true do
              local p = string.find(s, '["{}%[%]]', j)
              if not p then return nil end
              local b = string.byte(s, p)
              if b == 34 then
                j = skip_string(s, p)
                if not j then return nil end
              else
                if b == 123 or b == 91 then depth = depth + 1 else depth = depth - 1 end
                j = p + 1
                if depth == 0 then return j end
              end
            end
          end
          local p = string.find(s, '[,}%] \t\r\n]', i)
          if p == i then return nil end
          return p
        end

        -- Mirrors JSONMemberSetter.setting(_:to:in:) exactly.
        local function set_member(s, raw_name, value)
          local i = skip_ws(s, 1)
          if not i or string.byte(s, i) ~= 123 then return nil end
          i = skip_ws(s, i + 1)
          if not i then return nil end
          local found_start, found_end, close, empty
          if string.byte(s, i) == 125 then
            close, empty = i, true
          else
            while true do
              if string.byte(s, i) ~= 34 then return nil end
              local key_end = skip_string(s, i)
              if not key_end then return nil end
              local is_name = string.sub(s, i, key_end - 1) == raw_name
              local colon = skip_ws(s, key_end)
              if not colon or string.byte(s, colon) ~= 58 then return nil end
              local value_start = skip_ws(s, colon + 1)
              if not value_start then return nil end
              local value_end = skip_value(s, value_start)
              if not value_end then return nil end
              local after = skip_ws(s, value_end)
              if not after then return nil end
              if is_name then found_start, found_end = value_start, value_end end
              local c = string.byte(s, after)
              if c == 44 then
                i = skip_ws(s, after + 1)
                if not i then return nil end
              elseif c == 125 then
                close = after
                break
              else
                return nil
              end
            end
          end
          if found_start then
            return string.sub(s, 1, found_start - 1) .. value .. string.sub(s, found_end)
          end
          local separator = ','
          if empty then separator = '' end
          return string.sub(s, 1, close - 1) .. separator .. raw_name .. ':' .. value .. string.sub(s, close)
        end

        """#

    /// ARGV: sid, now. Sets `last_seen_at` of an existing session in place. Returns 1, or 0 when the session does
    /// not exist (or its value is not a JSON object).
    static let touchSession = RedisScript(
        memberSetter + #"""
        local raw = redis.call('HGET', KEYS[1], ARGV[1])
        if not raw then return 0 end
        local updated = set_member(raw, '"last_seen_at"', ARGV[2])
        if not updated then return 0 end
        redis.call('HSET', KEYS[1], ARGV[1], updated)
        return 1
        """#
    )

    /// KEYS: SESSION_POOL. ARGV: sid, member name as a JSON string, member value as JSON. Sets that member of an
    /// existing session in place. Returns 1, or 0 when the session does not exist (or is not a JSON object).
    static let setSessionMember = RedisScript(
        memberSetter + #"""
        local raw = redis.call('HGET', KEYS[1], ARGV[1])
        if not raw then return 0 end
        local updated = set_member(raw, ARGV[2], ARGV[3])
        if not updated then return 0 end
        redis.call('HSET', KEYS[1], ARGV[1], updated)
        return 1
        """#
    )

    /// KEYS: USAGE_POOL. ARGV: model, sid, now. Merges `{sid: {"updated_at": now}}` into the model's map.
    static let recordUsage = RedisScript(
        #"""
        local raw = redis.call('HGET', KEYS[1], ARGV[1])
        local connections
        if raw then
          local ok, value = pcall(cjson.decode, raw)
          if ok and type(value) == 'table' and value[1] == nil then connections = value end
        end
        connections = connections or {}
        connections[ARGV[2]] = { updated_at = tonumber(ARGV[3]) }
        redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(connections))
        return 1
        """#
    )

    /// KEYS: USAGE_POOL. ARGV: now, max age. Removes entries whose `updated_at` is older than max age (and entries
    /// without a numeric `updated_at`, which Open WebUI's own sweep could not read); deletes models left empty or
    /// whose value is not a JSON object. Returns `{entries removed, models deleted}`.
    static let sweepUsage = RedisScript(
        #"""
        local now, max_age = tonumber(ARGV[1]), tonumber(ARGV[2])
        local all = redis.call('HGETALL', KEYS[1])
        local entries, models = 0, 0
        for i = 1, #all, 2 do
          local ok, connections = pcall(cjson.decode, all[i + 1])
          if not ok or type(connections) ~= 'table' then
            redis.call('HDEL', KEYS[1], all[i])
            models = models + 1
          else
            local changed = false
            for sid, details in pairs(connections) do
              local updated = type(details) == 'table' and details.updated_at
              if type(updated) ~= 'number' or now - updated > max_age then
                connections[sid] = nil
                changed = true
                entries = entries + 1
              end
            end
            if next(connections) == nil then
              redis.call('HDEL', KEYS[1], all[i])
              models = models + 1
            elseif changed then
              redis.call('HSET', KEYS[1], all[i], cjson.encode(connections))
            end
          end
        end
        return { entries, models }
        """#
    )

    /// KEYS: lock. ARGV: owner, TTL seconds. Extends the TTL only if the lock holds `owner`. Returns 1 or 0.
    static let renewLock = RedisScript(
        #"""
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          return redis.call('EXPIRE', KEYS[1], ARGV[2])
        end
        return 0
        """#
    )

    /// KEYS: lock. ARGV: owner. Deletes the lock only if it holds `owner`. Returns 1 or 0.
    static let releaseLock = RedisScript(
        #"""
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          return redis.call('DEL', KEYS[1])
        end
        return 0
        """#
    )
}
