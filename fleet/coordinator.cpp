#include "fleet/coordinator.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <fmt/format.h>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/escaped.hpp"
#include "fleet/scripts.hpp"

namespace spoold::fleet {

namespace asio = boost::asio;

namespace {

// The loop never sleeps longer than this, so a clock that jumps is caught up with soon.
constexpr std::int64_t kMaxSleepMs = 250;

} // namespace

RedisEndpoint redis_endpoint(const policy::FleetConfig& fleet) {
    RedisEndpoint ep;
    ep.socket = fleet.redis_socket;
    ep.host = fleet.redis_host;
    ep.port = fleet.redis_port;
    return ep;
}

ShareLimits share_limits(const policy::MailstoreConfig& store) {
    return ShareLimits{store.fleet.max_concurrency, store.fleet.max_rate,
                       store.fleet.urgent_reserve};
}

Coordinator::Coordinator(const asio::any_io_executor& executor, const policy::Config& config,
                         const Clock& clock)
    : executor_(executor), clock_(clock), node_(config.fleet.node),
      prefix_(config.fleet.key_prefix), ttl_ms_(config.fleet.lease_ttl.count()),
      client_endpoint_(config.fleet.redis_address()),
      client_(executor, redis_endpoint(config.fleet), config.fleet.timeout), timer_(executor) {
    for (const auto& m : config.mailstores) {
        store_names_.push_back(m.name);
        if (m.fleet.limited()) {
            auto share = std::make_unique<StoreShare>(m.name, node_, share_limits(m),
                                                      config.fleet.lease_ttl, clock);
            share->set_poke([this] { poke(); });
            shares_.push_back(std::move(share));
        }
    }
}

Coordinator::~Coordinator() {
    if (running_) {
        log::error("event=fleet_destroyed_running note=\"stop() did not complete first\"");
    }
}

void Coordinator::set_status_source(std::function<NodeStatus()> source) {
    status_source_ = std::move(source);
}

void Coordinator::poke() { timer_.cancel(); }

void Coordinator::start() {
    if (started_) {
        return;
    }
    started_ = true;
    running_ = true;
    log::info("event=fleet_started node={} redis={} mailstores={}", log::quote(node_),
              log::quote(client_endpoint_), shares_.size());
    asio::co_spawn(executor_, run(), [this](const std::exception_ptr& e) {
        if (e) {
            log::error("event=fleet_loop_failed error={}", log::quote(describe_escaped(e)));
        }
        running_ = false;
        auto callbacks = std::move(on_stopped_);
        on_stopped_.clear();
        for (auto& c : callbacks) {
            c();
        }
    });
}

void Coordinator::stop(std::function<void()> done) {
    if (!running_) {
        if (done) {
            asio::post(executor_, std::move(done));
        }
        return;
    }
    if (done) {
        on_stopped_.push_back(std::move(done));
    }
    stopping_ = true;
    poke();
}

void Coordinator::reconfigure(const policy::Config& config) {
    for (auto& share : shares_) {
        const auto it = std::find_if(
            config.mailstores.begin(), config.mailstores.end(),
            [&](const policy::MailstoreConfig& m) { return m.name == share->store(); });
        if (it != config.mailstores.end()) {
            share->reconfigure(share_limits(*it));
        }
    }
}

asio::awaitable<void> Coordinator::run() {
    while (!stopping_) {
        for (auto& share : shares_) {
            if (share->sync_due() && !stopping_) {
                co_await sync(share.get());
            }
        }
        const UnixMillis now = clock_.now_ms();
        if (now >= next_heartbeat_ms_ && !stopping_) {
            next_heartbeat_ms_ = now + kHeartbeatMs;
            co_await heartbeat();
        }
        if (clock_.now_ms() >= next_view_ms_ && !stopping_) {
            next_view_ms_ = clock_.now_ms() + kViewMs;
            co_await refresh_view();
        }
        auto& counter = metrics::spoold_metrics().fleet_redis_requests_total;
        counter.inc(client_.requests_sent() - requests_counted_);
        requests_counted_ = client_.requests_sent();

        UnixMillis wake = std::min(next_heartbeat_ms_, next_view_ms_);
        for (const auto& share : shares_) {
            wake = std::min(wake, share->next_sync_ms());
        }
        const std::int64_t sleep = std::clamp<std::int64_t>(wake - clock_.now_ms(), 1, kMaxSleepMs);
        if (stopping_) {
            break;
        }
        timer_.expires_after(std::chrono::milliseconds(sleep));
        co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    co_await leave();
    client_.close();
}

asio::awaitable<void> Coordinator::sync(StoreShare* share) {
    SyncCall call;
    call.prefix = prefix_;
    call.store = share->store();
    call.node = node_;
    call.lease_ttl_ms = ttl_ms_;
    call.limits = share->limits();
    call.burst = share->burst();
    call.request = share->request();
    auto reply = co_await client_.eval(sync_script(), sync_keys(call), sync_args(call));
    auto parsed = reply ? parse_sync_reply(*reply) : tl::unexpected(reply.error());
    if (!parsed) {
        share->on_failure(parsed.error().describe());
        co_return;
    }
    share->on_reply(*parsed);
}

asio::awaitable<void> Coordinator::heartbeat() {
    std::vector<std::string> args{node_, std::to_string(ttl_ms_)};
    if (status_source_) {
        auto fields = encode_status(status_source_());
        std::move(fields.begin(), fields.end(), std::back_inserter(args));
    }
    std::vector<std::string> keys{nodes_key(prefix_), node_key(prefix_, node_)};
    auto reply = co_await client_.eval(heartbeat_script(), std::move(keys), std::move(args));
    if (!reply || reply->is_error()) {
        log::debug("event=fleet_heartbeat_failed error={}",
                   log::quote(reply ? reply->str : reply.error().describe()));
        co_return;
    }
    const std::uint32_t live = std::max<std::uint32_t>(1, reply->at(0).as_count());
    metrics::spoold_metrics().fleet_live_nodes.set(live);
    for (auto& share : shares_) {
        share->set_live_nodes(live);
    }
}

asio::awaitable<void> Coordinator::refresh_view() {
    auto v = co_await read_view(client_, prefix_, store_names_);
    if (v) {
        view_ = std::move(*v);
    } else {
        view_.reset();
    }
}

asio::awaitable<void> Coordinator::leave() {
    std::vector<std::string> keys{nodes_key(prefix_), node_key(prefix_, node_)};
    for (const auto& share : shares_) {
        const StoreKeys k(prefix_, share->store());
        keys.insert(keys.end(), {k.general, k.reserve, k.want, k.leases, k.probe});
    }
    std::vector<std::string> args{node_};
    auto reply = co_await client_.eval(leave_script(), std::move(keys), std::move(args));
    if (reply && !reply->is_error()) {
        log::info("event=fleet_left node={}", log::quote(node_));
    } else {
        log::warn("event=fleet_leave_failed node={} error={} note=\"the leases expire by "
                  "themselves\"",
                  log::quote(node_), log::quote(reply ? reply->str : reply.error().describe()));
    }
}

} // namespace spoold::fleet
