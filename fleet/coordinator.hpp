// A node's link to the fleet: one Redis connection on the daemon's executor, the shares of
// each fleet-limited mailstore kept in sync (StoreShare), the node's status published with a
// TTL, the fleet view. Only the drain and the status use it; SMTP intake never waits on it.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "fleet/redis_client.hpp"
#include "fleet/share.hpp"
#include "fleet/view.hpp"
#include "policy/config.hpp"

namespace spoold::fleet {

// The node's status is published this often (it expires after fleet.lease_ttl).
inline constexpr std::int64_t kHeartbeatMs = 1000;
// The fleet view for the status page is read this often.
inline constexpr std::int64_t kViewMs = 2000;

RedisEndpoint redis_endpoint(const policy::FleetConfig& fleet);
ShareLimits share_limits(const policy::MailstoreConfig& store);

class Coordinator {
public:
    // Needs config.fleet.coordinated(). Every call from `executor`'s thread.
    Coordinator(const boost::asio::any_io_executor& executor, const policy::Config& config,
                const Clock& clock);
    ~Coordinator();
    Coordinator(const Coordinator&) = delete;
    Coordinator& operator=(const Coordinator&) = delete;

    // One share per mailstore with fleet limits, for Drain::set_budget; owned here.
    const std::vector<std::unique_ptr<StoreShare>>& shares() const { return shares_; }
    // What the node publishes about itself, asked before each heartbeat.
    void set_status_source(std::function<NodeStatus()> source);
    void start();
    // Gives back this node's slots, probe and status (one request within fleet.timeout),
    // then calls `done`. After it, the shares stay usable but are never synced again.
    void stop(std::function<void()> done);
    // SIGHUP: new limits for the shares. The Redis address, node name and key prefix need
    // a restart.
    void reconfigure(const policy::Config& config);
    // The fleet as last read (every kViewMs); nullopt until the first read succeeds.
    const std::optional<FleetView>& view() const { return view_; }
    const std::string& node() const { return node_; }

private:
    boost::asio::awaitable<void> run();
    boost::asio::awaitable<void> sync(StoreShare* share);
    boost::asio::awaitable<void> heartbeat();
    boost::asio::awaitable<void> refresh_view();
    boost::asio::awaitable<void> leave();
    void poke();

    boost::asio::any_io_executor executor_;
    const Clock& clock_;
    std::string node_;
    std::string prefix_;
    std::int64_t ttl_ms_;
    std::vector<std::string> store_names_;
    std::string client_endpoint_;
    RedisClient client_;
    std::vector<std::unique_ptr<StoreShare>> shares_;
    std::function<NodeStatus()> status_source_;
    boost::asio::steady_timer timer_;
    bool started_ = false;
    bool running_ = false;
    bool stopping_ = false;
    std::vector<std::function<void()>> on_stopped_;
    UnixMillis next_heartbeat_ms_ = 0;
    UnixMillis next_view_ms_ = 0;
    std::optional<FleetView> view_;
    std::uint64_t requests_counted_ = 0;
};

} // namespace spoold::fleet
