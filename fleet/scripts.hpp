// The Lua scripts the fleet runs inside Redis, and the key layout they work on. Every
// decision that must be atomic across nodes (who holds how many slots, rate tokens, the
// probe) is one script, on Redis's clock (TIME), never a node's.
#pragma once

#include <memory>
#include <string>

#include "fleet/redis_client.hpp"
#include "fleet/share.hpp"

namespace spoold::fleet {

// The keys of one fleet (`prefix` = fleet.key_prefix). Per mailstore S:
//   <prefix>store:S:general   hash  node -> slots it holds that any class may use
//   <prefix>store:S:reserve   hash  node -> slots it holds for the urgent class only
//   <prefix>store:S:want      hash  node -> slots it could use now (fair shares)
//   <prefix>store:S:leases    zset  node -> when its slots expire (ms, Redis clock)
//   <prefix>store:S:tat       GCRA theoretical arrival time (ms, Redis clock)
//   <prefix>store:S:probe     the node holding the probe lease (expires by itself)
//   <prefix>store:S:health    hash  epoch (up count), state (up/down), node, at
// Per node N:
//   <prefix>nodes             zset  node -> when its status expires (ms, Redis clock)
//   <prefix>node:N            hash  the node's status fields (view.hpp), at (Redis ms)
struct StoreKeys {
    StoreKeys(const std::string& prefix, const std::string& store);
    std::string general, reserve, want, leases, tat, probe, health;
};
std::string nodes_key(const std::string& prefix);
std::string node_key(const std::string& prefix, const std::string& node);

// sync: one node's claim on one store's budget (scripts.cpp says what each argument is).
const std::shared_ptr<const RedisScript>& sync_script();
struct SyncCall {
    std::string prefix;
    std::string store;
    std::string node;
    std::int64_t lease_ttl_ms = 0;
    ShareLimits limits;
    std::uint32_t burst = 1;
    SyncRequest request;
};
std::vector<std::string> sync_keys(const SyncCall& call);
std::vector<std::string> sync_args(const SyncCall& call);
// The script's reply; kProtocol when it is an error or not the expected shape.
Result<SyncReply> parse_sync_reply(const RedisReply& reply);
// heartbeat: publishes a node's status with a TTL and counts the live nodes.
const std::shared_ptr<const RedisScript>& heartbeat_script();
// leave: a node that stops gives back its slots, its probe and its status at once.
const std::shared_ptr<const RedisScript>& leave_script();

} // namespace spoold::fleet
