#include "fleet/scripts.hpp"

#include <algorithm>
#include <fmt/format.h>

namespace spoold::fleet {
namespace {

// Shared by the scripts: Redis's clock in milliseconds, and a flat HGETALL as a table.
constexpr const char* kPrelude = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function as_map(flat)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = tonumber(flat[i + 1]) end
  return m
end
)lua";

// KEYS: 1 general, 2 reserve, 3 want, 4 leases, 5 tat, 6 probe, 7 health, 8 nodes
// ARGV:
//   1 node             2 ttl_ms
//   3 cap              fleet max_concurrency, 0 = no concurrency limit
//   4 reserve          urgent_reserve
//   5 used             deliveries the node may have in flight until this reply arrives
//   6 used_general     ... of them in slots any class may use
//   7 want             deliveries it could use now (its own limits, when it has mail)
//   8 want_urgent      ... of them for the urgent class
//   9 rate             fleet max_rate per second, 0 = none
//  10 burst            most tokens the bucket holds
//  11 tokens           tokens wanted now, 0 = none
//  12 min_tokens       fewer than this are not worth a grant (retry later instead)
//  13 probing          '1' while the node's breaker is open (it takes the probe if free)
//  14 probe_ttl_ms
//  15 probe_result     '' | 'up' | 'down': the node's probe just ended so
// Returns {general, reserve, tokens, retry_ms, prober, epoch, state, live_nodes, now}:
// the node may run up to general + reserve deliveries, up to general of them not urgent.
constexpr const char* kSync = R"lua(
local node, ttl = ARGV[1], tonumber(ARGV[2])
local cap, reserve = tonumber(ARGV[3]), tonumber(ARGV[4])
local used, used_general = tonumber(ARGV[5]), tonumber(ARGV[6])
local want = math.max(tonumber(ARGV[7]), 0)
local want_urgent = math.min(tonumber(ARGV[8]), want)

-- Slots of nodes whose lease ran out (killed, partitioned) go back to the pool.
local dead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, n in ipairs(dead) do
  redis.call('HDEL', KEYS[1], n)
  redis.call('HDEL', KEYS[2], n)
  redis.call('HDEL', KEYS[3], n)
end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now) end

local general, res = 0, 0
if cap > 0 then
  local pool = cap - reserve
  local g_map = as_map(redis.call('HGETALL', KEYS[1]))
  local r_map = as_map(redis.call('HGETALL', KEYS[2]))
  local w_map = as_map(redis.call('HGETALL', KEYS[3]))
  local other_g, other_r, wanting, starving = 0, 0, 0, false
  for n, w in pairs(w_map) do
    if n ~= node then
      local g, r = g_map[n] or 0, r_map[n] or 0
      other_g, other_r = other_g + g, other_r + r
      if w > 0 then wanting = wanting + 1 end
      if w > g + r then starving = true end
    end
  end
  if want > 0 then wanting = wanting + 1 end
  -- The reserve first, for urgent mail only; no fair share: it is small and urgent.
  res = math.max(0, math.min(want_urgent, reserve - other_r))
  general = math.max(0, math.min(want - res, pool - other_g))
  if starving then
    -- Others want more than they hold: this node keeps no more than a fair share, and
    -- gives the rest back as its deliveries end.
    general = math.min(general, math.ceil(pool / math.max(1, wanting)))
  end
  -- Recorded: never less than what may be in flight (after a Redis restart the nodes'
  -- running deliveries are adopted; nothing new is granted until they end).
  local rec_g = math.max(general, used_general)
  local rec_r = math.max(res, used - rec_g, 0)
  if rec_g + rec_r + want > 0 then
    redis.call('HSET', KEYS[1], node, rec_g)
    redis.call('HSET', KEYS[2], node, rec_r)
    redis.call('HSET', KEYS[3], node, want)
    redis.call('ZADD', KEYS[4], now + ttl, node)
  else
    redis.call('HDEL', KEYS[1], node)
    redis.call('HDEL', KEYS[2], node)
    redis.call('HDEL', KEYS[3], node)
    redis.call('ZREM', KEYS[4], node)
  end
end

-- GCRA: the bucket is full at tat <= now; each token moves tat on by 1/rate.
local tokens, retry = 0, 0
local rate = tonumber(ARGV[9])
local wanted = tonumber(ARGV[11])
if rate > 0 and wanted > 0 then
  local interval = 1000 / rate
  local tau = tonumber(ARGV[10]) * interval
  local tat = tonumber(redis.call('GET', KEYS[5]) or now)
  if tat < now then tat = now end
  local available = math.floor((now + tau - tat) / interval + 1e-9)
  local minimum = math.max(1, math.min(tonumber(ARGV[12]), wanted))
  if available >= minimum then
    tokens = math.min(wanted, available)
    tat = tat + tokens * interval
    redis.call('SET', KEYS[5], string.format('%.3f', tat), 'PX', math.ceil(tat - now + tau) + 1000)
  else
    retry = math.max(1, math.ceil(tat - tau + minimum * interval - now))
  end
end

