// The fleet as Redis holds it (each live node's status, each mailstore's slot holders,
// probe and health), a node's status as Redis hash fields and back, and the view as JSON.
// It decides nothing and keeps nothing.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.hpp"
#include "common/result.hpp"
#include "fleet/redis_client.hpp"

namespace spoold::fleet {

struct NodeClassCounts {
    std::string name;
    std::uint64_t ready = 0;
    std::uint64_t deferred = 0;
    std::uint64_t held = 0;
};

struct NodeStoreStatus {
    std::string name;
    std::string breaker; // closed, half-open, open
    std::uint32_t in_flight = 0;
    std::string budget;      // local, fleet, fallback
    std::uint32_t slots = 0; // deliveries the budget lets this node run (0 = no limit)
};

// What a node publishes about itself with each heartbeat.
struct NodeStatus {
    std::vector<NodeClassCounts> classes;
    double oldest_age_s = 0; // by the node's own clock: an age, never a timestamp
    double drain_rate = 0;   // messages delivered per second
    std::vector<NodeStoreStatus> mailstores;
};

// The hash fields of a node's status (field, value, field, value ...) and back. Fields
// that do not parse are skipped: a newer node may publish more.
std::vector<std::string> encode_status(const NodeStatus& status);
NodeStatus decode_status(const std::vector<std::pair<std::string, std::string>>& fields);

struct NodeView {
    std::string node;
    std::int64_t age_ms = 0; // since its last heartbeat, by Redis's clock
    NodeStatus status;
};

struct SlotHolder {
    std::string node;
    std::uint32_t general = 0;
    std::uint32_t reserve = 0;
    std::uint32_t want = 0;
};

struct StoreView {
    std::string name;
    std::vector<SlotHolder> holders;
    std::string prober;     // the node holding the probe lease, if any
    std::int64_t epoch = 0; // recoveries seen by the fleet's probes
    std::string state;      // the last probe's verdict: up, down or empty
    std::string state_node; // whose probe it was
    std::int64_t state_age_ms = -1;
};

struct FleetView {
    UnixMillis now_ms = 0; // Redis's clock
    std::vector<NodeView> nodes;
    std::vector<StoreView> stores;
};

// Reads the live nodes and the given mailstores' state (a few requests).
boost::asio::awaitable<Result<FleetView>> read_view(RedisClient& client, std::string prefix,
                                                    std::vector<std::string> stores);

// {"now_ms", "nodes": [{"node", "age_ms", "classes": {NAME: {ready, deferred, held}},
//  "oldest_age_s", "drain_rate", "mailstores": {NAME: {breaker, in_flight, budget,
//  slots}}}], "totals": {"nodes", "ready", "deferred", "held", "classes": {...},
//  "oldest_age_s", "drain_rate"}, "mailstores": [{"name", "slots": {NODE: {general,
//  reserve, want}}, "held", "prober", "health": {state, epoch, node, age_ms}}]}
std::string view_json(const FleetView& view);

} // namespace spoold::fleet
