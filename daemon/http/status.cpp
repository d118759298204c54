#include "daemon/http/status.hpp"

#include <cmath>

#include "common/json.hpp"

namespace spoold::http {

std::string status_json(const StatusSnapshot& st) {
    std::uint64_t total = 0;
    std::uint64_t backlog = 0;
    std::uint64_t bytes = 0;
    for (const auto& c : st.classes) {
        total += c.ready + c.deferred + c.held;
        backlog += c.ready + c.deferred; // held mail does not drain until released
        bytes += c.bytes;
    }

    // Script-safe: the page may inline the document in a <script> block.
    json::Writer w(true);
    w.begin_object();
    w.key("version").value(st.version);
    w.key("now_ms").value(std::int64_t{st.now_ms});
    w.key("uptime_s").value(st.uptime_s);
    w.key("paused").value(st.paused);

    w.key("classes").begin_array();
    for (const auto& c : st.classes) {
        w.begin_object();
        w.key("name").value(c.name);
        w.key("ready").value(c.ready);
        w.key("deferred").value(c.deferred);
        w.key("held").value(c.held);
        w.key("bytes").value(c.bytes);
        w.end_object();
    }
    w.end_array();
    w.key("total_messages").value(total);
    w.key("backlog").value(backlog);
    w.key("total_bytes").value(bytes);
    w.key("oldest_age_s").value(st.oldest_age_s);

    w.key("mailstores").begin_array();
    for (const auto& m : st.mailstores) {
        w.begin_object();
        w.key("name").value(m.name);
        w.key("breaker").value(metrics::to_string(m.breaker));
        w.key("breaker_level").value(static_cast<std::uint64_t>(m.breaker));
        w.key("concurrency_limit").value(m.concurrency_limit);
        w.key("in_flight").value(m.in_flight);
        w.key("rate").value(m.rate);
        w.end_object();
    }
    w.end_array();
    w.key("ingest_rate").value(st.ingest_rate);
    w.key("drain_rate").value(st.drain_rate);
    w.key("drain_eta_s");
    if (st.drain_rate > 0 && std::isfinite(st.drain_rate)) {
        w.value(static_cast<double>(backlog) / st.drain_rate);
    } else {
        w.null();
    }

    w.key("history").begin_array();
    for (const auto& h : st.history) {
        w.begin_object();
        w.key("t").value(std::int64_t{h.t_ms});
        w.key("backlog").begin_object();
        for (const auto& [name, count] : h.backlog) {
            w.key(name).value(std::uint64_t{count});
        }
        w.end_object();
        w.key("ingest").value(h.ingest_rate);
        w.key("drain").value(h.drain_rate);
        w.key("breaker").value(static_cast<std::uint64_t>(h.breaker));
        w.end_object();
    }
    w.end_array();
    w.key("fleet");
    if (st.fleet_json.empty()) {
        w.null();
    } else {
        w.raw(st.fleet_json);
    }
    w.end_object();
    return w.take();
}

} // namespace spoold::http
