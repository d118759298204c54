#include "tools/spoolctl/fleet_verb.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdint>
#include <map>

#include "fleet/coordinator.hpp"
#include "fleet/view.hpp"
#include "tools/spoolctl/verb_support.hpp"

namespace spoold::spoolctl {
namespace {

std::string store_budget(const fleet::NodeStoreStatus& m) {
    return m.slots > 0 ? fmt::format("{} {} {}/{}", m.breaker, m.budget, m.in_flight, m.slots)
                       : fmt::format("{} {} {}", m.breaker, m.budget, m.in_flight);
}

void print_table(std::FILE* out, const fleet::FleetView& view) {
    say(out, "{:<20} {:>6} {:>10} {:>10} {:>8} {:>10} {:>8}  {}\n", "NODE", "AGE", "READY",
        "DEFERRED", "HELD", "OLDEST", "RATE/S", "MAILSTORES (breaker budget in-flight/slots)");
    std::uint64_t ready = 0;
    std::uint64_t deferred = 0;
    std::uint64_t held = 0;
    double oldest = 0;
    double rate = 0;
    for (const auto& n : view.nodes) {
        std::uint64_t r = 0;
        std::uint64_t d = 0;
        std::uint64_t h = 0;
        for (const auto& c : n.status.classes) {
            r += c.ready;
            d += c.deferred;
            h += c.held;
        }
        std::string stores;
        for (const auto& m : n.status.mailstores) {
            stores += fmt::format("{}{}: {}", stores.empty() ? "" : ", ", m.name, store_budget(m));
        }
        say(out, "{:<20} {:>5.1f}s {:>10} {:>10} {:>8} {:>9.0f}s {:>8.1f}  {}\n", n.node,
            static_cast<double>(n.age_ms) / 1000.0, r, d, h, n.status.oldest_age_s,
            n.status.drain_rate, stores);
        ready += r;
        deferred += d;
        held += h;
        oldest = std::max(oldest, n.status.oldest_age_s);
        rate += n.status.drain_rate;
    }
    say(out, "{:<20} {:>6} {:>10} {:>10} {:>8} {:>9.0f}s {:>8.1f}\n",
        fmt::format("total ({} nodes)", view.nodes.size()), "", ready, deferred, held, oldest,
        rate);
    for (const auto& s : view.stores) {
        std::string holders;
        std::uint64_t total = 0;
        for (const auto& h : s.holders) {
            holders += fmt::format(" {}={}+{}", h.node, h.general, h.reserve);
            total += h.general + h.reserve;
        }
        say(out, "mailstore {}: {} slots held{}{}{}\n", s.name, total,
            holders.empty() ? "" : " (general+reserve:", holders, holders.empty() ? "" : ")");
        if (!s.prober.empty()) {
            say(out, "  probing: {}\n", s.prober);
        }
        if (!s.state.empty()) {
            say(out, "  last probe: {} by {}, {:.1f}s ago\n", s.state, s.state_node,
                static_cast<double>(s.state_age_ms) / 1000.0);
        }
    }
}

// Closes the connection when done, so the io_context runs out of work.
boost::asio::awaitable<Result<fleet::FleetView>>
read_and_close(fleet::RedisClient* client, std::string prefix, std::vector<std::string> stores) {
    auto view = co_await fleet::read_view(*client, std::move(prefix), std::move(stores));
    client->close();
    co_return view;
}

} // namespace

int verb_fleet(Context& ctx) {
    if (ctx.cl.operands.size() != 1 || ctx.cl.operands[0] != "status") {
        return usage_error(ctx, "fleet takes one operand: status");
    }
    if (!ctx.config || !ctx.config->fleet.coordinated()) {
        return usage_error(ctx, "fleet status needs --config with fleet.redis set");
    }
    const auto& fc = ctx.config->fleet;
    std::vector<std::string> stores;
    for (const auto& m : ctx.config->mailstores) {
        stores.push_back(m.name);
    }
    boost::asio::io_context io;
    fleet::RedisClient client(io.get_executor(), fleet::redis_endpoint(fc), fc.timeout);
    auto future = boost::asio::co_spawn(io, read_and_close(&client, fc.key_prefix, stores),
                                        boost::asio::use_future);
    io.run();
    auto view = future.get();
    if (!view) {
        return fail_with(ctx, view.error());
    }
    if (ctx.cl.json) {
        say(ctx.out, "{}\n", fleet::view_json(*view));
    } else {
        print_table(ctx.out, *view);
    }
    return kExitOk;
}

} // namespace spoold::spoolctl
