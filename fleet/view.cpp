#include "fleet/view.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <fmt/format.h>
#include <map>
#include <sstream>

#include "common/json.hpp"
#include "fleet/scripts.hpp"

namespace spoold::fleet {
namespace {

constexpr std::string_view kClassField = "class:";
constexpr std::string_view kStoreField = "store:";

template <typename T> bool parse_number(std::string_view text, T& out) {
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size();
}

std::vector<std::string> words(const std::string& text) {
    std::istringstream in(text);
    std::vector<std::string> out;
    for (std::string w; in >> w;) {
        out.push_back(w);
    }
    return out;
}

std::map<std::string, std::string> as_map(const RedisReply& flat) {
    std::map<std::string, std::string> out;
    for (std::size_t i = 0; i + 1 < flat.elements.size(); i += 2) {
        out[flat.elements[i].str] = flat.elements[i + 1].str;
    }
    return out;
}

std::uint32_t field_u32(const std::map<std::string, std::string>& m, const std::string& key) {
    std::uint32_t v = 0;
    const auto it = m.find(key);
    return it != m.end() && parse_number(it->second, v) ? v : 0;
}

Result<RedisReply> expect(Result<RedisReply> reply) {
    if (reply && reply->is_error()) {
        return fail(ErrorKind::kProtocol, "redis: " + reply->str);
    }
    return reply;
}

void counts(json::Writer& w, std::uint64_t ready, std::uint64_t deferred, std::uint64_t held) {
    w.begin_object();
    w.key("ready").value(ready);
    w.key("deferred").value(deferred);
    w.key("held").value(held);
    w.end_object();
}

} // namespace

std::vector<std::string> encode_status(const NodeStatus& status) {
    std::vector<std::string> out;
    for (const auto& c : status.classes) {
        out.push_back(std::string(kClassField) + c.name);
        out.push_back(fmt::format("{} {} {}", c.ready, c.deferred, c.held));
    }
    for (const auto& m : status.mailstores) {
        out.push_back(std::string(kStoreField) + m.name);
        out.push_back(fmt::format("{} {} {} {}", m.breaker, m.in_flight, m.budget, m.slots));
    }
    out.emplace_back("oldest_age_s");
    out.push_back(fmt::format("{:.3f}", status.oldest_age_s));
    out.emplace_back("drain_rate");
    out.push_back(fmt::format("{:.3f}", status.drain_rate));
    return out;
}

NodeStatus decode_status(const std::vector<std::pair<std::string, std::string>>& fields) {
    NodeStatus s;
    for (const auto& [name, value] : fields) {
        const auto w = words(value);
        if (name.rfind(kClassField, 0) == 0 && w.size() == 3) {
            NodeClassCounts c;
            c.name = name.substr(kClassField.size());
            if (parse_number(w[0], c.ready) && parse_number(w[1], c.deferred) &&
                parse_number(w[2], c.held)) {
                s.classes.push_back(std::move(c));
            }
        } else if (name.rfind(kStoreField, 0) == 0 && w.size() == 4) {
            NodeStoreStatus m;
            m.name = name.substr(kStoreField.size());
            m.breaker = w[0];
            m.budget = w[2];
            if (parse_number(w[1], m.in_flight) && parse_number(w[3], m.slots)) {
                s.mailstores.push_back(std::move(m));
            }
        } else if (name == "oldest_age_s" && w.size() == 1) {
            (void)parse_number(w[0], s.oldest_age_s);
        } else if (name == "drain_rate" && w.size() == 1) {
            (void)parse_number(w[0], s.drain_rate);
        }
    }
    return s;
}

boost::asio::awaitable<Result<FleetView>> read_view(RedisClient& client, std::string prefix,
                                                    std::vector<std::string> stores) {
    FleetView view;
    std::vector<std::string> time_args{"TIME"};
    auto time = expect(co_await client.command(std::move(time_args)));
    if (!time) {
        co_return tl::unexpected(time.error());
    }
    const auto secs = time->at(0).as_int();
    const auto micros = time->at(1).as_int();
    if (!secs || !micros) {
        co_return fail(ErrorKind::kProtocol, "redis TIME: unexpected reply");
    }
    view.now_ms = *secs * 1000 + *micros / 1000;
    std::vector<std::string> live_args{"ZRANGEBYSCORE", nodes_key(prefix),
                                       fmt::format("({}", view.now_ms), "+inf"};
    auto live = expect(co_await client.command(std::move(live_args)));
    if (!live) {
        co_return tl::unexpected(live.error());
    }
    for (const auto& n : live->elements) {
        std::vector<std::string> fields_args{"HGETALL", node_key(prefix, n.str)};
        auto fields = expect(co_await client.command(std::move(fields_args)));
        if (!fields) {
            co_return tl::unexpected(fields.error());
        }
        std::vector<std::pair<std::string, std::string>> pairs;
        NodeView node;
        node.node = n.str;
        for (std::size_t i = 0; i + 1 < fields->elements.size(); i += 2) {
            const auto& name = fields->elements[i].str;
            const auto& value = fields->elements[i + 1].str;
            if (name == "at") {
                std::int64_t at = 0;
                node.age_ms =
                    parse_number(value, at) ? std::max<std::int64_t>(0, view.now_ms - at) : 0;
            } else {
                pairs.emplace_back(name, value);
            }
        }
        node.status = decode_status(pairs);
        view.nodes.push_back(std::move(node));
    }
    for (const auto& name : stores) {
        const StoreKeys keys(prefix, name);
        StoreView sv;
        sv.name = name;
        std::array<std::map<std::string, std::string>, 3> maps;
        const std::array<std::string, 3> hashes{keys.general, keys.reserve, keys.want};
        for (std::size_t i = 0; i < hashes.size(); ++i) {
            std::vector<std::string> args{"HGETALL", hashes[i]};
            auto r = expect(co_await client.command(std::move(args)));
            if (!r) {
                co_return tl::unexpected(r.error());
            }
            maps[i] = as_map(*r);
        }
        for (const auto& [node, ignored] : maps[2]) {
            (void)ignored;
            sv.holders.push_back(SlotHolder{node, field_u32(maps[0], node),
                                            field_u32(maps[1], node), field_u32(maps[2], node)});
        }
        std::vector<std::string> probe_args{"GET", keys.probe};
        auto probe = expect(co_await client.command(std::move(probe_args)));
        if (!probe) {
            co_return tl::unexpected(probe.error());
        }
        sv.prober = probe->str;
        std::vector<std::string> health_args{"HGETALL", keys.health};
        auto health = expect(co_await client.command(std::move(health_args)));
        if (!health) {
            co_return tl::unexpected(health.error());
        }
        const auto h = as_map(*health);
        if (const auto it = h.find("epoch"); it != h.end()) {
            (void)parse_number(it->second, sv.epoch);
        }
        if (const auto it = h.find("state"); it != h.end()) {
            sv.state = it->second;
        }
        if (const auto it = h.find("node"); it != h.end()) {
            sv.state_node = it->second;
        }
        if (const auto it = h.find("at"); it != h.end()) {
            std::int64_t at = 0;
            if (parse_number(it->second, at)) {
                sv.state_age_ms = std::max<std::int64_t>(0, view.now_ms - at);
            }
        }
        view.stores.push_back(std::move(sv));
    }
    co_return view;
}

std::string view_json(const FleetView& view) {
    json::Writer w;
    w.begin_object();
    w.key("now_ms").value(std::int64_t{view.now_ms});
    std::map<std::string, NodeClassCounts> by_class;
    std::vector<std::string> class_order;
    std::uint64_t ready = 0;
    std::uint64_t deferred = 0;
    std::uint64_t held = 0;
    double oldest = 0;
    double rate = 0;
    w.key("nodes").begin_array();
    for (const NodeView& n : view.nodes) {
        w.begin_object();
        w.key("node").value(n.node);
        w.key("age_ms").value(n.age_ms);
        w.key("classes").begin_object();
        for (const auto& c : n.status.classes) {
            w.key(c.name);
            counts(w, c.ready, c.deferred, c.held);
            auto [it, fresh] = by_class.try_emplace(c.name, NodeClassCounts{c.name, 0, 0, 0});
            if (fresh) {
                class_order.push_back(c.name);
            }
            it->second.ready += c.ready;
            it->second.deferred += c.deferred;
            it->second.held += c.held;
            ready += c.ready;
            deferred += c.deferred;
            held += c.held;
        }
        w.end_object();
        w.key("oldest_age_s").value(n.status.oldest_age_s);
        w.key("drain_rate").value(n.status.drain_rate);
        w.key("mailstores").begin_object();
        for (const auto& m : n.status.mailstores) {
            w.key(m.name).begin_object();
            w.key("breaker").value(m.breaker);
            w.key("in_flight").value(m.in_flight);
            w.key("budget").value(m.budget);
            w.key("slots").value(m.slots);
            w.end_object();
        }
        w.end_object();
        w.end_object();
        oldest = std::max(oldest, n.status.oldest_age_s);
        rate += n.status.drain_rate;
    }
    w.end_array();
    w.key("totals").begin_object();
    w.key("nodes").value(std::uint64_t{view.nodes.size()});
    w.key("ready").value(ready);
    w.key("deferred").value(deferred);
    w.key("held").value(held);
    w.key("classes").begin_object();
    for (const std::string& name : class_order) {
        const auto& c = by_class.at(name);
        w.key(c.name);
        counts(w, c.ready, c.deferred, c.held);
    }
    w.end_object();
    w.key("oldest_age_s").value(oldest);
    w.key("drain_rate").value(rate);
    w.end_object();
    w.key("mailstores").begin_array();
    for (const StoreView& s : view.stores) {
        w.begin_object();
        w.key("name").value(s.name);
        w.key("slots").begin_object();
        std::uint64_t total = 0;
        for (const auto& h : s.holders) {
            w.key(h.node).begin_object();
            w.key("general").value(h.general);
            w.key("reserve").value(h.reserve);
            w.key("want").value(h.want);
            w.end_object();
            total += h.general + h.reserve;
        }
        w.end_object();
        w.key("held").value(total);
        w.key("prober").value(s.prober);
        w.key("health").begin_object();
        w.key("state").value(s.state);
        w.key("epoch").value(s.epoch);
        w.key("node").value(s.state_node);
        w.key("age_ms");
        if (s.state_age_ms < 0) {
            w.null();
        } else {
            w.value(s.state_age_ms);
        }
        w.end_object();
        w.end_object();
    }
    w.end_array();
    w.end_object();
    return w.take();
}

} // namespace spoold::fleet