-- One node probes the store while it is down; the others hear the result.
local prober = redis.call('GET', KEYS[6]) or ''
if ARGV[13] == '1' then
  if prober == '' or prober == node then
    redis.call('SET', KEYS[6], node, 'PX', ARGV[14])
    prober = node
  end
elseif prober == node then
  redis.call('DEL', KEYS[6])
  prober = ''
end
if ARGV[15] == 'up' then
  redis.call('HINCRBY', KEYS[7], 'epoch', 1)
  redis.call('HSET', KEYS[7], 'state', 'up', 'node', node, 'at', now)
elseif ARGV[15] == 'down' then
  redis.call('HSET', KEYS[7], 'state', 'down', 'node', node, 'at', now)
end
local health = redis.call('HMGET', KEYS[7], 'epoch', 'state')

local live = redis.call('ZCOUNT', KEYS[8], '(' .. now, '+inf')
return {general, res, tokens, retry, prober, tonumber(health[1] or 0), health[2] or '', live, now}
)lua";

// KEYS: 1 nodes, 2 node's status.  ARGV: 1 node, 2 ttl_ms, then field, value pairs of the
// status (view.hpp's encode_status); the hash is replaced whole, so dropped fields go.
// Returns {live_nodes, now}.
constexpr const char* kHeartbeat = R"lua(
local node, ttl = ARGV[1], tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, node)
redis.call('DEL', KEYS[2])
for i = 3, #ARGV - 1, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[2], 'at', now)
redis.call('PEXPIRE', KEYS[2], ttl)
return {redis.call('ZCARD', KEYS[1]), now}
)lua";

// KEYS: 1 nodes, 2 node's status, then per store: general, reserve, want, leases, probe.
// ARGV: 1 node.
constexpr const char* kLeave = R"lua(
local node = ARGV[1]
redis.call('ZREM', KEYS[1], node)
redis.call('DEL', KEYS[2])
for i = 3, #KEYS, 5 do
  redis.call('HDEL', KEYS[i], node)
  redis.call('HDEL', KEYS[i + 1], node)
  redis.call('HDEL', KEYS[i + 2], node)
  redis.call('ZREM', KEYS[i + 3], node)
  if redis.call('GET', KEYS[i + 4]) == node then redis.call('DEL', KEYS[i + 4]) end
end
return now
)lua";

std::shared_ptr<const RedisScript> make(const char* body) {
    return std::make_shared<const RedisScript>(std::string(kPrelude) + body);
}

} // namespace

StoreKeys::StoreKeys(const std::string& prefix, const std::string& store) {
    const std::string base = prefix + "store:" + store + ":";
    general = base + "general";
    reserve = base + "reserve";
    want = base + "want";
    leases = base + "leases";
    tat = base + "tat";
    probe = base + "probe";
    health = base + "health";
}

std::string nodes_key(const std::string& prefix) { return prefix + "nodes"; }

std::string node_key(const std::string& prefix, const std::string& node) {
    return prefix + "node:" + node;
}

const std::shared_ptr<const RedisScript>& sync_script() {
    static const auto script = make(kSync);
    return script;
}

std::vector<std::string> sync_keys(const SyncCall& call) {
    const StoreKeys k(call.prefix, call.store);
    return {k.general, k.reserve, k.want,   k.leases,
            k.tat,     k.probe,   k.health, nodes_key(call.prefix)};
}

std::vector<std::string> sync_args(const SyncCall& call) {
    const SyncRequest& r = call.request;
    const ShareLimits& l = call.limits;
    return {call.node,
            std::to_string(call.lease_ttl_ms),
            std::to_string(l.max_concurrency),
            std::to_string(l.urgent_reserve),
            std::to_string(r.used),
            std::to_string(r.used_general),
            std::to_string(r.want),
            std::to_string(r.want_urgent),
            fmt::format("{}", l.max_rate),
            std::to_string(call.burst),
            std::to_string(r.tokens),
            std::to_string(r.min_tokens),
            r.probing ? "1" : "0",
            std::to_string(probe_lease_ms(call.lease_ttl_ms)),
            r.probe_result};
}

Result<SyncReply> parse_sync_reply(const RedisReply& reply) {
    if (reply.is_error()) {
        return fail(ErrorKind::kProtocol, "sync script: " + reply.str);
    }
    if (reply.type != RedisReply::Type::kArray || reply.elements.size() < 8) {
        return fail(ErrorKind::kProtocol, "sync script: unexpected reply");
    }
    const auto u32 = [&](std::size_t i) { return reply.at(i).as_count(); };
    SyncReply s;
    s.general = u32(0);
    s.reserve = u32(1);
    s.tokens = u32(2);
    s.retry_ms = reply.at(3).as_int().value_or(0);
    s.prober = reply.at(4).str;
    s.epoch = reply.at(5).as_int().value_or(0);
    s.state = reply.at(6).str;
    s.live_nodes = std::max<std::uint32_t>(1, u32(7));
    return s;
}

const std::shared_ptr<const RedisScript>& heartbeat_script() {
    static const auto script = make(kHeartbeat);
    return script;
}

const std::shared_ptr<const RedisScript>& leave_script() {
    static const auto script = make(kLeave);
    return script;
}

} // namespace spoold::fleet
